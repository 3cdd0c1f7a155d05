"""The task pool: Qlib's ``TaskManager`` on SQLite or PostgreSQL, with leases and attempts.

:class:`TaskManager` stores tasks (as JSON) in a named pool of a database chosen by URL
(``sqlite:///path/pool.db``, default ``<qroll home>/pool.db``; ``postgresql://...``); workers
claim them atomically with a lease they renew (:class:`Heartbeat`), commit results fenced by that
lease, and :func:`run_task` is the worker loop. See :mod:`qroll.pool.backend` for the storage
boundary and :mod:`qroll.pool.manager` for what differs from Qlib.
"""

from __future__ import annotations

from qroll.pool.backend import PoolBackend, open_backend, register_backend, supported_schemes
from qroll.pool.manager import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, Heartbeat, TaskManager
from qroll.pool.records import Task, TaskStatus
from qroll.pool.run import PoolLease, run_task

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_ATTEMPTS",
    "Heartbeat",
    "PoolBackend",
    "PoolLease",
    "Task",
    "TaskManager",
    "TaskStatus",
    "open_backend",
    "register_backend",
    "run_task",
    "supported_schemes",
]
