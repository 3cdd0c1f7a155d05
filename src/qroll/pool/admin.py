"""Inspecting and repairing a pool: what ``qroll pool status|list|retry|reset|remove`` call."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qroll.errors import PoolError, PoolQueryError
from qroll.pool.manager import TaskManager
from qroll.pool.records import TaskStatus
from qroll.tasks import shape

__all__ = [
    "TaskRow", "build_query", "open_pool", "remove_tasks", "reset_running", "retry_failed", "task_rows",
]


def build_query(status: Sequence[str] = (), ids: Sequence[int] = (),
                where: Sequence[str] = ()) -> dict[str, Any]:
    """A pool query from command-line filters.

    Parameters
    ----------
    status : list of str
        Statuses (any of them).
    ids : list of int
        Task ids (any of them).
    where : list of str
        ``PATH=VALUE`` equalities on the definition (``model.class=LinearModel``); ``VALUE`` is read
        as JSON when it parses (``5``, ``true``, ``"x"``), as text otherwise.

    >>> build_query(["failed"], [], ["model.class=LinearModel"])
    {'status': {'$in': ['failed']}, 'def.model.class': 'LinearModel'}

    Raises
    ------
    PoolQueryError
        An unknown status or a filter without ``=``.
    """
    query: dict[str, Any] = {}
    if status:
        try:
            query["status"] = {"$in": [TaskStatus(s).value for s in status]}
        except ValueError as exc:
            raise PoolQueryError(f"{exc}: use some of {[s.value for s in TaskStatus]}") from exc
    if ids:
        query["_id"] = {"$in": [int(i) for i in ids]}
    for item in where:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise PoolQueryError(f"filter {item!r} is not PATH=VALUE, e.g. model.class=LinearModel")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        path = path.strip()
        query[path if path.startswith(("def.", "filter.")) else f"def.{path}"] = value
    return query


def open_pool(url: str | None, name: str, must_exist: bool = True) -> TaskManager:
    """A :class:`TaskManager` on pool ``name``; with ``must_exist``, a pool that holds tasks.

    Raises
    ------
    PoolError
        No such pool (the message lists the database's pools); PoolConnectionError for a bad URL.
    """
    tm = TaskManager(name, url)
    if must_exist:
        pools = tm.list()
        if name not in pools:
            shown = getattr(tm.backend, "masked_url", "the pool database")
            tm.close()
            raise PoolError(f"no pool named {name!r} in {shown}; its pools: {pools}; check --pool-name")
    return tm


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskRow:
    """One line of ``qroll pool list``."""

    id: int
    status: str
    attempts: int
    max_attempts: int
    lease_owner: str
    lease_expires: str
    model: str
    test: str
    last_error: str


def _shown(definition: Any) -> tuple[str, str]:
    """A definition's model and test window; a task of another shape (any JSON) shows blanks."""
    if not isinstance(definition, Mapping):
        return "", ""
    return shape.model_name(definition), shape.window_text(definition)


def task_rows(tm: TaskManager, query: Mapping[str, Any] | None = None) -> list[TaskRow]:
    """The tasks matching ``query``, by id, as table rows (the last error's first line only)."""
    rows = []
    for t in tm.query(query):
        expires = t["lease_expires"]
        until = expires.isoformat(timespec="seconds") if expires else ""
        model, test = _shown(t["def"])
        rows.append(TaskRow(
            id=t["_id"], status=t["status"], attempts=t["attempts"], max_attempts=t["max_attempts"],
            lease_owner=t["lease_owner"] or "", lease_expires=until, model=model, test=test,
            last_error=(t["last_error"] or "").strip().splitlines()[0] if t["last_error"] else "",
        ))
    return rows


def retry_failed(tm: TaskManager, query: Mapping[str, Any] | None = None) -> int:
    """Put the ``failed`` tasks matching ``query`` back to ``waiting``, attempts reset; the count."""
    q = dict(query or {})
    if "status" in q and q["status"] not in ("failed", {"$in": ["failed"]}):
        raise PoolQueryError("retry moves failed tasks only: drop --status or use --status failed")
    q["status"] = TaskStatus.FAILED.value
    return tm.reset_status(q, TaskStatus.WAITING.value)


def reset_running(tm: TaskManager, query: Mapping[str, Any] | None = None, all_running: bool = False) -> int:
    """Put running tasks back to ``waiting``: those whose lease expired, or all with ``all_running``.

    A task reset while its worker still runs it cannot be committed by that worker any more (its
    lease is gone), so a reset never yields two results.
    """
    q = {k: v for k, v in (query or {}).items() if k != "status"}
    q["status"] = TaskStatus.RUNNING.value
    if not all_running:
        now = tm.clock()
        expired = [t["_id"] for t in tm.query(q) if t["lease_expires"] is None or t["lease_expires"] <= now]
        if not expired:
            return 0
        q["_id"] = {"$in": expired}
    return tm.reset_status(q, TaskStatus.WAITING.value)


def remove_tasks(tm: TaskManager, query: Mapping[str, Any] | None = None, all: bool = False) -> int:  # noqa: A002
    """Delete the tasks matching ``query``; an empty query needs ``all=True``; the count."""
    return tm.remove(dict(query or {}), all=all)
