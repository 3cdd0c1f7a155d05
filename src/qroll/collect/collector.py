"""Collectors: read results back from many recorders into ``{artifact_key: {rec_key: obj}}``.

:class:`RecorderCollector` lists an experiment's runs **once**, filtering by status and tags in the
store, and keys each run by its tags (default: ``(model class, test segment)``, the rolling key),
so no artifact is downloaded to compute a key. Only the artifacts asked for are loaded.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from qroll.errors import CollectError, LoadObjectError
from qroll.record import Experiment, ExpManager, Recorder
from qroll.record.tags import KIND_MERGED, TAG_KIND, TAG_MODEL, TAG_TEST_END, TAG_TEST_START

__all__ = ["Collector", "MergeCollector", "RecorderCollector", "rolling_key"]

log = logging.getLogger("qroll.collect")


def rolling_key(rec: Recorder) -> tuple[str, tuple[pd.Timestamp, pd.Timestamp | None]]:
    """The default key of a run: ``(model class, (test start, test end))``, read from its tags.

    Raises
    ------
    CollectError
        If the run has no ``qroll.model`` / ``qroll.test_start`` tags (it was not trained by qroll).
    """
    tags = rec.tags
    if TAG_MODEL not in tags or TAG_TEST_START not in tags:
        raise CollectError(
            f"run {rec.id} has no {TAG_MODEL}/{TAG_TEST_START} tags (was it trained by qroll?): "
            "pass rec_key_func=lambda rec: ... to key it yourself"
        )
    end = tags.get(TAG_TEST_END) or None
    return tags[TAG_MODEL], (pd.Timestamp(tags[TAG_TEST_START]), pd.Timestamp(end) if end else None)


class Collector:
    """Collect results, then pass each artifact's ``{key: obj}`` through ``process_list`` in order.

    Parameters
    ----------
    process_list : callable or list of callables
        E.g. ``[RollingGroup()]``: each gets the previous one's output.
    """

    def __init__(self, process_list: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None) -> None:
        processes: list[Callable[..., Any]]
        if process_list is None:
            processes = []
        elif isinstance(process_list, (list, tuple)):
            processes = list(process_list)
        else:
            processes = [process_list]  # type: ignore[list-item]
        self.process_list = processes

    def collect(self) -> dict[Any, Any]:
        """Return ``{artifact_key: {rec_key: obj}}``."""
        raise NotImplementedError(f"{type(self).__name__} must implement collect()")

    @staticmethod
    def process_collect(
        collected: Mapping[Any, Any], process_list: Iterable[Callable[..., Any]] = ()
    ) -> dict[Any, Any]:
        """Apply every process, in order, to every artifact's value."""
        processes = list(process_list)
        for process in processes:
            if not callable(process):
                raise CollectError(
                    f"process {process!r} is not callable: give an Ensemble, Group or function"
                )
        out = {}
        for key, value in collected.items():
            for process in processes:
                value = process(value)
            out[key] = value
        return out

    def __call__(self) -> dict[Any, Any]:
        """Collect and process."""
        return self.process_collect(self.collect(), self.process_list)


class MergeCollector(Collector):
    """Run several collectors and merge their results; keys become ``merge_func(name, key)``.

    Parameters
    ----------
    collector_dict : dict of str to Collector
        Each is called in full (its own processes included).
    merge_func : callable, optional
        ``(collector_name, artifact_key) -> new key``; default the tuple ``(collector_name, key)``.
    """

    def __init__(
        self,
        collector_dict: Mapping[str, Collector],
        process_list: Any = None,
        merge_func: Callable[[str, Any], Any] | None = None,
    ) -> None:
        super().__init__(process_list)
        self.collector_dict = dict(collector_dict)
        self.merge_func = merge_func

    def collect(self) -> dict[Any, Any]:
        merged = {}
        for name, collector in self.collector_dict.items():
            for key, value in collector().items():
                merged[self.merge_func(name, key) if self.merge_func else (name, key)] = value
        return merged


class RecorderCollector(Collector):
    """Collect artifacts from an experiment's runs.

    Parameters
    ----------
    experiment : Experiment, str or callable
        An experiment, its name (which must exist), or a callable returning recorders.
    process_list : callable or list, optional
        Applied to each artifact's ``{rec_key: obj}``, e.g. ``RollingGroup()``.
    rec_key_func : callable, optional
        ``rec -> key``; default :func:`rolling_key`, ``(model class, test segment)`` from tags.
    rec_filter_func : callable, optional
        ``rec -> bool``; runs for which it is false are skipped.
    artifacts_path : dict, default {"pred": "pred.pkl"}
        Artifact key to artifact path. The key ``"__raw"`` gives the Recorder itself.
    artifacts_key : str or list, optional
        The keys to collect (default every key of ``artifacts_path``).
    list_kwargs : dict, optional
        Passed to :meth:`Experiment.list_recorders` (e.g. ``tags={"qroll.model": "LGBModel"}``).
    status : set of str, default {"FINISHED"}
        Run statuses to keep (filtered in the store); ``None`` keeps all.
    exp_manager : ExpManager, optional
        Where to find an experiment given by name (default: ``ExpManager()``).
    threads : int, default 8
        Artifacts are loaded in this many threads.

    Notes
    -----
    For a key found in several runs, the newest finished run wins and a warning says how many
    keys were duplicated (Qlib silently keeps the oldest). An experiment's merged-signal runs
    (tag ``qroll.kind=merged``, see :mod:`qroll.collect.merged`) are derived from its windows and
    are not collected from it; read them with :func:`~qroll.collect.merged.merged_runs`.
    """

    ART_KEY_RAW = "__raw"

    def __init__(
        self,
        experiment: Experiment | str | Callable[[], Iterable[Recorder]],
        process_list: Any = None,
        rec_key_func: Callable[[Recorder], Any] | None = None,
        rec_filter_func: Callable[[Recorder], bool] | None = None,
        artifacts_path: Mapping[str, str] | None = None,
        artifacts_key: str | Sequence[str] | None = None,
        list_kwargs: Mapping[str, Any] | None = None,
        status: Iterable[str] | None = frozenset({"FINISHED"}),
        exp_manager: ExpManager | None = None,
        threads: int = 8,
    ) -> None:
        super().__init__(process_list)
        if isinstance(experiment, str):
            experiment = (exp_manager or ExpManager()).get_exp(experiment, create=False)
        self.experiment = experiment
        self.rec_key_func = rec_key_func or rolling_key
        self.rec_filter_func = rec_filter_func
        self.artifacts_path = dict(artifacts_path or {"pred": "pred.pkl"})
        keys = list(self.artifacts_path) if artifacts_key is None else artifacts_key
        self.artifacts_key = [keys] if isinstance(keys, str) else list(keys)
        self.list_kwargs = dict(list_kwargs or {})
        self.status = None if status is None else set(status)
        self.threads = threads

    def _recorders(self) -> list[Recorder]:
        if isinstance(self.experiment, Experiment):
            recs = self.experiment.list_recorders(status=self.status, **self.list_kwargs)
            return [r for r in recs if r.tags.get(TAG_KIND) != KIND_MERGED]
        recs = list(self.experiment())
        return [r for r in recs if self.status is None or r.status in self.status]

    def collect(
        self,
        artifacts_key: str | Sequence[str] | None = None,
        rec_filter_func: Callable[[Recorder], bool] | None = None,
        only_exist: bool = True,
    ) -> dict[str, dict[Any, Any]]:
        """Return ``{artifact_key: {rec_key: obj}}``.

        Parameters
        ----------
        only_exist : bool, default True
            Skip a run that lacks an artifact (with a log line); False raises LoadObjectError.
        """
        keys: list[str]
        if artifacts_key is None:
            keys = self.artifacts_key
        else:
            keys = [artifacts_key] if isinstance(artifacts_key, str) else list(artifacts_key)
        for key in keys:
            if key != self.ART_KEY_RAW and key not in self.artifacts_path:
                raise CollectError(f"artifact key {key!r} has no path: add it to artifacts_path")
        filt = rec_filter_func or self.rec_filter_func
        recs = self._recorders()
        log.info("collecting from %d runs (%s)", len(recs), dict(Counter(r.status for r in recs)))
        chosen: dict[Any, Recorder] = {}
        duplicated = 0
        for rec in recs:  # newest first: the first run seen for a key wins
            if filt is not None and not filt(rec):
                continue
            rec_key = self.rec_key_func(rec)
            if rec_key in chosen:
                duplicated += 1
                continue
            chosen[rec_key] = rec
        if duplicated:
            warnings.warn(
                f"{duplicated} run(s) repeat the key of a newer finished run and were ignored "
                "(the newest run wins)",
                UserWarning,
                stacklevel=2,
            )

        def load(item: tuple[Any, Recorder]) -> tuple[Any, dict[str, Any]]:
            key, rec = item
            got: dict[str, Any] = {}
            for art in keys:
                if art == self.ART_KEY_RAW:
                    got[art] = rec
                    continue
                try:
                    got[art] = rec.load_object(self.artifacts_path[art])
                except LoadObjectError:
                    if not only_exist:
                        raise
                    log.warning("run %s has no %s: skipped", rec.id, self.artifacts_path[art])
            return key, got

        out: dict[str, dict[Any, Any]] = {}
        items = list(chosen.items())
        with ThreadPoolExecutor(max(1, min(self.threads, len(items) or 1))) as pool:
            for key, got in pool.map(load, items):
                for art, obj in got.items():
                    out.setdefault(art, {})[key] = obj
        return out

    def get_exp_name(self) -> str:
        """The experiment's name."""
        if not isinstance(self.experiment, Experiment):
            raise CollectError("this collector reads from a callable, which has no experiment name")
        return self.experiment.name
