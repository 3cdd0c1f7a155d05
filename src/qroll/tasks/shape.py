"""The shape of a task, in one place: where its segments, test key, model and handler are.

A task is Qlib's dict (DESIGN §2)::

    {"model": {"class": "LGBModel", "kwargs": {...}},
     "dataset": {"class": "DatasetH", "kwargs": {
         "handler": {"class": "Alpha158", "kwargs": {"start_time": ..., "end_time": ..., ...}},
         "segments": {"train": [start, end], "valid": [start, end], "test": [start, end]}}},
     "record": [...]}

Every other module asks this one instead of spelling the paths out, so a change of shape is a
change here. The test segment is ``"test"`` unless the task says otherwise: a :class:`RollingGen`
built with another ``test_key`` writes it into every task it rolls as ``{"qroll": {"test_key":
"backtest"}}``, so the run tags, run names, progress lines and ``qroll pool list`` show the real
test window wherever the task travels (a pool, a worker on another machine, a run's ``task``
artifact). A task without that block has the default key, and its hash is unchanged by this.

A pool trainer puts its as-of day there too (``{"qroll": {"as_of": "2019-03-29"}}``), so that a worker
started anywhere trains the task on the data as of that day. That key is a request about how to fit,
not part of the task: the worker trains (and records, and hashes) the task without it
(:func:`without_as_of`), and :func:`window_key` ignores it.

Days are shown as ``2019-01-02`` (the full ISO time when it is not midnight); a segment as
``2019-01-02..2019-03-29``, an open end as ``open``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from typing import Any

import pandas as pd

from qroll.config import task_hash
from qroll.errors import ConfigError, TaskConfigError, TaskGenError

__all__ = [
    "AS_OF_PARAM",
    "DEFAULT_TEST_KEY",
    "DEFAULT_TRAIN_KEY",
    "HANDLER_PATH",
    "META_KEY",
    "OPEN",
    "SEGMENTS_PATH",
    "TEST_KEY_PARAM",
    "format_day",
    "format_segment",
    "handler_config",
    "handler_kwargs",
    "handler_param",
    "model_name",
    "segment_param",
    "segments",
    "set_segments",
    "set_test_key",
    "task_as_of",
    "task_segment",
    "task_test_key",
    "window_key",
    "window_text",
    "with_as_of",
    "without_as_of",
]

DEFAULT_TEST_KEY = "test"
DEFAULT_TRAIN_KEY = "train"
SEGMENTS_PATH = ("dataset", "kwargs", "segments")
"""Where a task keeps its segments, ``{name: [start, end]}``."""
HANDLER_PATH = ("dataset", "kwargs", "handler")
"""Where a task keeps its data handler's config (or a handler given another way, e.g. a path)."""
META_KEY = "qroll"
"""The task's own block for what qroll must know about it beyond Qlib's keys (its test key)."""
TEST_KEY_PARAM = f"{META_KEY}.test_key"
"""The run parameter that holds a task's test key, as :func:`~qroll.train.task.flatten_task` logs it."""
AS_OF_PARAM = f"{META_KEY}.as_of"
"""Where a pool task carries the day it is trained as of (see :func:`with_as_of`)."""
OPEN = "open"
"""How an open (``None``) segment end is shown."""


def _get(task: Any, path: tuple[str, ...]) -> Any:
    node = task
    for key in path:
        node = node[key]
    return node


def segments(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task's segments, ``{name: (start, end)}`` as written (a new dict; the pairs are the task's).

    Parameters
    ----------
    task : dict
        A task.

    Returns
    -------
    dict

    Raises
    ------
    TaskGenError
        If the task has no ``dataset.kwargs.segments`` or it is not a mapping.

    Examples
    --------
    >>> segments({"dataset": {"kwargs": {"segments": {"train": ("2019-01-02", "2019-06-28")}}}})
    {'train': ('2019-01-02', '2019-06-28')}
    >>> segments({"model": {}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qroll.errors.TaskGenError: the task has no dataset.kwargs.segments: give ...
    """
    try:
        found = _get(task, SEGMENTS_PATH)
    except (KeyError, TypeError, IndexError) as exc:
        raise TaskGenError(
            "the task has no dataset.kwargs.segments: give "
            "{'dataset': {'kwargs': {'segments': {'train': [start, end], 'test': [start, end]}}}}"
        ) from exc
    if not isinstance(found, Mapping):
        raise TaskGenError(
            f"dataset.kwargs.segments must be a mapping of name -> [start, end], got {found!r}"
        )
    return dict(found)


def set_segments(task: MutableMapping[str, Any], value: Mapping[str, Any]) -> None:
    """Replace the task's segments by ``value``, in place (the task must have a ``dataset.kwargs``).

    >>> task = {"dataset": {"kwargs": {"segments": {}}}}
    >>> set_segments(task, {"test": ("2019-01-02", None)})
    >>> task["dataset"]["kwargs"]["segments"]
    {'test': ('2019-01-02', None)}
    """
    _get(task, SEGMENTS_PATH[:-1])[SEGMENTS_PATH[-1]] = value


def task_test_key(task: Mapping[str, Any], default: str = DEFAULT_TEST_KEY) -> str:
    """The name of the task's test segment: its ``qroll.test_key``, else ``default``.

    Parameters
    ----------
    task : dict
        A task, as written or as rolled by :class:`~qroll.tasks.gen.RollingGen`.
    default : str, default "test"
        The key of a task that names none (Qlib's tasks, and any rolled with the default key).

    Raises
    ------
    ConfigError
        If the task's ``qroll`` block is not a mapping, or its ``test_key`` is not a non-empty string.

    Examples
    --------
    >>> task_test_key({"model": {}})
    'test'
    >>> task_test_key({"model": {}, "qroll": {"test_key": "backtest"}})
    'backtest'
    """
    meta = task.get(META_KEY)
    if meta is None:
        return default
    if not isinstance(meta, Mapping):
        raise ConfigError(f"the task's {META_KEY!r} block is {meta!r}: it must be a mapping such as "
                          f"{{test_key: backtest}}, or be left out")
    key = meta.get("test_key", default)
    if not isinstance(key, str) or not key:
        raise ConfigError(f"the task's {TEST_KEY_PARAM} is {key!r}: it must name one of its segments "
                          f"(a string), as RollingGen(test_key=...) writes it")
    return key


def set_test_key(task: MutableMapping[str, Any], key: str) -> None:
    """Record ``key`` as the task's test segment, in place; the default key is recorded by absence.

    A task rolled with the default key stays exactly Qlib's dict (and keeps its hash).

    >>> task = {"model": {}}
    >>> set_test_key(task, "backtest"); task
    {'model': {}, 'qroll': {'test_key': 'backtest'}}
    >>> set_test_key(task, "test"); task
    {'model': {}}
    """
    meta = task.get(META_KEY)
    if key != DEFAULT_TEST_KEY:
        task[META_KEY] = {**(meta if isinstance(meta, Mapping) else {}), "test_key": key}
        return
    if isinstance(meta, Mapping) and "test_key" in meta:
        rest = {k: v for k, v in meta.items() if k != "test_key"}
        if rest:
            task[META_KEY] = rest
        else:
            del task[META_KEY]


def with_as_of(task: Mapping[str, Any], day: Any) -> dict[str, Any]:
    """A shallow copy of ``task`` that carries ``day`` as its ``qroll.as_of`` (``YYYY-MM-DD``).

    What :class:`~qroll.train.TrainerRM` submits to its pool, so that any worker trains the task on
    the data as of ``day``; :func:`without_as_of` gives the task back exactly. ``day`` None gives
    the task as it is (a copy).

    Raises
    ------
    TaskConfigError
        If the task's ``qroll`` block is not a mapping.
    ValueError
        If ``day`` is not a date.

    >>> with_as_of({"model": {}, "qroll": {"test_key": "backtest"}}, pd.Timestamp("2019-03-29"))
    {'model': {}, 'qroll': {'test_key': 'backtest', 'as_of': '2019-03-29'}}
    """
    out = dict(task)
    if day is not None:
        meta = out.get(META_KEY)
        if meta is not None and not isinstance(meta, Mapping):
            raise TaskConfigError(f"the task's {META_KEY!r} block is {meta!r}: it must be a mapping such as "
                                  "{test_key: backtest}, or be left out")
        out[META_KEY] = {**(meta or {}), "as_of": format_day(day)}
    return out


def without_as_of(task: Mapping[str, Any]) -> Mapping[str, Any]:
    """``task`` without its ``qroll.as_of`` (a shallow copy; the task itself when it has none).

    The ``qroll`` block goes with it when nothing else is left in it, so the task is the one
    :func:`with_as_of` was given, with the same hash.

    >>> without_as_of({"model": {}, "qroll": {"as_of": "2019-03-29"}})
    {'model': {}}
    >>> without_as_of({"model": {}, "qroll": {"test_key": "backtest", "as_of": "2019-03-29"}})
    {'model': {}, 'qroll': {'test_key': 'backtest'}}
    """
    meta = task.get(META_KEY)
    if not isinstance(meta, Mapping) or "as_of" not in meta:
        return task
    out = dict(task)
    rest = {k: v for k, v in meta.items() if k != "as_of"}
    if rest:
        out[META_KEY] = rest
    else:
        del out[META_KEY]
    return out


def task_as_of(task: Mapping[str, Any]) -> pd.Timestamp | None:
    """The day a task is to be trained as of (its ``qroll.as_of``), or None if it names none.

    Raises
    ------
    TaskConfigError
        If the ``qroll`` block is not a mapping, or its ``as_of`` is not a day (``YYYY-MM-DD``).

    Examples
    --------
    >>> task_as_of({"model": {}, "qroll": {"as_of": "2019-03-29"}})
    Timestamp('2019-03-29 00:00:00')
    >>> task_as_of({"model": {}}) is None
    True
    >>> task_as_of({"qroll": {"as_of": "29/03/2019x"}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qroll.errors.TaskConfigError: the task's qroll.as_of is '29/03/2019x': it must be a day, ...
    """
    meta = task.get(META_KEY)
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise TaskConfigError(f"the task's {META_KEY!r} block is {meta!r}: it must be a mapping such as "
                              f"{{as_of: '2019-03-29'}}, or be left out")
    value = meta.get("as_of")
    if value is None:
        return None
    try:
        day = pd.Timestamp(value) if isinstance(value, str) else None
    except ValueError:
        day = None
    if day is None or pd.isna(day):
        raise TaskConfigError(f"the task's {AS_OF_PARAM} is {value!r}: it must be a day, written YYYY-MM-DD "
                              "(as TrainerRM.train(as_of=...) writes it), or be left out")
    return day


def task_segment(task: Mapping[str, Any], test_key: str | None = None) -> tuple[Any, Any] | None:
    """The ``(start, end)`` of the task's test segment as written (either may be None), or None.

    Never raises: a task of any other shape (no segments, no such segment, a segment that is not
    a pair, a malformed ``qroll`` block) gives None.

    Parameters
    ----------
    task : dict
        A task.
    test_key : str, optional
        The test segment's name; default the task's own (:func:`task_test_key`).

    Examples
    --------
    >>> seg = {"test": ("2019-01-02", None), "backtest": ("2019-04-01", "2019-06-28")}
    >>> task = {"dataset": {"kwargs": {"segments": seg}}}
    >>> task_segment(task)
    ('2019-01-02', None)
    >>> task_segment({**task, "qroll": {"test_key": "backtest"}})
    ('2019-04-01', '2019-06-28')
    >>> task_segment({"model": {}}) is None
    True
    """
    try:
        name = test_key if test_key is not None else task_test_key(task)
        start, end = _get(task, SEGMENTS_PATH)[name]
    except (KeyError, TypeError, ValueError, IndexError, ConfigError):
        return None
    return start, end


def format_day(value: Any, open_end: str = OPEN) -> str:
    """A segment point as qroll writes it: ``2019-01-02``, the ISO time if not midnight, or ``open_end``.

    Parameters
    ----------
    value : date-like or None
        A segment's start or end.
    open_end : str, default "open"
        What ``None`` shows as (run tags store ``""``).

    Raises
    ------
    ValueError
        If ``value`` is not a date.

    Examples
    --------
    >>> format_day("2019-01-02"), format_day(pd.Timestamp("2019-01-02 09:30")), format_day(None)
    ('2019-01-02', '2019-01-02T09:30:00', 'open')
    >>> format_day(None, open_end="")
    ''
    """
    if value is None:
        return open_end
    ts = pd.Timestamp(value)
    return str(ts.date()) if ts == ts.normalize() else ts.isoformat()


def format_segment(span: tuple[Any, Any] | list[Any], open_end: str = OPEN) -> str:
    """A segment as ``start..end`` (see :func:`format_day`).

    >>> format_segment(("2019-01-01", "2019-03-29"))
    '2019-01-01..2019-03-29'
    >>> format_segment(["2019-01-01", None])
    '2019-01-01..open'
    """
    start, end = span
    return f"{format_day(start, open_end)}..{format_day(end, open_end)}"


def window_text(task: Mapping[str, Any], test_key: str | None = None, missing: str = "") -> str:
    """The task's test segment as text (``2019-01-02..open``), or ``missing``; never raises.

    For listings (the progress lines, ``qroll pool list``), which must show any task they are
    given: a segment that holds something other than dates is shown as written.

    Parameters
    ----------
    task : dict
        A task.
    test_key : str, optional
        The test segment's name; default the task's own (:func:`task_test_key`).
    missing : str, default ""
        What a task without a test segment shows.

    Examples
    --------
    >>> task = {"dataset": {"kwargs": {"segments": {"oos": ["2019-01-02", None]}}},
    ...         "qroll": {"test_key": "oos"}}
    >>> window_text(task), window_text({"model": {}}, missing="?")
    ('2019-01-02..open', '?')
    """
    span = task_segment(task, test_key)
    if span is None:
        return missing
    try:
        return format_segment(span)
    except (TypeError, ValueError):
        return f"{span[0]}..{span[1]}"


def model_name(task: Mapping[str, Any]) -> str:
    """The model class of a task, without its module (``LGBModel``); ``""`` if it names none.

    The model may be a class config, a class path, a class or a model object.

    >>> model_name({"model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt"}})
    'LGBModel'
    >>> model_name({"model": {"class": "qlib.contrib.model.gbdt.LGBModel"}})
    'LGBModel'
    >>> model_name({"dataset": {}})
    ''
    """
    cfg = task.get("model", "")
    cls = cfg.get("class", "") if isinstance(cfg, Mapping) else cfg
    name = cls if isinstance(cls, str) else getattr(cls, "__name__", type(cls).__name__)
    return name.rsplit(".", 1)[-1]


def handler_config(task: Mapping[str, Any]) -> Any:
    """The task's handler as written (a class config, a path, an object), or None if it has none.

    The task's own object is returned, so a caller may edit a config in place.

    >>> handler_config({"dataset": {"kwargs": {"handler": "file://h.pkl"}}})
    'file://h.pkl'
    >>> handler_config({"dataset": {"class": "DatasetH"}}) is None
    True
    """
    try:
        return _get(task, HANDLER_PATH)
    except (KeyError, TypeError, IndexError):
        return None


def handler_kwargs(task: Mapping[str, Any]) -> dict[str, Any] | None:
    """The handler config's ``kwargs`` dict (the task's own, editable), or None.

    None when the task has no handler, the handler is not a class config (a path, an object) or
    its ``kwargs`` is not a dict.

    >>> handler = {"class": "Alpha158", "kwargs": {"end_time": None}}
    >>> handler_kwargs({"dataset": {"kwargs": {"handler": handler}}})
    {'end_time': None}
    >>> handler_kwargs({"dataset": {"kwargs": {"handler": "file://h.pkl"}}}) is None
    True
    """
    handler = handler_config(task)
    kwargs = handler.get("kwargs") if isinstance(handler, Mapping) else None
    return kwargs if isinstance(kwargs, dict) else None


def segment_param(key: str) -> str:
    """The run parameter that holds segment ``key``, as a trained run logs its task.

    >>> segment_param("train")
    'dataset.kwargs.segments.train'
    """
    return ".".join((*SEGMENTS_PATH, key))


def handler_param(name: str) -> str:
    """The run parameter that holds the handler's keyword argument ``name``.

    >>> handler_param("instruments")
    'dataset.kwargs.handler.kwargs.instruments'
    """
    return ".".join((*HANDLER_PATH, "kwargs", name))


def window_key(task: Mapping[str, Any], test_key: str | None = None) -> str:
    """The identity of a task's *fit*: its :func:`~qroll.config.task_hash` without the test end.

    A model is fitted on its train (and valid) segments only; the end of its test segment, and
    the handler's ``end_time`` that :func:`~qroll.tasks.gen.handler_mod` ties to it, decide how
    far it predicts, not what it learns. So two tasks that differ only there are one window: an
    offline window closed by its successor's start and the same window rolled open-ended online
    (test end ``None``, handler end ``None``: it predicts up to the as-of day) are never trained
    twice. Runs are tagged with it (``qroll.window_key``, :func:`~qroll.record.tags.task_tags`).

    Parameters
    ----------
    task : dict
        A task.
    test_key : str, optional
        The test segment's name; default the task's own (:func:`task_test_key`).

    Returns
    -------
    str
        64 hexadecimal characters: the hash of a copy of ``task`` whose test end is ``None`` and
        whose handler config has no ``end_time`` (and no ``qroll.as_of``, see :func:`with_as_of`).
        A task without that segment or handler keeps the rest as it is.

    Raises
    ------
    NotSerializableError
        If the task holds a value with no stable JSON form (as :func:`~qroll.config.task_hash`).

    Examples
    --------
    >>> def task(test_end, handler_end, train_end="2019-06-28"):
    ...     handler = {"class": "Alpha158", "kwargs": {"end_time": handler_end}}
    ...     return {"model": {"class": "LGBModel"}, "dataset": {"kwargs": {"handler": handler, "segments": {
    ...         "train": ("2019-01-02", train_end), "test": ("2019-07-01", test_end)}}}}
    >>> closed, open_ended = task("2019-07-26", "2019-07-26"), task(None, None)
    >>> window_key(closed) == window_key(open_ended)
    True
    >>> window_key(closed) == window_key(task("2019-07-26", "2019-07-26", train_end="2019-06-21"))
    False
    >>> window_key(with_as_of(open_ended, "2019-07-26")) == window_key(open_ended)
    True
    """
    # The as-of day a pool task carries says when it was asked for, not what the window is: a window
    # trained at one as-of is the same window at any later one (found, never retrained).
    t = copy.deepcopy(dict(without_as_of(task)))
    key = test_key if test_key is not None else task_test_key(t)
    try:
        segs = _get(t, SEGMENTS_PATH)
    except (KeyError, TypeError, IndexError):
        segs = None
    if isinstance(segs, MutableMapping) and isinstance(segs.get(key), (tuple, list)) and len(segs[key]) == 2:
        segs[key] = (segs[key][0], None)
    kwargs = handler_kwargs(t)
    if kwargs is not None:
        kwargs.pop("end_time", None)
    return task_hash(t)
