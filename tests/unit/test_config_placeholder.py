"""fill_placeholder and get_item_from_obj: Qlib's filling rules, on a copy."""

from __future__ import annotations

import collections
import copy
import logging
from typing import Any, NamedTuple

import pandas as pd
import pytest

from qroll.config import fill_placeholder, get_item_from_obj
from qroll.errors import ConfigError


class Model:
    """A stand-in for a built model: compared by identity only."""


def make_task(segments: Any = None, **overrides: Any) -> dict[str, Any]:
    train = segments if segments is not None else ("2008-01-01", "2014-12-31")
    task: dict[str, Any] = {
        "model": {"class": "LGBModel", "kwargs": {"loss": "mse"}},
        "dataset": {
            "class": "DatasetH",
            "kwargs": {
                "handler": {
                    "class": "Alpha158",
                    "kwargs": {
                        "fit_start_time": "<dataset.kwargs.segments.train.0>",
                        "fit_end_time": "<dataset.kwargs.segments.train.1>",
                    },
                },
                "segments": {"train": train, "test": ["2017-01-01", "2020-08-01"]},
            },
        },
        "record": [
            {"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
            ("SigAnaRecord", "<MODEL>"),
        ],
    }
    task.update(overrides)
    return task


def handler_kwargs(task: dict[str, Any]) -> dict[str, Any]:
    return task["dataset"]["kwargs"]["handler"]["kwargs"]


@pytest.mark.parametrize(
    "train",
    [
        ("2008-01-01", "2014-12-31"),
        ["2008-01-01", "2014-12-31"],
        (pd.Timestamp("2008-01-02"), pd.Timestamp("2014-12-31")),
    ],
    ids=["tuple", "list", "timestamps"],
)
def test_segment_paths_resolve_through_tuples_and_lists(train: Any) -> None:
    filled = fill_placeholder(make_task(train), {})
    assert handler_kwargs(filled)["fit_start_time"] is train[0]
    assert handler_kwargs(filled)["fit_end_time"] is train[1]
    assert type(filled["dataset"]["kwargs"]["segments"]["train"]) is type(train)


def test_model_placeholder_keeps_object_identity_everywhere() -> None:
    model, dataset = Model(), Model()
    filled = fill_placeholder(make_task(), {"<MODEL>": model, "<DATASET>": dataset})
    assert filled["record"][0]["kwargs"]["model"] is model
    assert filled["record"][0]["kwargs"]["dataset"] is dataset
    # Unlike Qlib, tuples are searched too, and stay tuples.
    assert filled["record"][1] == ("SigAnaRecord", model)
    assert filled["record"][1][1] is model


def test_input_is_never_mutated_and_shares_no_container() -> None:
    leaf = Model()
    task = make_task(extra={"obj": leaf, "refs": ["<MODEL>"]})
    before = copy.deepcopy(task)
    filled = fill_placeholder(task, {"<MODEL>": Model()})
    assert (
        task["record"]
        == before["record"]
        == [
            {"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
            ("SigAnaRecord", "<MODEL>"),
        ]
    )
    assert handler_kwargs(task) == handler_kwargs(before)
    assert task["extra"]["refs"] == ["<MODEL>"]
    # Containers are new...
    assert filled is not task
    assert filled["record"] is not task["record"]
    assert filled["record"][0]["kwargs"] is not task["record"][0]["kwargs"]
    assert filled["extra"]["refs"] is not task["extra"]["refs"]
    # ...but leaves are not deep-copied.
    assert filled["extra"]["obj"] is leaf


def test_path_to_a_container_gives_a_copy_with_its_placeholders_filled() -> None:
    model = Model()
    task = {"a": {"items": ["x", "<MODEL>"]}, "b": "<a.items>"}
    filled = fill_placeholder(task, {"<MODEL>": model})
    assert filled["b"] == ["x", model]
    assert filled["b"] is not task["a"]["items"]
    assert task["a"]["items"] == ["x", "<MODEL>"]


def test_path_to_itself_does_not_loop() -> None:
    assert fill_placeholder({"a": "<a>", "b": {"c": "<b>"}}, {}) == {
        "a": "<a>",
        "b": {"c": {"c": "<b>"}},
    }


def test_unresolvable_paths_are_left_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    task = {"k": "<dataset.kwargs.nothing>", "l": ["<NOT_GIVEN>"]}
    with caplog.at_level(logging.DEBUG, logger="qroll.config.placeholder"):
        filled = fill_placeholder(task, {})
    assert filled == task
    messages = [r.getMessage() for r in caplog.records]
    assert any("'<dataset.kwargs.nothing>' at config.k left as it is" in m for m in messages)
    assert any("'<NOT_GIVEN>' at config.l.0" in m for m in messages)
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize("text", ["a <MODEL>", "<MODEL> b", "<>", "<a><b>", "MODEL", "<<MODEL>>"])
def test_only_whole_placeholder_strings_are_replaced(text: str) -> None:
    assert fill_placeholder({"a": {"x": 1}, "v": text}, {"<MODEL>": 1})["v"] == text


def test_keys_are_not_replaced() -> None:
    assert fill_placeholder({"<MODEL>": "<MODEL>"}, {"<MODEL>": 7}) == {"<MODEL>": 7}


def test_container_types_are_kept() -> None:
    class Pair(NamedTuple):
        left: Any
        right: Any

    ordered = collections.OrderedDict([("b", "<M>"), ("a", 1)])
    factory = collections.defaultdict(list, {"k": "<M>"})
    filled = fill_placeholder([Pair("<M>", 2), ordered, factory], {"<M>": "m"})
    assert filled[0] == Pair("m", 2) and type(filled[0]) is Pair
    assert type(filled[1]) is collections.OrderedDict and list(filled[1].items()) == [
        ("b", "m"),
        ("a", 1),
    ]
    assert type(filled[2]) is collections.defaultdict and filled[2]["k"] == "m"
    assert filled[2]["new"] == []  # the factory came along


@pytest.mark.parametrize("key", ["MODEL", "<MODEL", "<>", "x<MODEL>", 3])
def test_placeholder_keys_must_look_like_placeholders(key: Any) -> None:
    with pytest.raises(ConfigError, match=rf"placeholder {key!r} is not of the form '<NAME>'"):
        fill_placeholder({}, {key: 1})


def test_config_extend_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"config_extend must be a dict.*not \['<MODEL>'\]"):
        fill_placeholder({}, ["<MODEL>"])  # type: ignore[arg-type]


# -- get_item_from_obj -----------------------------------------------------------------------------


def test_get_item_follows_dicts_lists_tuples_and_int_keys() -> None:
    task = make_task()
    assert get_item_from_obj(task, "dataset.kwargs.segments.test.1") == "2020-08-01"
    assert get_item_from_obj(task, "record.1.0") == "SigAnaRecord"
    assert get_item_from_obj({"steps": {0: "zero"}}, "steps.0") == "zero"
    assert get_item_from_obj({"0": "str", 0: "int"}, "0") == "str"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "dataset.kwargs.segment",
            r"dataset\.kwargs has no key 'segment' \(it has 'handler', "
            r"'segments'\); fix the path",
        ),
        ("nothing", r"the top level has no key 'nothing' \(it has 'model', 'dataset', 'record'\)"),
        ("record.5", r"record has 2 items, so there is no item 5; use 0\.\.1"),
        ("record.first", r"record is a list, so 'first' must be a position 0\.\.1"),
        ("record.1.-1", r"record\.1 is a tuple, so '-1' must be a position 0\.\.1"),
        ("record.1.0.x", r"record\.1\.0 is 'SigAnaRecord', not a dict, list or tuple"),
    ],
)
def test_get_item_errors_name_the_failing_part(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^cannot resolve '{path}': {message}"):
        get_item_from_obj(make_task(), path)


def test_get_item_on_empty_dict() -> None:
    with pytest.raises(ConfigError, match=r"has no key 'a' \(it has no keys\)"):
        get_item_from_obj({}, "a")
