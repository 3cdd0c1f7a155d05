"""One online routine per strategy at a time, across processes: a file lock under the qroll home.

Why a file lock and not a row lock in the pool database: a strategy trained by ``TrainerR`` has no
pool, and the tracking store (MLflow) has no lock to offer. An OS file lock needs nothing but the
home folder, and the OS frees it when its holder dies, so a routine killed mid-way never leaves a
stale lock behind. Its reach is the machines that share the home folder: routines of one strategy
started on machines with homes of their own must be scheduled from one place.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from qroll.home import qroll_home

__all__ = ["lock_path", "strategy_lock"]

log = logging.getLogger("qroll.online")


def lock_path(store_uri: str, name: str, home: str | os.PathLike[str] | None = None) -> Path:
    """The lock file of strategy ``name`` recording into the store ``store_uri``.

    ``<home>/locks/online-<digest>.lock``: the digest of the store and the name, so strategies of
    the same name in two stores do not wait for each other.

    >>> lock_path("sqlite:///a.db", "rolling", "/tmp/h").parent.as_posix()
    '/tmp/h/locks'
    >>> lock_path("sqlite:///a.db", "rolling", "/tmp/h") != lock_path("sqlite:///b.db", "rolling", "/tmp/h")
    True
    """
    digest = hashlib.sha256(f"{store_uri}\0{name}".encode()).hexdigest()[:16]
    return qroll_home(home) / "locks" / f"online-{digest}.lock"


@contextlib.contextmanager
def strategy_lock(store_uri: str, name: str, home: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Hold strategy ``name``'s lock for the block; wait for another process holding it.

    Parameters
    ----------
    store_uri : str
        The tracking store the strategy records into.
    name : str
        The strategy's ``name_id``.
    home : path, optional
        The qroll home (see :func:`qroll.home.qroll_home`).
    """
    from filelock import FileLock, Timeout

    path = lock_path(store_uri, name, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("strategy %r: waiting for another routine to finish (lock %s)", name, path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
