"""``Experiment``: a named set of runs in one tracking store (Qlib's ``MLflowExperiment``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qroll.errors import RecordError
from qroll.record.recorder import DEFAULT_REC_NAME, Recorder
from qroll.record.store import (
    MAX_TAG_LEN,
    STATUSES,
    clip,
    quiet,
)

if TYPE_CHECKING:

    from qroll.record.manager import ExpManager

__all__ = ["Experiment"]


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
        with self.manager.store_call(f"starting a run in experiment {self.name!r}"):
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
                f"({self.manager.error_text(exc)}); list them with list_recorders()"
            ) from exc
        if run.info.experiment_id != self.id or run.info.lifecycle_stage != "active":
            raise RecordError(
                f"recorder {recorder_id!r} is not an active run of experiment {self.name!r} "
                f"(it is in experiment {run.info.experiment_id}, {run.info.lifecycle_stage})"
            )
        return Recorder(self.manager, run)

    def delete_recorder(self, recorder_id: str) -> None:
        """Delete (soft-delete, as MLflow does) the recorder with run id ``recorder_id``."""
        with self.manager.store_call(f"deleting run {recorder_id!r}"):
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
            with self.manager.store_call(f"listing runs of experiment {self.name!r}"):
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

