"""Collect an online strategy's predictions: each window's stored ones with their extension.

The signal of an as-of day is a function of the store and that day alone: the windows that start
by then, each with its stored predictions and its online extension (:func:`load_online`), cut at
the day. It is recomputed on every call, never appended to (Qlib appends and duplicates the last
day on every routine, O1), and never reaches past the as-of day (O5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from qroll.collect import Collector, RecorderCollector
from qroll.errors import LoadObjectError
from qroll.online.update import load_online
from qroll.record import Experiment, ExpManager, Recorder
from qroll.record.tags import TAG_TEST_START
from qroll.train.trainer import PHASE_BEGIN, TAG_PHASE

__all__ = ["OnlinePredCollector"]

log = logging.getLogger("qroll.online")


class OnlinePredCollector(Collector):
    """``{"pred": {rec_key: predictions}}`` of an experiment's windows, as of a day.

    Lists the FINISHED runs once, as :class:`~qroll.collect.RecorderCollector` does (a delay
    trainer's unfitted runs and merged-signal runs left out; for a repeated key the newest run
    wins), keeps those whose test starts by ``as_of``, and loads each one's ``pred.pkl`` with
    its ``pred_online.pkl``, cut at ``as_of``.

    Parameters
    ----------
    experiment : Experiment or str
        The strategy's experiment.
    process_list : list, optional
        E.g. ``[RollingGroup()]``.
    rec_key_func : callable, optional
        ``rec -> key``; default :func:`~qroll.collect.rolling_key`.
    rec_filter_func : callable, optional
        Keep only the runs for which it is true.
    as_of : date, optional
        The as-of day; ``None`` keeps every window and day.
    fname : str, default "pred.pkl"
        The stored artifact (its extension is read beside it).
    exp_manager : ExpManager, optional
        Where to find an experiment given by name.
    threads : int, default 8
        Runs loaded at once.
    """

    ART_KEY = "pred"

    def __init__(
        self,
        experiment: Experiment | str,
        process_list: Any = None,
        rec_key_func: Callable[[Recorder], Any] | None = None,
        rec_filter_func: Callable[[Recorder], bool] | None = None,
        *,
        as_of: Any = None,
        fname: str = "pred.pkl",
        exp_manager: ExpManager | None = None,
        threads: int = 8,
    ) -> None:
        super().__init__(process_list)
        self.as_of = None if as_of is None else pd.Timestamp(as_of)
        self.fname = fname
        self.threads = threads
        self._inner = RecorderCollector(experiment, None, rec_key_func, rec_filter_func,
                                        artifacts_path={self.ART_KEY: fname}, exp_manager=exp_manager)

    def __repr__(self) -> str:
        return f"OnlinePredCollector(experiment={self._inner.experiment!r}, as_of={self.as_of!r})"

    def _keep(self, rec: Recorder, filt: Callable[[Recorder], bool] | None) -> bool:
        if rec.tags.get(TAG_PHASE) == PHASE_BEGIN:
            return False  # recorded, not fitted: no predictions yet
        start = rec.tags.get(TAG_TEST_START)
        if self.as_of is not None and (not start or pd.Timestamp(start) > self.as_of):
            return False
        return filt is None or bool(filt(rec))

    def collect(self, rec_filter_func: Callable[[Recorder], bool] | None = None,
                only_exist: bool = True) -> dict[str, dict[Any, pd.DataFrame]]:
        """Return ``{"pred": {rec_key: predictions}}``; windows with no prediction by then are left out.

        Parameters
        ----------
        rec_filter_func : callable, optional
            Replaces the constructor's filter.
        only_exist : bool, default True
            Skip a run without ``pred.pkl`` (a log line); False raises
            :class:`~qroll.errors.LoadObjectError`.
        """
        filt = rec_filter_func or self._inner.rec_filter_func
        inner = self._inner
        runs = inner.collect(artifacts_key=inner.ART_KEY_RAW, rec_filter_func=lambda r: self._keep(r, filt))
        chosen: Sequence[tuple[Any, Recorder]] = list(runs.get(inner.ART_KEY_RAW, {}).items())

        def load(item: tuple[Any, Recorder]) -> tuple[Any, pd.DataFrame | None]:
            key, rec = item
            try:
                return key, load_online(rec, self.fname, self.as_of)
            except LoadObjectError:
                if not only_exist:
                    raise
                log.warning("run %s has no %s: skipped", rec.id, self.fname)
                return key, None

        out: dict[Any, pd.DataFrame] = {}
        with ThreadPoolExecutor(max(1, min(self.threads, len(chosen) or 1))) as pool:
            for key, frame in pool.map(load, chosen):
                if frame is not None and not frame.empty:
                    out[key] = frame
        return {self.ART_KEY: out}
