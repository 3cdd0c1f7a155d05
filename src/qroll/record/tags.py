"""The run tags qroll writes, so listing and collecting need no artifact download (DESIGN §5)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from qroll.config import task_hash
from qroll.tasks import shape

# Where the task's shape is read now; still importable from here, as before.
from qroll.tasks.shape import model_name, task_segment

__all__ = [
    "STATUS_BEGIN",
    "STATUS_END",
    "STATUS_KEY",
    "KIND_MERGED",
    "OFFLINE",
    "ONLINE",
    "TAG_BACKTEST_HASH",
    "TAG_BENCHMARK",
    "TAG_HASH",
    "TAG_ENDED_BY",
    "TAG_EXTENDED",
    "TAG_HOST",
    "TAG_KIND",
    "TAG_MERGED_END",
    "TAG_MERGED_FROM",
    "TAG_MERGED_START",
    "TAG_MODEL",
    "TAG_ONLINE",
    "TAG_ONLINE_SINCE",
    "TAG_ONLINE_UNTIL",
    "TAG_POOL",
    "TAG_POOL_ID",
    "TAG_POOL_LEASE",
    "TAG_TEST_END",
    "TAG_TEST_START",
    "TAG_TEMPLATE",
    "TAG_WINDOW_KEY",
    "model_name",
    "run_name",
    "task_segment",
    "task_tags",
]

TAG_HASH = "qroll.task_hash"
TAG_MODEL = "qroll.model"
TAG_TEST_START = "qroll.test_start"
TAG_TEST_END = "qroll.test_end"
TAG_POOL_ID = "qroll.pool_task_id"
# Set at the start of a run that a pool worker trains: which pool, and the lease it ran under.
TAG_POOL = "qroll.pool"
TAG_POOL_LEASE = "qroll.pool_lease"
# Why qroll ended a run it did not start (a worker that lost its lease left it RUNNING).
TAG_ENDED_BY = "qroll.ended_by"
TAG_HOST = "hostname"
# A model's merged signal lives in a run of its own beside the windows it merges: its kind, span,
# what it was computed from (digests of the window runs and of the backtest config) and its benchmark.
TAG_KIND = "qroll.kind"
KIND_MERGED = "merged"
TAG_MERGED_START = "qroll.merged_start"
TAG_MERGED_END = "qroll.merged_end"
TAG_MERGED_FROM = "qroll.merged_from"
TAG_BACKTEST_HASH = "qroll.backtest_hash"
TAG_BENCHMARK = "qroll.benchmark"
# The fit a run holds, whatever its test end (qroll.tasks.shape.window_key): a window is trained once.
TAG_WINDOW_KEY = "qroll.window_key"
# Online rolling (qroll.online): Qlib's online_status tag, the as-of days a run went online and
# offline, and the template whose windows it rolls (a digest of the template as the strategy got it).
TAG_ONLINE = "online_status"
ONLINE, OFFLINE = "online", "offline"
TAG_ONLINE_SINCE = "qroll.online_since"
TAG_ONLINE_UNTIL = "qroll.online_until"
TAG_TEMPLATE = "qroll.template"
# The run's online extension artifacts (pred_online.pkl, ...), comma-separated; set before the first
# is written, so a reader that finds no tag need not look for one.
TAG_EXTENDED = "qroll.extended"

# Qlib's train_status tag: "begin" once train() hands the run back, "end" after end_train().
STATUS_KEY = "train_status"
STATUS_BEGIN = "begin_task_train"
STATUS_END = "end_task_train"


def run_name(
    task: Mapping[str, Any],
    kind: str = "test",
    *,
    segment: tuple[Any, Any] | None = None,
    test_key: str | None = None,
) -> str:
    """The MLflow run name of a task's run: its model, what the run holds, and its dates.

    Every per-window training run used to be Qlib's ``mlflow_recorder``; this names it after what
    it is, so the MLflow UI's run list tells the windows and models apart.

    Parameters
    ----------
    task : dict
        The task (its model class and, unless ``segment`` is given, its test segment are read).
    kind : str, default "test"
        What the run holds: ``"test"`` for one window's training run, ``"merged"`` for a model's
        merged signal.
    segment : (start, end), optional
        The span to show instead of the task's test segment (the merged signal's whole span).
    test_key : str, optional
        The test segment's name; default the task's own (``RollingGen(test_key=...)`` writes it
        into the task, see :func:`qroll.tasks.shape.task_test_key`).

    Returns
    -------
    str
        ``"LGBModel test 2019-01-01..2019-03-29"``; an open end shows as ``open``; a task with no
        test segment gives ``"LGBModel test"``.

    >>> task = {"model": {"class": "LGBModel"}, "dataset": {"kwargs": {"segments": {
    ...     "test": ("2019-01-01", "2019-03-29")}}}}
    >>> run_name(task)
    'LGBModel test 2019-01-01..2019-03-29'
    >>> run_name(task, "merged", segment=("2019-01-01", None))
    'LGBModel merged 2019-01-01..open'
    """
    span = segment if segment is not None else task_segment(task, test_key)
    parts = [model_name(task) or "task", kind]
    if span is not None:
        parts.append(shape.format_segment(span))
    return " ".join(parts)


def task_tags(task: Mapping[str, Any], test_key: str | None = None) -> dict[str, str]:
    """The tags of a task's run: its hash, model class, test segment and host.

    Parameters
    ----------
    task : dict
        The task.
    test_key : str, optional
        The test segment's name; default the task's own (see :func:`run_name`).

    Returns
    -------
    dict of str
        ``qroll.task_hash``, ``qroll.model``, ``hostname`` and, when the task has a test segment,
        ``qroll.test_start`` / ``qroll.test_end`` (``YYYY-MM-DD``; ``""`` for an open end) and
        ``qroll.window_key`` (:func:`~qroll.tasks.shape.window_key`).

    Raises
    ------
    ConfigError
        If the task's ``qroll`` block (its test key) is malformed.

    Examples
    --------
    >>> tags = task_tags({"model": {"class": "LGBModel"}, "dataset": {"kwargs": {"segments": {
    ...     "test": ("2020-01-02", None)}}}})
    >>> tags["qroll.model"], tags["qroll.test_start"], tags["qroll.test_end"]
    ('LGBModel', '2020-01-02', '')
    """
    tags = {
        TAG_HASH: task_hash(task),
        TAG_MODEL: model_name(task),
        TAG_HOST: socket.gethostname(),
    }
    # Checked here, not only read: a run tagged without its test window could not be collected.
    key = test_key if test_key is not None else shape.task_test_key(task)
    span = task_segment(task, key)
    if span is not None:
        tags[TAG_TEST_START], tags[TAG_TEST_END] = (shape.format_day(p, open_end="") for p in span)
        tags[TAG_WINDOW_KEY] = shape.window_key(task, key)
    return tags
