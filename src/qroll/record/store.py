"""The MLflow boundary: open a tracking store fast or fail fast, mask credentials, batch limits.

Opening a store checks first, within seconds, that it answers: MLflow itself retries an
unreachable database ten times with exponential back-off and a tracking server seven times with
a 120 s timeout, minutes of silence before an error. Every message goes through
:func:`mask_credentials`, so no password reaches a log.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from qroll.errors import TrackingError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["PROBE_TIMEOUT_S", "connect", "mask_credentials", "scrub"]

PROBE_TIMEOUT_S = 5  # seconds a reachability probe of a database or server may take
# MLflow's limits per log_batch call and per value (mlflow.utils.validation).
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000
MAX_PARAM_LEN, MAX_TAG_LEN = 6000, 8000
_TRUNCATED = "...[truncated {} chars]"
STATUSES = ("SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED")
TERMINAL = ("FINISHED", "FAILED", "KILLED")
_NETWORK_DBS = {"postgresql", "postgres", "mysql", "mssql"}

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^@\s/]*@")
_SECRET_QUERY = re.compile(
    r"(?i)\b(password|passwd|pwd|token|secret|api_key|apikey|access_key|secret_key)=[^&\s'\"]*"
)


def mask_credentials(text: str) -> str:
    """Hide passwords and tokens in URIs within ``text``.

    Examples
    --------
    >>> mask_credentials("postgresql://bob:s3cret@db:5432/runs?sslmode=require&password=x")
    'postgresql://bob:***@db:5432/runs?sslmode=require&password=***'
    """
    text = _USERINFO.sub(r"\g<head>:***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", text)


def scrub(text: str, uri: str) -> str:
    """``text`` with the URI's password removed, even where a driver repeats it bare."""
    text = mask_credentials(text)
    try:
        password = urlsplit(uri).password
    except ValueError:
        password = None
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return text


def one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


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
    _use_wal(Path(database).expanduser(), shown)


def _use_wal(path: Path, shown: str) -> None:
    """Switch the SQLite store to write-ahead logging (a setting kept in the file).

    A run's few commits then cost ~20 ms instead of ~40 ms, and readers (a collector, the MLflow
    UI) no longer block the workers writing runs.
    """
    import sqlite3

    try:
        conn = sqlite3.connect(path, timeout=PROBE_TIMEOUT_S)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return  # another process holds the file: it is usable, and WAL is only an optimisation
        raise TrackingError(f"cannot open the SQLite tracking store {shown}: {exc}") from exc
    except sqlite3.Error as exc:
        raise TrackingError(f"cannot open the SQLite tracking store {shown}: {exc}") from exc


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


def connect(uri: str, shown: str) -> MlflowClient:
    """A client on ``uri`` after checking, quickly, that the store answers."""
    kind = urlsplit(uri).scheme.lower().split("+", 1)[0]
    if kind == "sqlite":
        _check_sqlite(uri, shown)
    elif kind in _NETWORK_DBS:
        _probe_database(uri, shown, kind)
    elif kind in ("http", "https"):
        _probe_http(uri, shown)
    from mlflow.tracking import MlflowClient

    try:
        with quiet():
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # creates the schema of a new SQLite store
    except Exception as exc:  # MLflow, SQLAlchemy or OS errors while opening the store
        message = scrub(one_line(exc), uri)
        if kind in ("", "file") and "MLFLOW_ALLOW_FILE_STORE" in str(exc):
            raise TrackingError(
                f"MLflow refuses the file store {shown}: use a database, e.g. sqlite:///qroll_runs/mlflow.db "
                "(or set MLFLOW_ALLOW_FILE_STORE=true to keep the file store)"
            ) from exc
        raise TrackingError(f"cannot open the tracking store {shown}: {message}") from exc
    return client
