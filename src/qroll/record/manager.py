"""``ExpManager``: the experiments of one MLflow tracking store, with its own client.

A process shares one manager per store through :meth:`ExpManager.shared` (opening a store takes
a second or more); a manager built directly is its own.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from qroll.errors import ExperimentNotFoundError, QrollError, RecordError
from qroll.home import qroll_home
from qroll.record.experiment import Experiment
from qroll.record.store import (
    connect,
    driver_uri,
    error_code,
    mask_credentials,
    one_line,
    quiet,
    scrub,
    use_http_client_defaults,
)

__all__ = ["ExpManager"]


class ExpManager:
    """The experiments of one MLflow tracking store (Qlib's ``MLflowExpManager``, minus globals).

    Parameters
    ----------
    uri : str, optional
        An MLflow tracking URI: ``sqlite:///path.db``, ``postgresql://user:pw@host/db``,
        ``http://host:5000``. Default ``sqlite:///<home>/mlflow.db`` (the folder is created).
    artifact_root : str, optional
        Where new experiments keep artifacts (a folder or an artifact URI). Default: the
        ``artifacts`` folder beside a SQLite file (``<home>/artifacts`` for the default store),
        ``<home>/artifacts`` for other databases, the server's choice for ``http(s)://``. Machines
        sharing a PostgreSQL store need a shared ``artifact_root``.
    home : path, optional
        The qroll home (see :func:`qroll.home.qroll_home`: default ``$QROLL_HOME`` or
        ``./qroll_runs``), for the defaults; kept as :attr:`home`, where the runs trained through
        this manager keep their feature cache.

    Raises
    ------
    TrackingError
        If the store cannot be reached or opened, or no driver for its database is installed;
        raised within seconds, never after minutes of retries. The message names the URI with
        its password masked.

    Notes
    -----
    For a tracking server (``http(s)://``) the process's MLflow HTTP client is set, where the
    user's environment does not say otherwise, to retry a request twice within seconds instead
    of seven times within minutes, and not to print a link for each run it ends
    (:data:`qroll.record.store.HTTP_CLIENT_DEFAULTS`). Pool workers wait for a server that went
    away themselves, with a bound (:mod:`qroll.train.pool_entry`).

    Attributes
    ----------
    uri : str
        The tracking URI (with credentials: never print it; ``display_uri`` is masked).
    client : mlflow.MlflowClient
        This manager's own client.
    home : Path
        The qroll home, absolute.
    page_size : int
        Runs fetched per search call when listing (MLflow allows up to 50,000).
    """

    page_size: int = 1000

    _shared: ClassVar[dict[tuple[str | None, str | None, Path], ExpManager]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, uri: str | None = None, artifact_root: str | None = None,
                 home: str | os.PathLike[str] | None = None) -> None:
        self.home = root = qroll_home(home).resolve()
        if uri is None:
            root.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{root / 'mlflow.db'}"
            if artifact_root is None:
                artifact_root = str(root / "artifacts")
        elif artifact_root is None and uri.startswith("sqlite:///"):
            # MLflow's default for database stores is ./mlruns in the *current directory*; keep a
            # SQLite store's artifacts beside its file instead, wherever the process runs.
            artifact_root = str(Path(uri[len("sqlite:///"):]).expanduser().resolve().parent / "artifacts")
        elif artifact_root is None and not uri.startswith(("http://", "https://", "databricks")):
            # Other databases (PostgreSQL, ...): under the qroll home, never the current directory.
            # Many machines sharing one store need a shared artifact_root (an artifact URI).
            artifact_root = str(root / "artifacts")
        if artifact_root is not None and "://" not in artifact_root:
            artifact_root = str(Path(artifact_root).expanduser().resolve())
        # Spelt with a driver this Python has (postgresql+psycopg:// where psycopg2 is missing),
        # or one clear line now rather than SQLAlchemy's import error from deep inside MLflow.
        uri = driver_uri(uri, mask_credentials(uri))
        if uri.startswith(("http://", "https://")):
            use_http_client_defaults()
        self.uri = uri
        self.display_uri = mask_credentials(uri)
        self.artifact_root = artifact_root
        self.client = connect(uri, self.display_uri, str(root / "artifacts"))

    @classmethod
    def shared(cls, uri: str | None = None, artifact_root: str | None = None,
               home: str | os.PathLike[str] | None = None) -> ExpManager:
        """The process's manager for these arguments, opened on first use and then reused.

        The one registry of managers: pool workers, and runs unpickled in another process, open
        each store once however many tasks they handle. Arguments as for :class:`ExpManager`.

        Raises
        ------
        TrackingError
            As :class:`ExpManager` does, on first use; nothing is registered then.
        """
        key = (uri, artifact_root, qroll_home(home).resolve())
        with cls._shared_lock:
            manager = cls._shared.get(key)
            if manager is None:
                # Under the lock: two threads opening one store at once would each open it.
                manager = cls._shared[key] = cls(uri, artifact_root, home=key[2])
            return manager

    def __repr__(self) -> str:
        return f"ExpManager(uri={self.display_uri!r}, artifact_root={self.artifact_root!r})"

    @contextmanager
    def store_call(self, action: str, subject: str = "") -> Iterator[None]:
        """The boundary around calls to this store's MLflow client (``self.client``).

        Inside it MLflow's logging is quiet, and any error that is not already a
        :class:`~qroll.errors.QrollError` comes out as one :class:`~qroll.errors.RecordError`
        line naming ``action``, ``subject`` and the store, credentials masked. Every call
        :class:`Experiment` and :class:`~qroll.record.Recorder` make to the client goes through it.

        Parameters
        ----------
        action : str
            What was being done, e.g. ``"log_params"``.
        subject : str, optional
            Appended to ``action`` in the message, e.g. ``" for run abc123"``.

        Raises
        ------
        RecordError
            ``"{action} failed{subject} in {display_uri}: {why}"``, chained to MLflow's error.

        Examples
        --------
        >>> # with manager.store_call("deleting run", f" {run_id}"):
        >>> #     manager.client.delete_run(run_id)
        """
        try:
            with quiet():
                yield
        except QrollError:
            raise
        except Exception as exc:
            why = self.error_text(exc)
            raise RecordError(f"{action} failed{subject} in {self.display_uri}: {why}") from exc

    def error_text(self, exc: BaseException) -> str:
        """``exc`` as one line, with this store's credentials scrubbed: safe to print."""
        return scrub(one_line(exc), self.uri)

    def _artifact_location(self, name: str) -> str | None:
        if self.artifact_root is None:
            return None
        # A readable folder per experiment; runs below it are keyed by run id, so similar names
        # that map to the same folder cannot collide.
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
        return f"{self.artifact_root.rstrip('/')}/{slug[:100]}"

    def get_exp(self, name: str, create: bool = True) -> Experiment:
        """The experiment called ``name``, created when missing unless ``create=False``.

        Raises
        ------
        ExperimentNotFoundError
            With ``create=False`` when there is no such experiment.
        """
        with self.store_call(f"looking up experiment {name!r}"):
            exp = self.client.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage != "active":
            raise RecordError(
                f"experiment {name!r} (id {exp.experiment_id}) is deleted; restore it with "
                f"`mlflow experiments restore --experiment-id {exp.experiment_id}` or pick another name"
            )
        if exp is not None:
            return Experiment(self, exp.experiment_id, exp.name)
        if not create:
            names = [e.name for e in self.list_experiments()]
            raise ExperimentNotFoundError(
                f"no experiment named {name!r} in {self.display_uri}; existing: {names[:30]}"
                f"{' ...' if len(names) > 30 else ''}; check the name or pass create=True"
            )
        try:
            with quiet():
                exp_id = self.client.create_experiment(name, artifact_location=self._artifact_location(name))
        except Exception as exc:  # MLflow's RESOURCE_ALREADY_EXISTS when another process won the race
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise RecordError(
                    f"creating experiment {name!r} failed in {self.display_uri}: {self.error_text(exc)}"
                ) from exc
            return self.get_exp(name, create=False)
        return Experiment(self, exp_id, name)

    def list_experiments(self) -> list[Experiment]:
        """Every active experiment of the store (MLflow's ``Default`` included)."""
        out: list[Experiment] = []
        token: str | None = None
        while True:
            with self.store_call("listing experiments"):
                page = self.client.search_experiments(max_results=self.page_size, page_token=token)
            out.extend(Experiment(self, e.experiment_id, e.name) for e in page)
            token = page.token
            if not token:
                return out

    def delete_exp(self, name: str) -> None:
        """Delete (soft-delete, as MLflow does) the experiment called ``name``.

        Raises
        ------
        ExperimentNotFoundError
            If there is no such experiment.
        """
        exp = self.get_exp(name, create=False)
        with self.store_call(f"deleting experiment {name!r}"):
            self.client.delete_experiment(exp.id)
