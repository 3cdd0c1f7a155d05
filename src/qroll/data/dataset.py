"""``DatasetH``: a data handler cut into named segments (train, valid, test), as in Qlib."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from qroll.config import init_instance_by_config
from qroll.data.handler import DataHandlerLP
from qroll.errors import ConfigError

__all__ = ["DatasetH"]

TRAIN_KEY = "train"


def _as_slice(name: str, segment: Any) -> slice:
    if isinstance(segment, slice):
        return segment
    if isinstance(segment, tuple | list) and len(segment) == 2:
        return slice(segment[0], segment[1])
    raise ConfigError(
        f"segment {name!r} is {segment!r}: write it as (start, end), with None for an open end"
    )


class DatasetH:
    """A handler's data in named segments; each segment is a pair of inclusive dates.

    Parameters
    ----------
    handler : DataHandlerLP or dict
        The handler, or its config (``{"class": "Alpha158", "kwargs": {...}}``).
    segments : dict
        ``{"train": (start, end), "valid": (start, end), "test": (start, end)}``; dates need not
        be trading days, ``None`` is open-ended.
    fetch_kwargs : dict, optional
        Extra keyword arguments for every ``handler.fetch`` call.

    Notes
    -----
    When the handler has no fit range of its own (``fit_start_time`` and ``fit_end_time`` both
    ``None``), its fit-range processors are fitted on this dataset's ``train`` segment, so each
    rolling window fits on its own train data (Qlib keeps the first window's range for ever).

    Raises
    ------
    SegmentError
        If a segment has trading days outside the handler's ``[start_time, end_time]``.

    Examples
    --------
    >>> from qroll.data.handler import Alpha158
    >>> market = "synthetic://?instruments=3&start=2020-01-01&end=2020-06-30&seed=0"
    >>> handler = Alpha158(instruments="all", start_time="2020-03-02", end_time="2020-03-31",
    ...                    source=market, cache=False)
    >>> ds = DatasetH(handler, {"train": ("2020-03-02", "2020-03-20"), "test": ("2020-03-23", "2020-03-31")})
    >>> ds.prepare("test", col_set="feature").shape  # 7 trading days x 3 instruments, 158 features
    (21, 158)
    >>> ds.prepare("train", col_set=["feature", "label"], data_key="learn").columns[-1]
    ('label', 'LABEL0')
    """

    def __init__(
        self, handler: Any, segments: Mapping[str, Any], fetch_kwargs: Mapping[str, Any] | None = None
    ) -> None:
        self.handler: DataHandlerLP = init_instance_by_config(
            handler, default_module="qroll.data.handler", accept_types=DataHandlerLP
        )
        if not isinstance(segments, Mapping):
            raise ConfigError(f"segments must be a dict of name -> (start, end), not {segments!r}")
        self.segments = {name: _as_slice(name, seg) for name, seg in segments.items()}
        self.fetch_kwargs = dict(fetch_kwargs or {})
        for name, seg in self.segments.items():
            self.handler.check_segment(name, seg)

    def __repr__(self) -> str:
        segs = {k: (v.start, v.stop) for k, v in self.segments.items()}
        return f"DatasetH(handler={self.handler!r}, segments={segs!r}, fetch_kwargs={self.fetch_kwargs!r})"

    def _fit_on_train(self) -> None:
        train = self.segments.get(TRAIN_KEY)
        if train is not None:
            self.handler.set_fit_range(train.start, train.stop)

    def _prepare_seg(self, slc: slice, **kwargs: Any) -> pd.DataFrame:
        return self.handler.fetch(slc, **{**kwargs, **self.fetch_kwargs})

    def prepare(
        self,
        segments: str | list[str] | tuple[str, ...] | slice,
        col_set: str | list[str] = DataHandlerLP.CS_ALL,
        data_key: str = DataHandlerLP.DK_I,
        **kwargs: Any,
    ) -> pd.DataFrame | list[pd.DataFrame]:
        """The data of one segment, or a list for several.

        Parameters
        ----------
        segments : str, list of str or slice
            Segment name(s), or a ``slice(start, end)`` of dates.
        col_set : str or list of str
            ``"__all"`` (plain names), ``"feature"``, ``"label"``, ``["feature", "label"]``, ...
        data_key : {"infer", "learn", "raw"}
            ``"learn"`` for training data, ``"infer"`` (default) for prediction, ``"raw"`` for the
            unprocessed label.

        Raises
        ------
        ConfigError
            If a segment name is not one of this dataset's.
        """
        self._fit_on_train()
        seg_kwargs = {"col_set": col_set, "data_key": data_key, **kwargs}
        if isinstance(segments, slice):
            return self._prepare_seg(segments, **seg_kwargs)
        names = [segments] if isinstance(segments, str) else list(segments)
        unknown = [n for n in names if n not in self.segments]
        if unknown:
            raise ConfigError(
                f"segment(s) {unknown} are not in this dataset: it has {list(self.segments)}"
            )
        frames = [self._prepare_seg(self.segments[n], **seg_kwargs) for n in names]
        return frames[0] if isinstance(segments, str) else frames
