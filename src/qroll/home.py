"""Where qroll keeps its files, and the one module that reads qroll's environment variables.

The home is ``$QROLL_HOME`` when set, else ``./qroll_runs`` (relative to the current directory).
Layout::

    <home>/mlflow.db          the MLflow tracking store
    <home>/artifacts/         MLflow artifacts
    <home>/pool.db            the default task pool
    <home>/cache/features/    computed features, one data file + JSON manifest per entry

Three settings come from the environment when no caller gives them: the home
(``$QROLL_HOME``), the market data (``$QROLL_DATA``) and the bound on waiting for a tracking
store that went away (``$QROLL_STORE_WAIT``). They are resolved here, once, at the entry points
(the command line from its arguments, :class:`~qroll.run_config.RunConfig`, public constructors
given no value), and passed down as arguments from there: worker processes receive them as task
arguments, never through the environment. No qroll module writes ``os.environ`` (the one
exception is MLflow's HTTP client, which reads its settings only from there:
:func:`qroll.record.store.use_http_client_defaults`).
"""

from __future__ import annotations

import os
from pathlib import Path

from qroll.errors import ConfigValueError

__all__ = [
    "DATA_ENV",
    "DEFAULT_HOME",
    "DEFAULT_STORE_WAIT_S",
    "HOME_ENV",
    "STORE_WAIT_ENV",
    "data_uri",
    "qroll_home",
    "store_wait",
]

DEFAULT_HOME = "qroll_runs"
HOME_ENV = "QROLL_HOME"
DATA_ENV = "QROLL_DATA"
STORE_WAIT_ENV = "QROLL_STORE_WAIT"
DEFAULT_STORE_WAIT_S = 60.0
"""Seconds a pool worker waits for a tracking store that went away before giving its task back."""


def qroll_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The qroll home directory (not created here).

    Parameters
    ----------
    home : path, optional
        An explicit home (the command line's ``--home``); it wins over ``$QROLL_HOME``.

    Returns
    -------
    Path
        ``home``, else ``$QROLL_HOME``, else ``./qroll_runs``; ``~`` is expanded. Relative, when
        given so: call ``.resolve()`` to pin it before the current directory changes.

    Examples
    --------
    >>> str(qroll_home("/tmp/qroll"))
    '/tmp/qroll'
    """
    chosen = home if home is not None else os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser()


def data_uri(data: str | os.PathLike[str] | None = None) -> str | None:
    """The market data's source URI: ``data`` if given, else ``$QROLL_DATA``, else None.

    Callers choose their own default for None (a handler and a run config take the embedded
    synthetic market; a backtest asks for data).

    Examples
    --------
    >>> data_uri("qlib:///data/cn_data")
    'qlib:///data/cn_data'
    """
    if data is not None:
        return os.fspath(data)
    return os.environ.get(DATA_ENV) or None


def store_wait(seconds: float | str | None = None) -> float:
    """The bound, in seconds, on waiting for a tracking store that went away.

    Parameters
    ----------
    seconds : float, optional
        An explicit bound (the command line's ``--store-wait``); it wins over ``$QROLL_STORE_WAIT``.

    Returns
    -------
    float
        ``seconds``, else ``$QROLL_STORE_WAIT``, else :data:`DEFAULT_STORE_WAIT_S`.

    Raises
    ------
    ConfigValueError
        If the value is not a number of seconds >= 0; the message names where it came from.

    Examples
    --------
    >>> store_wait(12.5)
    12.5
    """
    raw: object = seconds if seconds is not None else os.environ.get(STORE_WAIT_ENV, DEFAULT_STORE_WAIT_S)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = -1.0
    if not value >= 0:  # NaN too; infinity waits for ever
        where = "store_wait" if seconds is not None else f"${STORE_WAIT_ENV}"
        raise ConfigValueError(f"{where}={raw!r} must be a number of seconds >= 0, e.g. 60 (the command "
                               "line's --store-wait)")
    return value
