"""The ``qroll`` command line. It parses arguments and calls the library; no logic lives here.

Errors the user can fix print as one line, ``qroll: error: ...``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

import qroll
from qroll.errors import QrollError

__all__ = ["main"]

EXIT_BAD_INPUT = 2


def _console(stderr: bool = False) -> Console:
    # Piped output (CI logs, `| less`) gets a wide page so tables are not cropped to 80 columns.
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 160, highlight=False)


def cmd_tasks(args: argparse.Namespace) -> int:
    from qroll.run_config import RunConfig
    from qroll.tasks.timeline import draw_windows, tasks_table

    cfg = RunConfig.from_file(args.config)
    rg = cfg.rolling_gen()
    tasks = cfg.generate_tasks()
    out = _console()
    gaps = sorted({str(rg.trunc_days_for(t)) for t in cfg.tasks})
    step = f"{rg.step} trading days" if isinstance(rg.step, int) else f"one {rg.step} period"
    out.print(
        f"[bold]{cfg.origin}[/]: {len(tasks)} tasks from {len(cfg.tasks)} template(s); "
        f"step {step}, {rg.rtype}, trunc_days {rg.trunc_days!r} (gap {', '.join(gaps)}), "
        f"calendar {rg.ta.cals[0].date()}..{rg.ta.cals[-1].date()}"
    )
    out.print(tasks_table(tasks))
    if not args.no_timeline:
        out.print("[bold]timeline[/]  * train  v valid  x test  > open-ended")
        out.print(draw_windows(tasks, rg.ta, width=args.width), markup=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qroll",
        description="Rolling model management: generate walk-forward tasks, train, record, collect.",
    )
    parser.add_argument("--version", action="version", version=f"qroll {qroll.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    tasks = sub.add_parser("tasks", help="show the rolling windows a run config generates, without training")
    tasks.add_argument("config", metavar="CONFIG.yaml", help="a run config file")
    tasks.add_argument("--width", type=int, default=72, help="timeline width in columns (default 72)")
    tasks.add_argument("--no-timeline", action="store_true", help="print the table only")
    tasks.set_defaults(func=cmd_tasks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args))
    except QrollError as exc:
        # One readable line, no traceback: the message already says what to do.
        print(f"qroll: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
