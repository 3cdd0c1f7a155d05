"""Data handlers: raw features and labels, processed for inference and for learning, as in Qlib.

A :class:`DataHandlerLP` keeps three frames, selected by ``data_key`` in :meth:`~DataHandlerLP.fetch`:

============  =======================================================================
``"raw"``     the loaded features and labels
``"infer"``   raw → shared_processors → infer_processors
``"learn"``   ``process_type="append"``: infer → learn_processors;
              ``"independent"``: raw → shared_processors → learn_processors
============  =======================================================================

The raw frame is a slice of the feature cache (:class:`~qroll.data.cache.FeatureCache`, given to
the handler or looked up for its home): the features of the whole calendar are computed once per
source and feature set (and extended by the new days when the data grows), and every handler
(every rolling window) slices its ``[start_time, end_time]`` out of them; a handler on an
:class:`~qroll.data.asof.AsOfSource` gets the view cut out of its source's entry, exactly the
features computing the view would give. Processing is lazy; processors with a
fit range are fitted on ``[fit_start_time, fit_end_time]``, or, when the handler has none, on the
train segment of the :class:`~qroll.data.dataset.DatasetH` that uses it.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

from qroll.config import init_instance_by_config
from qroll.data.cache import FeatureCache
from qroll.data.processors import is_day_local
from qroll.errors import ConfigError, ConfigTypeError, ProcessorError, SegmentError
from qroll.home import data_uri

__all__ = ["Alpha158", "Alpha360", "DataHandlerLP", "fetch_df_by_col", "fetch_df_by_index"]

PROCESSOR_MODULE = "qroll.data.processors"
_QLIB_PROCESSOR_MODULES = ("qlib.data.dataset.processor", "qlib.contrib.data.processor")


def fetch_df_by_index(df: pd.DataFrame, selector: Any, level: str | int | None = "datetime") -> pd.DataFrame:
    """Rows of ``df`` chosen by ``selector`` (a slice, a date, a list) on index ``level``.

    Slices are inclusive at both ends, and their ends need not be in the index.
    """
    if level is None or isinstance(selector, pd.MultiIndex):
        return df.loc[selector]
    if isinstance(selector, slice) and selector == slice(None, None):
        return df
    position = df.index.names.index(level) if isinstance(level, str) else level
    rows = _sorted_date_rows(df, selector) if position == 0 else None
    if rows is not None:
        return df.iloc[rows[0] : rows[1]]
    key: list[Any] = [slice(None)] * df.index.nlevels
    key[position] = selector
    return df.loc[tuple(key), :]


def _full_date(value: Any) -> bool:
    # A partial string ("2015-06") means a whole month to pandas: leave those to .loc.
    return value is None or (isinstance(value, str) and len(value) >= 10) or isinstance(
        value, pd.Timestamp | datetime.date
    )


def _sorted_date_rows(df: pd.DataFrame, selector: Any) -> tuple[int, int] | None:
    """Row positions ``[a, b)`` of a date slice on level 0 of a date-sorted index, or None.

    A positional slice is a view, where ``.loc`` on a MultiIndex copies the rows: every rolling
    window slices the cached frame without copying it.
    """
    index = df.index
    if not (isinstance(index, pd.MultiIndex) and isinstance(selector, slice) and selector.step is None):
        return None
    if not (_full_date(selector.start) and _full_date(selector.stop)):
        return None
    dates, codes = index.levels[0], np.asarray(index.codes[0])
    if not isinstance(dates, pd.DatetimeIndex) or not dates.is_monotonic_increasing:
        return None
    if len(codes) > 1 and bool(np.any(codes[1:] < codes[:-1])):
        return None
    start, stop = selector.start, selector.stop
    lo = 0 if start is None else int(dates.searchsorted(pd.Timestamp(start), "left"))
    hi = len(dates) if stop is None else int(dates.searchsorted(pd.Timestamp(stop), "right"))
    return int(np.searchsorted(codes, lo, "left")), int(np.searchsorted(codes, hi, "left"))


def fetch_df_by_col(df: pd.DataFrame, col_set: str | list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Columns of ``df`` by ``col_set``: ``"__all"`` (group level dropped), ``"__raw"``, a group or groups."""
    if not isinstance(df.columns, pd.MultiIndex) or col_set == DataHandlerLP.CS_RAW:
        return df
    if col_set == DataHandlerLP.CS_ALL:
        return df.droplevel(axis=1, level=0)
    groups = df.columns.get_level_values(0).unique().tolist()
    wanted = [col_set] if isinstance(col_set, str) else list(col_set)
    unknown = [g for g in wanted if g not in groups]
    if unknown:
        raise ConfigError(
            f"col_set={col_set!r} names no column group {unknown} of the data (groups: {groups}); "
            "use '__all', '__raw', a group or a list of groups"
        )
    return df.loc(axis=1)[col_set]


def _processor_key(proc: Any) -> tuple[str, str]:
    """A processor's class and arguments, as a hashable key."""
    return f"{type(proc).__module__}.{type(proc).__qualname__}", repr(sorted(vars(proc).items()))


def _feature_pair(value: Any, what: str) -> tuple[list[str], list[str]]:
    """Qlib's loader config for a group: a list of expressions, or (expressions, names)."""
    pair = isinstance(value, tuple | list) and len(value) == 2
    if pair and all(isinstance(v, list | tuple) for v in value):
        exprs, names = list(value[0]), list(value[1])
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        exprs, names = list(value), list(value)
    else:
        raise ConfigError(
            f"the {what} config {value!r} is neither a list of expressions nor (expressions, names)"
        )
    if len(exprs) != len(names):
        raise ConfigError(f"the {what} config has {len(exprs)} expressions but {len(names)} names")
    return exprs, names


def _takes_fit_range(klass: Any) -> bool:
    try:
        params = inspect.signature(klass).parameters
    except (TypeError, ValueError):
        return False
    return "fit_start_time" in params and "fit_end_time" in params


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("<") and value.endswith(">")


class DataHandlerLP:
    """Features and labels with inference and learning processors (Qlib's ``DataHandlerLP``).

    Parameters
    ----------
    instruments : str or list of str, optional
        A market name of the source (``"csi300"``, ``"all"``) or a list of symbols.
    start_time, end_time : date, optional
        The handler's time range, inclusive; ``None`` is open-ended.
    data_loader : dict or DataFrame, optional
        Qlib's ``{"class": "QlibDataLoader", "kwargs": {"config": {"feature": ..., "label": ...}}}``
        (each group a list of expressions or ``(expressions, names)``), the inner
        ``{"feature": ..., "label": ...}``, or a ready frame in the handler layout.
    infer_processors, learn_processors, shared_processors : list, optional
        Processor objects, configs ``{"class": "RobustZScoreNorm", "kwargs": {...}}`` or class names.
    process_type : {"append", "independent"}
        Whether learn processors run on the infer data (append) or on the shared data.
    drop_raw : bool
        Forget the raw frame once processed.
    fit_start_time, fit_end_time : date, optional
        The fit range of processors that take one; ``None`` lets a ``DatasetH`` use its train
        segment.
    source : Source or str, optional
        The market data, or its URI; default ``$QROLL_DATA`` (read when the handler is built) or
        the embedded synthetic market.
    cache : bool or FeatureCache, default True
        The feature cache to read and write: a :class:`~qroll.data.cache.FeatureCache`, True for
        the one of ``home``, or False to compute the features without any cache.
    home : path, optional
        The qroll home whose cache ``cache=True`` uses; default ``$QROLL_HOME`` or
        ``./qroll_runs`` (see :func:`qroll.home.qroll_home`). A task trained by
        :func:`~qroll.train.task_train` gets its run's home here.
    """

    DK_R, DK_I, DK_L = "raw", "infer", "learn"
    PTYPE_A, PTYPE_I = "append", "independent"
    CS_ALL, CS_RAW = "__all", "__raw"

    def __init__(
        self,
        instruments: str | Sequence[str] | None = None,
        start_time: Any = None,
        end_time: Any = None,
        data_loader: Mapping[str, Any] | pd.DataFrame | None = None,
        infer_processors: Sequence[Any] | None = None,
        learn_processors: Sequence[Any] | None = None,
        shared_processors: Sequence[Any] | None = None,
        process_type: str = PTYPE_A,
        drop_raw: bool = False,
        fit_start_time: Any = None,
        fit_end_time: Any = None,
        source: Any = None,
        cache: bool | FeatureCache = True,
        home: str | os.PathLike[str] | None = None,
    ) -> None:
        if process_type not in (self.PTYPE_A, self.PTYPE_I):
            raise ConfigError(f"process_type={process_type!r} is unknown: use 'append' or 'independent'")
        self.instruments = instruments if instruments is not None else "all"
        self.start_time, self.end_time = start_time, end_time
        self.fit_start_time, self.fit_end_time = fit_start_time, fit_end_time
        self.process_type = process_type
        self.drop_raw = drop_raw
        if not isinstance(cache, bool | FeatureCache):
            raise ConfigTypeError(f"cache={cache!r} must be True, False or a FeatureCache; give the cache's "
                                  "folder as home=...")
        self.cache: FeatureCache | None = (
            cache if isinstance(cache, FeatureCache) else FeatureCache.at(home) if cache else None
        )
        # A URI is opened on first use; the environment's default is read now, once.
        self._source_arg = source if source is not None else data_uri()
        self._loader = data_loader
        self.infer_processors = list(infer_processors or [])
        self.learn_processors = list(learn_processors or [])
        self.shared_processors = list(shared_processors or [])
        # Build once now so an unknown class or an inference-unsafe processor fails at construction.
        self._chains(None, None)
        self._data: pd.DataFrame | None = None
        # The cached frame of the whole calendar that _data slices (cache path only): the key to
        # the processed frames handlers share (FeatureCache.processed).
        self._full: pd.DataFrame | None = None
        self._processed: tuple[Any, pd.DataFrame, pd.DataFrame] | None = None
        self._dataset_fit: tuple[Any, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(instruments={self.instruments!r}, start_time={self.start_time!r}, "
            f"end_time={self.end_time!r}, fit_start_time={self.fit_start_time!r}, "
            f"fit_end_time={self.fit_end_time!r}, process_type={self.process_type!r})"
        )

    # -- loading ---------------------------------------------------------------------------------

    @property
    def source(self) -> Any:
        """The data source (opened on first use)."""
        if self._source_arg is None or isinstance(self._source_arg, str):
            from qroll.data.source import open_source
            from qroll.data.uri import DEFAULT_SOURCE

            self._source_arg = open_source(self._source_arg or DEFAULT_SOURCE)
        return self._source_arg

    def feature_config(self) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
        """``((feature expressions, names), (label expressions, names))`` of the data loader."""
        loader = self._loader
        if loader is None:
            raise ConfigError(f"{type(self).__name__} has no data_loader: give one, or use Alpha158/Alpha360")
        if isinstance(loader, Mapping) and "class" in loader:
            loader = (loader.get("kwargs") or {}).get("config", {})
        if not isinstance(loader, Mapping) or "feature" not in loader:
            raise ConfigError(
                f"data_loader {loader!r} has no 'feature' config: give "
                "{'feature': (exprs, names), 'label': (exprs, names)}"
            )
        label = loader.get("label", ([], []))
        return _feature_pair(loader["feature"], "feature"), _feature_pair(label, "label")

    def _load_all(self) -> pd.DataFrame:
        if isinstance(self._loader, pd.DataFrame):
            return self._loader.sort_index()
        feature, label = self.feature_config()
        if self.cache is None:
            from qroll.data.features import compute_features

            return compute_features(self.source, feature[0], feature[1], label[0], label[1], self.instruments)
        # The entry is written while this handler processes the frame.
        return self.cache.load(self.source, self.instruments, feature, label, background=True)

    def _calendar(self) -> pd.DatetimeIndex:
        if isinstance(self._loader, pd.DataFrame):
            return pd.DatetimeIndex(self._loader.index.get_level_values("datetime").unique()).sort_values()
        return self.source.calendar.days

    @staticmethod
    def _clip(calendar: pd.DatetimeIndex, start: Any, end: Any) -> pd.DatetimeIndex:
        lo = 0 if start is None else calendar.searchsorted(pd.Timestamp(start), "left")
        hi = len(calendar) if end is None else calendar.searchsorted(pd.Timestamp(end), "right")
        return calendar[lo:hi]

    def days(self) -> pd.DatetimeIndex:
        """The trading days of the handler's range (from the source calendar or the given frame)."""
        return self._clip(self._calendar(), self.start_time, self.end_time)

    def setup_data(self) -> None:
        """Load the raw frame of ``[start_time, end_time]`` (done on first fetch otherwise)."""
        if self._data is None:
            full = self._load_all()
            self._data = fetch_df_by_index(full, slice(self.start_time, self.end_time), "datetime")
            if self.cache is not None and not isinstance(self._loader, pd.DataFrame):
                self._full = full

    # -- processing --------------------------------------------------------------------------------

    def set_fit_range(self, start: Any, end: Any) -> None:
        """The fit range to use when the handler has none of its own (a dataset's train segment)."""
        self._dataset_fit = (start, end)

    def _fit_range(self) -> tuple[Any, Any]:
        if self.fit_start_time is not None or self.fit_end_time is not None:
            return self.fit_start_time, self.fit_end_time
        return self._dataset_fit or (None, None)

    def _build(self, spec: Any, fit: tuple[Any, Any], where: str) -> Any:
        from qroll.data.processors import Processor

        if isinstance(spec, Processor):
            proc = spec
            if _takes_fit_range(type(proc)) and proc.fit_start_time is None and proc.fit_end_time is None:  # type: ignore[attr-defined]
                proc = copy.copy(proc)
                proc.fit_start_time, proc.fit_end_time = fit  # type: ignore[attr-defined]
        else:
            module_path = str(spec.get("module_path", "")) if isinstance(spec, Mapping) else ""
            if module_path.startswith(_QLIB_PROCESSOR_MODULES):
                spec = {k: v for k, v in spec.items() if k != "module_path"}
            if not isinstance(spec, Mapping | str | type):
                raise ConfigError(
                    f"{where} processor {spec!r} is neither a Processor, a config nor a class name"
                )
            proc = init_instance_by_config(spec, default_module=PROCESSOR_MODULE, accept_types=Processor)
            given = dict(spec.get("kwargs") or {}) if isinstance(spec, Mapping) else {}
            if _takes_fit_range(type(proc)) and fit != (None, None):
                # Qlib's check_transform_proc: a configured processor gets the handler's fit range.
                given.setdefault("fit_start_time", fit[0])
                given.setdefault("fit_end_time", fit[1])
                proc = init_instance_by_config(
                    {"class": type(proc), "kwargs": given}, accept_types=Processor
                )
        if where != "learn" and not proc.is_for_infer():
            raise ConfigError(
                f"{type(proc).__name__} cannot be an {where} processor (it drops rows inference "
                "needs); move it to learn_processors"
            )
        return proc

    def _chains(self, start: Any, end: Any) -> tuple[list[Any], list[Any], list[Any]]:
        fit = (start, end)
        return (
            [self._build(p, fit, "shared") for p in self.shared_processors],
            [self._build(p, fit, "infer") for p in self.infer_processors],
            [self._build(p, fit, "learn") for p in self.learn_processors],
        )

    @staticmethod
    def _run(df: pd.DataFrame, chain: list[Any]) -> pd.DataFrame:
        for proc in chain:
            proc.fit(df)
            df = proc(df)
        return df

    def _needs_fit(self) -> list[str]:
        shared, infer, learn = self._chains(None, None)
        return [
            type(p).__name__
            for p in shared + infer + learn
            if _takes_fit_range(type(p)) and p.fit_start_time is None and p.fit_end_time is None
        ]

    def process_data(self) -> None:
        """Fit the processors and build the infer and learn frames (done on first fetch otherwise)."""
        needs = self._needs_fit()
        # Without fit-range processors the result does not depend on the fit range: process once.
        fit = self._fit_range() if needs else (None, None)
        if self._processed is not None and self._processed[0] == fit:
            return
        if needs and (fit == (None, None) or any(_is_placeholder(v) for v in fit)):
            verb = "needs" if len(needs) == 1 else "need"
            raise ProcessorError(
                f"{', '.join(needs)} {verb} a fit range, but the handler has "
                f"fit_start_time={fit[0]!r}, fit_end_time={fit[1]!r}: give both, or use the handler "
                "through DatasetH, which then fits on its train segment"
            )
        self.setup_data()
        raw = self._data
        if raw is None:
            raise ProcessorError(
                f"{type(self).__name__} dropped its raw data (drop_raw=True) and cannot refit"
            )
        chains = self._chains(*fit)
        full, cache = self._full, self.cache
        day_local = all(is_day_local(p) for chain in chains for p in chain)
        if not needs and full is not None and cache is not None and day_local:
            # Day-local processors: process from the start to the last cached day once for all
            # the handlers that share it, and take this handler's days as a view.
            start = self.start_time
            key = (None if start is None else pd.Timestamp(start), self.process_type,
                   *(tuple(_processor_key(p) for p in chain) for chain in chains))
            infer_all, learn_all = cache.processed(
                full, key, lambda: self._process(fetch_df_by_index(full, slice(start, None)), *chains))
            until = slice(None, self.end_time)
            # No shared or infer processor: infer is the raw frame itself, as below.
            infer_df = raw if not (chains[0] or chains[1]) else fetch_df_by_index(infer_all, until)
            learn_df = fetch_df_by_index(learn_all, until)
        else:
            infer_df, learn_df = self._process(raw, *chains)
        self._processed = (fit, infer_df, learn_df)
        if self.drop_raw:
            self._data = self._full = None

    def _process(self, raw: pd.DataFrame, shared: list[Any], infer_chain: list[Any],
                 learn_chain: list[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
        shared_df = self._run(raw, shared)
        infer_df = self._run(shared_df, infer_chain)
        base = infer_df if self.process_type == self.PTYPE_A else shared_df
        return infer_df, self._run(base, learn_chain)

    def _frame(self, data_key: str) -> pd.DataFrame:
        if data_key == self.DK_R:
            self.setup_data()
            if self._data is None:
                raise ProcessorError("the raw data were dropped (drop_raw=True): fetch 'infer' or 'learn'")
            return self._data
        if data_key not in (self.DK_I, self.DK_L):
            raise ConfigError(f"data_key={data_key!r} is unknown: use 'raw', 'infer' or 'learn'")
        self.process_data()
        assert self._processed is not None
        return self._processed[1] if data_key == self.DK_I else self._processed[2]

    def fetch(
        self,
        selector: Any = slice(None, None),
        level: str | int | None = "datetime",
        col_set: str | list[str] | tuple[str, ...] = CS_ALL,
        data_key: str = DK_I,
        squeeze: bool = False,
        proc_func: Any = None,
    ) -> pd.DataFrame:
        """Rows by ``selector`` on ``level``, columns by ``col_set``, from the ``data_key`` frame.

        Parameters
        ----------
        selector : slice, date or list
            ``slice(start, end)`` is inclusive at both ends; the default takes every row.
        level : str, int or None
            The index level the selector applies to (``None``: the whole index).
        col_set : str or list of str
            ``"__all"`` (plain column names), ``"__raw"`` (as stored), ``"feature"``, ``"label"``,
            or a list of groups (two-level columns kept).
        data_key : {"raw", "infer", "learn"}
            Which frame (see the module docstring).
        squeeze : bool
            Squeeze a single column to a Series.
        proc_func : callable, optional
            Applied to the whole frame before selecting.
        """
        df = self._frame(data_key)
        if proc_func is not None:
            df = proc_func(df)
        df = fetch_df_by_col(fetch_df_by_index(df, selector, level), col_set)
        # Typed as a frame for the common case; squeeze=True callers know they may get a Series.
        return cast(pd.DataFrame, df.squeeze()) if squeeze else df

    def get_cols(self, col_set: str | list[str] = CS_ALL, data_key: str = DK_I) -> list[Any]:
        """The column names :meth:`fetch` returns for ``col_set``."""
        return list(fetch_df_by_col(self._frame(data_key).iloc[:0], col_set).columns)

    def check_segment(self, name: str, segment: Any) -> None:
        """Raise SegmentError if ``segment`` ``(start, end)`` has trading days outside the handler's.

        Both are aligned to trading days first, so a segment ending on a Sunday fits a handler
        ending on the Friday before.
        """
        start, end = (segment.start, segment.stop) if isinstance(segment, slice) else tuple(segment)
        calendar = self._calendar()
        own = self._clip(calendar, self.start_time, self.end_time)
        seg = self._clip(calendar, start, end)
        if len(seg) == 0 or len(own) == 0 or seg[0] < own[0] or seg[-1] > own[-1]:
            span = f"{own[0].date()}..{own[-1].date()}" if len(own) else "no trading day"
            raise SegmentError(
                f"segment {name!r} {start}..{end} reaches outside the handler's time range "
                f"{self.start_time}..{self.end_time} ({span}): widen the handler's "
                "start_time/end_time or shorten the segment"
            )


_ALPHA158_LEARN = [{"class": "DropnaLabel"}, {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}]
_ALPHA360_INFER = [
    {"class": "ProcessInf", "kwargs": {}},
    {"class": "ZScoreNorm", "kwargs": {}},
    {"class": "Fillna", "kwargs": {}},
]


class _AlphaHandler(DataHandlerLP):
    def __init__(
        self,
        instruments: str | Sequence[str] = "csi500",
        start_time: Any = None,
        end_time: Any = None,
        freq: str = "day",
        infer_processors: Sequence[Any] | None = None,
        learn_processors: Sequence[Any] | None = None,
        fit_start_time: Any = None,
        fit_end_time: Any = None,
        process_type: str = DataHandlerLP.PTYPE_A,
        filter_pipe: Any = None,
        inst_processors: Any = None,
        label: tuple[Sequence[str], Sequence[str]] | None = None,
        source: Any = None,
        **kwargs: Any,
    ) -> None:
        if freq != "day":
            raise ConfigError(f"freq={freq!r} is not supported: qroll handlers read daily data ('day')")
        for name, value in (("filter_pipe", filter_pipe), ("inst_processors", inst_processors)):
            if value:
                raise ConfigError(f"{name}={value!r} is not supported by qroll yet; remove it")
        from qroll.data.features import DEFAULT_LABEL

        config = {"feature": self.get_feature_config(), "label": label or DEFAULT_LABEL}
        super().__init__(
            instruments=instruments,
            start_time=start_time,
            end_time=end_time,
            data_loader=config,
            infer_processors=self._default_infer() if infer_processors is None else infer_processors,
            learn_processors=_ALPHA158_LEARN if learn_processors is None else learn_processors,
            process_type=process_type,
            fit_start_time=fit_start_time,
            fit_end_time=fit_end_time,
            source=source,
            **kwargs,
        )

    def _default_infer(self) -> list[Any]:
        return []

    def get_feature_config(self) -> tuple[list[str], list[str]]:
        raise NotImplementedError


class Alpha158(_AlphaHandler):
    """Qlib's Alpha158: 158 price-volume features and LABEL0, with Qlib's default processors.

    Defaults: ``infer_processors=[]``; ``learn_processors=[DropnaLabel, CSZScoreNorm(label)]``;
    ``label=(["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])``. Other parameters as in
    :class:`DataHandlerLP`.
    """

    def get_feature_config(self) -> tuple[list[str], list[str]]:
        """The 158 expressions and names, in Qlib's order."""
        from qroll.data.features import alpha158_config

        return alpha158_config()


class Alpha360(_AlphaHandler):
    """Qlib's Alpha360: 360 normalised price and volume lags and LABEL0.

    Defaults: ``infer_processors=[ProcessInf, ZScoreNorm, Fillna]`` (all columns, the label
    included; ZScoreNorm needs a fit range), learn processors as :class:`Alpha158`.
    """

    def _default_infer(self) -> list[Any]:
        return list(_ALPHA360_INFER)

    def get_feature_config(self) -> tuple[list[str], list[str]]:
        """The 360 expressions and names, in Qlib's order."""
        from qroll.data.features import alpha360_config

        return alpha360_config()
