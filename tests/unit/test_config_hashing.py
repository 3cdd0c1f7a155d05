"""task_hash, canonical_json and to_jsonable: one identity per task content, in any process."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import math
import os
import pathlib
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qroll.config import canonical_json, task_hash, to_jsonable
from qroll.errors import ConfigError, NotSerializableError


def make_task(**overrides: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "model": {
            "class": "LGBModel",
            "module_path": "qlib.contrib.model.gbdt",
            "kwargs": {"loss": "mse", "num_leaves": 210, "colsample_bytree": 0.8879},
        },
        "dataset": {
            "class": "DatasetH",
            "kwargs": {
                "handler": {
                    "class": "Alpha158",
                    "kwargs": {
                        "instruments": "csi300",
                        "fit_start_time": "<dataset.kwargs.segments.train.0>",
                    },
                },
                "segments": {"train": ("2008-01-01", "2014-12-31"), "test": ("2017-01-03", None)},
            },
        },
        "record": ["SignalRecord", {"class": "SigAnaRecord", "kwargs": {"model": "<MODEL>"}}],
    }
    task.update(overrides)
    return task


# The same task written in another key order, with lists for tuples: a different spelling of the
# same content. Used in this process and in a fresh one.
REORDERED = """
task = {
    "record": ["SignalRecord", {"kwargs": {"model": "<MODEL>"}, "class": "SigAnaRecord"}],
    "dataset": {"kwargs": {
        "segments": {"test": ["2017-01-03", None], "train": ["2008-01-01", "2014-12-31"]},
        "handler": {"kwargs": {"fit_start_time": "<dataset.kwargs.segments.train.0>",
                               "instruments": "csi300"}, "class": "Alpha158"},
    }, "class": "DatasetH"},
    "model": {"kwargs": {"colsample_bytree": 0.8879, "num_leaves": 210, "loss": "mse"},
              "module_path": "qlib.contrib.model.gbdt", "class": "LGBModel"},
}
"""


def reordered_task() -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(REORDERED, scope)
    return scope["task"]


def test_key_order_and_tuple_or_list_do_not_matter() -> None:
    assert list(reordered_task()) != list(make_task())
    assert task_hash(reordered_task()) == task_hash(make_task())


def test_hash_is_sha256_of_canonical_json() -> None:
    text = canonical_json(make_task())
    assert task_hash(make_task()) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert text.startswith('{"dataset":{"class":"DatasetH","kwargs":{"handler":')
    assert '"train":["2008-01-01","2014-12-31"]' in text and " " not in text


# One task's identity, written down once and never to change: pools deduplicate on it and runs are
# tagged with it, so a different hash for the same task would orphan every pool and run made before.
# The text is the canonical form spelled out by hand (sorted keys, no spaces, ISO days, JSON
# literals); the digest is `printf '%s' "$PINNED_TEXT" | sha256sum` from coreutils.
PINNED_TEXT = (
    '{"dataset":{"class":"DatasetH","kwargs":{"handler":{"class":"Alpha158","kwargs":'
    '{"fit_start_time":"<dataset.kwargs.segments.train.0>","instruments":"csi300"}},'
    '"segments":{"test":["2017-01-03",null],"train":["2008-01-01","2014-12-31"]}}},'
    '"extra":{"date":"2020-02-28","day":"2017-01-03","flag":true,"name":"沪深300","none":null,"ratio":0.1},'
    '"model":{"class":"LGBModel","kwargs":{"colsample_bytree":0.8879,"loss":"mse","num_leaves":210},'
    '"module_path":"qlib.contrib.model.gbdt"},'
    '"record":["SignalRecord",{"class":"SigAnaRecord","kwargs":{"model":"<MODEL>"}}]}'
)
PINNED_HASH = "32a1df8ddc7795dabff36885287a8eb51bc3d422a17ac419f83c69f99779972f"


def pinned_task() -> dict[str, Any]:
    return make_task(extra={"day": pd.Timestamp("2017-01-03"), "date": dt.date(2020, 2, 28), "ratio": 0.1,
                            "flag": True, "name": "沪深300", "none": None})


def test_a_fixed_task_keeps_its_hash_for_ever() -> None:
    assert canonical_json(pinned_task()) == PINNED_TEXT
    assert task_hash(pinned_task()) == PINNED_HASH
    assert task_hash(reordered_task() | {"extra": pinned_task()["extra"]}) == PINNED_HASH


def test_same_hash_in_a_fresh_process() -> None:
    code = REORDERED + "from qroll.config import task_hash\nprint(task_hash(task))\n"
    # Another seed gives strings another hash(): the task's hash must not depend on it.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == task_hash(make_task())


@pytest.mark.parametrize(
    "change",
    [
        {"record": ["SignalRecord"]},
        {"model": {"class": "LGBModel", "kwargs": {"loss": "mse", "num_leaves": 211}}},
        {"extra": True},
        {"extra": 1},
        {"extra": 1.0 + 1e-12},
    ],
)
def test_any_content_change_changes_the_hash(change: dict[str, Any]) -> None:
    assert task_hash(make_task(**change)) != task_hash(make_task())


def test_true_and_one_differ() -> None:
    assert task_hash({"a": True}) != task_hash({"a": 1})
    assert (
        canonical_json({"a": True, "b": 1, "c": 1.5, "d": None})
        == '{"a":true,"b":1,"c":1.5,"d":null}'
    )


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2017, 1, 2),
        dt.datetime(2017, 1, 2),
        pd.Timestamp("2017-01-02"),
        pd.Timestamp("2017-01-02").as_unit("s"),
        np.datetime64("2017-01-02"),
        np.datetime64("2017-01-02T00:00:00.000000000"),
    ],
)
def test_every_spelling_of_a_trading_day_hashes_alike(day: Any) -> None:
    assert to_jsonable({"d": day}) == {"d": "2017-01-02"}
    assert task_hash({"seg": (day, None)}) == task_hash({"seg": ["2017-01-02", None]})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (pd.Timestamp("2017-01-02 09:30"), "2017-01-02T09:30:00"),
        (dt.datetime(2017, 1, 2, 9, 30), "2017-01-02T09:30:00"),
        (pd.Timestamp("2017-01-02 00:00:00.000000001"), "2017-01-02T00:00:00.000000001"),
        (pd.Timestamp("2017-01-02", tz="UTC"), "2017-01-02T00:00:00+00:00"),
        (dt.datetime(2017, 1, 2, tzinfo=dt.timezone.utc), "2017-01-02T00:00:00+00:00"),
    ],
)
def test_times_other_than_naive_midnight_keep_full_iso_form(value: Any, text: str) -> None:
    assert to_jsonable(value) == text


class Colour(str, enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.int64(7), 7),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.str_("abc"), "abc"),
        (Colour.RED, "red"),
        (pathlib.PurePosixPath("/data/cn"), "/data/cn"),
        (pd.Timestamp, "pandas.Timestamp"),
        (dt.date, "datetime.date"),
        ((1, [2, (3,)]), [1, [2, [3]]]),
    ],
)
def test_plain_values(value: Any, expected: Any) -> None:
    converted = to_jsonable(value)
    assert converted == expected
    assert type(converted) is type(expected)


def test_numpy_scalars_hash_like_python_ones() -> None:
    assert task_hash({"n": np.int32(3), "x": np.float64(0.25)}) == task_hash({"n": 3, "x": 0.25})


def test_non_ascii_is_kept() -> None:
    assert canonical_json({"name": "沪深300"}) == '{"name":"沪深300"}'


# -- errors -------------------------------------------------------------------------------------


class LGBModel:
    """A built model, the typical value that must not be in a task."""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (LGBModel(), r"holds an object of type 'LGBModel'"),
        (lambda: 0, r"holds an object of type 'function'"),
        ({1, 2}, r"holds an object of type 'set'"),
        (np.zeros(2), r"holds an object of type 'ndarray'"),
    ],
)
def test_objects_are_refused_with_their_path(value: Any, message: str) -> None:
    task = make_task(record=[{"class": "SignalRecord", "kwargs": {"model": value}}])
    with pytest.raises(
        NotSerializableError,
        match=rf"^task\.record\.0\.kwargs\.model {message}, which has no stable JSON form: "
        r"replace it by a config dict .* or a placeholder like '<MODEL>'",
    ):
        task_hash(task)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_non_finite_floats_are_refused(value: Any) -> None:
    with pytest.raises(
        NotSerializableError, match=r"^task\.kwargs\.alpha is -?(nan|inf), .*give a number"
    ):
        task_hash({"kwargs": {"alpha": value}})


@pytest.mark.parametrize("value", [pd.NaT, np.datetime64("NaT")])
def test_missing_dates_are_refused(value: Any) -> None:
    with pytest.raises(NotSerializableError, match=r"^task\.seg\.1 is NaT .*give a date or null"):
        task_hash({"seg": ["2017-01-02", value]})


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(NotSerializableError, match=r"^task\.segments has the key 2017 of type int"):
        canonical_json({"segments": {2017: "x"}})


def test_cycles_are_refused() -> None:
    task: dict[str, Any] = {"record": []}
    task["record"].append(task)
    with pytest.raises(NotSerializableError, match=r"^task\.record\.0 contains itself"):
        task_hash(task)


def test_shared_sub_structures_are_not_cycles() -> None:
    segment = ["2017-01-02", "2017-12-29"]
    assert to_jsonable({"valid": segment, "test": segment}) == {"valid": segment, "test": segment}


def test_path_prefix_and_error_family() -> None:
    with pytest.raises(ConfigError, match=r"^template\.x holds"):
        to_jsonable({"x": object()}, path="template")
