"""Online rolling of a run config: what ``qroll update``, ``qroll simulate`` and ``qroll signals`` call.

A run config (:class:`~qroll.run_config.RunConfig`) rolls online as one
:class:`~qroll.online.RollingStrategy` named after its experiment, with its templates (each
handler reading the config's ``data`` unless it names a source, as ``qroll run`` trains them),
its ``rolling:`` rule and the trainer it implies (:class:`~qroll.train.TrainerR`, or
:class:`~qroll.train.TrainerRM` through its ``pool``), run by an
:class:`~qroll.online.OnlineManager`:

- :func:`update` brings the experiment to an as-of day: its first windows when it has no online
  window yet (``first_train``), else one ``routine``; then the signal for the next trading day;
- :func:`simulate` replays the trading days of a span, one routine a day on the data as it was
  that day, and judges the day-by-day signal as ``qroll run`` judges a merged signal (IC against
  the labels known at the span's end, and the config's ``backtest:``);
- :func:`online_signal` recomputes an experiment's signal from the store alone.

The library never takes the data's last day as the as-of day by itself; the command line does,
by passing it. Bookkeeping lives in the experiment's tags, never in a file: the digest of the
templates and ``rolling:`` the online windows were rolled with (a config whose templates changed
is refused, naming the keys, until ``--reset``), the config itself (what ``qroll signals
--orders`` needs: data and backtest), and the last as-of day reached.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from qroll.analysis.signal import SignalFigures
from qroll.collect import AverageEnsemble, MergeCollector, RollingGroup
from qroll.data.asof import AsOfSource
from qroll.data.source import Source, open_source
from qroll.errors import ConfigValueError
from qroll.online.bookkeeping import (
    TAG_AS_OF,
    advance_as_of,
    check_template,
    config_tags,
    experiment_tags,
    find_experiment,
    last_as_of,
    reset_online,
    set_experiment_tags,
    stored_online_config,
)
from qroll.online.evaluation import judge, templates
from qroll.online.lock import strategy_lock
from qroll.online.manager import OnlineManager, known_windows
from qroll.online.orders import Orders, next_orders
from qroll.online.signals import OnlinePredCollector
from qroll.online.strategy import RollingStrategy, as_of_day, model_key
from qroll.record import Experiment, ExpManager, Recorder
from qroll.record.tags import TAG_MODEL, TAG_TEST_START
from qroll.tasks import shape
from qroll.tasks.gen import RollingGen
from qroll.train.trainer import TrainerR, TrainProgress

if TYPE_CHECKING:
    # Only the type: a run config is read, never built here (run_config.py sits above online/).
    from qroll.backtest.daily import BacktestResult
    from qroll.run_config import RunConfig
    from qroll.train.pool_trainer import TrainerRM

__all__ = [
    "OnlineWindow",
    "SignalFigures",
    "SimulationResult",
    "UpdateResult",
    "day_scores",
    "experiment_orders",
    "online_manager",
    "online_signal",
    "simulate",
    "update",
]

log = logging.getLogger("qroll.online")



# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class OnlineWindow:
    """An online window: its model, its test window (``2019-04-01..open``) and its run."""

    model: str
    test: str
    run_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class UpdateResult:
    """What :func:`update` did."""

    experiment: str
    as_of: pd.Timestamp
    """The as-of day (a trading day of the data)."""
    next_day: pd.Timestamp | None
    """The trading day the as-of day's signal trades on, when the calendar knows it."""
    first: bool
    """True when the experiment had no online window and its first windows were trained."""
    trained: tuple[str, ...]
    """The windows trained now (``LGBModel 2019-04-01..open``)."""
    online: tuple[OnlineWindow, ...]
    """The online windows after the update."""
    days_predicted: int
    """Trading days the signal gained (after the previous as-of day; all of them the first time)."""
    signal: pd.Series
    """The online signal up to the as-of day, indexed by (``datetime``, ``instrument``)."""
    seconds: float
    """Wall time of the update (seconds)."""

    @property
    def next_signal(self) -> pd.Series:
        """The as-of day's scores by instrument, best first: the signal for the next trading day."""
        return day_scores(self.signal, self.as_of)


@dataclass(frozen=True, kw_only=True, slots=True)
class SimulationResult:
    """What :func:`simulate` did and found."""

    experiment: str
    start: pd.Timestamp
    end: pd.Timestamp
    days: int
    """Trading days replayed."""
    trained: tuple[str, ...]
    """The windows trained during the simulation."""
    signal: pd.Series
    """Day by day: each day's scores as the routine of that day computed them."""
    label: pd.Series | None
    """The raw label of the signal's rows, from the data up to ``end`` (NaN where it looks past it)."""
    summary: SignalFigures
    """IC and portfolio figures, as ``qroll run`` reports a merged signal."""
    backtest: BacktestResult | None
    """The backtest of :attr:`signal` (None with ``backtest: null`` or a span too short)."""
    seconds: float


def day_scores(signal: pd.Series, day: pd.Timestamp) -> pd.Series:
    """The scores of ``day`` by instrument, best first (empty when the signal has no row that day)."""
    if signal.empty:
        return pd.Series(dtype=float)
    dates = signal.index.get_level_values("datetime")
    part = signal[dates == day]
    part.index = part.index.get_level_values("instrument")
    return part.sort_values(ascending=False, kind="stable")


# -- the config's strategy -------------------------------------------------------------------------


def _trainer(config: RunConfig, store: ExpManager, progress: TrainProgress | None) -> TrainerR | TrainerRM:
    if config.pool:
        from qroll.train.pool_trainer import TrainerRM

        return TrainerRM(experiment_name=config.experiment, pool_url=config.pool, exp_manager=store,
                         n_workers=max(config.workers - 1, 0), skip_run_task=config.workers == 0,
                         progress=progress)
    return TrainerR(experiment_name=config.experiment, exp_manager=store, progress=progress)


def online_manager(config: RunConfig, exp_manager: ExpManager, *, begin_time: Any = None,
                   home: str | os.PathLike[str] | None = None,
                   progress: TrainProgress | None = None) -> tuple[OnlineManager, RollingStrategy]:
    """The manager and strategy that roll ``config`` online.

    One :class:`RollingStrategy` named after the config's experiment, with its templates (a
    handler without a ``source`` reads the config's ``data``), ``RollingGen(**config.rolling)``
    and the data's calendar (cut at each as-of day; a config's ``calendar:`` other than
    ``data`` is not used online, where only days with data count); the trainer the config implies.

    Parameters
    ----------
    config : RunConfig
        The run config.
    exp_manager : ExpManager
        The tracking store.
    begin_time : date, optional
        The manager's as-of day for ``first_train``.
    home : path, optional
        The qroll home of the strategy's lock.
    progress : callable, optional
        Called by the trainer with each window's outcome.
    """
    strategy = RollingStrategy(config.experiment, templates(config), RollingGen(**config.rolling),
                               source=config.data, exp_manager=exp_manager)
    manager = OnlineManager(strategy, _trainer(config, exp_manager, progress), begin_time=begin_time,
                            home=home if home is not None else exp_manager.home)
    return manager, strategy


# -- checks ------------------------------------------------------------------------------------------


def _first_window(config: RunConfig) -> pd.Timestamp | None:
    test_key = config.rolling.get("test_key", "test")
    starts = []
    for template in config.tasks:
        span = shape.task_segment(template, test_key)
        if span is not None and span[0] is not None:
            starts.append(pd.Timestamp(span[0]))
    return min(starts) if starts else None


def _trading_day(data: Source, value: Any, what: str) -> pd.Timestamp:
    """``value`` aligned back to a trading day of ``data``; it must not be after the data's last day."""
    day = as_of_day(value, what)
    cal = data.calendar
    if day > cal.last_day:
        raise ConfigValueError(
            f"{what} {day.date()} is after the last day of the data {cal.last_day.date()} ({data.uri}): the "
            f"data of that day has not arrived; add it first, or give {what} {cal.last_day.date()} or earlier"
        )
    return AsOfSource(data, day).as_of


def _check_day(config: RunConfig, day: pd.Timestamp, what: str) -> None:
    first = _first_window(config)
    if first is not None and day < first:
        raise ConfigValueError(
            f"{config.origin}: {what} {day.date()} is before the first window of experiment "
            f"{config.experiment!r} (its test starts {first.date()}): nothing is online yet; give a day "
            f"on or after {first.date()}"
        )


def _check_data(config: RunConfig, data: Source, tags: Mapping[str, str]) -> None:
    last = tags.get(TAG_AS_OF)
    if last and data.calendar.last_day < pd.Timestamp(last):
        raise ConfigValueError(
            f"the data {data.uri} ends {data.calendar.last_day.date()}, before the online models of "
            f"experiment {config.experiment!r} last predicted ({last}): is this an older copy of the data? "
            "point data: at the current one, or pass --reset to start again on this data"
        )


def _store(config: RunConfig, exp_manager: ExpManager | None,
           home: str | os.PathLike[str] | None) -> ExpManager:
    return exp_manager if exp_manager is not None else ExpManager(config.tracking, home=home)


def _window_text(rec: Recorder) -> str:
    end = rec.tags.get("qroll.test_end") or "open"
    return f"{rec.tags.get(TAG_MODEL, '?')} {rec.tags.get(TAG_TEST_START, '?')}..{end}"


def _prepare(config: RunConfig, store: ExpManager, day: pd.Timestamp, data: Source,
             reset: bool, home: Any) -> Experiment:
    """Checks first (nothing written on a bad input), then the reset and the bookkeeping tags."""
    exp = find_experiment(store, config.experiment)
    tags = experiment_tags(exp)
    _check_day(config, day, "the as-of day")
    if not reset:
        check_template(exp, tags, config)
        _check_data(config, data, tags)
    exp = exp if exp is not None else store.get_exp(config.experiment)
    with strategy_lock(store.uri, config.experiment, home if home is not None else store.home):
        if reset:
            log.info("reset: deleted %d online run(s) of %s", reset_online(exp), config.experiment)
        # Only what changed: an update with nothing new writes nothing.
        set_experiment_tags(exp, {k: v for k, v in config_tags(config).items() if tags.get(k) != v})
    return exp


def _next_trading_day(data: Source, day: pd.Timestamp) -> pd.Timestamp | None:
    days = data.calendar.all_days(future=True)
    at = int(days.searchsorted(day, side="right"))
    return days[at] if at < len(days) else None


# -- the commands ------------------------------------------------------------------------------------


def update(config: RunConfig, as_of: Any = None, reset: bool = False, *,
           exp_manager: ExpManager | None = None, home: str | os.PathLike[str] | None = None,
           progress: TrainProgress | None = None) -> UpdateResult:
    """Bring the config's experiment to an as-of day: train what is due, extend, compute the signal.

    With no online window yet, the first windows up to the as-of day are trained (windows the
    experiment already holds, say from ``qroll run``, are reused) and the latest of each template
    goes online; otherwise one routine runs: the windows due by the as-of day are trained, the
    online tags move, the online models' predictions reach the as-of day. Run again with nothing
    new, it trains nothing and writes no prediction.

    Parameters
    ----------
    config : RunConfig
        The run config.
    as_of : date, optional
        The as-of day, aligned back to a trading day; default the data's last day (the command
        line's default; :class:`~qroll.online.OnlineManager` never assumes one).
    reset : bool, default False
        Delete the experiment's online runs first (every run the online rolling tagged) and
        start again from the first windows.
    exp_manager : ExpManager, optional
        The tracking store; default ``ExpManager(config.tracking, home=home)``.
    home : path, optional
        The qroll home (the store's default, the lock, the feature cache).
    progress : callable, optional
        Called by the trainer with each trained window's outcome.

    Returns
    -------
    UpdateResult

    Raises
    ------
    ConfigValueError
        Before anything is written: an as-of day before the first window or after the data's
        last day; templates or ``rolling:`` changed since the online windows were trained (the
        keys named; ``reset=True`` starts again); data whose last day is before the day the
        online models last predicted.
    TrainingError
        If a due window failed to train (the others are kept).
    """
    t0 = time.perf_counter()
    data = open_source(config.data)
    day = _trading_day(data, as_of if as_of is not None else data.calendar.last_day, "the as-of day")
    store = _store(config, exp_manager, home)
    exp = _prepare(config, store, day, data, reset, home)
    previous = None if reset else experiment_tags(exp).get(TAG_AS_OF) or None
    before = set(r.id for r in known_windows(exp).values())
    manager, strategy = online_manager(config, store, begin_time=day, home=home, progress=progress)
    first = not strategy.latest_online()
    if first:
        manager.first_train()
    signal = manager.routine(day)
    advance_as_of(exp, day)
    after = known_windows(exp)
    trained = tuple(sorted(_window_text(r) for r in after.values() if r.id not in before))
    windows = (OnlineWindow(model=r.tags.get(TAG_MODEL, "?"), test=_window_text(r).split(" ", 1)[1],
                            run_id=r.id) for r in strategy.tool.online_models())
    online = tuple(sorted(windows, key=lambda w: (w.model, w.test)))
    days = pd.DatetimeIndex(signal.index.get_level_values("datetime").unique()) if len(signal) else None
    gained = 0 if days is None else len(days)
    if days is not None and previous is not None:
        gained = int((days > pd.Timestamp(previous)).sum())
    return UpdateResult(experiment=config.experiment, as_of=day, next_day=_next_trading_day(data, day),
                        first=first, trained=trained, online=online, days_predicted=gained, signal=signal,
                        seconds=time.perf_counter() - t0)


def simulate(config: RunConfig, start: Any, end: Any,
             progress: Callable[[pd.Timestamp, int, int], None] | None = None, *,
             exp_manager: ExpManager | None = None, home: str | os.PathLike[str] | None = None,
             train_progress: TrainProgress | None = None) -> SimulationResult:
    """Replay the trading days from ``start`` to ``end``: one routine a day on the data cut at that day.

    The experiment's first windows are trained at ``start`` when it has no online window (else it
    carries on from its store); then, for each trading day, the routine of that day (due windows
    trained, predictions extended on data that end that day) and that day's scores are kept. The
    day-by-day signal is then judged as ``qroll run`` judges a merged signal: IC against the raw
    label of the data up to ``end`` (the last days' labels look past it and are NaN), and the
    config's ``backtest:`` on the data up to ``end``. A second simulation of the same span
    trains nothing.

    Parameters
    ----------
    config : RunConfig
        The run config.
    start, end : date
        The first and last day replayed (aligned to trading days).
    progress : callable, optional
        ``progress(day, done, total)`` after each day.
    exp_manager, home, train_progress
        As for :func:`update`.

    Returns
    -------
    SimulationResult

    Raises
    ------
    ConfigValueError
        Before anything is written: ``end`` before ``start``, no trading day between them,
        ``start`` before the first window, ``end`` after the data's last day, and the template and
        data checks of :func:`update`.
    """
    t0 = time.perf_counter()
    data = open_source(config.data)
    first_day = as_of_day(start, "--start")
    last_day = _trading_day(data, end, "--end")
    if last_day < first_day:
        raise ConfigValueError(f"--end {last_day.date()} is before --start {first_day.date()}: swap them")
    cal = data.calendar.days
    days = cal[(cal >= first_day) & (cal <= last_day)]
    if len(days) == 0:
        raise ConfigValueError(f"no trading day of {data.uri} in {first_day.date()}..{last_day.date()}")
    store = _store(config, exp_manager, home)
    _check_day(config, days[0], "--start")
    exp = _prepare(config, store, days[-1], data, False, home)
    before = set(r.id for r in known_windows(exp).values())
    manager, strategy = online_manager(config, store, begin_time=days[0], home=home, progress=train_progress)
    if not strategy.latest_online():
        manager.first_train()
    parts = []
    for i, day in enumerate(days):
        signal = manager.routine(day)
        parts.append(signal[signal.index.get_level_values("datetime") == day])
        if progress is not None:
            progress(day, i + 1, len(days))
    advance_as_of(exp, days[-1])
    daily = pd.concat(parts).sort_index() if parts else pd.Series(dtype=float)
    trained = tuple(sorted(_window_text(r) for r in known_windows(exp).values() if r.id not in before))
    label, summary, result = judge(config, data, daily, days)
    return SimulationResult(experiment=config.experiment, start=days[0], end=days[-1], days=len(days),
                            trained=trained, signal=daily, label=label, summary=summary, backtest=result,
                            seconds=time.perf_counter() - t0)


def _rec_key(rec: Recorder) -> tuple[str, str, pd.Timestamp]:
    # RollingStrategy.rec_key's key, from the tags alone: the signal needs no template.
    start = rec.tags.get(TAG_TEST_START)
    return rec.tags.get(TAG_MODEL, ""), model_key(rec), pd.Timestamp(start) if start else pd.Timestamp.min


def online_signal(exp: Experiment, as_of: Any = None) -> pd.Series:
    """An experiment's online signal up to ``as_of``, recomputed from its runs (nothing trained).

    The signal :meth:`~qroll.online.OnlineManager.routine` returns: each template's windows
    merged (the latest start wins, with their online extensions), then the per-day z-score
    average (Qlib's ``AverageEnsemble``). ``as_of`` defaults to the last as-of day an update or
    a simulation reached, else every day the runs predict.

    Raises
    ------
    ConfigValueError
        If ``as_of`` is not a date.
    """
    day = as_of_day(as_of, "--as-of") if as_of is not None else last_as_of(exp)
    collector = OnlinePredCollector(exp, process_list=[RollingGroup()], rec_key_func=_rec_key, as_of=day)
    signals: pd.Series = AverageEnsemble()(MergeCollector({exp.name: collector}, process_list=[])())
    if day is not None and len(signals):
        signals = signals[signals.index.get_level_values("datetime") <= day]
    return signals


def experiment_orders(exp: Experiment, signal: pd.Series, as_of: Any, *,
                      data: str | Source | None = None) -> Orders:
    """The next trading day's orders of ``exp``'s online signal, with the backtest its run config keeps.

    Parameters
    ----------
    exp : Experiment
        An experiment :func:`update` (or :func:`simulate`) has run on: it keeps the config's data
        and ``backtest:``.
    signal : Series
        Its online signal (:func:`online_signal`).
    as_of : date
        The as-of day.
    data : str or Source, optional
        The market data instead of the kept one.

    Raises
    ------
    ConfigValueError
        If the experiment keeps no config, or its ``backtest:`` is null.
    """
    config = stored_online_config(exp)
    if config is None:
        raise ConfigValueError(f"experiment {exp.name!r} keeps no run config (data, backtest): run "
                               "`qroll update CONFIG.yaml` on it first")
    if config.get("backtest") is None:
        raise ConfigValueError(f"experiment {exp.name!r}'s run config has backtest: null: no strategy to "
                               "compute orders with; give it a backtest: and run `qroll update` again")
    return next_orders(signal, config["backtest"], data if data is not None else config["data"], as_of)
