"""Ensembles: merge a dict of per-window or per-model results into one result (Qlib's names)."""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["AverageEnsemble", "Ensemble", "RollingEnsemble", "SingleKeyEnsemble"]

log = logging.getLogger("qroll.collect")


class Ensemble(abc.ABC):
    """Merge ``{key: result}`` into one result; the keys are ignored."""

    @abc.abstractmethod
    def __call__(self, ensemble_dict: Mapping[Any, Any], *args: Any, **kwargs: Any) -> Any:
        """Return the merged result."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SingleKeyEnsemble(Ensemble):
    """Replace a dict with exactly one key by its only value (recursively by default).

    >>> SingleKeyEnsemble()({"a": {"b": 1}})
    1
    >>> SingleKeyEnsemble()({"a": 1, "b": 2})
    {'a': 1, 'b': 2}
    """

    def __call__(self, ensemble_dict: Any, recursion: bool = True) -> Any:
        if not isinstance(ensemble_dict, Mapping):
            return ensemble_dict
        if recursion:
            ensemble_dict = {k: self(v, recursion) for k, v in ensemble_dict.items()}
        if len(ensemble_dict) == 1:
            return next(iter(ensemble_dict.values()))
        return dict(ensemble_dict)


class RollingEnsemble(Ensemble):
    """Concatenate rolling windows' frames into one continuous frame, in start-date order.

    Windows are ordered by their first ``datetime`` (a stable sort: windows starting on the same day
    keep the dict's order); where windows overlap on an index entry, the window starting latest
    wins, as in Qlib. The result is sorted by its index.

    >>> def idx(days):
    ...     return pd.MultiIndex.from_product([pd.to_datetime(days), ["A"]], names=["datetime", "instrument"])
    >>> w1 = pd.DataFrame({"score": [1.0, 1.0]}, index=idx(["2020-01-02", "2020-01-03"]))
    >>> w2 = pd.DataFrame({"score": [2.0, 2.0]}, index=idx(["2020-01-03", "2020-01-06"]))
    >>> RollingEnsemble()({"late": w2, "early": w1})["score"].tolist()
    [1.0, 2.0, 2.0]
    """

    def __call__(self, ensemble_dict: Mapping[Any, Any], *args: Any, **kwargs: Any) -> pd.DataFrame:
        frames = [v for v in ensemble_dict.values() if v is not None and len(v)]
        if not frames:
            return pd.DataFrame()
        log.debug("rolling ensemble of %d windows", len(frames))
        frames.sort(key=lambda frame: frame.index.get_level_values("datetime").min())
        merged = pd.concat(frames)
        merged = merged[~merged.index.duplicated(keep="last")]
        return merged.sort_index()


def _flatten(d: Mapping[Any, Any], prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    out: dict[tuple[Any, ...], Any] = {}
    for key, value in d.items():
        path = (*prefix, *(key if isinstance(key, tuple) else (key,)))
        if isinstance(value, Mapping):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


class AverageEnsemble(Ensemble):
    """Z-score each input per ``datetime`` (ddof = 1) and average them; nested dicts are flattened.

    As in Qlib, an input that is constant on a date has no z-score there and drops out of that
    date's average, and the result is a Series.
    """

    def __call__(self, ensemble_dict: Mapping[Any, Any], *args: Any, **kwargs: Any) -> pd.Series:
        values = list(_flatten(ensemble_dict).values())
        if not values:
            return pd.Series(dtype=float)
        frame = pd.concat(values, axis=1)
        by_day = frame.groupby(level="datetime")
        zscored = (frame - by_day.transform("mean")) / by_day.transform("std")
        return zscored.mean(axis=1).sort_index()
