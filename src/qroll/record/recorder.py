"""MLflow recording with Qlib's names: ``ExpManager`` → ``Experiment`` → ``Recorder``.

Every object holds its manager's own :class:`mlflow.MlflowClient`; nothing uses MLflow's global
"active run", so trainers running side by side in one process cannot log into each other's runs.
A recorder is one MLflow run; use it as a context manager to end it with the right status::

    manager = ExpManager()                        # sqlite:///<home>/mlflow.db
    with manager.get_exp("rolling").start_recorder("window-1") as rec:
        rec.log_params(step=40)
        rec.save_objects(**{"pred.pkl": pred})    # FINISHED here, FAILED on an exception

MLflow is imported on first use (it takes seconds), so ``import qroll`` stays fast. Its failures
are caught at this boundary and re-raised as :class:`~qroll.errors.RecordError`, with any password
in a URI masked (:mod:`qroll.record.store`).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any

from qroll.config import canonical_json
from qroll.errors import ExperimentNotFoundError, LoadObjectError, QrollError, RecordError
from qroll.home import qroll_home
from qroll.record.store import (
    MAX_PARAM_LEN,
    MAX_TAG_LEN,
    METRICS_PER_BATCH,
    PARAMS_PER_BATCH,
    STATUSES,
    TERMINAL,
    chunks,
    clip,
    connect,
    error_code,
    mask_credentials,
    ms_to_dt,
    now_ms,
    one_line,
    quiet,
    scrub,
)

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

__all__ = ["DEFAULT_REC_NAME", "ExpManager", "Experiment", "Recorder", "mask_credentials"]

logger = logging.getLogger(__name__)

DEFAULT_REC_NAME = "mlflow_recorder"  # Qlib's name for a recorder started without one


# -- recorder -----------------------------------------------------------------------------------


class Recorder:
    """One MLflow run: its status, tags, params, metrics and artifacts (Qlib's ``MLflowRecorder``).

    Built by :meth:`Experiment.start_recorder`, :meth:`Experiment.get_recorder` or
    :meth:`Experiment.list_recorders`; ``tags``, ``params`` and ``metrics`` (latest values) are
    what the run held when this object was built or last refreshed (:meth:`refresh`), plus what
    this object logged since.

    Used as a context manager, it ends the run FINISHED on success, FAILED on an exception and
    KILLED on ``KeyboardInterrupt`` (the exception propagates).

    Attributes
    ----------
    id, name, experiment_id : str
        The run id (the identity: two recorders are equal when their ids are), the run name
        (not unique) and the experiment id.
    status : str
        ``"SCHEDULED"``, ``"RUNNING"``, ``"FINISHED"``, ``"FAILED"`` or ``"KILLED"``.
    start_time, end_time : datetime or None
        UTC, to the millisecond.
    """

    STATUS_S, STATUS_R, STATUS_FI, STATUS_FA, STATUS_K = STATUSES

    def __init__(self, manager: ExpManager, run: Run) -> None:
        self.manager = manager
        self._fill(run)

    def _fill(self, run: Run) -> None:
        info = run.info
        self.id: str = info.run_id
        self.name: str = info.run_name
        self.experiment_id: str = info.experiment_id
        self.status: str = info.status
        self.start_time = ms_to_dt(info.start_time)
        self.end_time = ms_to_dt(info.end_time)
        self.artifact_uri: str = info.artifact_uri
        self.tags: dict[str, str] = dict(run.data.tags)
        self.params: dict[str, str] = dict(run.data.params)
        self.metrics: dict[str, float] = dict(run.data.metrics)

    @property
    def client(self) -> MlflowClient:
        return self.manager.client

    @property
    def info(self) -> dict[str, Any]:
        """Qlib's recorder info: class, id, name, experiment_id, start_time, end_time, status."""
        return {
            "class": type(self).__name__, "id": self.id, "name": self.name,
            "experiment_id": self.experiment_id, "start_time": self.start_time,
            "end_time": self.end_time, "status": self.status,
        }

    def __repr__(self) -> str:
        return f"Recorder(id={self.id!r}, name={self.name!r}, experiment_id={self.experiment_id!r}, " \
               f"status={self.status!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recorder) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self) -> tuple[Any, ...]:
        # A recorder crosses process boundaries (subprocess trainers) as its store and run id.
        return _restore_recorder, (self.manager.uri, self.manager.artifact_root, self.id)

    @contextmanager
    def _store(self, action: str) -> Iterator[None]:
        try:
            with quiet():
                yield
        except QrollError:
            raise
        except Exception as exc:  # MLflow's and its stores' errors, at the boundary
            raise RecordError(
                f"{action} failed for run {self.id} in {self.manager.display_uri}: "
                f"{scrub(one_line(exc), self.manager.uri)}"
            ) from exc

    # -- logging --------------------------------------------------------------------------------

    def log_params(self, **kwargs: Any) -> None:
        """Log parameters (values are stringified; over 6000 characters they are truncated).

        MLflow keeps a parameter once: logging the same key with another value raises
        :class:`~qroll.errors.RecordError`.
        """
        from mlflow.entities import Param

        values = {key: clip(value, MAX_PARAM_LEN) for key, value in kwargs.items()}
        with self._store("log_params"):
            for chunk in chunks([Param(k, v) for k, v in values.items()], PARAMS_PER_BATCH):
                self.client.log_batch(self.id, params=chunk, synchronous=True)
        self.params.update(values)

    def log_metrics(self, step: int | None = None, **kwargs: float) -> None:
        """Log metric values (floats) at ``step`` (default 0)."""
        from mlflow.entities import Metric

        now = now_ms()
        metrics = [Metric(key, _as_float(key, value), now, step or 0) for key, value in kwargs.items()]
        with self._store("log_metrics"):
            for chunk in chunks(metrics, METRICS_PER_BATCH):
                self.client.log_batch(self.id, metrics=chunk, synchronous=True)
        self.metrics.update({m.key: m.value for m in metrics})

    def log_metric_history(self, name: str, values: Iterable[float] | Mapping[int, float]) -> None:
        """Log a whole curve of metric ``name`` at once (a training loss per iteration).

        Parameters
        ----------
        name : str
            The metric's key, e.g. ``"l2.valid"``.
        values : sequence of float, or mapping / Series of step → float
            A sequence is logged at steps 0, 1, 2, ...
        """
        from mlflow.entities import Metric

        items = values.items() if hasattr(values, "items") else enumerate(values)
        now = now_ms()
        metrics = [Metric(name, _as_float(name, value), now, int(step)) for step, value in items]
        with self._store("log_metric_history"):
            for chunk in chunks(metrics, METRICS_PER_BATCH):
                self.client.log_batch(self.id, metrics=chunk, synchronous=True)
        if metrics:
            self.metrics[name] = max(metrics, key=lambda m: m.step).value

    def set_tags(self, **kwargs: Any) -> None:
        """Set tags (values are stringified, credentials masked, over 8000 characters truncated)."""
        from mlflow.entities import RunTag

        values = {key: clip(value, MAX_TAG_LEN) for key, value in kwargs.items()}
        with self._store("set_tags"):
            for chunk in chunks([RunTag(k, v) for k, v in values.items()], PARAMS_PER_BATCH):
                self.client.log_batch(self.id, tags=chunk, synchronous=True)
        self.tags.update(values)

    def refresh(self) -> Recorder:
        """Read the run's status, times, tags, params and metrics again from the store."""
        with self._store("get_run"):
            run = self.client.get_run(self.id)
        self._fill(run)
        return self

    def list_tags(self) -> dict[str, str]:
        """The run's tags, read from the store."""
        return dict(self.refresh().tags)

    def list_params(self) -> dict[str, str]:
        """The run's parameters, read from the store."""
        return dict(self.refresh().params)

    def list_metrics(self) -> dict[str, float]:
        """The run's metrics (latest value of each), read from the store."""
        return dict(self.refresh().metrics)

    # -- artifacts ------------------------------------------------------------------------------

    def save_objects(self, artifact_path: str | None = None, **objects: Any) -> None:
        """Pickle each object into an artifact named by its keyword, all in one upload.

        Examples: ``save_objects(**{"pred.pkl": pred})``,
        ``save_objects(artifact_path="sig_analysis", **{"ic.pkl": ic})``.
        """
        if not objects:
            return
        with tempfile.TemporaryDirectory(prefix="qroll-art-") as tmp:
            for name, obj in objects.items():
                target = Path(tmp, _relative(name))
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as fh:
                    pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
            with self._store(f"saving {sorted(objects)}"):
                self.client.log_artifacts(self.id, tmp, artifact_path)

    def save_json(self, name: str, obj: Any) -> None:
        """Save ``obj`` as canonical JSON (sorted keys, dates as ISO strings), e.g. ``task.json``.

        Raises
        ------
        NotSerializableError
            If ``obj`` holds a value with no stable JSON form.
        """
        text = canonical_json(obj, path=PurePosixPath(name).stem)
        rel = _relative(name)
        with tempfile.TemporaryDirectory(prefix="qroll-art-") as tmp:
            local = Path(tmp, rel.name)
            local.write_text(text, encoding="utf-8")
            folder = str(rel.parent) if str(rel.parent) != "." else None
            with self._store(f"saving {name!r}"):
                self.client.log_artifact(self.id, str(local), folder)

    def load_object(self, name: str) -> Any:
        """Download artifact ``name`` and unpickle it (``.json`` artifacts are parsed as JSON).

        Unpickling runs code from the artifact: load only runs you trust.

        Raises
        ------
        LoadObjectError
            If the run has no such artifact or it cannot be read.
        """
        import json

        local_path = self._local_artifact(name)
        if local_path is not None:
            # A local artifact store: read the file in place, no copy (collecting reads thousands).
            try:
                with open(local_path, "rb") as fh:
                    return json.load(fh) if name.endswith(".json") else pickle.load(fh)  # noqa: S301
            except Exception as exc:
                raise LoadObjectError(
                    f"artifact {name!r} of run {self.id} cannot be read: {one_line(exc)} "
                    "(is the package that pickled it importable here?)"
                ) from exc
        with tempfile.TemporaryDirectory(prefix="qroll-load-") as tmp:
            try:
                with quiet():
                    local = self.client.download_artifacts(self.id, name, dst_path=tmp)
            except Exception as exc:  # MLflow's or the artifact store's "not found"
                raise LoadObjectError(
                    f"run {self.id} has no artifact {name!r} (it has {self._artifact_summary()}); "
                    "check the name, or that the record that writes it ran"
                ) from exc
            if os.path.isdir(local):
                raise LoadObjectError(
                    f"artifact {name!r} of run {self.id} is a folder; load one of its files: "
                    f"{self.list_artifacts(name)}"
                )
            try:
                with open(local, "rb") as fh:
                    return json.load(fh) if name.endswith(".json") else pickle.load(fh)  # noqa: S301
            except Exception as exc:  # whatever the unpickled classes raise
                raise LoadObjectError(
                    f"artifact {name!r} of run {self.id} cannot be read: {one_line(exc)} "
                    "(is the package that pickled it importable here?)"
                ) from exc

    def _local_artifact(self, name: str) -> str | None:
        """The file of artifact ``name`` when the run's artifacts are on this file system."""
        uri = self.artifact_uri or ""
        if uri.startswith("file://"):
            uri = uri[len("file://"):]
        elif "://" in uri or not uri.startswith("/"):
            return None
        path = os.path.join(uri, *_relative(name).parts)
        return path if os.path.isfile(path) else None

    def _artifact_summary(self) -> str:
        try:
            names = self.list_artifacts()
        except RecordError:
            return "artifacts that cannot be listed"
        return repr(names[:20]) + (" ..." if len(names) > 20 else "")

    def list_artifacts(self, path: str | None = None) -> list[str]:
        """Paths of the run's artifact files under ``path``, recursively, e.g. ``sig_analysis/ic.pkl``."""
        out: list[str] = []
        todo = [path]
        with self._store("list_artifacts"):
            while todo:
                for entry in self.client.list_artifacts(self.id, todo.pop()):
                    (todo if entry.is_dir else out).append(entry.path)
        return sorted(out)

    # -- lifecycle ------------------------------------------------------------------------------

    def end(self, status: str = "FINISHED") -> None:
        """End the run with ``status``: ``"FINISHED"``, ``"FAILED"`` or ``"KILLED"``."""
        if status not in TERMINAL:
            raise RecordError(f"status={status!r} cannot end a run: use one of {list(TERMINAL)}")
        end_ms = now_ms()
        with self._store(f"ending the run as {status}"):
            self.client.set_terminated(self.id, status, end_time=end_ms)
        self.status, self.end_time = status, ms_to_dt(end_ms)

    def resume(self) -> Recorder:
        """Set an ended run back to RUNNING, to add to it; use as ``with rec.resume(): ...``.

        The run ends FINISHED (or FAILED / KILLED on an exception) when the block exits.
        """
        with self._store("resuming the run"):
            self.client.update_run(self.id, status=self.STATUS_R)
        self.status, self.end_time = self.STATUS_R, None
        return self

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.status in TERMINAL:
            return
        if exc_type is None:
            self.end(self.STATUS_FI)
            return
        status = self.STATUS_FA if issubclass(exc_type, Exception) else self.STATUS_K
        try:
            self.end(status)
        except RecordError as end_exc:
            # The original exception matters more than a failed status update: log, do not mask it.
            logger.warning("could not mark run %s as %s: %s", self.id, status, end_exc)


def _as_float(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"metric {key!r} is {value!r}, not a number: log numbers only") from exc


def _relative(name: str) -> PurePosixPath:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts:
        raise RecordError(f"artifact name {name!r} must be a relative path without '..', e.g. 'pred.pkl'")
    return rel


_SHARED: dict[tuple[str, str | None], ExpManager] = {}


def _restore_recorder(uri: str, artifact_root: str | None, run_id: str) -> Recorder:
    manager = _SHARED.get((uri, artifact_root))
    if manager is None:
        manager = _SHARED[(uri, artifact_root)] = ExpManager(uri, artifact_root)
    with manager._store("get_run"):
        run = manager.client.get_run(run_id)
    return Recorder(manager, run)


# -- experiment ------------------------------------------------------------------------------------


def _quote(value: str) -> str | None:
    # MLflow's filter parser strips the outer quotes and has no escapes.
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


class Experiment:
    """An MLflow experiment: a named set of recorders (Qlib's ``MLflowExperiment``)."""

    def __init__(self, manager: ExpManager, experiment_id: str, name: str) -> None:
        self.manager, self.id, self.name = manager, experiment_id, name

    def __repr__(self) -> str:
        return f"Experiment(id={self.id!r}, name={self.name!r}, uri={self.manager.display_uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and (other.id, other.manager.uri) == (self.id, self.manager.uri)

    def __hash__(self) -> int:
        return hash((self.id, self.manager.uri))

    def start_recorder(
        self, recorder_name: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> Recorder:
        """Start a RUNNING recorder (an MLflow run) named ``recorder_name`` (Qlib's default name if None)."""
        clean = {key: clip(value, MAX_TAG_LEN) for key, value in (tags or {}).items()}
        with self.manager._store(f"starting a run in experiment {self.name!r}"):
            run = self.manager.client.create_run(
                self.id, tags=clean, run_name=recorder_name or DEFAULT_REC_NAME
            )
        return Recorder(self.manager, run)

    def get_recorder(self, recorder_id: str) -> Recorder:
        """The recorder with run id ``recorder_id``; a :class:`RecordError` if this experiment has none."""
        try:
            with quiet():
                run = self.manager.client.get_run(recorder_id)
        except Exception as exc:  # MLflow's RESOURCE_DOES_NOT_EXIST and store errors
            raise RecordError(
                f"experiment {self.name!r} has no recorder {recorder_id!r} "
                f"({scrub(one_line(exc), self.manager.uri)}); list them with list_recorders()"
            ) from exc
        if run.info.experiment_id != self.id or run.info.lifecycle_stage != "active":
            raise RecordError(
                f"recorder {recorder_id!r} is not an active run of experiment {self.name!r} "
                f"(it is in experiment {run.info.experiment_id}, {run.info.lifecycle_stage})"
            )
        return Recorder(self.manager, run)

    def delete_recorder(self, recorder_id: str) -> None:
        """Delete (soft-delete, as MLflow does) the recorder with run id ``recorder_id``."""
        with self.manager._store(f"deleting run {recorder_id!r}"):
            self.manager.client.delete_run(recorder_id)

    def list_recorders(
        self,
        status: set[str] | None = None,
        tags: Mapping[str, str] | None = None,
        filter_string: str = "",
        max_results: int | None = None,
    ) -> list[Recorder]:
        """Active recorders, newest first (start time descending, then run id), filtered in the store.

        Parameters
        ----------
        status : set of str, optional
            Keep runs with one of these statuses, e.g. ``{"FINISHED"}``.
        tags : dict, optional
            Keep runs whose tags have exactly these values, e.g. ``{"qroll.task_hash": h}``.
        filter_string : str
            An extra MLflow search filter, joined with ``AND``.
        max_results : int, optional
            Stop after this many; by default every matching run, page by page.

        Returns
        -------
        list of Recorder
            With tags, params and metrics filled in from the listing (no further store calls).
        """
        clauses = [filter_string] if filter_string.strip() else []
        if status is not None:
            unknown = sorted(set(status) - set(STATUSES))
            if unknown:
                raise RecordError(f"status {unknown} is not a run status: use some of {list(STATUSES)}")
            if not status:
                return []
            # MLflow's filter has no IN for status; the statuses are few, so a set is the
            # complement of the others.
            if len(status) == 1:
                clauses.append(f"attributes.status = '{next(iter(status))}'")
            else:
                clauses.extend(f"attributes.status != '{s}'" for s in STATUSES if s not in status)
        local: dict[str, str] = {}  # tags MLflow's filter syntax cannot express, checked here
        for key, value in (tags or {}).items():
            quoted = _quote(str(value))
            if quoted is None or "`" in key:
                local[key] = str(value)
            else:
                clauses.append(f"tags.`{key}` = {quoted}")
        from mlflow.entities import ViewType

        found: list[Recorder] = []
        seen: set[str] = set()
        token: str | None = None
        while max_results is None or len(found) < max_results:
            with self.manager._store(f"listing runs of experiment {self.name!r}"):
                page = self.manager.client.search_runs(
                    [self.id], filter_string=" AND ".join(clauses), run_view_type=ViewType.ACTIVE_ONLY,
                    max_results=self.manager.page_size, order_by=["attributes.start_time DESC"],
                    page_token=token,
                )
            for run in page:
                # Offset paging can repeat a run when others start meanwhile; keep the first.
                if run.info.run_id in seen or any(run.data.tags.get(k) != v for k, v in local.items()):
                    continue
                seen.add(run.info.run_id)
                found.append(Recorder(self.manager, run))
            token = page.token
            if not token:
                break
        return found if max_results is None else found[:max_results]


# -- manager ---------------------------------------------------------------------------------------


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
        The qroll home (see :func:`qroll.home.qroll_home`), for the defaults.

    Raises
    ------
    TrackingError
        If the store cannot be reached or opened; raised within seconds, never after minutes of
        retries. The message names the URI with its password masked.

    Attributes
    ----------
    uri : str
        The tracking URI (with credentials: never print it; ``display_uri`` is masked).
    client : mlflow.MlflowClient
        This manager's own client.
    page_size : int
        Runs fetched per search call when listing (MLflow allows up to 50,000).
    """

    page_size: int = 1000

    def __init__(self, uri: str | None = None, artifact_root: str | None = None, home: Any = None) -> None:
        if uri is None:
            root = qroll_home(home).resolve()
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
            artifact_root = str(qroll_home(home).resolve() / "artifacts")
        if artifact_root is not None and "://" not in artifact_root:
            artifact_root = str(Path(artifact_root).expanduser().resolve())
        self.uri = uri
        self.display_uri = mask_credentials(uri)
        self.artifact_root = artifact_root
        self.client = connect(uri, self.display_uri)

    def __repr__(self) -> str:
        return f"ExpManager(uri={self.display_uri!r}, artifact_root={self.artifact_root!r})"

    @contextmanager
    def _store(self, action: str) -> Iterator[None]:
        try:
            with quiet():
                yield
        except QrollError:
            raise
        except Exception as exc:  # MLflow's and its stores' errors, at the boundary
            raise RecordError(f"{action} failed in {self.display_uri}: {self._why(exc)}") from exc

    def _why(self, exc: BaseException) -> str:
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
        with self._store(f"looking up experiment {name!r}"):
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
                    f"creating experiment {name!r} failed in {self.display_uri}: {self._why(exc)}"
                ) from exc
            return self.get_exp(name, create=False)
        return Experiment(self, exp_id, name)

    def list_experiments(self) -> list[Experiment]:
        """Every active experiment of the store (MLflow's ``Default`` included)."""
        out: list[Experiment] = []
        token: str | None = None
        while True:
            with self._store("listing experiments"):
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
        with self._store(f"deleting experiment {name!r}"):
            self.client.delete_experiment(exp.id)
