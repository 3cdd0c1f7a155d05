"""A seeded, realistic synthetic stock market: :class:`SyntheticMarket` (``synthetic://?seed=0``).

The model, per instrument ``i`` and trading day ``t`` (returns are log returns of the adjusted
close)::

    r[t, i] = mu[i] + beta[i] * m[t] + vol[t] * sigma[i] * (z[t, i] - kappa[t] * S5[t, i])
    S5[t, i] = (z[t-1, i] + ... + z[t-5, i]) / sqrt(5)

``m`` is a market factor, ``vol`` a market-wide volatility regime (an AR(1) in logs), ``mu`` a
small persistent per-instrument drift, and the ``-kappa * S5`` term a weak short-term reversal:
the next days' returns lean against the last five days' shocks, more on some days than others
(``kappa`` is an AR(1) around a small positive mean). Because the reversal is driven by past
*shocks*, not past returns, every term is computed with vector operations over whole days. The
result: an Alpha158-style IC around 0.02–0.05, enough for a model to find signal and far from a
perfect forecast.

Around that: late listings and early delistings, rare suspensions (NaN days), a step-wise
adjustment ``factor`` (dividends and splits), intraday OHLC with ``low <= open, close <= high``,
a ``vwap`` inside the day's range, an autocorrelated positive volume that rises with the size of
the move, and ``change`` = close / previous close - 1. Prices and volume follow Qlib's
convention: prices are adjusted (raw × factor), volume is divided by the factor.

**Prefix-stable.** Markets with the same ``seed``, ``instruments`` and ``start`` hold bit-identical
data on every day up to the shorter ``end``: values, stored ranges and market memberships. Every
random draw is made day by day (time-major, one generator per quantity), and every per-instrument
event (listing, delisting, leaving ``synth100``) is drawn in trading days from ``start``, without
reference to ``end``: a listing or delisting after ``end`` has simply not happened yet. So a
shorter market is the data of a longer one as it stood on its ``end``, which is how tests make
data "arrive".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qroll.calendar import TradingCalendar
from qroll.data.source import (
    Ranges,
    Spans,
    clip_ranges,
    day_window,
    days_until,
    field_name,
    prefix_digest,
    unknown_market,
    wide_frame,
)
from qroll.data.uri import SYNTHETIC_END, SYNTHETIC_START, parse_source_uri
from qroll.errors import ConfigError

__all__ = ["GENERATOR_VERSION", "SyntheticMarket"]

GENERATOR_VERSION = 2  # 2: prefix-stable (time-major draws, listings independent of the end)
"""Bumped whenever the generator's output changes, so cached features keyed by the fingerprint expire."""

FIELDS = ("open", "high", "low", "close", "volume", "vwap", "factor", "change")
SUB_MARKET = "synth100"
_SUB_SIZE = 100
_KAPPA = 0.045  # mean strength of the short-term reversal
_KAPPA_SD = 0.12  # its day-to-day spread
_DRIFT_SD = 2.5e-4  # cross-sectional sd of the persistent daily drift
# The last quarter of the instruments list later, from the second year on: by day 2,700 (all of
# them in the default 13-year market), whatever the end, so a shorter market has not seen them yet.
_LATE_PER = 4
_LATE_FROM, _LATE_UNTIL = 250, 2700  # trading days after the start
_DELIST_SHARE = 1 / 5
_MIN_LIFE, _LIFE_SPREAD = 250, 3000  # a delisting comes 250 + U[0, 3000) trading days after the listing
_NEVER = 1 << 40  # the delisting day of an instrument that never delists


class SyntheticMarket:
    """A seeded synthetic market: Mon–Fri calendar, symbols ``SYN0001``…, markets ``all`` and ``synth100``.

    The same parameters give the same data in every process and on every platform (numpy's PCG64
    generator), and markets that differ only in ``end`` agree on every day they share (see the
    module docstring). The data is generated on first use (about 0.2 s for 300 instruments × 13
    years) and kept in memory.

    Parameters
    ----------
    uri : str, optional
        ``synthetic://?instruments=300&start=2008-01-01&end=2020-12-31&seed=0``; keyword arguments
        override its options.
    instruments : int, default 300
        Number of instruments (``SYN0001``…). The last quarter of them (``instruments // 4``) list
        later, between 250 and 2,700 trading days after ``start``, numbered in the order they
        list; a market holds those listed by ``end``, so a market of a year or less holds the
        first three quarters.
    start, end : date, default 2008-01-01 and 2020-12-31
        First and last calendar day; the trading days are the business days between them.
    seed : int, default 0
        Seed of the random generator.

    Examples
    --------
    >>> m = SyntheticMarket(instruments=3, start="2020-01-01", end="2020-01-31", seed=7)
    >>> m.markets(), list(m.instruments())
    (['all', 'synth100'], ['SYN0001', 'SYN0002', 'SYN0003'])
    >>> close = m.load(["close"], ["SYN0001"])["close"]
    >>> close.shape, str(close.dtypes.iloc[0])
    ((23, 1), 'float32')

    The same market a week later: the first 23 days are unchanged.

    >>> later = SyntheticMarket(instruments=3, start="2020-01-01", end="2020-02-07", seed=7)
    >>> later.load(["close"], ["SYN0001"])["close"].iloc[:23].equals(close)
    True
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        instruments: int | None = None,
        start: Any = None,
        end: Any = None,
        seed: int | None = None,
    ) -> None:
        params: dict[str, str] = {}
        if uri is not None:
            parsed = parse_source_uri(uri)
            if parsed.scheme != "synthetic":
                raise ConfigError(f"SyntheticMarket reads synthetic:// URIs, not {uri!r}")
            params = parsed.params
        unknown = set(params) - {"instruments", "start", "end", "seed"}
        if unknown:
            raise ConfigError(
                f"synthetic source {uri!r} has unknown option(s) {', '.join(sorted(unknown))}: "
                "use instruments, start, end, seed"
            )
        try:
            n = instruments if instruments is not None else params.get("instruments", 300)
            self.n_instruments = int(n)
            self.seed = int(seed if seed is not None else params.get("seed", 0))
        except ValueError as exc:
            raise ConfigError(f"synthetic source {uri!r}: instruments and seed must be integers") from exc
        self.start = pd.Timestamp(start if start is not None else params.get("start", SYNTHETIC_START))
        self.end = pd.Timestamp(end if end is not None else params.get("end", SYNTHETIC_END))
        if self.n_instruments < 1:
            raise ConfigError(f"synthetic source: instruments={self.n_instruments} must be at least 1")
        self._calendar = TradingCalendar(pd.bdate_range(self.start, self.end))
        if len(self._calendar) < 10:
            raise ConfigError(
                f"synthetic source: {self.start.date()}..{self.end.date()} has {len(self._calendar)} "
                "business days; give at least 10"
            )
        self.uri = (
            f"synthetic://?instruments={self.n_instruments}&start={self.start.date()}"
            f"&end={self.end.date()}&seed={self.seed}"
        )
        width = max(4, len(str(self.n_instruments)))
        self._symbols = [f"SYN{i + 1:0{width}d}" for i in range(self.n_instruments)]
        self._col = {s: i for i, s in enumerate(self._symbols)}
        self._data: dict[str, np.ndarray] | None = None
        self._spans: dict[str, dict[str, Spans]] | None = None
        self._listed: tuple[np.ndarray, np.ndarray] | None = None  # first, last listed day positions
        self._digests: dict[int, str] = {}  # fingerprint_until, by number of days

    def __repr__(self) -> str:
        return (
            f"SyntheticMarket(instruments={self.n_instruments}, start={str(self.start.date())!r}, "
            f"end={str(self.end.date())!r}, seed={self.seed})"
        )

    # -- structure ---------------------------------------------------------------------------
    @property
    def calendar(self) -> TradingCalendar:
        """Monday to Friday from ``start`` to ``end`` (``pd.bdate_range``)."""
        return self._calendar

    def markets(self) -> list[str]:
        """``all`` and ``synth100`` (the first 100 instruments, with membership gaps)."""
        return ["all", SUB_MARKET]

    def instruments(self, market: str = "all") -> dict[str, Spans]:
        """Symbol → membership spans; in ``all`` each instrument's listed days up to ``end``."""
        key = market.lower()
        if key not in self.markets():
            raise unknown_market(market, self.markets(), "the synthetic market")
        self._generate()
        assert self._spans is not None
        return {s: list(v) for s, v in self._spans[key].items()}

    def fields(self) -> list[str]:
        """open, high, low, close, volume, vwap, factor, change."""
        return list(FIELDS)

    def fingerprint(self) -> str:
        """A digest of the parameters and :data:`GENERATOR_VERSION`."""
        text = json.dumps(
            {"v": GENERATOR_VERSION, "n": self.n_instruments, "start": str(self.start.date()),
             "end": str(self.end.date()), "seed": self.seed},
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def lineage(self) -> str:
        """The parameters without ``end``, and :data:`GENERATOR_VERSION`: prefix stability makes a
        later ``end`` the same market grown by days (see :class:`~qroll.data.source.Source`)."""
        return (f"synthetic://?instruments={self.n_instruments}&start={self.start.date()}&seed={self.seed}"
                f"&generator={GENERATOR_VERSION}")

    def fingerprint_until(self, day: Any) -> str:
        """The digest of the data up to ``day`` (see :meth:`~qroll.data.source.Source.fingerprint_until`).

        The content digest of :func:`~qroll.data.source.prefix_digest`, so it equals that of a Qlib
        dump or a table holding the same data. Prefix stability makes it the same for every
        ``end`` on or after ``day``. Computed from the generated data (about 0.1 s for 300
        instruments × 13 years once generated) and remembered.
        """
        k = days_until(self._calendar, day)
        if k not in self._digests:
            self._digests[k] = prefix_digest(self, day)
        return self._digests[k]

    def info(self) -> dict[str, Any]:
        """A summary: parameters, days, instruments listed by ``end``, fields."""
        return {"uri": self.uri, "days": len(self._calendar), "instruments": self.n_instruments,
                "listed": len(self.instruments()), "fields": self.fields(), "markets": self.markets()}

    def load(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> dict[str, pd.DataFrame]:
        """Wide float32 frames (see :class:`~qroll.data.source.Source`); unknown names give NaN."""
        data = self._generate()
        a, b = day_window(self._calendar, start, end)
        index = self._calendar.days[a:b]
        cols = np.array([self._col.get(s.upper(), -1) for s in instruments], dtype=np.int64)
        known = cols >= 0
        out: dict[str, pd.DataFrame] = {}
        for field in fields:
            name = field_name(field)
            values = np.full((len(instruments), b - a), np.nan, dtype=np.float32)
            if name in data:
                values[known] = data[name][cols[known], a:b]
            out[name] = wide_frame(values, index, instruments)
        return out

    def stored_ranges(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> Ranges:
        """Each symbol's stored range: its listing to its delisting day (or ``end``), for every field.

        Suspensions are stored NaN days inside the range; an unknown symbol or field, or one not
        listed by ``end``, has an empty range. See :meth:`~qroll.data.source.Source.stored_ranges`.
        """
        self._generate()
        assert self._listed is not None
        n_days = len(self._calendar)
        cols = np.array([self._col.get(s.upper(), -1) for s in instruments], dtype=np.int64)
        known = cols >= 0
        first = np.full(len(cols), n_days, dtype=np.int64)
        last = np.full(len(cols), -1, dtype=np.int64)
        first[known], last[known] = self._listed[0][cols[known]], self._listed[1][cols[known]]
        clipped = clip_ranges(first, last, self._calendar, start, end)
        empty = (np.full(len(cols), n_days, dtype=np.int64), np.full(len(cols), -1, dtype=np.int64))
        return {
            name: (clipped[0].copy(), clipped[1].copy()) if name in FIELDS else empty
            for name in (field_name(f) for f in fields)
        }

    # -- generation --------------------------------------------------------------------------
    def _generate(self) -> dict[str, np.ndarray]:
        if self._data is None:
            t = len(self._calendar)
            traits = _traits(self.n_instruments, self.seed)
            self._data = _simulate(traits, t, self.seed)
            self._spans = _memberships(traits, t, self._calendar.days, self._symbols)
            listed = traits.first < t
            self._listed = (np.where(listed, traits.first, t),
                            np.where(listed, np.minimum(traits.last, t - 1), -1))
        return self._data


@dataclass(frozen=True, slots=True)
class _Traits:
    """Per-instrument parameters and events, in trading days from the start (none depends on the end)."""

    beta: np.ndarray
    sigma: np.ndarray
    mu: np.ndarray
    price0: np.ndarray
    log_vol0: np.ndarray
    plain: np.ndarray  # the factor stays 1.0
    first: np.ndarray  # listing day
    last: np.ndarray  # delisting day, _NEVER for most
    sub: list[list[tuple[int, int]]]  # synth100 membership spans of the first 100 instruments


def _traits(n: int, seed: int) -> _Traits:
    """Draw every instrument's parameters and events from their own generator (sizes fixed by ``n``)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, GENERATOR_VERSION, 0]))
    early = n - n // _LATE_PER
    beta = rng.uniform(0.6, 1.4, n)
    sigma = np.exp(rng.normal(np.log(0.017), 0.3, n))
    mu = rng.normal(0.0, _DRIFT_SD, n)
    price0 = np.exp(rng.normal(np.log(15.0), 0.7, n))
    log_vol0 = rng.normal(np.log(2e6), 0.8, n)
    plain = rng.random(n) < 0.3
    first = np.zeros(n, dtype=np.int64)
    # Numbered in the order they list, so the instruments listed by any end are a prefix.
    first[early:] = np.sort(rng.integers(_LATE_FROM, _LATE_UNTIL, n - early))
    delists = rng.random(n) < _DELIST_SHARE
    last = np.where(delists, first + _MIN_LIFE + rng.integers(0, _LIFE_SPREAD, n), _NEVER)
    last[0] = _NEVER  # the first instrument spans every calendar: a stable reference series
    # synth100: a fifth of its members leave the index for 5 to 29 days, if they trade 40 more after.
    leaves = rng.random(n) < 0.2
    cut = first + 10 + rng.integers(0, 3000, n)
    back = cut + 1 + rng.integers(5, 30, n)
    sub = [
        [(int(first[i]), int(cut[i])), (int(back[i]), int(last[i]))] if leaves[i] and back[i] + 40 <= last[i]
        else [(int(first[i]), int(last[i]))]
        for i in range(min(_SUB_SIZE, n))
    ]
    return _Traits(beta=beta, sigma=sigma, mu=mu, price0=price0, log_vol0=log_vol0, plain=plain,
                   first=first, last=last, sub=sub)


def _streams(seed: int, count: int) -> list[np.random.Generator]:
    """One generator per drawn quantity: each draws day after day, whatever the number of days."""
    return [np.random.default_rng(np.random.SeedSequence([seed, GENERATOR_VERSION, k]))
            for k in range(1, count + 1)]


def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    """``x[t] = phi * x[t-1] + shocks[t]`` along axis 0 (days), on a copy.

    One vector step per day: a few milliseconds for 13 years, and exact (a day's value depends on
    the days before it only, which keeps the market prefix-stable).
    """
    x = np.array(shocks, dtype=np.float64)
    for k in range(1, x.shape[0]):
        x[k] += phi * x[k - 1]
    return x


def _simulate(traits: _Traits, t: int, seed: int) -> dict[str, np.ndarray]:
    """All fields as ``(instruments, t)`` float32 arrays, NaN where not listed or suspended.

    Computed time-major, ``(t, instruments)``: day ``k``'s values depend only on draws of days
    ``0..k``, which each generator makes in day order.
    """
    g_regime, g_market, g_kappa, g_z, g_event, g_jump, g_gap, g_top, g_bottom, g_vwap, g_volume, g_halt = (
        _streams(seed, 12)
    )
    total = len(traits.beta)

    # Market factor with a volatility regime, and the idiosyncratic shocks.
    regime = np.exp(_ar1(g_regime.normal(0.0, 0.06, t), 0.985))
    market = 0.0002 + 0.011 * regime * g_market.standard_normal(t)
    # The reversal's strength drifts over time (and sometimes flips), as real anomalies do.
    kappa = _KAPPA + _KAPPA_SD * np.sqrt(1 - 0.9**2) * _ar1(g_kappa.standard_normal(t), 0.9)
    z = g_z.standard_normal((t, total))
    past5 = np.zeros_like(z)
    for lag in range(1, 6):
        past5[lag:] += z[:-lag]
    day_sd = regime[:, None] * traits.sigma[None, :]
    ret = traits.mu + traits.beta * market[:, None] + day_sd * (z - kappa[:, None] * past5 / np.sqrt(5.0))
    np.clip(ret, -0.2, 0.2, out=ret)
    log_close = np.log(traits.price0) + np.cumsum(ret, axis=0)

    # Adjustment factor: each year, about 0.6 dividend ex-dates (+0.5%..4%) and rare splits (x2).
    # The jumps are drawn for the event days only, in day order: the k-th event gets the k-th draw.
    events = g_event.random((t, total)) < 0.6 / 252
    u = g_jump.random(int(events.sum()))
    log_jump = np.zeros((t, total))
    log_jump[events] = np.where(u < 0.05, np.log(2.0), 0.005 + 0.035 * (u - 0.05) / 0.95)
    log_factor = np.cumsum(log_jump, axis=0)
    log_factor[:, traits.plain] = 0.0

    # Intraday: overnight gap, then open -> close; high/low extend past both.
    gap = 0.3 * day_sd * g_gap.standard_normal((t, total))
    log_open = np.empty_like(log_close)
    log_open[0] = log_close[0] - gap[0]
    log_open[1:] = log_close[:-1] + gap[1:]
    top = np.maximum(log_open, log_close) + np.abs(0.5 * day_sd * g_top.standard_normal((t, total)))
    bottom = np.minimum(log_open, log_close) - np.abs(0.5 * day_sd * g_bottom.standard_normal((t, total)))
    w = g_vwap.uniform(0.2, 0.8, (t, total))
    log_vwap = w * (log_open + log_close) / 2 + (1 - w) * (top + bottom) / 2

    # Volume: autocorrelated around each instrument's level, higher on large moves.
    log_volume = (traits.log_vol0 + _ar1(g_volume.normal(0.0, 0.25, (t, total)), 0.8)
                  + 0.6 * np.abs(ret) / (day_sd + 1e-12) - 0.5)
    factor = np.exp(log_factor)
    close = np.exp(log_close)
    change = np.full((t, total), np.nan)
    change[1:] = close[1:] / close[:-1] - 1.0
    data = {
        "open": np.exp(log_open),
        "high": np.exp(top),
        "low": np.exp(bottom),
        "close": close,
        "vwap": np.exp(log_vwap),
        "volume": np.exp(log_volume).round() / factor,
        "factor": factor,
        "change": change,
    }

    # Stored data: each instrument's listed days, minus rare suspensions (about 0.3% of days); the
    # listing and delisting days always trade.
    days_idx = np.arange(t)[:, None]
    listed = (days_idx >= traits.first) & (days_idx <= traits.last)
    suspended = (g_halt.random((t, total)) < 0.003) & listed
    cols = np.arange(total)
    for edge in (traits.first, traits.last):
        inside = edge < t
        suspended[edge[inside], cols[inside]] = False
    mask = ~listed | suspended
    # change on the day after a suspension refers to a NaN close: Qlib's data leaves it NaN too.
    data["change"][1:][mask[:-1]] = np.nan
    out: dict[str, np.ndarray] = {}
    for name in FIELDS:
        values = data[name]
        values[~listed if name == "factor" else mask] = np.nan
        out[name] = np.ascontiguousarray(values.T, dtype=np.float32)
    return out


def _memberships(
    traits: _Traits, t: int, days: pd.DatetimeIndex, symbols: list[str]
) -> dict[str, dict[str, Spans]]:
    """The markets' membership spans over the first ``t`` days: spans from day ``t`` on are cut off."""

    def clip(spans: list[tuple[int, int]]) -> Spans:
        return [(days[a], days[min(b, t - 1)]) for a, b in spans if a < t]

    spans_all = {s: clip([(int(traits.first[i]), int(traits.last[i]))]) for i, s in enumerate(symbols)}
    sub = {symbols[i]: clip(spans) for i, spans in enumerate(traits.sub)}
    return {"all": {s: v for s, v in spans_all.items() if v}, SUB_MARKET: {s: v for s, v in sub.items() if v}}
