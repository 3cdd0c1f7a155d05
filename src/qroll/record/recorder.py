"""``Recorder``: one MLflow run, with Qlib's names (``ExpManager`` → ``Experiment`` → ``Recorder``).

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
import tempfile
import threading
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any

from qroll.config import canonical_json
from qroll.errors import LoadObjectError, RecordError
from qroll.record.store import (
    MAX_PARAM_LEN,
    MAX_TAG_LEN,
    METRICS_PER_BATCH,
    PARAMS_PER_BATCH,
    STATUSES,
    TERMINAL,
    chunks,
    clip,
    ms_to_dt,
    now_ms,
    one_line,
    quiet,
)

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from qroll.record.manager import ExpManager

__all__ = ["DEFAULT_REC_NAME", "Recorder"]

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
        # A recorder crosses process boundaries (subprocess trainers) as its store, home and run id.
        home = getattr(self.manager, "home", None)
        return _restore_recorder, (self.manager.uri, self.manager.artifact_root, self.id,
                                   None if home is None else str(home))

    def _store(self, action: str) -> AbstractContextManager[None]:
        return self.manager.store_call(action, subject=f" for run {self.id}")

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
        local_path = self._local_artifact(name)
        if local_path is not None:
            # A local artifact store: read the file in place, no copy (collecting reads thousands).
            return self._read(name, local_path)
        with tempfile.TemporaryDirectory(prefix="qroll-load-") as tmp:
            proxied = self._download_proxied(name, tmp)
            if proxied is not None:
                return self._read(name, proxied)
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
            return self._read(name, local)

    def _read(self, name: str, path: str) -> Any:
        """Artifact ``name`` from its file at ``path``: parsed JSON (``.json``) or unpickled."""
        import json

        try:
            with open(path, "rb") as fh:
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

    def _download_proxied(self, name: str, folder: str) -> str | None:
        """Download artifact ``name`` of a run whose artifacts a tracking server proxies
        (``mlflow-artifacts:/...``) into ``folder``, in one request; None for other stores.

        MLflow's own download costs four requests per file (the run, a listing, the server's
        capabilities, the file): collecting 200 runs through a local server took 4.4 s, 64 times
        the time from a local store (benchmarks/README.md).
        """
        from urllib.parse import urlsplit

        parts = urlsplit(self.artifact_uri or "")
        if parts.scheme != "mlflow-artifacts" or parts.netloc or not self.manager.uri.startswith("http"):
            return None
        remote = f"{parts.path.strip('/')}/{_relative(name)}"
        local = os.path.join(folder, "artifact")
        try:
            with quiet():
                _proxy_repository(self.manager.uri)._download_file(remote, local)
        except Exception as exc:  # requests' HTTPError or connection errors, MLflow's wrappers
            response = getattr(exc, "response", None)
            if getattr(response, "status_code", None) == 404:
                raise LoadObjectError(
                    f"run {self.id} has no artifact {name!r} (it has {self._artifact_summary()}); "
                    "check the name, or that the record that writes it ran"
                ) from exc
            raise RecordError(f"downloading artifact {name!r} of run {self.id} from "
                              f"{self.manager.display_uri} failed: {self.manager.error_text(exc)}") from exc
        return local

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


_PROXIES: dict[str, Any] = {}
_PROXIES_LOCK = threading.Lock()


def _proxy_repository(tracking_uri: str) -> Any:
    """The root of a tracking server's proxied artifacts, one per server and process: it keeps
    the server's capabilities once fetched, and is safe to share between threads."""
    with _PROXIES_LOCK:
        if tracking_uri not in _PROXIES:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            _PROXIES[tracking_uri] = get_artifact_repository("mlflow-artifacts:/", tracking_uri=tracking_uri)
        return _PROXIES[tracking_uri]


def _restore_recorder(uri: str, artifact_root: str | None, run_id: str, home: str | None = None) -> Recorder:
    """A pickled recorder, on the process's shared manager of its store (pickles without a home,
    from before it was kept, take this process's)."""
    from qroll.record.manager import ExpManager

    manager = ExpManager.shared(uri, artifact_root, home=home)
    with manager.store_call("get_run"):
        run = manager.client.get_run(run_id)
    return Recorder(manager, run)
