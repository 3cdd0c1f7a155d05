"""load_config: a YAML run config in, a dict out, or one error that names the file."""

from __future__ import annotations

import datetime as dt
import pathlib
import re
from typing import Any

import pytest

from qroll.config import load_config, task_hash
from qroll.errors import ConfigError, ConfigFileError

RUN_CONFIG = """\
experiment: csi300_rolling
pool: null
rolling: {step: 40, rtype: expanding, trunc_days: auto}
tasks:
  - model: {class: LGBModel, kwargs: {loss: mse}}
    dataset: {class: DatasetH, kwargs: {handler: {class: Alpha158, kwargs: {instruments: csi300,
              start_time: 2008-01-01, end_time: 2020-08-01}},
              segments: {train: [2008-01-01, 2014-12-31],
              valid: [2015-01-01, 2016-12-31], test: [2017-01-01, 2020-08-01]}}}
    record: [SignalRecord, SigAnaRecord]
"""


def write(tmp_path: pathlib.Path, text: str | bytes, name: str = "run.yaml") -> pathlib.Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_reads_the_design_run_config(tmp_path: pathlib.Path) -> None:
    config = load_config(write(tmp_path, RUN_CONFIG))
    assert config["experiment"] == "csi300_rolling"
    assert config["pool"] is None
    assert config["rolling"] == {"step": 40, "rtype": "expanding", "trunc_days": "auto"}
    task = config["tasks"][0]
    assert task["record"] == ["SignalRecord", "SigAnaRecord"]
    # YAML dates stay dates, and hash like their ISO strings.
    assert task["dataset"]["kwargs"]["segments"]["train"] == [
        dt.date(2008, 1, 1),
        dt.date(2014, 12, 31),
    ]
    as_text = {
        "train": ["2008-01-01", "2014-12-31"],
        "valid": ["2015-01-01", "2016-12-31"],
        "test": ["2017-01-01", "2020-08-01"],
    }
    assert task_hash(task["dataset"]["kwargs"]["segments"]) == task_hash(as_text)


def test_accepts_str_and_path_and_home(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "a: 1\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(str(path)) == load_config(path) == load_config("~/run.yaml") == {"a": 1}


def test_tags_do_not_build_python_objects(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "a: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(
        ConfigFileError, match=r"is not valid YAML: .*python/object/apply:os\.getcwd"
    ):
        load_config(path)


def test_missing_file(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(
        ConfigFileError,
        match=rf"^config file {re.escape(repr(str(missing)))} does not "
        r"exist .*; check the path",
    ):
        load_config(missing)


def test_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigFileError, match=r"is a directory: give the YAML file in it"):
        load_config(tmp_path)


def test_unreadable(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "a: 1\n")

    # chmod 000 does not stop root (CI containers), so the refusal is simulated.
    def refuse(self: pathlib.Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_text", refuse)
    with pytest.raises(
        ConfigFileError,
        match=r"run\.yaml' cannot be read: Permission denied; check "
        r"its permissions",
    ):
        load_config(path)


def test_not_utf8(tmp_path: pathlib.Path) -> None:
    with pytest.raises(
        ConfigFileError,
        match=r"run\.yaml' is not UTF-8 text \(invalid start byte at "
        r"byte 3\); save it as UTF-8",
    ):
        load_config(write(tmp_path, b"a: \xff\n"))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: 1\n b: [\n", r"line 2, column 3: mapping values are not allowed here"),
        ("tasks:\n\t- 1\n", r"line 2, column 1: found character '\\t' that cannot start any token"),
        ("a: [1, 2\nb: 3\n", r"line 2, column 2: expected ',' or '\]', but got ':'"),
    ],
)
def test_malformed_yaml_gives_line_and_column(
    tmp_path: pathlib.Path, text: str, where: str
) -> None:
    with pytest.raises(
        ConfigFileError, match=rf"run\.yaml' is not valid YAML: {where}.*; fix the file there"
    ):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: pathlib.Path, text: str) -> None:
    with pytest.raises(ConfigFileError, match=r"run\.yaml' is empty: write a mapping"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("3\n", "int")]
)
def test_top_level_must_be_a_mapping(tmp_path: pathlib.Path, text: str, kind: str) -> None:
    with pytest.raises(
        ConfigFileError,
        match=rf"run\.yaml' holds a {kind} at its top level, but a "
        r"mapping of keys .* is expected",
    ):
        load_config(write(tmp_path, text))


def test_file_errors_are_config_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.yaml")
