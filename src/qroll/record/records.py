"""Record templates run after a model is fitted: predictions, labels and signal analysis (Qlib's).

A task's ``"record"`` list names them; the trainer builds each with the run's recorder (and the
model and dataset when the record takes them) and calls :meth:`RecordTemp.generate`. Artifact
names are Qlib's, so Qlib tooling reads qroll runs:

================  ======================================================
``SignalRecord``  ``pred.pkl`` (a ``score`` column), ``label.pkl`` (raw test labels)
``SigAnaRecord``  ``sig_analysis/ic.pkl``, ``sig_analysis/ric.pkl`` and metrics ``IC``,
                  ``ICIR``, ``Rank IC``, ``Rank ICIR`` (+ long-short ones on request)
================  ======================================================
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pandas as pd

from qroll.analysis.signal import calc_ic, calc_long_short_return, ic_summary
from qroll.data.dataset import DatasetH
from qroll.errors import LoadObjectError, QrollError, RecordError, RecordSkippedWarning
from qroll.record.recorder import Recorder

__all__ = ["RecordTemp", "SigAnaRecord", "SignalRecord"]

logger = logging.getLogger(__name__)


class RecordTemp:
    """A record template: writes artifacts under ``artifact_path`` of a recorder (Qlib's ``RecordTemp``).

    Class attributes: ``artifact_path`` (the folder of this record's artifacts, ``None`` for the
    run's root) and ``depend_cls`` (the record whose artifacts this one reads).

    Notes
    -----
    A record of your own subclasses this, sets ``artifact_path`` (and ``depend_cls`` when it reads
    another record's artifacts) and implements :meth:`generate` (compute, then :meth:`save`) and
    :meth:`list` (what it writes). A task's ``record:`` list names it as ``{"class": ...,
    "module_path": ..., "kwargs": {...}}``; the trainer builds it with the run's recorder, and with
    ``model=`` and ``dataset=`` when ``__init__`` takes them. For example, the day-by-day count of
    names with a prediction::

        class Coverage(RecordTemp):
            artifact_path = "coverage"
            depend_cls = SignalRecord

            def generate(self, **kwargs):
                pred = self.load("pred.pkl")  # found under SignalRecord's path
                self.save(**{"coverage.pkl": pred.groupby(level="datetime").size()})

            def list(self):
                return ["coverage.pkl"]

    Examples
    --------
    >>> SigAnaRecord.get_path("ic.pkl"), SignalRecord.get_path("pred.pkl")
    ('sig_analysis/ic.pkl', 'pred.pkl')
    """

    artifact_path: str | None = None
    depend_cls: type[RecordTemp] | None = None

    def __init__(self, recorder: Recorder | None = None) -> None:
        self._recorder = recorder

    def __repr__(self) -> str:
        return f"{type(self).__name__}(recorder={self._recorder!r})"

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            raise RecordError(f"{type(self).__name__} has no recorder: build it with recorder=<Recorder>")
        return self._recorder

    @classmethod
    def get_path(cls, path: str | None = None) -> str:
        """``artifact_path/path``, or either alone."""
        return "/".join(p for p in (cls.artifact_path, path) if p)

    def save(self, **objects: Any) -> None:
        """Pickle ``objects`` under this record's artifact path."""
        self.recorder.save_objects(artifact_path=self.get_path() or None, **objects)

    def generate(self, **kwargs: Any) -> Any:
        """Compute and save this record's artifacts."""
        raise NotImplementedError(f"{type(self).__name__} must implement generate()")

    def load(self, name: str, parents: bool = True) -> Any:
        """Load artifact ``name`` of this record or, failing that, of the records it depends on.

        Raises
        ------
        LoadObjectError
            If neither this record nor (with ``parents``) any record it depends on saved ``name``.
        """
        candidates = [cls.get_path(name) for cls in self._lineage(parents)]
        if len(candidates) == 1:
            return self.recorder.load_object(candidates[0])
        # One listing instead of one failed download per candidate.
        present = set(self.recorder.list_artifacts())
        for path in candidates:
            if path in present:
                return self.recorder.load_object(path)
        raise LoadObjectError(
            f"run {self.recorder.id} has none of {candidates}: run the records that write them first"
        )

    def _lineage(self, parents: bool = True) -> list[type[RecordTemp]]:
        classes: list[type[RecordTemp]] = [type(self)]
        while parents and classes[-1].depend_cls is not None:
            classes.append(classes[-1].depend_cls)
        return classes

    def list(self) -> list[str]:
        """The artifacts this record writes, relative to its artifact path."""
        return []

    def check(self, include_self: bool = False, parents: bool = True) -> None:
        """Check that the artifacts of this record (``include_self``) and of its dependencies exist.

        Raises
        ------
        LoadObjectError
            Naming the missing artifacts (Qlib raises ``FileNotFoundError``).
        """
        lineage = self._lineage(parents)
        classes = lineage if include_self else lineage[1:]
        present = set(self.recorder.list_artifacts()) if classes else set()
        # A dependency's list() is asked of this object, as Qlib's class_casting does.
        wanted = [c.get_path(item) for c in classes for item in c.list(self)]
        missing = [path for path in wanted if path not in present]
        if missing:
            raise LoadObjectError(
                f"run {self.recorder.id} lacks {missing}: run {[c.__name__ for c in classes]} first"
            )


class SignalRecord(RecordTemp):
    """Save the model's test predictions (``pred.pkl``) and, for a ``DatasetH``, raw labels (``label.pkl``).

    Parameters
    ----------
    model : object with ``predict(dataset)``
        A fitted model; in a task, ``"<MODEL>"``.
    dataset : object
        What the model predicts on; in a task, ``"<DATASET>"``.
    recorder : Recorder
        The run to save into.
    """

    def __init__(self, model: Any = None, dataset: Any = None, recorder: Recorder | None = None) -> None:
        super().__init__(recorder=recorder)
        self.model = model
        self.dataset = dataset

    @staticmethod
    def generate_label(dataset: Any) -> pd.DataFrame | None:
        """The raw label of the test segment, or None when the handler dropped its raw data."""
        try:
            return dataset.prepare("test", col_set="label", data_key="raw")
        except QrollError as exc:
            logger.warning("no raw label saved: %s", exc)
            return None

    def generate(self, **kwargs: Any) -> pd.DataFrame:
        """Predict, save ``pred.pkl`` (and ``label.pkl``), and return the predictions."""
        missing = [name for name in ("model", "dataset") if getattr(self, name) is None]
        if missing:
            raise RecordError(
                f"SignalRecord has no {' and no '.join(missing)}: pass "
                f"{', '.join(f'{m}=<{m.upper()}>' for m in missing)} in the record's kwargs "
                "(or build it with them)"
            )
        recorder = self.recorder
        pred = self.model.predict(self.dataset)
        if isinstance(pred, pd.Series):
            pred = pred.to_frame("score")
        objects: dict[str, Any] = {"pred.pkl": pred}
        if isinstance(self.dataset, DatasetH):
            objects["label.pkl"] = self.generate_label(self.dataset)
        self.save(**objects)
        logger.info("saved %s to run %s", sorted(objects), recorder.id)
        return pred

    def list(self) -> list[str]:
        return ["pred.pkl", "label.pkl"]


class SigAnaRecord(RecordTemp):
    """Daily IC and Rank IC of the saved predictions against the saved labels (Qlib's ``SigAnaRecord``).

    Parameters
    ----------
    recorder : Recorder
        A run that holds ``pred.pkl`` and ``label.pkl`` (from :class:`SignalRecord`).
    ana_long_short : bool, default False
        Also compute long-short returns (top and bottom 20 % by prediction each day).
    ann_scaler : int, default 252
        Periods per year, to annualise the long-short figures.
    label_col : int, default 0
        The position of the label column in ``label.pkl``.
    skip_existing : bool, default False
        Do nothing when this record's artifacts already exist.
    """

    artifact_path = "sig_analysis"
    depend_cls = SignalRecord

    def __init__(
        self,
        recorder: Recorder | None = None,
        ana_long_short: bool = False,
        ann_scaler: int = 252,
        label_col: int = 0,
        skip_existing: bool = False,
    ) -> None:
        super().__init__(recorder=recorder)
        self.ana_long_short = ana_long_short
        self.ann_scaler = ann_scaler
        self.label_col = label_col
        self.skip_existing = skip_existing

    def generate(self, label: pd.DataFrame | None = None, **kwargs: Any) -> dict[str, float]:
        """Compute, log and save the analysis; return the metrics logged.

        Parameters
        ----------
        label : DataFrame, optional
            Use this label instead of the run's ``label.pkl``.

        Returns
        -------
        dict of str to float
            ``{"IC", "ICIR", "Rank IC", "Rank ICIR"}`` (+ the long-short metrics); ``{}`` when
            skipped (an empty or missing label, with a :class:`RecordSkippedWarning`), and the
            run's stored metrics when ``skip_existing`` found the artifacts.

        Raises
        ------
        RecordError
            If the run has no ``pred.pkl``.
        """
        if self.skip_existing:
            try:
                self.check(include_self=True, parents=False)
            except LoadObjectError:
                pass
            else:
                logger.info("signal analysis of run %s exists: skipped", self.recorder.id)
                return {k: v for k, v in self.recorder.list_metrics().items() if k in _METRIC_NAMES}
        try:
            pred = self.load("pred.pkl")
        except LoadObjectError as exc:
            raise RecordError(
                f"run {self.recorder.id} has no pred.pkl to analyse: put SignalRecord before SigAnaRecord"
            ) from exc
        if label is None:
            try:
                label = self.load("label.pkl")
            except LoadObjectError:
                label = None
        if not isinstance(label, pd.DataFrame) or label.empty:
            warnings.warn(
                f"SigAnaRecord skipped for run {self.recorder.id}: the label is missing or empty "
                f"({type(label).__name__}); is the dataset a DatasetH with a test segment?",
                RecordSkippedWarning,
                stacklevel=2,
            )
            return {}
        score, target = pred.iloc[:, 0], label.iloc[:, self.label_col]
        ic, ric = calc_ic(score, target)
        metrics = ic_summary(ic, ric)
        objects: dict[str, Any] = {"ic.pkl": ic, "ric.pkl": ric}
        if self.ana_long_short:
            long_short, long_avg = calc_long_short_return(score, target)
            metrics.update(
                {
                    "Long-Short Ann Return": float(long_short.mean()) * self.ann_scaler,
                    "Long-Short Ann Sharpe": _sharpe(long_short, self.ann_scaler),
                    "Long-Avg Ann Return": float(long_avg.mean()) * self.ann_scaler,
                    "Long-Avg Ann Sharpe": _sharpe(long_avg, self.ann_scaler),
                }
            )
            objects.update({"long_short_r.pkl": long_short, "long_avg_r.pkl": long_avg})
        self.recorder.log_metrics(step=None, **metrics)
        self.save(**objects)
        logger.info("signal analysis of run %s: %s", self.recorder.id, metrics)
        return metrics

    def list(self) -> list[str]:
        paths = ["ic.pkl", "ric.pkl"]
        if self.ana_long_short:
            paths.extend(["long_short_r.pkl", "long_avg_r.pkl"])
        return paths


_METRIC_NAMES = {
    "IC", "ICIR", "Rank IC", "Rank ICIR",
    "Long-Short Ann Return", "Long-Short Ann Sharpe", "Long-Avg Ann Return", "Long-Avg Ann Sharpe",
}


def _sharpe(returns: pd.Series, ann_scaler: int) -> float:
    std = float(returns.std())
    return float(returns.mean()) / std * ann_scaler**0.5 if std > 0 else float("nan")
