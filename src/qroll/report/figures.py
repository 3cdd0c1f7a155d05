"""The report's figures: matplotlib on its Agg canvas, each function returning one PNG.

No pyplot: every figure is a :class:`matplotlib.figure.Figure` with its own
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, so drawing needs no display, works in
threads and leaves no global figure state behind. Styles are applied with ``rc_context`` for the
duration of one figure only.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from qroll.report.data import ModelSeries, WindowSummary
from qroll.report.derived import drawdown, excess_return, group_returns, monthly_mean

__all__ = [
    "DPI",
    "cumulative_return_figure",
    "drawdown_figure",
    "excess_return_figure",
    "ic_figure",
    "ic_heatmap_figure",
    "model_colors",
    "quantile_figure",
    "turnover_figure",
    "windows_figure",
]

DPI = 110
WIDTH = 10.5  # inches: 1155 pixels at DPI, the page's content width
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f"]
BENCH_COLOR = "#222222"
# G1 (highest scores) blue through a neutral grey to G5 red; readable on white, and apart in greyscale.
GROUP_COLORS = ["#08519c", "#4292c6", "#7f7f7f", "#fb6a4a", "#a50f15"]
SEGMENT_COLORS = {"train": "#6baed6", "valid": "#fdae6b", "test": "#31a354"}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
STYLE: dict[str, Any] = {
    "font.size": 9.5, "axes.titlesize": 11, "axes.titleweight": "bold", "axes.titlelocation": "left",
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "legend.frameon": False, "legend.fontsize": 8.5, "figure.facecolor": "white",
}
CUM = "(sum of daily)"


def _style(**overrides: Any) -> AbstractContextManager[None]:
    # Style for the duration of one figure only; rcParams are global, so they are restored after.
    params: Any = {**STYLE, **{key.replace("__", "."): value for key, value in overrides.items()}}
    return matplotlib.rc_context(params)


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """One colour per model, the same in every figure (models in the order given)."""
    return {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(models)}


def _figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _dates(ax: Axes, label: bool = True) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if label:
        ax.set_xlabel("date")


def _percent(ax: Axes) -> None:
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.axhline(0.0, color="#999999", lw=0.8, zorder=1)


def _with_report(series: Sequence[ModelSeries]) -> list[tuple[ModelSeries, pd.DataFrame]]:
    return [(s, s.report) for s in series if s.report is not None and not s.report.empty]


def cumulative_return_figure(series: Sequence[ModelSeries], colors: Mapping[str, str],
                             benchmarks: Mapping[str, str]) -> bytes:
    """Each model's portfolio, net of cost (solid) and before cost (dashed), against its benchmark.

    Parameters
    ----------
    series : sequence of ModelSeries
        Models without a backtest are left out.
    colors : mapping of str to str
        Model → colour.
    benchmarks : mapping of str to str
        Model → benchmark description; each distinct benchmark is drawn once, in black.

    Returns
    -------
    bytes
        A PNG.
    """
    with _style():
        fig = _figure(4.8)
        ax = fig.add_subplot()
        drawn: set[tuple[str, pd.Timestamp, pd.Timestamp]] = set()
        styles = iter(["-", ":", "-.", (0, (5, 2, 1, 2))])
        for s, report in _with_report(series):
            color = colors[s.model]
            ax.plot(report.index, (report["return"] - report["cost"]).cumsum(), color=color, lw=1.8,
                    label=f"{s.model}, net of cost")
            ax.plot(report.index, report["return"].cumsum(), color=color, lw=1.1, ls="--", alpha=0.85,
                    label=f"{s.model}, before cost")
            name = benchmarks.get(s.model) or "benchmark"
            key = (name, report.index[0], report.index[-1])
            if key not in drawn:
                drawn.add(key)
                ax.plot(report.index, report["bench"].cumsum(), color=BENCH_COLOR, lw=1.3,
                        ls=next(styles, ":"), label=f"benchmark: {name}")
        ax.set_title("Portfolio cumulative return against the benchmark")
        ax.set_ylabel(f"cumulative return {CUM}")
        _percent(ax)
        _dates(ax)
        ax.legend(loc="best", ncol=2, framealpha=0.9)
        return _png(fig)


def excess_return_figure(series: Sequence[ModelSeries], colors: Mapping[str, str]) -> bytes:
    """Cumulative excess return over the benchmark per model, with cost (solid) and without (dashed)."""
    with _style():
        fig = _figure(4.4)
        ax = fig.add_subplot()
        for s, report in _with_report(series):
            color = colors[s.model]
            ax.plot(report.index, excess_return(report, True).cumsum(), color=color, lw=1.8,
                    label=f"{s.model}, with cost")
            ax.plot(report.index, excess_return(report, False).cumsum(), color=color, lw=1.1, ls="--",
                    alpha=0.85, label=f"{s.model}, without cost")
        ax.set_title("Cumulative excess return over the benchmark")
        ax.set_ylabel(f"cumulative excess return {CUM}")
        _percent(ax)
        _dates(ax)
        ax.legend(loc="best", ncol=2, framealpha=0.9)
        return _png(fig)


def drawdown_figure(series: Sequence[ModelSeries], colors: Mapping[str, str]) -> bytes:
    """Drawdown of the cumulative excess return with cost (Qlib's: the sum minus its running maximum)."""
    with _style():
        fig = _figure(3.8)
        ax = fig.add_subplot()
        for s, report in _with_report(series):
            color = colors[s.model]
            dd = drawdown(excess_return(report, True))
            ax.fill_between(report.index, dd.to_numpy(), 0.0, color=color, alpha=0.13, lw=0)
            ax.plot(report.index, dd, color=color, lw=1.3, label=f"{s.model} (max drawdown {dd.min():.2%})")
        ax.set_title("Drawdown of the excess return with cost")
        ax.set_ylabel(f"drawdown {CUM}")
        _percent(ax)
        _dates(ax)
        ax.legend(loc="lower left")
        return _png(fig)


def _buy_in(turnover: pd.Series) -> tuple[int, float]:
    """The position of the first day that traded (the initial buy-in) and the most traded after it."""
    traded = np.flatnonzero(turnover.to_numpy() > 0)
    if not len(traded):
        return -1, 0.0
    rest = turnover.iloc[traded[0] + 1:]
    return int(traded[0]), float(rest.max()) if len(rest) else 0.0


def turnover_figure(series: Sequence[ModelSeries], colors: Mapping[str, str]) -> bytes:
    """Daily turnover per model (thin) and its 20-day mean (bold); the initial buy-in is clipped."""
    with _style():
        fig = _figure(3.8)
        ax = fig.add_subplot()
        top, peak, clipped = 0.0, 0.0, []
        for s, report in _with_report(series):
            color = colors[s.model]
            turnover = report["turnover"]
            ax.plot(report.index, turnover, color=color, lw=0.8, alpha=0.4)
            ax.plot(report.index, turnover.rolling(20, min_periods=5).mean(), color=color, lw=1.8,
                    label=f"{s.model} (thin: daily, bold: 20-day mean)")
            first, rest_max = _buy_in(turnover)
            top, peak = max(top, rest_max), max(peak, float(turnover.max()))
            if first >= 0:
                day = report.index[first]
                clipped.append(f"{s.model} {float(turnover.iloc[first]):.0%} on {day:%Y-%m-%d}")
        if top > 0 and peak > 1.5 * top:
            # The first trading day buys the whole book (~95 %); on its scale the daily trading
            # after it would be a flat line.
            ax.set_ylim(0.0, top * 1.3)
            ax.text(0.995, 0.03, "initial buy-in, off the scale: " + ", ".join(clipped),
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="#555555",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 2})
        ax.set_title("Daily turnover")
        ax.set_ylabel("turnover (fraction of account,\nbuys + sells)")
        _percent(ax)
        _dates(ax)
        ax.legend(loc="upper left")
        return _png(fig)


def ic_figure(series: Sequence[ModelSeries], colors: Mapping[str, str]) -> bytes:
    """Daily IC as bars with its 20-day mean, and the Rank IC's 20-day mean; one panel per model."""
    with_ic = [s for s in series if s.ic is not None and s.ic.notna().any()]
    with _style():
        fig = _figure(0.7 + 2.5 * max(1, len(with_ic)))
        axes = fig.subplots(max(1, len(with_ic)), 1, sharex=True, squeeze=False)[:, 0]
        for ax, s in zip(axes, with_ic, strict=False):
            assert s.ic is not None
            ic = s.ic.astype("float64")
            index = pd.DatetimeIndex(ic.index)
            bar_colors = np.where(ic.to_numpy() >= 0, "#b3cde3", "#f8c1ae")  # pale: the mean line leads
            # Bars as one line collection (Axes.bar draws a patch per day: seconds for ten years),
            # each as wide as a day on a ~680-point axis.
            width = float(np.clip(0.8 * 680.0 / max(len(index), 1), 0.4, 4.0))
            ax.vlines(index, 0.0, ic.fillna(0.0).to_numpy(), colors=bar_colors, lw=width)
            ax.plot(index, ic.rolling(20, min_periods=5).mean(), color=colors[s.model], lw=2.0,
                    label="IC, 20-day mean")
            if s.rank_ic is not None:
                ax.plot(pd.DatetimeIndex(s.rank_ic.index), s.rank_ic.rolling(20, min_periods=5).mean(),
                        color="#333333", lw=1.1, ls="--", label="Rank IC, 20-day mean")
            std = ic.std()
            icir = ic.mean() / std if std and not math.isnan(std) else math.nan
            ax.set_title(f"{s.model}: mean IC {ic.mean():.4f}, ICIR {icir:.2f}")
            ax.set_ylabel("IC (daily correlation)")
            ax.axhline(0.0, color="#999999", lw=0.8)
            handles, _ = ax.get_legend_handles_labels()
            # The bars are two colours; their legend entry shows both.
            bars = Patch(facecolor="#b3cde3", edgecolor="#f8c1ae", lw=2.0, label="daily IC (red: < 0)")
            ax.legend(handles=[bars, *handles], loc="upper left", ncol=3)
            _dates(ax, label=ax is axes[-1])
        return _png(fig)


def ic_heatmap_figure(series: Sequence[ModelSeries]) -> bytes:
    """Mean daily IC per year and month, one panel per model, on one colour scale centred at 0."""
    tables = [(s.model, monthly_mean(s.ic)) for s in series if s.ic is not None and s.ic.notna().any()]
    limit = max((float(np.nanmax(np.abs(t.to_numpy()))) for _, t in tables if t.notna().any().any()),
                default=0.0) or 0.01
    norm = Normalize(vmin=-limit, vmax=limit)
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#f2f2f2")
    heights = [0.42 * max(1, len(t)) + 0.75 for _, t in tables] or [1.2]
    with _style(axes__grid=False):
        fig = _figure(sum(heights) + 0.5)
        axes = fig.subplots(max(1, len(tables)), 1, squeeze=False, height_ratios=heights)[:, 0]
        image = None
        for ax, (model, table) in zip(axes, tables, strict=True):
            values = table.to_numpy(dtype="float64")
            image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
            for (row, col), value in np.ndenumerate(values):
                if not math.isnan(value):
                    ax.text(col, row, f"{value:.3f}", ha="center", va="center", fontsize=8.5,
                            color="white" if abs(value) > 0.6 * limit else "#111111")
            ax.set_xticks(range(12), MONTHS)
            ax.set_yticks(range(len(table)), [str(y) for y in table.index])
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_title(f"{model}: mean daily IC by month")
        if image is not None:
            fig.colorbar(image, ax=list(axes), label="mean daily IC", shrink=0.9, aspect=25)
        return _png(fig)


def quantile_figure(series: Sequence[ModelSeries], n_groups: int = 5) -> bytes:
    """Cumulative mean label of the score quantile groups and long-short (G1 − G5), per model."""
    frames = [(s.model, group_returns(s.pred_label, n_groups)) for s in series if s.pred_label is not None]
    cols = 2 if len(frames) > 1 else 1
    rows = max(1, math.ceil(len(frames) / cols))
    colors = GROUP_COLORS if n_groups == len(GROUP_COLORS) else [
        matplotlib.colormaps["RdYlBu_r"](i / max(1, n_groups - 1)) for i in range(n_groups)]
    with _style():
        fig = _figure(0.6 + 3.6 * rows)
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
        for ax, (model, groups) in zip(axes, frames, strict=False):
            total = groups.cumsum()
            for i in range(n_groups):
                share = f"top {100 // n_groups}%" if i == 0 else (
                    f"bottom {100 // n_groups}%" if i == n_groups - 1 else "")
                ax.plot(total.index, total[f"G{i + 1}"], color=colors[i], lw=1.3,
                        label=f"G{i + 1}" + (f" ({share})" if share else ""))
            ax.plot(total.index, total["long-short"], color="black", lw=2.0,
                    label=f"long-short (G1 − G{n_groups})")
            ax.set_title(f"{model}: score quantile groups")
            ax.set_ylabel(f"cumulative mean label {CUM}")
            _percent(ax)
            _dates(ax)
            ax.legend(loc="upper left", ncol=2, fontsize=8)
        for ax in axes[len(frames):]:
            ax.set_visible(False)
        return _png(fig)


def _day(text: str) -> float | None:
    return float(mdates.date2num(pd.Timestamp(text))) if text else None


def _shared_windows(windows: Sequence[WindowSummary]) -> list[WindowSummary] | None:
    """One model's windows when every model rolled exactly the same segments, else None."""
    by_model: dict[str, list[tuple[object, ...]]] = {}
    for w in windows:
        by_model.setdefault(w.model, []).append((w.train, w.valid, w.test))
    spans = list(by_model.values())
    if len(spans) < 2 or any(sorted(map(repr, s)) != sorted(map(repr, spans[0])) for s in spans[1:]):
        return None
    first = next(iter(by_model))
    return [w for w in windows if w.model == first]


def windows_figure(windows: Sequence[WindowSummary], colors: Mapping[str, str]) -> bytes:
    """Each window's train, valid and test segments as bars on a timeline, grouped by model.

    When every model rolled the same windows (one template rolled for several models, the usual
    case), the windows are drawn once and the title names the models.
    """
    known = [p for w in windows for seg in (w.train, w.valid, w.test) if seg for p in seg if p]
    last = max(known) if known else ""
    shared = _shared_windows(windows)
    models = sorted({w.model for w in windows})
    rows_of = shared if shared is not None else list(windows)
    rows = len(rows_of)
    with _style(axes__grid=False):
        fig = _figure(min(max(1.6 + (0.3 if rows <= 30 else 0.2) * rows, 2.6), 30.0))
        ax = fig.add_subplot()
        labels = []
        for y, w in enumerate(rows_of):
            for name in ("train", "valid", "test"):
                seg = getattr(w, name)
                start = _day(seg[0]) if seg else None
                end = _day(seg[1] or last) if seg else None
                if start is not None and end is not None:
                    # A segment's end is a trading day it includes: the bar runs to that day's end.
                    ax.broken_barh([(start, end - start + 1.0)], (y - 0.36, 0.72),
                                   facecolors=SEGMENT_COLORS[name], edgecolor="white", lw=0.5)
            test = f"test {w.test[0] if w.test else '?'}"
            labels.append(test if shared is not None else f"{w.model} · {test}")
        if shared is None:
            for y in range(1, rows):
                if rows_of[y].model != rows_of[y - 1].model:
                    ax.axhline(y - 0.5, color="#444444", lw=0.9)
        ax.set_yticks(range(rows), labels, fontsize=8 if rows < 40 else 6)
        if shared is None:
            for tick, w in zip(ax.get_yticklabels(), rows_of, strict=True):
                tick.set_color(colors.get(w.model, "#222222"))
        ax.set_ylim(rows - 0.5, -0.5)
        ax.grid(True, axis="x", alpha=0.3)
        _dates(ax)
        title = "Rolling windows: train, valid and test segments"
        if shared is not None:
            title += f"\n(the same for {', '.join(models)})"
        ax.set_title(title)
        ax.legend(handles=[Patch(color=c, label=n) for n, c in SEGMENT_COLORS.items()], loc="lower right",
                  ncol=3, bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
        return _png(fig)
