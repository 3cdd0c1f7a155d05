"""The experiment report: one self-contained HTML page and its figures as PNG files.

:func:`write_report` reads an experiment's window runs and merged runs
(:func:`~qroll.report.data.gather_report_data`), draws the figures Qlib's ``analysis_position``
and ``analysis_model`` show (:mod:`qroll.report.figures`) and writes ``index.html``
(:mod:`qroll.report.page`), which opens offline: it embeds every figure and links to nothing.

matplotlib is imported when a report is written, not when this package is.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qroll.report.data import ModelSeries, ModelSummary, ReportData, WindowSummary, gather_report_data

if TYPE_CHECKING:
    from qroll.record import Experiment
    from qroll.report.page import FigureImage

__all__ = [
    "FIGURE_NAMES",
    "ModelSeries",
    "ModelSummary",
    "ReportData",
    "WindowSummary",
    "gather_report_data",
    "write_report",
]

#: Every figure a report can hold, in page order (each written as ``<name>.png``).
FIGURE_NAMES = ("cumulative_return", "excess_return", "drawdown", "turnover", "ic", "ic_heatmap",
                "quantile_returns", "windows")

NO_BACKTEST = ("No portfolio figures (cumulative return, excess return, drawdown, turnover): no model "
               "has a portfolio backtest; see “What is missing” above.")
NO_SIGNAL = ("No signal figures (daily IC, IC by month, quantile groups): no model has predictions with "
             "labels.")


def _draw(data: ReportData, say: Callable[[str], None]) -> tuple[list[FigureImage], list[str]]:
    from qroll.report import figures as fg
    from qroll.report.page import FigureImage

    colors = fg.model_colors([m.model for m in data.models])
    benchmarks = {m.model: m.benchmark for m in data.models}
    series = data.series
    plan: list[tuple[str, str, str, Callable[[], bytes]]] = []
    missing: list[str] = []
    if data.has_portfolio:
        plan += [
            ("cumulative_return", "Cumulative return",
             "Sum of the portfolio's daily returns: solid net of trading cost, dashed before cost, black "
             "the benchmark; the gap between solid and dashed is what trading cost.",
             lambda: fg.cumulative_return_figure(series, colors, benchmarks)),
            ("excess_return", "Cumulative excess return",
             "Sum of the daily return minus the benchmark's, with cost (solid) and without (dashed): a line "
             "rising steadily means the model beats the benchmark steadily.",
             lambda: fg.excess_return_figure(series, colors)),
            ("drawdown", "Drawdown",
             "How far the summed excess return with cost is below its best level so far (0 = a new high); "
             "the deepest point is the table's max drawdown.",
             lambda: fg.drawdown_figure(series, colors)),
            ("turnover", "Turnover",
             "Value traded each day (buys + sells) as a fraction of the account; high turnover means high "
             "cost. A first-day buy-in that dwarfs the rest is drawn off the scale.",
             lambda: fg.turnover_figure(series, colors)),
        ]
    else:
        missing.append(NO_BACKTEST)
    if any(s.ic is not None and s.ic.notna().any() for s in series):
        plan += [
            ("ic", "Daily IC",
             "Bars: each day's correlation of the scores with the realised labels; lines: 20-day means. "
             "Consistently above 0 means the signal ranks stocks usefully.",
             lambda: fg.ic_figure(series, colors)),
            ("ic_heatmap", "IC by month",
             "Mean daily IC per calendar month (blue positive, red negative, one scale for all models): "
             "look for months or years where the signal stopped working.",
             lambda: fg.ic_heatmap_figure(series)),
        ]
    if any(s.pred_label is not None for s in series):
        plan.append(
            ("quantile_returns", "Score quantile groups",
             "Each day the stocks are sorted by score and cut into five equal groups (G1 = highest "
             "scores); lines are the sums of each group's mean label. A good signal fans out G1 above "
             "G5 and its long-short line rises.",
             lambda: fg.quantile_figure(series)))
    if not plan:
        missing.append(NO_SIGNAL)
    if data.windows:
        plan.append(
            ("windows", "Rolling windows",
             "Each window run's train (blue), valid (orange) and test (green) segments: the test "
             "segments should tile the test period with no gap or overlap.",
             lambda: fg.windows_figure(data.windows, colors)))
    drawn = []
    for name, title, caption, draw in plan:
        say(f"drawing {title}")
        drawn.append(FigureImage(name=name, title=title, caption=caption, png=draw()))
    return drawn, missing


def _write(path: Path, content: bytes) -> None:
    # Write beside the target, then rename over it: a crash leaves the old file or none, never half.
    # (A plain exclusive open, not mkstemp, so the file gets the umask's mode like any other.)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("xb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(
    experiment: Experiment, out_dir: str | os.PathLike[str], progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the experiment's report: ``index.html`` and each figure as ``<name>.png``.

    Parameters
    ----------
    experiment : Experiment
        A rolling experiment with finished window runs and, per model, a merged run.
    out_dir : path
        The folder to write into (created if missing). Figures of an earlier report that this
        one does not draw are removed, so the folder never mixes two reports.
    progress : callable, optional
        Called with a short line saying what is being read or drawn (it takes seconds).

    Returns
    -------
    Path
        The ``index.html`` written.

    Raises
    ------
    CollectError
        If the experiment has no finished run.
    RecordError
        If the tracking store cannot be read.

    Notes
    -----
    The page is self-contained (figures embedded as base64 PNG, inline CSS, no URL), so it can
    be mailed or opened offline. A model without a merged run, or whose merged run has no
    portfolio backtest, is still reported; the page says what is missing and why.
    """
    from importlib.metadata import PackageNotFoundError, version

    from qroll.report.page import render_page

    say = progress or (lambda _line: None)
    data = gather_report_data(experiment, progress=say)
    drawn, missing = _draw(data, say)
    try:
        qroll_version = version("qroll")
    except PackageNotFoundError:
        qroll_version = ""
    say("writing the page")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fig in drawn:
        _write(out / f"{fig.name}.png", fig.png)
    index = out / "index.html"
    _write(index, render_page(data, drawn, missing, qroll_version).encode("utf-8"))
    for stale in set(FIGURE_NAMES) - {fig.name for fig in drawn}:
        (out / f"{stale}.png").unlink(missing_ok=True)
    return index
