"""Where qroll keeps its files: the run store, the task pool, the feature cache.

The home is ``$QROLL_HOME`` when set, else ``./qroll_runs`` (relative to the current directory).
Layout::

    <home>/mlflow.db          the MLflow tracking store
    <home>/artifacts/         MLflow artifacts
    <home>/pool.db            the default task pool
    <home>/cache/features/    computed features, one Parquet file + JSON manifest per entry
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_HOME", "qroll_home"]

DEFAULT_HOME = "qroll_runs"


def qroll_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The qroll home directory (not created here).

    Parameters
    ----------
    home : path, optional
        An explicit home (the command line's ``--home``); it wins over ``$QROLL_HOME``.

    Returns
    -------
    Path
        ``home``, else ``$QROLL_HOME``, else ``./qroll_runs``; ``~`` is expanded.

    Examples
    --------
    >>> str(qroll_home("/tmp/qroll"))
    '/tmp/qroll'
    """
    chosen = home if home is not None else os.environ.get("QROLL_HOME") or DEFAULT_HOME
    return Path(chosen).expanduser()
