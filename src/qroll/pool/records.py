"""The pool's records: a task's status and one stored task, read back from a database row."""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TERMINAL", "Task", "TaskStatus"]


class TaskStatus(str, enum.Enum):
    """A task's status; the values are what the database stores (and Qlib's names).

    ``waiting`` → ``running`` → ``done`` (or ``part_done`` for a delay trainer's first phase, whose
    result is picked up again from ``part_done``); ``failed`` after ``max_attempts`` failures or
    lost leases.

    Examples
    --------
    >>> TaskStatus.PART_DONE == "part_done", TaskStatus("failed")
    (True, <TaskStatus.FAILED: 'failed'>)
    """

    WAITING = "waiting"
    RUNNING = "running"
    PART_DONE = "part_done"
    DONE = "done"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


#: Statuses no worker will move a task out of by itself.
TERMINAL = frozenset({TaskStatus.DONE, TaskStatus.FAILED})


def _json(value: Any) -> Any:
    # SQLite hands JSON columns back as text; PostgreSQL is told to do the same (see postgres.py),
    # but an already-decoded value is accepted so a driver setting cannot break reading.
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True, kw_only=True, slots=True)
class Task:
    """One task of a pool, as stored.

    Attributes
    ----------
    id : int
        The task's id in the pool database (Qlib's ``_id``).
    pool : str
        The pool (Qlib's collection) the task belongs to.
    task_hash : str
        :func:`qroll.config.task_hash` of the definition; unique within a pool.
    definition : dict
        The task definition as stored: JSON values (tuples are lists, dates ISO strings).
    status : TaskStatus
    priority : int
        Higher is fetched first; ties go to the oldest task.
    attempts : int
        Failed runs and lost leases so far.
    max_attempts : int
        Failures after which the task is ``failed`` rather than retried.
    lease_owner : str or None
        The claim token of the worker running the task (``host:pid:...``); ``None`` unless running.
    lease_expires : datetime or None
        When the lease ends unless renewed (UTC).
    claimed_from : TaskStatus or None
        The status the task was fetched from: where an expired lease sends it back.
    created, updated : datetime
        UTC.
    result : object
        The committed result (JSON), ``None`` before a commit.
    last_error, last_traceback : str or None
        The last failure's message and traceback (or why its lease was lost).
    """

    id: int
    pool: str
    task_hash: str
    definition: Any
    status: TaskStatus
    priority: int = 0
    attempts: int = 0
    max_attempts: int = 3
    lease_owner: str | None = None
    lease_expires: dt.datetime | None = None
    claimed_from: TaskStatus | None = None
    created: dt.datetime | None = None
    updated: dt.datetime | None = None
    result: Any = None
    last_error: str | None = None
    last_traceback: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Task:
        """Build a task from a database row (column name → value), decoding JSON and times."""
        claimed = row.get("claimed_from")
        return cls(
            id=int(row["id"]),
            pool=row["pool"],
            task_hash=row["task_hash"],
            definition=_json(row["def"]),
            status=TaskStatus(row["status"]),
            priority=int(row["priority"]),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            lease_owner=row["lease_owner"],
            lease_expires=_time(row["lease_expires"]),
            claimed_from=TaskStatus(claimed) if claimed else None,
            created=_time(row["created"]),
            updated=_time(row["updated"]),
            result=None if row["result"] is None else _json(row["result"]),
            last_error=row["last_error"],
            last_traceback=row["last_traceback"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The task as Qlib's :class:`TaskManager` hands it out, plus qroll's lease fields.

        Keys: ``_id``, ``def`` and ``filter`` (the definition; two separate copies), ``status``,
        ``res`` (``None`` before a commit), ``priority``, ``attempts``, ``max_attempts``,
        ``lease_owner``, ``lease_expires``, ``task_hash``, ``last_error``, ``last_traceback``,
        ``created``, ``updated``. Statuses are plain strings.
        """
        return {
            "_id": self.id,
            "def": self.definition,
            "filter": json.loads(json.dumps(self.definition)),
            "status": self.status.value,
            "res": self.result,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "lease_owner": self.lease_owner,
            "lease_expires": self.lease_expires,
            "task_hash": self.task_hash,
            "last_error": self.last_error,
            "last_traceback": self.last_traceback,
            "created": self.created,
            "updated": self.updated,
        }
