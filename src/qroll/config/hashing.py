"""A task's identity: its canonical JSON and the sha256 of it.

The hash is what the pool de-duplicates on, what recorders are tagged with and what a resumed run
looks up, so it must not depend on anything but the task's content: not on dict order, not on
``hash()`` (salted per process), not on ``id()``, and not on how a date happens to be spelled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import pathlib
from typing import Any

import numpy as np
import pandas as pd

from qroll.errors import NotSerializableError

__all__ = ["canonical_json", "task_hash", "to_jsonable"]

_FIX = "replace it by a config dict ({'class': ..., 'kwargs': ...}) or a placeholder like '<MODEL>'"


def _date_text(value: dt.date) -> str:
    if not isinstance(value, dt.datetime):
        return value.isoformat()
    nanos = value.nanosecond if isinstance(value, pd.Timestamp) else 0
    midnight = (value.hour, value.minute, value.second, value.microsecond, nanos) == (0,) * 5
    # A naive midnight is a trading day, however it was written ("2017-01-02", date(2017, 1, 2),
    # Timestamp("2017-01-02")), so all spellings must hash alike. An aware one is an instant: its
    # offset is part of its meaning, so it keeps the full form.
    if midnight and value.tzinfo is None:
        return value.date().isoformat()
    return value.isoformat()


def to_jsonable(obj: Any, path: str = "task") -> Any:
    """Turn a task (or any part of one) into plain JSON values, refusing what has no stable form.

    Parameters
    ----------
    obj : object
        Dicts with ``str`` keys, lists, tuples, ``None``, bools, ints, finite floats, strings,
        dates (``datetime.date``, ``datetime.datetime``, ``pd.Timestamp``, ``np.datetime64``),
        numpy scalars, classes and ``pathlib`` paths, nested to any depth.
    path : str, default "task"
        The dotted name of ``obj``, used in error messages to point at the offending value.

    Returns
    -------
    object
        The same content built from ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and
        ``None`` only. Tuples become lists; dates become ISO strings, date-only (``YYYY-MM-DD``) at
        a naive midnight; numpy scalars become Python scalars; a class becomes
        ``"module.QualName"``; a path becomes its string.

    Raises
    ------
    NotSerializableError
        If a value has no stable JSON form (a model object, a function, a set, an array), a dict
        key is not a string, a float is NaN or infinite, a date is NaT, or the structure contains
        itself. The message names the dotted path of the value, e.g. ``task.record.0.kwargs.model``.

    Examples
    --------
    >>> import datetime, pandas as pd
    >>> to_jsonable({"seg": (pd.Timestamp("2017-01-02"), datetime.date(2017, 1, 3))})
    {'seg': ['2017-01-02', '2017-01-03']}
    >>> to_jsonable({"at": pd.Timestamp("2017-01-02 09:30")})
    {'at': '2017-01-02T09:30:00'}
    >>> to_jsonable({"model": object()})
    Traceback (most recent call last):
    ...
    qroll.errors.NotSerializableError: task.model holds an object of type 'object', which has no
    stable JSON form: replace it by a config dict ({'class': ..., 'kwargs': ...}) or a placeholder
    like '<MODEL>'
    """
    return _convert(obj, path, set())


def _convert(obj: Any, path: str, active: set[int]) -> Any:
    # Order matters: bool before int (bool is an int), numpy scalars before float (np.float64 is a
    # float), dates before everything that could swallow them.
    if obj is None or isinstance(obj, bool):
        return obj
    if obj is pd.NaT or isinstance(obj, np.datetime64):
        if pd.isna(obj):
            raise NotSerializableError(f"{path} is NaT (a missing date): give a date or null")
        return _date_text(pd.Timestamp(obj))
    if isinstance(obj, np.generic):
        return _convert(obj.item(), path, active)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise NotSerializableError(f"{path} is {obj!r}, which JSON cannot hold: give a number")
        return float(obj)
    if isinstance(obj, str):
        # str.__str__ drops str subclasses (a str Enum) to their plain value.
        return str.__str__(obj)
    if isinstance(obj, dt.date):
        return _date_text(obj)
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in active:
            raise NotSerializableError(f"{path} contains itself: make the task a tree, not a cycle")
        active.add(id(obj))
        try:
            if isinstance(obj, dict):
                return _convert_dict(obj, path, active)
            return [_convert(item, f"{path}.{i}", active) for i, item in enumerate(obj)]
        finally:
            active.discard(id(obj))
    raise NotSerializableError(
        f"{path} holds an object of type {type(obj).__qualname__!r}, which has no stable JSON "
        f"form: {_FIX}"
    )


def _convert_dict(obj: dict[Any, Any], path: str, active: set[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise NotSerializableError(
                f"{path} has the key {key!r} of type {type(key).__qualname__}: "
                "task keys must be strings; quote it in the YAML file"
            )
        out[str.__str__(key)] = _convert(value, f"{path}.{key}", active)
    return out


def canonical_json(obj: Any, path: str = "task") -> str:
    """Write ``obj`` as canonical JSON: sorted keys, no spaces, dates as ISO strings.

    Parameters
    ----------
    obj : object
        Anything :func:`to_jsonable` accepts.
    path : str, default "task"
        The dotted name of ``obj`` in error messages.

    Returns
    -------
    str
        The same text for the same content, in any process, whatever the order of dict keys.

    Raises
    ------
    NotSerializableError
        As :func:`to_jsonable`.

    Examples
    --------
    >>> canonical_json({"b": (1, 2.5), "a": "é"})
    '{"a":"é","b":[1,2.5]}'
    """
    return json.dumps(
        to_jsonable(obj, path),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def task_hash(task: Any) -> str:
    """Return the identity of a task: the sha256 hex digest of its canonical JSON.

    Parameters
    ----------
    task : dict
        A task (``{"model": ..., "dataset": ..., "record": ...}``) made of config values only:
        placeholders such as ``"<MODEL>"`` are fine, built objects are not.

    Returns
    -------
    str
        64 hexadecimal characters. Equal for tasks that differ only in dict order, in tuple versus
        list, or in how a trading day is written (``"2017-01-02"``, ``date(2017, 1, 2)``,
        ``Timestamp("2017-01-02")``).

    Raises
    ------
    NotSerializableError
        If the task holds a value with no stable JSON form; the message names where it sits.

    Examples
    --------
    >>> import datetime
    >>> a = task_hash({"segments": {"test": ("2017-01-02", None)}, "step": 40})
    >>> b = task_hash({"step": 40, "segments": {"test": [datetime.date(2017, 1, 2), None]}})
    >>> a == b, len(a)
    (True, 64)
    """
    return hashlib.sha256(canonical_json(task).encode("utf-8")).hexdigest()
