"""The run tags qroll writes, so listing and collecting need no artifact download (DESIGN §5)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import pandas as pd

from qroll.config import task_hash

__all__ = [
    "STATUS_BEGIN",
    "STATUS_END",
    "STATUS_KEY",
    "TAG_HASH",
    "TAG_ENDED_BY",
    "TAG_HOST",
    "TAG_MODEL",
    "TAG_POOL",
    "TAG_POOL_ID",
    "TAG_POOL_LEASE",
    "TAG_TEST_END",
    "TAG_TEST_START",
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

# Qlib's train_status tag: "begin" once train() hands the run back, "end" after end_train().
STATUS_KEY = "train_status"
STATUS_BEGIN = "begin_task_train"
STATUS_END = "end_task_train"


def _class_name(cfg: Any) -> str:
    cls = cfg.get("class", "") if isinstance(cfg, Mapping) else cfg
    name = cls if isinstance(cls, str) else getattr(cls, "__name__", type(cls).__name__)
    return name.rsplit(".", 1)[-1]


def _day(value: Any) -> str:
    if value is None:
        return ""
    ts = pd.Timestamp(value)
    return str(ts.date()) if ts == ts.normalize() else ts.isoformat()


def task_tags(task: Mapping[str, Any], test_key: str = "test") -> dict[str, str]:
    """The tags of a task's run: its hash, model class, test segment and host.

    >>> tags = task_tags({"model": {"class": "LGBModel"}, "dataset": {"kwargs": {"segments": {
    ...     "test": ("2020-01-02", None)}}}})
    >>> tags["qroll.model"], tags["qroll.test_start"], tags["qroll.test_end"]
    ('LGBModel', '2020-01-02', '')
    """
    tags = {
        TAG_HASH: task_hash(task),
        TAG_MODEL: _class_name(task.get("model", "")),
        TAG_HOST: socket.gethostname(),
    }
    try:
        start, end = task["dataset"]["kwargs"]["segments"][test_key]
    except (KeyError, TypeError, ValueError):
        return tags
    tags[TAG_TEST_START], tags[TAG_TEST_END] = _day(start), _day(end)
    return tags
