"""What the command line shows: progress of a training run and the tables of an experiment report."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qroll.experiment import ExperimentReport
from qroll.tasks import shape
from qroll.train.trainer import TaskOutcome

__all__ = ["TrainingProgress", "report_tables"]

MARK = {"trained": "[green]trained[/]", "skipped": "[dim]already done[/]", "failed": "[red]FAILED[/]"}


def _num(value: float, digits: int = 4) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.2%}"


class TrainingProgress:
    """A progress bar over the windows, with one line per finished window."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.bar = self.progress.add_task("training", total=total)

    def __enter__(self) -> TrainingProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, outcome: TaskOutcome) -> None:
        name = shape.model_name(outcome.task) or "?"
        ic = ""
        if outcome.recorder is not None and "IC" in outcome.recorder.metrics:
            ic = f"  IC {outcome.recorder.metrics['IC']:+.4f}"
        detail = f"  {outcome.error}" if outcome.error else ""
        self.console.print(
            f"{outcome.index + 1:>3}/{outcome.total}  {MARK[outcome.status]}  {name:<12} "
            f"test {shape.window_text(outcome.task, missing='?')}  {outcome.seconds:6.1f} s{ic}{detail}"
        )
        self.progress.update(self.bar, advance=1, description=f"training ({name})")


def report_tables(report: ExperimentReport) -> list[Table]:
    """Two tables: each window's IC and Rank IC, and each model's merged signal."""
    windows = Table(title=f"{report.experiment}: windows", header_style="bold")
    for col in ("model", "test", "IC", "Rank IC", "run"):
        windows.add_column(col, justify="right" if "IC" in col else "left")
    for w in report.windows:
        windows.add_row(w.model, f"{w.test_start}..{w.test_end}", _num(w.ic), _num(w.rank_ic), w.run_id[:8])
    benchmarks = sorted({m.benchmark for m in report.merged if m.benchmark})
    against = f"; portfolio against {', '.join(benchmarks)}" if benchmarks else ""
    merged = Table(title=f"{report.experiment}: merged signal (all test days{against})", header_style="bold",
                   caption="excess return: annualised (sum of daily excess returns x 238); "
                           "IR and max drawdown of the excess return after costs")
    cols = ("model", "days", "from", "to", "IC", "ICIR", "Rank IC", "Rank ICIR", "excess return",
            "excess w/ cost", "IR w/ cost", "max DD w/ cost")
    for col in cols:
        merged.add_column(col, justify="left" if col in ("model", "from", "to") else "right")
    for m in report.merged:
        merged.add_row(
            m.model,
            str(m.days),
            str(m.first_day.date()) if m.first_day is not None else "-",
            str(m.last_day.date()) if m.last_day is not None else "-",
            _num(m.ic),
            _num(m.icir),
            _num(m.rank_ic),
            _num(m.rank_icir),
            _pct(m.excess_return),
            _pct(m.excess_return_with_cost),
            _num(m.information_ratio_with_cost, 2),
            _pct(m.max_drawdown_with_cost),
        )
    return [windows, merged]
