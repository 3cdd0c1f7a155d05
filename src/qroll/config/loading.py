"""Read a run config (one YAML file) into a dict, or say exactly why it cannot be read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from qroll.errors import ConfigFileError

__all__ = ["load_config"]


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file whose top level is a mapping.

    The file is parsed with ``yaml.safe_load``: no Python objects are built from tags, and dates
    written ``2017-01-02`` come back as ``datetime.date``, which every qroll date argument takes.

    Parameters
    ----------
    path : str or path-like
        The YAML file, e.g. a run config (``experiment``, ``data``, ``rolling``, ``tasks``, ...).

    Returns
    -------
    dict
        The file's top-level mapping.

    Raises
    ------
    ConfigFileError
        If the file does not exist, is a directory, cannot be read or is not UTF-8 text, is not
        valid YAML (the message gives the line and column), is empty, or holds something other
        than a mapping at its top level. Every message names the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     run = pathlib.Path(tmp, "run.yaml")
    ...     _ = run.write_text("experiment: demo\\nrolling: {step: 40, start: 2017-01-02}\\n")
    ...     load_config(run)
    {'experiment': 'demo', 'rolling': {'step': 40, 'start': datetime.date(2017, 1, 2)}}
    """
    shown = os.fspath(path)
    file = Path(shown).expanduser()
    if not file.exists():
        raise ConfigFileError(
            f"config file {shown!r} does not exist (looked in {str(file.absolute())!r}); "
            "check the path"
        )
    if file.is_dir():
        raise ConfigFileError(f"config file {shown!r} is a directory: give the YAML file in it")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(
            f"config file {shown!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise ConfigFileError(
            f"config file {shown!r} cannot be read: {exc.strerror or exc}; check its permissions"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = _yaml_problem(exc)
        raise ConfigFileError(f"config file {shown!r} is not valid YAML: {problem}") from exc
    if data is None:
        raise ConfigFileError(
            f"config file {shown!r} is empty: write a mapping such as 'tasks: [...]' in it"
        )
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"config file {shown!r} holds a {type(data).__name__} at its top level, but a mapping "
            "of keys (experiment, data, rolling, tasks, ...) is expected; write 'key: value' lines"
        )
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    detail = f"{problem} ({context})" if context else problem
    return f"{where}{detail}; fix the file there"
