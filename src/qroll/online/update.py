"""Extend a trained window's predictions (or labels) to later days: Qlib's updaters, fixed.

Qlib's :class:`PredUpdater` re-predicts a run from the day after its last prediction up to a
``to_date`` and **overwrites** ``pred.pkl``. qroll keeps Qlib's semantics (the first day is the
day after the last complete row, or ``from_date``; ``to_date`` is clipped to the data's calendar;
only ``[from, to]`` is replaced; a ``hist_ref`` warm-up; nothing happens when the run is up to
date, and a second call does nothing) with three differences:

- the test window's artifact (``pred.pkl``) is never rewritten: the new days go to an artifact of
  their own beside it, ``pred_online.pkl`` (``label_online.pkl``), holding only days after the
  stored artifact's last complete day; :func:`load_online` reads the two as one frame;
- the model predicts on an :class:`~qroll.data.asof.AsOfSource` that ends on ``to_date``, so
  nothing after it is visible to a prediction, and the model is never refitted (its processors are
  refitted on its own train segment, which is what training fitted them on: qroll stores the
  dataset's config, not fitted processors). The features come from the feature cache of the
  run's home, cut at ``to_date`` (:meth:`~qroll.data.cache.FeatureCache.load` serves an as-of
  view from the data's entry, extending it by the new days first), not computed again;
- an empty stored prediction is "nothing to extend" (Qlib raises "NaT is not trading day", O9).

``to_date`` defaults, as in Qlib, to the data's last day; :class:`~qroll.online.OnlineManager`
always passes its as-of day.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from qroll.config import accepts_keyword, init_instance_by_config, resolve_class
from qroll.data.asof import AsOfSource
from qroll.data.dataset import DatasetH
from qroll.data.source import Source, open_source
from qroll.data.uri import DEFAULT_SOURCE
from qroll.errors import ConfigTypeError, ConfigValueError, LoadObjectError
from qroll.home import data_uri
from qroll.record import Recorder
from qroll.record.records import SignalRecord
from qroll.record.tags import TAG_EXTENDED
from qroll.tasks.shape import DEFAULT_TEST_KEY, TEST_KEY_PARAM, format_day

__all__ = ["DSBasedUpdater", "LabelUpdater", "PredUpdater", "extension_name", "load_online"]

log = logging.getLogger("qroll.online")

def extension_name(fname: str) -> str:
    """The artifact holding the online extension of artifact ``fname``.

    >>> extension_name("pred.pkl"), extension_name("sig/label.pkl")
    ('pred_online.pkl', 'sig/label_online.pkl')
    """
    path = PurePosixPath(fname)
    return str(path.with_name(f"{path.stem}_online{path.suffix}"))


def _frame(obj: Any) -> pd.DataFrame:
    """An artifact as a frame: a Series becomes a ``score`` column, None an empty frame."""
    if obj is None:
        return pd.DataFrame()
    if isinstance(obj, pd.Series):
        return obj.to_frame(obj.name if obj.name is not None else "score")
    return obj


def _dates(frame: pd.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(frame.index.get_level_values("datetime"))


def _last_complete(frame: pd.DataFrame) -> pd.Timestamp | None:
    """The last day with a complete row (Qlib: ``dropna()`` then the latest date), or None."""
    if frame.empty:
        return None
    full = frame.dropna()
    return None if full.empty else _dates(full).max()


def _combine(stored: pd.DataFrame, extension: pd.DataFrame | None) -> pd.DataFrame:
    if extension is None or extension.empty:
        return stored
    if stored.empty:
        return extension.sort_index()
    both = pd.concat([stored, extension])
    # The extension redoes the stored artifact's incomplete last days (labels not known yet).
    return both[~both.index.duplicated(keep="last")].sort_index()


def _has_extension(rec: Recorder, name: str) -> bool:
    return name in (rec.tags.get(TAG_EXTENDED) or "").split(",")


def load_online(rec: Recorder, fname: str = "pred.pkl", as_of: Any = None) -> pd.DataFrame:
    """A run's artifact ``fname`` with its online extension, as one frame, cut at ``as_of``.

    Parameters
    ----------
    rec : Recorder
        A trained window's run.
    fname : str, default "pred.pkl"
        The stored artifact; its extension is :func:`extension_name` of it.
    as_of : date, optional
        Keep the days up to this one (inclusive).

    Returns
    -------
    DataFrame
        Indexed by (``datetime``, ``instrument``), sorted; the extension's rows win over the
        stored artifact's incomplete last days.

    Raises
    ------
    LoadObjectError
        If the run has no ``fname`` (a delay trainer's run not fitted yet, say).
    """
    stored = _frame(rec.load_object(fname))
    extension = None
    ext = extension_name(fname)
    if _has_extension(rec, ext):
        try:
            extension = _frame(rec.load_object(ext))
        except LoadObjectError:  # tagged, then interrupted before the first write
            extension = None
    frame = _combine(stored, extension)
    if as_of is not None and not frame.empty:
        frame = frame[_dates(frame) <= pd.Timestamp(as_of)]
    return frame


def _check_hist_ref(hist_ref: Any) -> int:
    if hist_ref is None:
        return 0
    if isinstance(hist_ref, bool) or not isinstance(hist_ref, int) or hist_ref < 0:
        raise ConfigValueError(f"hist_ref={hist_ref!r} must be a number of trading days >= 0, or None")
    return hist_ref


def _day(value: Any, what: str) -> pd.Timestamp:
    try:
        day = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ConfigTypeError(f"{what}={value!r} is not a date: give one such as '2018-03-01'") from exc
    if day is pd.NaT:
        raise ConfigTypeError(f"{what}={value!r} is not a date: give one such as '2018-03-01'")
    return day


class DSBasedUpdater:
    """Extend a run's artifact ``fname`` by re-running its model on a rebuilt dataset (Qlib's).

    Subclasses say what to compute on the new days (:meth:`get_update_data`).

    Parameters
    ----------
    record : Recorder
        The run of a trained window (it holds ``task``-derived ``dataset``, ``params.pkl`` and
        ``fname``).
    to_date : date, optional
        The last day to reach; a non-trading day aligns back to the trading day before, a day
        after the data's last day is clipped to it. Default: the data's last day (Qlib's).
    from_date : date, optional
        Recompute from this day (aligned forward to a trading day) instead of from the day after
        the last complete row; never from a day the stored artifact already covers.
    hist_ref : int, optional
        Trading days of history the handler must load before the first new day. qroll's handler
        keeps the run's own ``start_time`` (its processors are refitted on the train segment) and
        computes every expression's look-back over the whole calendar, so the warm-up is always
        there; a ``hist_ref`` that reaches before the handler's start moves the start earlier.
    freq : {"day"}
        The data frequency; only daily data.
    fname : str, default "pred.pkl"
        The stored artifact, never rewritten; the new days go to :func:`extension_name` of it.
    source : Source or str, optional
        The data; default the run's handler ``source``, else ``$QROLL_DATA`` or the default market.

    Attributes
    ----------
    to_date : pandas.Timestamp
        The trading day the update reaches.
    from_date : pandas.Timestamp or None
        The first day to compute; None when there is nothing to extend.
    last_end : pandas.Timestamp or None
        The last complete day of the stored artifact and its extension (None: empty).

    Raises
    ------
    LoadObjectError
        If the run has no ``fname`` or no ``dataset`` (as Qlib, which skips such a run with a
        warning in :meth:`~qroll.online.OnlineToolR.update_online_pred`).
    ConfigValueError, ConfigTypeError
        For a ``freq`` other than ``"day"``, a bad ``hist_ref`` or a date that is not one.
    """

    def __init__(
        self,
        record: Recorder,
        to_date: Any = None,
        from_date: Any = None,
        hist_ref: int | None = None,
        freq: str = "day",
        fname: str = "pred.pkl",
        *,
        source: Source | str | None = None,
    ) -> None:
        if freq != "day":
            raise ConfigValueError(f"freq={freq!r} is not supported: qroll's online updates read daily "
                                   "data ('day')")
        self.record = record
        self.fname = fname
        self.ext_fname = extension_name(fname)
        self.freq = freq
        self.hist_ref = _check_hist_ref(hist_ref)
        self.dataset_config: Mapping[str, Any] = record.load_object("dataset")
        self.source = self._open(source)
        days = self.source.calendar.days
        to = days[-1] if to_date is None else _day(to_date, "to_date")
        if to > days[-1]:
            log.info("to_date %s is after the data's last day %s: updating run %s to %s",
                     format_day(to), format_day(days[-1]), record.id, format_day(days[-1]))
            to = days[-1]
        pos = int(days.searchsorted(to, side="right")) - 1
        if pos < 0:
            raise ConfigValueError(f"to_date {format_day(to)} is before the data's first day "
                                   f"{format_day(days[0])}: nothing to update")
        self.to_date: pd.Timestamp = days[pos]
        self.stored = _frame(record.load_object(fname))
        self.extension: pd.DataFrame | None = None
        if _has_extension(record, self.ext_fname):
            try:
                self.extension = _frame(record.load_object(self.ext_fname))
            except LoadObjectError:
                self.extension = None
        stored_end = _last_complete(self.stored)
        self.last_end = _last_complete(_combine(self.stored, self.extension))
        start: pd.Timestamp | None
        if from_date is not None:
            at = int(days.searchsorted(_day(from_date, "from_date"), side="left"))
            start = days[at] if at < len(days) else None
        elif self.last_end is not None:
            at = int(days.searchsorted(self.last_end, side="right"))
            start = days[at] if at < len(days) else None
        else:
            start = None  # an empty prediction: nothing to extend from (Qlib: "NaT is not trading day")
        if start is not None and stored_end is not None and start <= stored_end:
            # The test window's artifact stays as trained: only later days are ever computed.
            at = int(days.searchsorted(stored_end, side="right"))
            start = days[at] if at < len(days) else None
        self.from_date = start

    def __repr__(self) -> str:
        start = format_day(self.from_date) if self.from_date is not None else None
        return (f"{type(self).__name__}(record={self.record.id!r}, fname={self.fname!r}, "
                f"from_date={start!r}, to_date={format_day(self.to_date)!r})")

    def _handler_source(self) -> Any:
        handler = (self.dataset_config.get("kwargs") or {}).get("handler")
        kwargs = handler.get("kwargs") if isinstance(handler, Mapping) else None
        return kwargs.get("source") if isinstance(kwargs, Mapping) else None

    def _open(self, source: Source | str | None) -> Source:
        chosen = source if source is not None else self._handler_source()
        if isinstance(chosen, AsOfSource):
            chosen = chosen.source
        if chosen is None or isinstance(chosen, str):
            # Opened afresh on every update: a data directory that gained days shows them.
            return open_source(chosen or data_uri() or DEFAULT_SOURCE)
        return chosen

    def _test_key(self, segments: Mapping[str, Any]) -> str:
        key = self.record.params.get(TEST_KEY_PARAM) or DEFAULT_TEST_KEY
        return key if key in segments or not segments else DEFAULT_TEST_KEY

    def prepare_data(self, unprepared_dataset: DatasetH | None = None) -> DatasetH:
        """The run's dataset rebuilt for the new days ``[from_date, to_date]`` on the as-of data.

        The stored dataset config is kept (its train segment, on which the processors are
        refitted as training fitted them); the handler reads an
        :class:`~qroll.data.asof.AsOfSource` ending on ``to_date`` through the feature cache of
        the run's home (an as-of view of the data's entry), and the test segment is the new days.
        ``unprepared_dataset`` is returned as given (Qlib's hook for a dataset built elsewhere).
        """
        if unprepared_dataset is not None:
            return unprepared_dataset
        if self.from_date is None:
            raise ConfigValueError(f"run {self.record.id} has nothing to extend: no dataset to prepare")
        cfg = copy.deepcopy(dict(self.dataset_config))
        kwargs = dict(cfg.get("kwargs") or {})
        handler = kwargs.get("handler")
        days = self.source.calendar.days
        if isinstance(handler, Mapping):
            handler = dict(handler)
            hk = dict(handler.get("kwargs") or {})
            hk["source"] = AsOfSource(self.source, self.to_date)
            hk["end_time"] = self.to_date
            home = getattr(self.record.manager, "home", None)
            if home is not None and _accepts(handler, "home"):
                hk.setdefault("home", str(home))  # the run's cache, as training used it
            if self.hist_ref:
                warm = days[max(0, int(days.searchsorted(self.from_date)) - self.hist_ref)]
                start = hk.get("start_time")
                if start is None or warm < pd.Timestamp(start):
                    hk["start_time"] = warm
            handler["kwargs"] = hk
            kwargs["handler"] = handler
        else:
            log.warning("run %s's handler is %r, not a config: it predicts on it as saved, with no "
                        "as-of cut", self.record.id, handler)
        segments = dict(kwargs.get("segments") or {})
        segments[self._test_key(segments)] = (self.from_date, self.to_date)
        kwargs["segments"] = segments
        cfg["kwargs"] = kwargs
        dataset: DatasetH = init_instance_by_config(cfg, default_module="qroll.data.dataset",
                                                    accept_types=DatasetH)
        return dataset

    def get_update_data(self, dataset: DatasetH) -> pd.DataFrame:
        """The new rows computed on ``dataset`` (subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_update_data()")

    def _replace_range(self, old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
        """Qlib's: drop the old rows within the new rows' dates, add the new, sort."""
        if old is None or old.empty:
            return new.sort_index()
        if new.empty:
            return old
        dates = _dates(old)
        new_dates = _dates(new)
        kept = old[(dates < new_dates.min()) | (dates > new_dates.max())]
        both = pd.concat([kept, new])
        return both[~both.index.duplicated(keep="last")].sort_index()

    def update(self, dataset: DatasetH | None = None, write: bool = True,
               ret_new: bool = False) -> pd.DataFrame | None:
        """Compute ``[from_date, to_date]`` and store it in the extension artifact.

        Parameters
        ----------
        dataset : DatasetH, optional
            A dataset to use instead of :meth:`prepare_data`'s.
        write : bool, default True
            Save the extension (``False`` computes only).
        ret_new : bool, default False
            Return only the new rows instead of the whole artifact with its extension.

        Returns
        -------
        DataFrame or None
            None when the run is up to date (or has nothing to extend); a second call is a no-op.
        """
        if self.from_date is None or self.from_date > self.to_date:
            log.debug("%s of run %s is up to date (to %s)", self.fname, self.record.id,
                      format_day(self.to_date))
            return None
        data = self.get_update_data(self.prepare_data(dataset))
        if not data.empty:
            dates = _dates(data)
            data = data[(dates >= self.from_date) & (dates <= self.to_date)]
        extension = self._replace_range(self.extension, data)
        if write:
            marked = [n for n in (self.record.tags.get(TAG_EXTENDED) or "").split(",") if n]
            if self.ext_fname not in marked:
                self.record.set_tags(**{TAG_EXTENDED: ",".join(sorted({*marked, self.ext_fname}))})
            self.record.save_objects(None, **{self.ext_fname: extension})
            self.extension = extension
            log.info("extended %s of run %s over %s..%s (%d rows)", self.fname, self.record.id,
                     format_day(self.from_date), format_day(self.to_date), len(data))
        return data if ret_new else _combine(self.stored, extension)


def _accepts(handler: Mapping[str, Any], name: str) -> bool:
    try:
        cls = resolve_class(dict(handler), default_module="qroll.data.handler")
    except Exception:  # an unknown class is the dataset's own error to raise, with its message
        return False
    return accepts_keyword(cls, name)


class PredUpdater(DSBasedUpdater):
    """Extend a run's predictions (``pred.pkl`` → ``pred_online.pkl``) with its stored model.

    Parameters are :class:`DSBasedUpdater`'s; ``fname`` defaults to ``"pred.pkl"``.
    """

    def get_update_data(self, dataset: DatasetH) -> pd.DataFrame:
        """The stored model's (``params.pkl``) predictions on the new days, as a ``score`` frame."""
        model = self.record.load_object("params.pkl")
        return _frame(model.predict(dataset))


class LabelUpdater(DSBasedUpdater):
    """Extend a run's raw labels (``label.pkl`` → ``label_online.pkl``).

    The last days' labels look past ``to_date`` and stay NaN; they are redone by the next update,
    as in Qlib. Parameters are :class:`DSBasedUpdater`'s; ``fname`` defaults to ``"label.pkl"``.
    """

    def __init__(
        self,
        record: Recorder,
        to_date: Any = None,
        from_date: Any = None,
        hist_ref: int | None = None,
        freq: str = "day",
        fname: str = "label.pkl",
        *,
        source: Source | str | None = None,
    ) -> None:
        super().__init__(record, to_date, from_date, hist_ref, freq, fname, source=source)

    def get_update_data(self, dataset: DatasetH) -> pd.DataFrame:
        """The raw label of the new days (:meth:`~qroll.record.SignalRecord.generate_label`)."""
        return _frame(SignalRecord.generate_label(dataset))
