"""The simulated exchange: quotes, tradability, lot rounding and order fills, as Qlib's ``Exchange``.

Quotes are held as (days, instruments) float64 panels (exact widenings of the float32 data), so a
lookup is one array index. Semantics follow ``reference/qlib_backtest.md`` §5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from qroll.backtest.position import Position, isclose
from qroll.data.expression import Evaluator, extent, fields_of
from qroll.data.source import Source, field_name
from qroll.errors import ConfigError, DataNotFoundError, ExpressionError

__all__ = ["Exchange", "EXCHANGE_KEYS"]

#: The keyword arguments :class:`Exchange` accepts (Qlib's ``get_exchange`` names).
EXCHANGE_KEYS = frozenset({
    "freq", "codes", "deal_price", "limit_threshold", "open_cost", "close_cost", "min_cost",
    "trade_unit", "impact_cost", "start_time", "end_time", "subscribe_fields", "extra_quote",
    "volume_threshold",
})


class Exchange:
    """Quotes and trading rules over the backtest days.

    Parameters
    ----------
    source : Source
        Market data (prices adjusted by ``$factor``).
    days : pd.DatetimeIndex
        The trading days of the backtest steps.
    codes : str or sequence of str, default "all"
        A market name (rows only inside its membership spans) or a list of codes.
    deal_price : str or (str, str), optional
        Field of the deal price (``"close"``, ``"$open"``, ``"vwap"``), or a (buy, sell) pair;
        default close. A missing, NaN or ≤ 1e-8 deal price falls back to ``$close``.
    limit_threshold : float or (str, str), optional
        A float x: limit-up when the stored ``$change ≥ x``, limit-down when ``≤ -x`` (compared in
        float32, as Qlib does); or a pair of expressions (buy-limit, sell-limit) whose truth blocks
        trading (NaN counts as true). A list (as YAML gives) is accepted as the pair (qroll's fix:
        Qlib raises ``NotImplementedError``). ``None``: 0.095 (Qlib's cn default).
    open_cost, close_cost : float, default 0.0015, 0.0025
        Fee rates of buys and sells (fractions of the traded value).
    min_cost : float, default 5.0
        Minimum fee per order (money).
    trade_unit : int or None, default 100
        Lot size in raw shares; ``None`` turns lot rounding off.
    impact_cost : float, default 0.0
        Impact fee rate, scaled by the squared share of the day's traded value.
    freq : str, default "day"
        Only daily steps are supported.

    Raises
    ------
    ConfigError
        For an unsupported option or value.
    DataNotFoundError
        For a deal-price field the source does not hold.
    """

    def __init__(
        self,
        source: Source,
        days: pd.DatetimeIndex,
        *,
        codes: str | Sequence[str] = "all",
        deal_price: str | Sequence[str] | None = None,
        limit_threshold: float | Sequence[str] | None = None,
        open_cost: float = 0.0015,
        close_cost: float = 0.0025,
        min_cost: float = 5.0,
        trade_unit: int | None = 100,
        impact_cost: float = 0.0,
        freq: str = "day",
        volume_threshold: Any = None,
        subscribe_fields: Any = None,
        extra_quote: Any = None,
        start_time: Any = None,
        end_time: Any = None,
    ) -> None:
        if str(freq).lower() not in ("day", "1day", "d", "1d"):
            raise ConfigError(f"exchange freq {freq!r} is not supported: qroll backtests daily steps only "
                              "(freq: day)")
        for name, value in (("volume_threshold", volume_threshold), ("extra_quote", extra_quote)):
            if value is not None:
                raise ConfigError(f"exchange option {name}={value!r} is not supported by qroll's backtest; "
                                  "remove it")
        self.days = days
        self.open_cost, self.close_cost = float(open_cost), float(close_cost)
        self.min_cost, self.impact_cost = float(min_cost), float(impact_cost)
        self.trade_unit = None if trade_unit is None else int(trade_unit)
        buy_field, sell_field = _deal_fields(deal_price)
        available = set(source.fields())
        for f in {buy_field, sell_field}:
            if f not in available:
                raise DataNotFoundError(
                    f"deal price ${f} is not a field of {getattr(source, 'uri', source)!r} (it has "
                    f"{', '.join('$' + x for x in sorted(available))}); use deal_price 'close' or 'open'"
                )
        # Rows exist only inside each instrument's spans of the chosen universe (Qlib's D.features).
        if isinstance(codes, str):
            spans = source.instruments(codes)
            self.codes = sorted(spans)
        else:
            spans = {}
            self.codes = sorted({c.upper() for c in codes})
            all_spans = source.instruments("all")
            spans = {c: all_spans.get(c, []) for c in self.codes}
        self.col = {c: j for j, c in enumerate(self.codes)}
        start, end = days[0], days[-1]
        in_span = np.zeros((len(days), len(self.codes)), dtype=bool)
        for j, c in enumerate(self.codes):
            for a, b in spans.get(c, []):
                in_span[:, j] |= (days >= a) & (days <= b)
        names = sorted({"close", "change", "factor", "volume", buy_field, sell_field})
        frames = source.load(names, self.codes, start, end)
        panels = {k: _panel(frames[k], days, self.codes) for k in names}

        def rows(name: str) -> np.ndarray:
            out = panels[name].astype(np.float64)
            out[~in_span] = np.nan
            return out

        self.close = rows("close")
        self.buy_price, self.sell_price = rows(buy_field), rows(sell_field)
        self.factor, self.volume = rows("factor"), rows("volume")
        self.suspended = np.isnan(self.close)
        # Qlib turns lot rounding off everywhere when any quote row lacks a factor (§5.1).
        self.adjusted_mode = bool((np.isnan(self.factor) & ~self.suspended).any())
        if limit_threshold is None:
            limit_threshold = 0.095
        if isinstance(limit_threshold, (list, tuple)):
            if len(limit_threshold) != 2 or not all(isinstance(e, str) for e in limit_threshold):
                raise ConfigError(
                    f"limit_threshold {limit_threshold!r} must be a float or a pair of expressions "
                    "(buy limit, sell limit), e.g. ['$change >= 9.5', '$change <= -9.5']"
                )
            lb, ls = _eval_pair(source, list(limit_threshold), days, self.codes)
            self.limit_buy, self.limit_sell = lb | self.suspended, ls | self.suspended
        elif isinstance(limit_threshold, (int, float)) and not isinstance(limit_threshold, bool):
            # float32 comparison: $change is float32 and numpy 2 casts the Python float down to it.
            change = panels["change"]
            x = np.float32(limit_threshold)
            with np.errstate(invalid="ignore"):
                up, down = change >= x, change <= -x
            self.limit_buy, self.limit_sell = up | self.suspended, down | self.suspended
        else:
            raise ConfigError(
                f"limit_threshold {limit_threshold!r} must be a float (e.g. 0.095) or a pair of "
                "expressions (buy limit, sell limit)"
            )

    # -- lookups ------------------------------------------------------------------------------
    def is_suspended(self, code: str, t: int) -> bool:
        """No quote row for ``code`` on step ``t``, or a NaN close."""
        j = self.col.get(code)
        return j is None or bool(self.suspended[t, j])

    def is_tradable(self, code: str, t: int, direction: str | None = None) -> bool:
        """Not suspended and not limited (``direction`` None: both flags; "buy"/"sell": its own)."""
        j = self.col.get(code)
        if j is None or self.suspended[t, j]:
            return False
        if direction in (None, "buy") and self.limit_buy[t, j]:
            return False
        return not (direction in (None, "sell") and self.limit_sell[t, j])

    def deal_price(self, code: str, t: int, buy: bool) -> float:
        """Deal price on step ``t``; a missing, NaN or ≤ 1e-8 price falls back to the close."""
        j = self.col[code]
        p = float((self.buy_price if buy else self.sell_price)[t, j])
        if not p > 1e-8:
            p = float(self.close[t, j])
        return p

    def round_lot(self, amount: float, factor: float) -> float:
        """Round ``amount`` (adjusted shares) down to whole lots of raw shares (Qlib's formula)."""
        if self.adjusted_mode or self.trade_unit is None or factor is None or np.isnan(factor):
            return amount
        return (amount * factor + 0.1) // self.trade_unit * self.trade_unit / factor

    def _max_buy(self, price: float, cash: float, ratio: float) -> float:
        if cash < self.min_cost:
            return 0.0
        if cash >= self.min_cost / ratio + self.min_cost:
            return cash / (1 + ratio) / price
        return (cash - self.min_cost) / price

    def deal_order(self, code: str, t: int, amount: float, buy: bool,
                   position: Position) -> tuple[float, float, float]:
        """Fill one order against ``position`` (Qlib's ``deal_order``) and update it.

        Returns
        -------
        (trade_val, cost, price) : tuple of float
            Traded value and fee (money), deal price; ``(0, 0, nan)`` when not tradable.
        """
        return self.fill(code, t, amount, buy, position)[:3]

    def fill(self, code: str, t: int, amount: float, buy: bool,
             position: Position) -> tuple[float, float, float, float]:
        """:meth:`deal_order`, also returning the amount dealt (Qlib's ``order.deal_amount``).

        Returns
        -------
        (trade_val, cost, price, deal_amount) : tuple of float
            Traded value and fee (money), deal price, amount dealt (adjusted shares: the ordered
            amount after the cash, holding and lot clips); ``(0, 0, nan, 0)`` when not tradable.
            ``deal_amount`` is what Qlib's fill rate divides by the ordered amount; it may be
            non-zero while the value is ≤ 1e-5 and nothing was traded, as in Qlib.
        """
        if not self.is_tradable(code, t, "buy" if buy else "sell"):
            return 0.0, 0.0, float("nan"), 0.0
        j = self.col[code]
        price = self.deal_price(code, t, buy)
        factor = float(self.factor[t, j])
        total_val = float(self.volume[t, j]) * price
        q = amount
        val = q * price
        if not total_val or np.isnan(total_val):
            impact = self.impact_cost
        else:
            impact = self.impact_cost * (val / total_val) ** 2
        if buy:
            ratio = self.open_cost + impact
            cash = position.get_cash()
            if cash < max(val * ratio, self.min_cost):
                q = 0.0
            elif cash < val + max(val * ratio, self.min_cost):
                q = self.round_lot(min(self._max_buy(price, cash, ratio), q), factor)
            else:
                q = self.round_lot(q, factor)
        else:
            ratio = self.close_cost + impact
            held = position.get_stock_amount(code)
            if not isclose(q, held):
                # A partial sell trades whole lots; a full exit sells odd lots too.
                q = self.round_lot(min(held, q), factor)
            if position.get_cash() + q * price < max(q * price * ratio, self.min_cost):
                q = 0.0
        val = q * price
        cost = max(val * ratio, self.min_cost)
        if val <= 1e-5:
            return val, 0.0, price, q
        position.update_order(code, buy, val, cost, price)
        return val, cost, price, q


def _deal_fields(deal_price: str | Sequence[str] | None) -> tuple[str, str]:
    if deal_price is None:
        return "close", "close"
    if isinstance(deal_price, str):
        return field_name(deal_price), field_name(deal_price)
    if isinstance(deal_price, (list, tuple)) and len(deal_price) == 2:
        return field_name(deal_price[0]), field_name(deal_price[1])
    raise ConfigError(f"deal_price {deal_price!r} must be a field name ('close', 'open', 'vwap') "
                      "or a (buy, sell) pair of them")


def _panel(frame: pd.DataFrame, days: pd.DatetimeIndex, codes: list[str]) -> np.ndarray:
    return frame.reindex(index=days, columns=codes).to_numpy(dtype=np.float32)


def _eval_pair(source: Source, exprs: list[str], days: pd.DatetimeIndex,
               codes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate the two limit expressions over the steps; NaN is true, as Qlib's ``astype(bool)``."""
    try:
        back = max(extent(e)[0] for e in exprs)
        names = sorted(set().union(*(fields_of(e) for e in exprs)))
    except ExpressionError as exc:
        raise ConfigError(f"limit_threshold {exprs!r}: {exc}") from exc
    if not names:
        raise ConfigError(f"limit_threshold {exprs!r} reads no field; write e.g. '$change >= 0.095'")
    cal = source.calendar.days
    a = max(0, int(cal.searchsorted(days[0])) - back)
    frames = source.load(names, codes, cal[a], days[-1])
    panels = {k: v.to_numpy(dtype=np.float32) for k, v in frames.items()}
    ranges = None
    if callable(getattr(source, "stored_ranges", None)):
        stored = source.stored_ranges(names, codes, cal[a], days[-1])
        ranges = {k: (f - a, last - a) for k, (f, last) in stored.items()}
    out = []
    index = frames[names[0]].index
    for value in Evaluator(panels, ranges).evaluate_many(exprs):
        frame = pd.DataFrame(np.asarray(value), index=index, columns=codes)
        arr = frame.reindex(days).to_numpy()
        out.append(np.where(np.isnan(arr.astype(np.float64)), True, arr.astype(bool)))
    return out[0], out[1]


def exchange_kwargs_check(kwargs: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for an exchange keyword Qlib does not accept."""
    unknown = sorted(set(kwargs) - EXCHANGE_KEYS)
    if unknown:
        raise ConfigError(f"unknown exchange_kwargs {unknown}: use {', '.join(sorted(EXCHANGE_KEYS))}")
