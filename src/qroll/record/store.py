"""The MLflow boundary: open a tracking store fast or fail fast, mask credentials, batch limits.

Opening a store checks first, within seconds, that it answers: MLflow itself retries an
unreachable database ten times with exponential back-off and a tracking server seven times with
a 120 s timeout, minutes of silence before an error. Every message goes through
:func:`mask_credentials`, so no password reaches a log.

MLflow is imported through :func:`load_mlflow`, which lowers its loggers to WARNING once it is
loaded (unless ``$MLFLOW_LOGGING_LEVEL`` says otherwise): its INFO lines say nothing to a qroll
user. :func:`use_http_client_defaults` is the one place qroll writes ``os.environ``: MLflow reads
its HTTP client's retry settings only from there.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from qroll.errors import TrackingError
from qroll.messages import mask_credentials, one_line, scrub

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = [
    "HTTP_CLIENT_DEFAULTS",
    "PROBE_TIMEOUT_S",
    "connect",
    "driver_uri",
    "load_mlflow",
    "probe_store",
    "use_http_client_defaults",
]

PROBE_TIMEOUT_S = 5  # seconds a reachability probe of a database or server may take
# MLflow's limits per log_batch call and per value (mlflow.utils.validation).
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000
MAX_PARAM_LEN, MAX_TAG_LEN = 6000, 8000
_TRUNCATED = "...[truncated {} chars]"
STATUSES = ("SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED")
TERMINAL = ("FINISHED", "FAILED", "KILLED")
_NETWORK_DBS = {"postgresql", "postgres", "mysql", "mssql"}
MLFLOW_LOG_LEVEL = logging.WARNING
"""The level of MLflow's loggers once qroll loads MLflow (where ``$MLFLOW_LOGGING_LEVEL`` is unset)."""


@functools.cache
def load_mlflow() -> None:
    """Import MLflow, then set its loggers to :data:`MLFLOW_LOG_LEVEL` (once per process).

    MLflow sets its loggers' level when it is imported, from ``$MLFLOW_LOGGING_LEVEL`` (default
    INFO), so the level can only be lowered afterwards. A user who set that variable keeps it.
    Every qroll path to a store calls this first (:func:`connect`, :func:`probe_store`).
    """
    import mlflow  # noqa: F401  (configures its loggers)

    if "MLFLOW_LOGGING_LEVEL" not in os.environ:
        logging.getLogger("mlflow").setLevel(MLFLOW_LOG_LEVEL)


def ms_to_dt(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)


def now_ms() -> int:
    return int(time.time() * 1000)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def clip(value: Any, limit: int) -> str:
    text = mask_credentials(value if isinstance(value, str) else str(value))
    if len(text) <= limit:
        return text
    # Sized for the longest possible count, so the result never exceeds ``limit``.
    cut = limit - len(_TRUNCATED.format(len(text)))
    return text[:cut] + _TRUNCATED.format(len(text) - cut)


@contextmanager
def quiet() -> Iterator[None]:
    # SQLAlchemy 2.1 warns about a loader option MLflow's store still uses; it is MLflow's to fix
    # and says nothing to a qroll user.
    from sqlalchemy.exc import SADeprecationWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SADeprecationWarning)
        yield


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


# -- connecting ------------------------------------------------------------------------------------


def _check_sqlite(uri: str, shown: str) -> None:
    from sqlalchemy.engine import make_url

    try:
        database = make_url(uri).database
    except Exception as exc:  # SQLAlchemy's ArgumentError and friends
        raise TrackingError(f"tracking URI {shown} is not a valid SQLAlchemy URL: {one_line(exc)}") from exc
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).expanduser().parent
    # The store's own folder is created (sqlite:///qroll_runs/mlflow.db on a fresh checkout), but
    # not a missing parent above it: a mistyped path must not silently start an empty store.
    if not folder.is_dir() and folder.parent.is_dir():
        folder.mkdir()
    if not folder.is_dir():
        raise TrackingError(
            f"tracking URI {shown}: folder {folder} does not exist; create it or fix the path "
            "(sqlite:///relative/path.db or sqlite:////absolute/path.db)"
        )
    # Built under a lock, in a temporary file renamed into place (qroll.record.creation): MLflow
    # would otherwise migrate a new file in every process that opens it at once, and break it.
    from qroll.record.creation import ensure_sqlite_store

    ensure_sqlite_store(Path(database).expanduser().resolve(), shown)


def _probe_database(uri: str, shown: str, kind: str) -> None:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": PROBE_TIMEOUT_S} if kind in ("postgresql", "postgres", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=connect_args)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as exc:  # the driver's own errors, whatever the database
        raise TrackingError(
            f"cannot reach the tracking store {shown}: {scrub(one_line(exc), uri)}; "
            "check host, port, database and credentials"
        ) from exc


def _probe_http(uri: str, shown: str) -> None:
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        # No retries: MLflow's default (7 retries, 120 s timeout) hangs for minutes on a typo.
        response = http_request(
            get_default_host_creds(uri), "/api/2.0/mlflow/experiments/search", "GET",
            max_retries=0, backoff_factor=0, timeout=PROBE_TIMEOUT_S, params={"max_results": 1},
        )
    except Exception as exc:  # requests' connection errors, MLflow's wrappers of them
        raise TrackingError(
            f"cannot reach the tracking server {shown}: {scrub(one_line(exc), uri)}; "
            "check that it runs (mlflow server ...) and the address"
        ) from exc
    if response.status_code != 200:
        raise TrackingError(
            f"tracking server {shown} answered HTTP {response.status_code} to an experiment search; "
            "check the address and credentials (MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN)"
        )


def probe_store(uri: str, shown: str) -> None:
    """Check, within seconds and without retries, that the store behind ``uri`` answers.

    A database is connected to, a tracking server asked for one experiment; a SQLite file
    (always there) and other stores pass. Used to tell an outage from a task's own failure.

    Raises
    ------
    TrackingError
        If the store does not answer; the message names it as ``shown`` (masked).
    """
    kind = urlsplit(uri).scheme.lower().split("+", 1)[0]
    if kind in _NETWORK_DBS:
        _probe_database(uri, shown, kind)
    elif kind in ("http", "https"):
        load_mlflow()
        _probe_http(uri, shown)


# MLflow's own HTTP retries for a qroll client: a couple, within seconds. MLflow's defaults
# (7 retries, back-off factor 2, 120 s timeout) keep a worker silent for about four minutes when
# its server is down; qroll waits for the server itself, with a bound the user sets.
HTTP_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    # MLflow prints a "View run at ..." link, after one more request, for each run it ends.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def use_http_client_defaults() -> None:
    """Set :data:`HTTP_CLIENT_DEFAULTS` in this process's environment, where the user set none.

    The one place qroll writes ``os.environ``, on purpose: MLflow 3 reads its HTTP client's
    retries, back-off, timeout and URL printing only from environment variables
    (``mlflow.environment_variables``, read by ``mlflow.utils.rest_utils.http_request`` at each
    request), and its clients take no such settings. So they hold for every client of the
    process, and for the processes it starts.
    """
    for name, value in HTTP_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)


_DEFAULT_DRIVERS = {"postgresql": ("psycopg", "psycopg2"), "mysql": ("mysqldb", "pymysql")}
_INSTALL_HINT = {"postgresql": "pip install 'qroll[postgres]' (psycopg 3)",
                 "mysql": "pip install mysqlclient (or PyMySQL, as mysql+pymysql://)"}


def driver_uri(uri: str, shown: str) -> str:
    """``uri`` spelt with a database driver this Python has; other URIs unchanged.

    ``postgres://`` becomes ``postgresql://`` (SQLAlchemy 2 dropped the alias). A URI without a
    driver (``postgresql://``) takes SQLAlchemy's default one (psycopg2 before SQLAlchemy 2.1,
    psycopg 3 since) when it is installed, else another known driver that is, spelt out
    (``postgresql+psycopg://``).

    Raises
    ------
    TrackingError
        If no driver for the database can be imported: one line naming the store and the
        package to install.

    Examples
    --------
    >>> driver_uri("sqlite:///runs/mlflow.db", "sqlite:///runs/mlflow.db")
    'sqlite:///runs/mlflow.db'
    """
    scheme, sep, rest = uri.partition("://")
    kind, plus, driver = scheme.lower().partition("+")
    if not sep or kind not in _NETWORK_DBS:
        return uri
    if kind == "postgres":
        kind, uri = "postgresql", f"postgresql{plus}{driver}://{rest}"
    if _driver_ok(uri):
        return uri
    if not plus:
        for name in _DEFAULT_DRIVERS.get(kind, ()):
            candidate = f"{kind}+{name}://{rest}"
            if _driver_ok(candidate):
                return candidate
    hint = _INSTALL_HINT.get(kind, f"install a {kind} driver for SQLAlchemy")
    if plus:
        raise TrackingError(f"tracking URI {shown} names the {kind} driver {driver!r}, which is not "
                            f"installed in {sys.executable}: install it, or write {kind}:// to use "
                            f"any installed driver ({hint})")
    raise TrackingError(f"tracking URI {shown} needs a {kind} driver and none is installed in "
                        f"{sys.executable}: {hint}")


def _driver_ok(uri: str) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(uri).get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError):
        return False
    except ArgumentError:
        return True  # a malformed URL: the probe reports it with the store's name
    return True


def connect(uri: str, shown: str, default_artifacts: str) -> MlflowClient:
    """A client on ``uri`` after checking, quickly, that the store answers.

    Parameters
    ----------
    uri, shown : str
        The tracking URI, and the same with its credentials masked (for messages).
    default_artifacts : str
        Where the ``Default`` experiment of a database store created here keeps its artifacts
        (``<home>/artifacts``).
    """
    load_mlflow()
    kind = urlsplit(uri).scheme.lower().split("+", 1)[0]
    if kind == "sqlite":
        _check_sqlite(uri, shown)
    elif kind in _NETWORK_DBS:
        _probe_database(uri, shown, kind)
        from qroll.record.creation import ensure_database_store

        ensure_database_store(uri, shown, default_artifacts)
    elif kind in ("http", "https"):
        _probe_http(uri, shown)
    from mlflow.tracking import MlflowClient

    try:
        with quiet():
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # MLflow's own check of the schema
    except Exception as exc:  # MLflow, SQLAlchemy or OS errors while opening the store
        message = scrub(one_line(exc), uri)
        if kind in ("", "file") and "MLFLOW_ALLOW_FILE_STORE" in str(exc):
            raise TrackingError(
                f"MLflow refuses the file store {shown}: use a database, e.g. sqlite:///qroll_runs/mlflow.db "
                "(or set MLFLOW_ALLOW_FILE_STORE=true to keep the file store)"
            ) from exc
        raise TrackingError(f"cannot open the tracking store {shown}: {message}") from exc
    return client
