"""The ``qroll`` command line. It parses arguments and calls the library; no logic lives here.

Errors the user can fix print as one line, ``qroll: error: ...``, and exit with status 2. The
qroll home (``--home``, else ``$QROLL_HOME`` or ``./qroll_runs``) is resolved once, in
:func:`main`, and passed to every command, which passes it down.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console

import qroll
from qroll.errors import ConfigValueError, QrollError

if TYPE_CHECKING:
    from rich.table import Table

    from qroll.online.orders import Orders
    from qroll.pool.worker import WorkSummary
    from qroll.record import Experiment
    from qroll.run_config import RunConfig
    from qroll.train.trainer import TaskOutcome, TrainProgress

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


EXIT_FAILED_RUN = 1
DEMO_CONFIG = Path(__file__).resolve().parent / "examples" / "synthetic_rolling.yaml"


def _run_experiment(cfg_path: str | Path, home: Path, reset: bool, experiment: str | None,
                    tracking: str | None, pool: str | None = None, workers: int | None = None,
                    artifact_root: str | None = None) -> int:
    from qroll.config import load_config
    from qroll.console import TrainingProgress, report_tables
    from qroll.errors import TrainingError
    from qroll.experiment import RollingExperiment
    from qroll.record import ExpManager
    from qroll.run_config import RunConfig

    raw = load_config(cfg_path)
    # The command line wins over the file, and is validated with it (workers=0 needs a pool).
    overrides = {"experiment": experiment, "tracking": tracking, "pool": pool, "workers": workers}
    cfg = RunConfig.from_dict({**raw, **{k: v for k, v in overrides.items() if v is not None}},
                              origin=str(cfg_path))
    out = _console()
    run = RollingExperiment(cfg, ExpManager(cfg.tracking, artifact_root, home=home))
    out.print(f"[bold]{cfg.experiment}[/]: tracking {run.exp_manager.display_uri}, data {cfg.data}")
    tasks = run.check()  # before anything is deleted or written
    if reset:
        out.print(f"reset: deleted {run.reset()} run(s) of {cfg.experiment}")
    failed: TrainingError | None = None
    with TrainingProgress(out, len(tasks)) as progress:
        try:
            run.train(progress=progress, tasks=tasks)
        except TrainingError as exc:
            failed = exc
    if failed is None:
        # Merged only from a complete set of windows: a partial merge would be judged as whole.
        with out.status("merging and backtesting each model's signal"):
            run.evaluate(progress=out.print)
    if failed is None or len(failed.failures) < len(tasks):
        for table in report_tables(run.report()):
            out.print(table)
    if failed is None:
        _write_report(run.experiment, home / "reports", out, required=False)
    if failed is not None:
        print(f"qroll: error: {' '.join(str(failed).split())}", file=sys.stderr)
        return EXIT_FAILED_RUN
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return _run_experiment(args.config, args.home, args.reset, args.experiment, args.tracking, args.pool,
                           args.workers, args.artifact_root)


def cmd_demo(args: argparse.Namespace) -> int:
    return _run_experiment(DEMO_CONFIG, args.home, args.reset, None, args.tracking)


def cmd_collect(args: argparse.Namespace) -> int:
    from qroll.collect.merged import evaluate_merged, stored_config
    from qroll.console import report_tables
    from qroll.experiment import experiment_report
    from qroll.record import ExpManager

    exp = ExpManager(args.tracking, home=args.home).get_exp(args.experiment, create=False)
    out = _console()
    with _console(stderr=True).status("merging and backtesting each model's signal"):
        evaluate_merged(exp, stored_config(exp), source=args.data, progress=out.print)
    for table in report_tables(experiment_report(exp)):
        out.print(table)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from qroll.record import ExpManager

    exp = ExpManager(args.tracking, home=args.home).get_exp(args.experiment, create=False)
    _write_report(exp, args.home / "reports", _console(), out_dir=args.out)
    return 0


def _write_report(exp: Experiment, reports: Path, out: Console, required: bool = True,
                  out_dir: str | None = None) -> Path | None:
    """Write the HTML report of ``exp`` to ``out_dir`` (default ``<reports>/<experiment>/``); say where."""
    from qroll.report import write_report

    folder = Path(out_dir) if out_dir else reports / _file_name(exp.name)
    try:
        with _console(stderr=True).status("writing the report") as status:
            path = write_report(exp, folder, progress=lambda what: status.update(f"report: {what}"))
    except ModuleNotFoundError as exc:
        why = f"the report needs {exc.name} (pip install 'qroll[report]')"
        if required:
            raise QrollError(why) from exc
        out.print(f"report: not written: {why}")
        return None
    out.print(f"report: {path}")
    return path


def _file_name(name: str) -> str:
    """An experiment name as one folder name (MLflow allows '/' and spaces in names)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


def _online_config(args: argparse.Namespace) -> RunConfig:
    """The run config with the command line's overrides (validated with the file, as ``qroll run``)."""
    from qroll.config import load_config
    from qroll.run_config import RunConfig

    overrides = {"experiment": args.experiment, "tracking": args.tracking}
    raw = {**load_config(args.config), **{k: v for k, v in overrides.items() if v is not None}}
    return RunConfig.from_dict(raw, origin=str(args.config))


def _train_lines(out: Console) -> TrainProgress:
    """One line per window the trainer finishes (the number of due windows is not known ahead)."""
    from qroll.console import MARK
    from qroll.tasks import shape

    def show(outcome: TaskOutcome) -> None:
        detail = f"  {outcome.error}" if outcome.error else ""
        out.print(f"  {MARK[outcome.status]}  {shape.model_name(outcome.task) or '?':<12} test "
                  f"{shape.window_text(outcome.task, missing='?')}  {outcome.seconds:6.1f} s{detail}")

    return show


def _scores_table(title: str, scores: pd.Series, top: int) -> Table:
    """The best and worst ``top`` names of a day's scores, side by side."""
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for col in ("rank", "top", "score", "bottom", "score "):
        table.add_column(col, justify="right" if col.startswith("score") or col == "rank" else "left")
    best = scores.head(top)
    worst = scores.tail(top).iloc[::-1]
    for i in range(max(len(best), len(worst))):
        row = [str(i + 1)]
        for part in (best, worst):
            row += [str(part.index[i]), f"{part.iloc[i]:+.4f}"] if i < len(part) else ["", ""]
        table.add_row(*row)
    return table


def _signal_day_text(as_of: pd.Timestamp, next_day: pd.Timestamp | None) -> str:
    if next_day is not None:
        return f"signal of {as_of:%Y-%m-%d} for the next trading day, {next_day:%Y-%m-%d}"
    return f"signal of {as_of:%Y-%m-%d} for the next trading day (after {as_of:%Y-%m-%d})"


def cmd_update(args: argparse.Namespace) -> int:
    from qroll.online.service import update
    from qroll.record import ExpManager

    cfg = _online_config(args)
    out = _console()
    store = ExpManager(cfg.tracking, home=args.home)
    out.print(f"[bold]{cfg.experiment}[/]: online update, tracking {store.display_uri}, data {cfg.data}")
    with _console(stderr=True).status("updating: training what is due, extending the online predictions"):
        result = update(cfg, args.as_of, args.reset, exp_manager=store, home=args.home,
                        progress=_train_lines(out))
    what = "first windows" if result.first else "window(s) due"
    if result.trained:
        out.print(f"trained {len(result.trained)} {what}: {', '.join(result.trained)}")
    else:
        out.print("trained nothing: no window due" if not result.first
                  else "trained nothing: the first windows were already in the store")
    online = ", ".join(f"{w.model} {w.test} (run {w.run_id[:8]})" for w in result.online) or "none"
    out.print(f"online: {online}")
    out.print(f"predicted {result.days_predicted} new trading day(s); the signal reaches "
              f"{result.as_of:%Y-%m-%d}")
    scores = result.next_signal
    if scores.empty:
        out.print(f"no signal on {result.as_of:%Y-%m-%d}: no online window predicts that day")
    else:
        out.print(_scores_table(_signal_day_text(result.as_of, result.next_day), scores, args.top))
    out.print(f"done in {result.seconds:.1f} s")
    return 0


def _out_path(path: str | None) -> Path | None:
    """``--out`` checked before any work: a .parquet or .csv file."""
    if path is None:
        return None
    target = Path(path)
    if target.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigValueError(f"--out {path}: give a .parquet or .csv file")
    return target


def _write_frame(frame: pd.DataFrame, target: Path) -> Path:
    """Write ``frame`` as Parquet or CSV, by the file's suffix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".parquet":
        frame.to_parquet(target)
    else:
        frame.to_csv(target)
    return target


def cmd_signals(args: argparse.Namespace) -> int:
    from qroll.online.service import day_scores, experiment_orders, online_signal
    from qroll.record import ExpManager

    target = _out_path(args.out)
    exp = ExpManager(args.tracking, home=args.home).get_exp(args.experiment, create=False)
    signal = online_signal(exp, args.as_of)
    out = _console()
    if signal.empty:
        raise QrollError(f"experiment {args.experiment!r} has no online signal"
                         + (f" up to {args.as_of}" if args.as_of else "")
                         + ": run `qroll update CONFIG.yaml` first")
    dates = pd.DatetimeIndex(signal.index.get_level_values("datetime"))
    as_of = dates.max()
    out.print(f"[bold]{exp.name}[/]: online signal {dates.min():%Y-%m-%d}..{as_of:%Y-%m-%d}, "
              f"{dates.nunique()} trading days, {len(signal):,} rows")
    out.print(_scores_table(_signal_day_text(as_of, None), day_scores(signal, as_of), args.top))
    if target is not None:
        path = _write_frame(signal.rename("score").to_frame(), target)
        out.print(f"wrote {path} ({len(signal):,} rows: datetime, instrument, score)")
    if args.orders:
        orders = experiment_orders(exp, signal, as_of, data=args.data)
        _print_orders(out, orders)
        if target is not None:
            path = _write_frame(orders.orders, target.with_name(f"{target.stem}_orders{target.suffix}"))
            out.print(f"wrote {path} ({len(orders.orders)} orders)")
    return 0


def _print_orders(out: Console, orders: Orders) -> None:
    from rich.table import Table

    day = (f"{orders.trade_day:%Y-%m-%d}" if orders.trade_day is not None
           else f"the day after {orders.as_of:%Y-%m-%d}")
    held = Table(title=f"holdings at the close of {orders.as_of:%Y-%m-%d} (cash {orders.cash:,.2f})",
                 header_style="bold")
    for col in ("instrument", "amount", "price", "value", "weight", "days held"):
        held.add_column(col, justify="left" if col == "instrument" else "right")
    for code, row in orders.holdings.iterrows():
        held.add_row(str(code), f"{row['amount']:,.2f}", f"{row['price']:.4f}", f"{row['value']:,.2f}",
                     f"{row['weight']:.2%}", str(int(row["days_held"])))
    out.print(held)
    table = Table(title=f"orders for {day}" + (" (estimated amounts)" if orders.estimated else ""),
                  header_style="bold")
    for col in ("instrument", "direction", "amount", "price", "value", "score"):
        table.add_column(col, justify="left" if col in ("instrument", "direction") else "right")
    for _, row in orders.orders.iterrows():
        table.add_row(str(row["instrument"]), str(row["direction"]), f"{row['amount']:,.2f}",
                      f"{row['price']:.4f}", f"{row['value']:,.2f}", f"{row['score']:+.4f}")
    out.print(table)
    target = Table(title=f"target holdings for {day} (cash {orders.target_cash:,.2f} after the orders fill)",
                   header_style="bold")
    for col in ("instrument", "amount", "price", "value", "weight"):
        target.add_column(col, justify="left" if col == "instrument" else "right")
    for code, row in orders.target.iterrows():
        target.add_row(str(code), f"{row['amount']:,.2f}", f"{row['price']:.4f}", f"{row['value']:,.2f}",
                       f"{row['weight']:.2%}")
    out.print(target)
    if orders.note:
        out.print(f"note: {orders.note}")


def cmd_simulate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from qroll.console import report_tables
    from qroll.experiment import ExperimentReport, MergedSignal
    from qroll.online.service import simulate
    from qroll.record import ExpManager

    cfg = _online_config(args)
    target = _out_path(args.out)
    out = _console()
    store = ExpManager(cfg.tracking, home=args.home)
    out.print(f"[bold]{cfg.experiment}[/]: simulating {args.start}..{args.end} day by day, tracking "
              f"{store.display_uri}, data {cfg.data}")
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=out, transient=True)
    with bar:
        task = bar.add_task("replaying the days", total=None)

        def advance(day: pd.Timestamp, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"as of {day:%Y-%m-%d}")

        result = simulate(cfg, args.start, args.end, advance, exp_manager=store, home=args.home,
                          train_progress=_train_lines(out))
    out.print(f"replayed {result.days} trading day(s) {result.start:%Y-%m-%d}..{result.end:%Y-%m-%d} in "
              f"{result.seconds:.1f} s; trained {len(result.trained)} window(s)"
              + (f": {', '.join(result.trained)}" if result.trained else ""))
    name = f"{cfg.experiment} simulated {result.start:%Y-%m-%d}..{result.end:%Y-%m-%d}"
    figures = MergedSignal(model="online signal", **asdict(result.summary))
    out.print(report_tables(ExperimentReport(experiment=name, merged=[figures]))[1])
    out.print(f"IC against the labels known on {result.end:%Y-%m-%d}; the backtest reads no day after it")
    if target is not None:
        path = _write_frame(result.signal.rename("score").to_frame(), target)
        out.print(f"wrote {path} ({len(result.signal):,} rows: each day's scores as computed that day)")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from rich.table import Table

    from qroll.data.source import describe_source, open_source

    info = describe_source(open_source(args.source))
    out = _console()
    future = f" (+{info['future_days']} future days)" if info["future_days"] else ""
    out.print(f"[bold]{info['uri']}[/]")
    span = f"{info['first_day'].date()}..{info['last_day'].date()}"
    out.print(f"calendar  {span}, {info['days']} trading days{future}")
    out.print(f"fields    {', '.join(info['fields'])}")
    table = Table(header_style="bold")
    for col in ("market", "instruments", "listed without data"):
        table.add_column(col, justify="left" if col == "market" else "right")
    for market, counts in info["markets"].items():
        table.add_row(market, str(counts["instruments"]), str(counts["skipped"]))
    out.print(table)
    return 0


def cmd_data_dump(args: argparse.Namespace) -> int:
    from qroll.data.qlib_bin import dump_qlib_bin
    from qroll.data.source import open_source

    source = open_source(args.source)
    markets = args.market or None
    if args.append:
        from qroll.data.qlib_append import append_qlib_bin

        if markets or args.overwrite:
            raise ConfigValueError("--append keeps the directory's markets and files: drop --market and "
                                   "--overwrite")
        with _console(stderr=True).status(f"appending the days of {source.uri} to {args.dir}"):
            done = append_qlib_bin(source, args.dir, end=args.end)
        new = f"; new instruments: {', '.join(done.new_instruments)}" if done.new_instruments else ""
        _console().print(f"appended {done.days} trading day(s) {done.first_day:%Y-%m-%d}.."
                         f"{done.last_day:%Y-%m-%d} to {done.path}{new}")
        return 0
    with _console(stderr=True).status(f"writing {source.uri} to {args.dir} in Qlib's layout"):
        path = dump_qlib_bin(source, args.dir, markets, overwrite=args.overwrite, end=args.end)
    until = f" up to {args.end}" if args.end else ""
    _console().print(f"wrote {path}{until} (calendars/, instruments/, features/)")
    return 0


def cmd_cache_info(args: argparse.Namespace) -> int:
    from rich.table import Table

    from qroll.data.cache import FeatureCache

    cache = FeatureCache.at(args.home)
    entries = cache.info()
    out = _console()
    if not entries:
        out.print(f"the feature cache {cache.folder} is empty")
        return 0
    table = Table(title=str(cache.folder), header_style="bold",
                  caption="full: times computed over the whole calendar; grown: times extended by new days, "
                          "+days: the trading days they added")
    numbers = ("rows", "columns", "MiB", "full", "grown", "+days")
    headers = ("key", "source", "instruments", "rows", "columns", "MiB", "last day", "full", "grown", "+days",
               "created")
    for col in headers:
        table.add_column(col, justify="right" if col in numbers else "left", no_wrap=col == "source")
    for e in entries:
        table.add_row(
            e.key[:12],
            e.source,
            str(e.instruments),
            f"{e.rows:,}",
            str(e.columns),
            f"{e.size / 2**20:,.1f}",
            e.last_day or "-",
            str(e.computed),
            str(e.extensions),
            str(e.days_appended),
            e.created[:19],
        )
    out.print(table)
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from qroll.data.cache import FeatureCache

    cache = FeatureCache.at(args.home)
    removed = cache.clear()
    noun = "entry" if removed == 1 else "entries"
    _console().print(f"removed {removed} feature-cache {noun} from {cache.folder}")
    return 0


def cmd_store_upgrade(args: argparse.Namespace) -> int:
    from qroll.record.creation import upgrade_store
    from qroll.record.store import load_mlflow

    load_mlflow()  # MLflow's INFO lines (migrations) quieted, as for every other command
    tracking = args.tracking or f"sqlite:///{args.home / 'mlflow.db'}"
    _console().print(upgrade_store(tracking, artifact_root=str(args.home / "artifacts")))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from qroll.home import data_uri, store_wait
    from qroll.pool.manager import default_url
    from qroll.pool.worker import import_function
    from qroll.record import ExpManager
    from qroll.train.workers import run_workers

    train_func = import_function(args.train_func) if args.train_func else None
    if args.ray_address:
        from qroll.train.ray_workers import check_address

        check_address(args.ray_address)  # not a Ray cluster: fail before the store or pool is opened
    wait = store_wait(args.store_wait)  # a bad value (or $QROLL_STORE_WAIT) fails before anything starts
    if args.tracking:
        # An unusable store fails here, before any claim; the workers in this process reuse it.
        ExpManager.shared(args.tracking, args.artifact_root, home=args.home)
    pool_url = args.pool or default_url(args.home)
    kwargs = {"experiment": args.experiment, "tracking": args.tracking, "lease_seconds": args.lease_seconds,
              "stop_when_empty": args.until_empty, "idle_poll": args.idle_poll, "train_func": train_func,
              "artifact_root": args.artifact_root, "home": args.home, "store_wait": wait, "data": data_uri()}
    if args.ray or args.ray_address:
        from qroll.pool.admin import open_pool
        from qroll.train.ray_workers import work_on_ray

        total = work_on_ray(args.ray_address, args.concurrency, num_cpus=args.ray_cpus, pool_url=pool_url,
                            pool_name=args.pool_name, **kwargs)
        with open_pool(pool_url, args.pool_name) as tm:
            stat = ", ".join(f"{s} {n}" for s, n in sorted(tm.task_stat().items()))
        _console().print(f"{args.concurrency} Ray worker(s) finished; pool {args.pool_name}: {stat}")
        if total is None:  # a work() that reports nothing
            return 0
        return _worker_outcome(total, args.pool_name, "the Ray workers had ")
    return _worker_outcome(run_workers(pool_url, args.pool_name, concurrency=args.concurrency, **kwargs),
                           args.pool_name)


def _worker_outcome(summary: WorkSummary, pool_name: str, who: str = "") -> int:
    """Exit 0, or 1 (not bad input: the workers ran, but not every task they took succeeded)."""
    if summary.ok:
        return 0
    print(f"qroll worker: pool {pool_name}: {who}{summary.failed} failed task attempt(s), {summary.deferred} "
          f"task(s) given back unrun, {summary.done} done (see `qroll pool list --pool-name {pool_name}`)",
          file=sys.stderr)
    if summary.stopped:
        print(f"qroll: error: a worker stopped: {summary.stopped}", file=sys.stderr)
    return EXIT_FAILED_RUN


def _pool_query(args: argparse.Namespace) -> dict[str, object]:
    from qroll.pool.admin import build_query

    return build_query(args.status or (), args.id or (), args.where or ())


def cmd_pool(args: argparse.Namespace) -> int:
    from rich.table import Table

    from qroll.pool.admin import open_pool, remove_tasks, reset_running, retry_failed, task_rows
    from qroll.pool.manager import default_url

    query = _pool_query(args)  # a bad filter fails before the database is opened
    if args.pool_command == "remove" and not query and not args.all:
        raise QrollError("remove needs a filter (--status, --id, --where) or --all to delete every task")
    out = _console()
    with open_pool(args.pool or default_url(args.home), args.pool_name) as tm:
        if args.pool_command == "status":
            stat = tm.task_stat(query)
            table = Table(title=f"pool {args.pool_name}", header_style="bold")
            table.add_column("status")
            table.add_column("tasks", justify="right")
            for status, n in sorted(stat.items()):
                table.add_row(status, str(n))
            table.add_row("[bold]total[/]", str(sum(stat.values())))
            out.print(table)
        elif args.pool_command == "list":
            table = Table(title=f"pool {args.pool_name}", header_style="bold")
            cols = ("id", "status", "attempts", "lease owner", "lease expires", "model", "test", "last error")
            for col in cols:
                table.add_column(col, justify="right" if col in ("id", "attempts") else "left")
            for r in task_rows(tm, query):
                table.add_row(str(r.id), r.status, f"{r.attempts}/{r.max_attempts}", r.lease_owner,
                              r.lease_expires, r.model, r.test, r.last_error[:80])
            out.print(table)
        elif args.pool_command == "retry":
            out.print(f"retry: {retry_failed(tm, query)} failed task(s) back to waiting")
        elif args.pool_command == "reset":
            n = reset_running(tm, query, all_running=args.all_running)
            which = "running" if args.all_running else "running task(s) with an expired lease"
            out.print(f"reset: {n} {which} back to waiting")
        else:
            out.print(f"remove: deleted {remove_tasks(tm, query, all=args.all)} task(s)")
    return 0


def _add_online_commands(sub: argparse._SubParsersAction) -> None:
    update = sub.add_parser(
        "update", help="online rolling, after new data: train the windows due, extend the online models' "
                       "predictions to the as-of day, show the signal for the next trading day")
    update.add_argument("config", metavar="CONFIG.yaml", help="a run config file")
    update.add_argument("--as-of", metavar="DATE",
                        help="the day whose data has arrived (default the data's last trading day; a "
                             "non-trading day means the trading day before it)")
    update.add_argument("--reset", action="store_true",
                        help="delete the experiment's online runs first and start again from the first "
                             "windows (needed when the templates or rolling: changed)")
    update.add_argument("--experiment", help="override the config's experiment name")
    update.add_argument("--tracking", metavar="URI", help="override the config's MLflow tracking URI")
    update.add_argument("--top", type=int, default=5, metavar="N",
                        help="names shown at the top and at the bottom of the signal (default 5)")
    update.set_defaults(func=cmd_update)

    signals = sub.add_parser("signals",
                             help="an experiment's online signal (and the next trading day's orders)")
    signals.add_argument("experiment", metavar="EXPERIMENT", help="the MLflow experiment name")
    signals.add_argument("--as-of", metavar="DATE",
                         help="the signal's last day (default the last day `qroll update` reached)")
    signals.add_argument("--out", metavar="FILE",
                         help="write the signal up to the as-of day to FILE.parquet or FILE.csv (with "
                              "--orders, the orders to FILE_orders.parquet|csv too)")
    signals.add_argument("--orders", action="store_true",
                         help="the next trading day's target holdings and orders, by the run config's "
                              "backtest strategy from the holdings of its backtest of the signal (amounts "
                              "estimated at the as-of close)")
    signals.add_argument("--tracking", metavar="URI",
                         help="MLflow tracking URI (default: the qroll home's SQLite)")
    signals.add_argument("--data", metavar="SOURCE_URI",
                         help="the market data for --orders (default the run config's, kept by "
                              "`qroll update`)")
    signals.add_argument("--top", type=int, default=5, metavar="N",
                         help="names shown at the top and at the bottom (default 5)")
    signals.set_defaults(func=cmd_signals)

    simulate = sub.add_parser(
        "simulate", help="replay trading days one by one, each on the data as it stood that day; then the "
                         "day-by-day signal's IC and backtest")
    simulate.add_argument("config", metavar="CONFIG.yaml", help="a run config file")
    simulate.add_argument("--start", required=True, metavar="DATE", help="the first trading day replayed")
    simulate.add_argument("--end", required=True, metavar="DATE",
                          help="the last trading day replayed (labels and the backtest read nothing "
                               "after it)")
    simulate.add_argument("--experiment", help="override the config's experiment name")
    simulate.add_argument("--tracking", metavar="URI", help="override the config's MLflow tracking URI")
    simulate.add_argument("--out", metavar="FILE",
                          help="write the day-by-day signal to FILE.parquet or FILE.csv")
    simulate.set_defaults(func=cmd_simulate)


def _add_pool_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", metavar="URL",
                        help="the pool database: sqlite:///path/pool.db or postgresql://... "
                             "(default: the qroll home's pool.db)")
    parser.add_argument("--pool-name", required=True, metavar="NAME",
                        help="the pool (a pool trainer's experiment name)")


def _add_pool_commands(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser("worker", help="train tasks from a pool until stopped (or until it is empty)")
    _add_pool_args(worker)
    worker.add_argument("--experiment", help="the MLflow experiment (default: the pool name)")
    worker.add_argument("--tracking", metavar="URI", help="MLflow tracking URI (default: the qroll home's)")
    worker.add_argument("--artifact-root", metavar="DIR_OR_URI",
                        help="where experiments this worker creates keep artifacts: a folder every "
                             "machine shares, or an artifact URI (default: beside a SQLite store, or "
                             "the qroll home's artifacts; a tracking server chooses its own)")
    worker.add_argument("--store-wait", type=float, metavar="S",
                        help="seconds to wait for a tracking store that went away before giving the "
                             "task back to the pool (default $QROLL_STORE_WAIT or 60)")
    worker.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="worker processes (default 1)")
    worker.add_argument("--until-empty", action="store_true",
                        help="exit once no task is waiting or running (default: keep polling)")
    worker.add_argument("--lease-seconds", type=float, default=60.0, metavar="S",
                        help="lease of a claimed task, renewed every third (default 60)")
    worker.add_argument("--idle-poll", type=float, default=1.0, metavar="S",
                        help="seconds between looks at an idle pool (default 1)")
    worker.add_argument("--train-func", metavar="MODULE:FUNC",
                        help="the training function (default qroll.train.task:task_train)")
    worker.add_argument("--ray", action="store_true",
                        help="run the --concurrency workers as Ray tasks (pip install 'qroll[ray]'); "
                             "a local Ray instance unless --ray-address")
    worker.add_argument("--ray-address", metavar="ADDR",
                        help="the Ray cluster (ray://HEAD:10001, HEAD:6379 or auto); implies --ray")
    worker.add_argument("--ray-cpus", type=float, default=1.0, metavar="N",
                        help="CPUs Ray reserves per worker on its node (default 1); the workers are "
                             "spread over the nodes")
    worker.set_defaults(func=cmd_worker)

    pool = sub.add_parser("pool", help="inspect and repair a task pool")
    pool_sub = pool.add_subparsers(dest="pool_command", metavar="ACTION", required=True)
    helps = {"status": "count the tasks by status", "list": "a table of the tasks",
             "retry": "put failed tasks back to waiting",
             "reset": "put running tasks whose lease expired back to waiting",
             "remove": "delete tasks (needs a filter or --all)"}
    for action, text in helps.items():
        p = pool_sub.add_parser(action, help=text)
        _add_pool_args(p)
        p.add_argument("--status", action="append", help="only tasks in this status (repeatable)")
        p.add_argument("--id", action="append", type=int, help="only this task id (repeatable)")
        p.add_argument("--where", action="append", metavar="PATH=VALUE",
                       help="only tasks whose definition has this value, e.g. model.class=LGBModel")
        if action == "reset":
            p.add_argument("--all-running", action="store_true",
                           help="every running task, leases or not (their workers can no longer commit)")
        if action == "remove":
            p.add_argument("--all", action="store_true", help="allow removing every task of the pool")
        p.set_defaults(func=cmd_pool)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qroll",
        description="Rolling model management: generate walk-forward tasks, train, record, collect.",
    )
    parser.add_argument("--version", action="version", version=f"qroll {qroll.__version__}")
    parser.add_argument(
        "--home", metavar="DIR", help="qroll's home for caches and runs (default $QROLL_HOME or ./qroll_runs)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    tasks = sub.add_parser("tasks", help="show the rolling windows a run config generates, without training")
    tasks.add_argument("config", metavar="CONFIG.yaml", help="a run config file")
    tasks.add_argument("--width", type=int, default=72, help="timeline width in columns (default 72)")
    tasks.add_argument("--no-timeline", action="store_true", help="print the table only")
    tasks.set_defaults(func=cmd_tasks)

    run = sub.add_parser("run", help="run a whole rolling experiment: generate, train, collect, report")
    run.add_argument("config", metavar="CONFIG.yaml", help="a run config file")
    run.add_argument(
        "--reset", action="store_true", help="delete the experiment's runs first and train everything"
    )
    run.add_argument("--experiment", help="override the config's experiment name")
    run.add_argument("--tracking", metavar="URI", help="override the config's MLflow tracking URI")
    run.add_argument("--artifact-root", metavar="DIR_OR_URI",
                     help="where a new experiment keeps artifacts (a shared folder or an artifact URI) "
                          "when --tracking is a database; default beside a SQLite store, else the "
                          "qroll home's artifacts")
    run.add_argument("--pool", metavar="URL", help="train through a task pool at URL (TrainerRM)")
    run.add_argument("--workers", type=int, metavar="N",
                     help="processes training from the pool: this one and N-1 spawned (default 1); "
                          "0 trains nothing here and waits for `qroll worker`s")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo", help="the bundled rolling experiment on the synthetic market (a few minutes)"
    )
    demo.add_argument("--reset", action="store_true", help="train everything again")
    demo.add_argument(
        "--tracking", metavar="URI", help="MLflow tracking URI (default: the qroll home's SQLite)"
    )
    demo.set_defaults(func=cmd_demo)

    collect = sub.add_parser(
        "collect", help="merge and evaluate a finished experiment's windows; print the results tables")
    collect.add_argument("experiment", metavar="EXPERIMENT", help="the MLflow experiment name")
    collect.add_argument(
        "--tracking", metavar="URI", help="MLflow tracking URI (default: the qroll home's SQLite)"
    )
    collect.add_argument("--data", metavar="SOURCE_URI",
                         help="the market data to backtest on (default: the data the runs were trained on)")
    collect.set_defaults(func=cmd_collect)

    report = sub.add_parser("report", help="write an experiment's HTML report (tables and figures)")
    report.add_argument("experiment", metavar="EXPERIMENT", help="the MLflow experiment name")
    report.add_argument("--out", metavar="DIR",
                        help="the folder for index.html and the figures (default <home>/reports/EXPERIMENT)")
    report.add_argument(
        "--tracking", metavar="URI", help="MLflow tracking URI (default: the qroll home's SQLite)"
    )
    report.set_defaults(func=cmd_report)

    data = sub.add_parser("data", help="inspect a data source, or write it in Qlib's binary layout")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = data_sub.add_parser("info", help="calendar range, markets and instrument counts, fields")
    info.add_argument(
        "source", metavar="SOURCE_URI", help="qlib:///dir, table:///file.parquet, synthetic://?seed=0"
    )
    info.set_defaults(func=cmd_data_info)
    dump = data_sub.add_parser("dump", help="write a source in Qlib's binary layout (what dump_bin writes)")
    dump.add_argument("source", metavar="SOURCE_URI")
    dump.add_argument("dir", metavar="DIR", help="the Qlib data directory to create")
    dump.add_argument("--market", action="append", help="a market to write (repeatable; default all)")
    dump.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")
    dump.add_argument("--end", metavar="DATE",
                      help="the last trading day to write (default the source's last): the data as it stood "
                           "on that day")
    dump.add_argument("--append", action="store_true",
                      help="add the source's trading days after DIR's last day to DIR (up to --end), as "
                           "Qlib's data collectors do; the source must agree with DIR on every day DIR holds")
    dump.set_defaults(func=cmd_data_dump)

    _add_online_commands(sub)

    cache = sub.add_parser("cache", help="the feature cache: list or clear its entries")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    cache_sub.add_parser("info", help="list the entries").set_defaults(func=cmd_cache_info)
    cache_sub.add_parser("clear", help="delete every entry").set_defaults(func=cmd_cache_clear)
    store = sub.add_parser("store", help="the MLflow tracking store: upgrade its schema")
    store_sub = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    upgrade = store_sub.add_parser(
        "upgrade", help="migrate the store to this MLflow's schema, under the lock openers take")
    upgrade.add_argument("--tracking", metavar="URI",
                         help="MLflow tracking URI (default: the qroll home's SQLite)")
    upgrade.set_defaults(func=cmd_store_upgrade)
    _add_pool_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from qroll.home import qroll_home

    parser = build_parser()
    args = parser.parse_args(argv)
    # Migrations log at INFO to the console; the command line says what matters. (MLflow's own
    # loggers are quieted by the record layer once MLflow is loaded: qroll.record.store.)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Resolved once, absolute: every command passes it down (the library reads no --home).
    args.home = qroll_home(args.home).resolve()
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
