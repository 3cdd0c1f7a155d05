"""The data as it was known on one day: :class:`AsOfSource`, a view that hides every later day.

Online rolling (:mod:`qroll.online`) predicts on this view, and a simulation replays the days one
by one on it, so that nothing after the as-of day reaches a prediction: not the calendar, not a
value, not a stored range, not an instrument's membership. Features only look back, so a feature
on a day the view shows equals the full source's; the labels of the view's last days (which look
ahead) are NaN, as they were on that day.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from qroll.calendar import TradingCalendar
from qroll.data.source import Ranges, Source, Spans, ranges_from_values
from qroll.errors import ConfigTypeError, ConfigValueError

__all__ = ["AsOfSource"]


class AsOfSource:
    """A :class:`~qroll.data.source.Source` view of ``source`` that ends on ``as_of``.

    Every member of the source protocol answers as the source would have on ``as_of``: the
    calendar stops at the last trading day on or before it (with no future days: a day after the
    as-of is not known, not even as a date), :meth:`load` and :meth:`stored_ranges` stop there,
    and membership spans are cut there (an instrument listed later is not in any market yet).
    Calendar positions are the source's own, since the view's days are a prefix of its days.

    Parameters
    ----------
    source : Source or str
        The full data, or its URI (opened with :func:`~qroll.data.source.open_source`).
    as_of : date
        The last day visible; a non-trading day shows the trading days before it.

    Attributes
    ----------
    source : Source
        The full data.
    as_of : pandas.Timestamp
        The last trading day the view shows (``as_of`` aligned back to a trading day).
    uri : str
        The source's URI: the view reads the same data. Its :meth:`fingerprint` differs.

    Raises
    ------
    ConfigValueError
        If ``as_of`` is before the source's first trading day.
    ConfigTypeError
        If ``as_of`` is not a date.

    Examples
    --------
    >>> from qroll.data.synthetic import SyntheticMarket
    >>> full = SyntheticMarket(instruments=3, start="2020-01-01", end="2020-03-31", seed=0)
    >>> view = AsOfSource(full, "2020-02-01")  # a Saturday: the view ends on Friday
    >>> view.calendar.last_day.date(), view.load(["close"], ["SYN0001"])["close"].index[-1].date()
    (datetime.date(2020, 1, 31), datetime.date(2020, 1, 31))
    >>> view.fingerprint() != full.fingerprint()
    True
    """

    def __init__(self, source: Source | str, as_of: Any) -> None:
        if isinstance(source, str):
            from qroll.data.source import open_source

            source = open_source(source)
        try:
            wanted = pd.Timestamp(as_of)
        except (TypeError, ValueError) as exc:
            raise ConfigTypeError(f"as_of={as_of!r} is not a date: give one such as '2018-01-05'") from exc
        if wanted is pd.NaT:
            raise ConfigTypeError(f"as_of={as_of!r} is not a date: give one such as '2018-01-05'")
        full = source.calendar
        days = full.days
        self._n = int(days.searchsorted(wanted, side="right"))
        if self._n == 0:
            raise ConfigValueError(
                f"as_of {wanted.date()} is before the first trading day {full.first_day.date()} of "
                f"{getattr(source, 'uri', source)!r}: nothing is known yet on that day"
            )
        self.source = source
        self.uri: str = getattr(source, "uri", type(source).__name__)
        self._calendar = TradingCalendar(days[: self._n])
        self.as_of: pd.Timestamp = self._calendar.last_day

    def __repr__(self) -> str:
        return f"AsOfSource({self.source!r}, as_of={str(self.as_of.date())!r})"

    # -- the protocol --------------------------------------------------------------------------
    @property
    def calendar(self) -> TradingCalendar:
        """The source's trading days up to :attr:`as_of`; no future days."""
        return self._calendar

    def markets(self) -> list[str]:
        """The source's markets."""
        return self.source.markets()

    def fields(self) -> list[str]:
        """The source's fields."""
        return self.source.fields()

    def instruments(self, market: str = "all") -> dict[str, Spans]:
        """Each member's spans cut at :attr:`as_of`; members not yet listed are left out."""
        out: dict[str, Spans] = {}
        for symbol, spans in self.source.instruments(market).items():
            cut = [(first, min(last, self.as_of)) for first, last in spans if first <= self.as_of]
            if cut:
                out[symbol] = cut
        return out

    def _end(self, end: Any) -> pd.Timestamp:
        return self.as_of if end is None or pd.Timestamp(end) > self.as_of else pd.Timestamp(end)

    def load(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> dict[str, pd.DataFrame]:
        """The source's frames of ``[start, min(end, as_of)]``."""
        return self.source.load(fields, instruments, start, self._end(end))

    def stored_ranges(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> Ranges:
        """The source's stored ranges clipped at :attr:`as_of` (a range starting later is empty)."""
        stop = self._end(end)
        ranges_of = getattr(self.source, "stored_ranges", None)
        if callable(ranges_of):
            got: Ranges = ranges_of(fields, instruments, start, stop)
        else:  # a third-party source without stored ranges: the fallback compute_features uses
            frames = self.load(fields, instruments, start, stop)
            offset = 0 if start is None else int(self._calendar.days.searchsorted(pd.Timestamp(start)))
            got = ranges_from_values(frames, offset=offset)
        last_pos = self._n - 1
        return {name: (first, np.minimum(last, last_pos)) for name, (first, last) in got.items()}

    def fingerprint(self) -> str:
        """A digest of the source's fingerprint and the as-of day: the view's own cache key."""
        text = f"{self.source.fingerprint()}|as_of={self.as_of.isoformat()}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def lineage(self) -> str | None:
        """The source's lineage (:func:`~qroll.data.source.source_lineage`): the view is its data as
        it stood on :attr:`as_of`. The feature cache serves a view from the source's entry."""
        from qroll.data.source import source_lineage

        return source_lineage(self.source)

    def fingerprint_until(self, day: Any) -> str:
        """The source's digest of its data up to ``day``, or up to :attr:`as_of` for a later day:
        the view holds exactly the source's data up to then."""
        from qroll.data.source import source_fingerprint_until

        return source_fingerprint_until(self.source, self._end(day))

    def info(self) -> dict[str, Any]:
        """The source's summary (when it has one), with the view's ``as_of`` and ``days``."""
        info = getattr(self.source, "info", None)
        base = info() if callable(info) else {}
        return {**(base if isinstance(base, dict) else {}), "as_of": self.as_of, "days": len(self._calendar)}
