"""``OnlineManager``: run online strategies day after day (Qlib's, with reference §8's fixes).

What a routine on an as-of day does, for each strategy, under the strategy's lock
(:mod:`qroll.online.lock`):

1. the windows due on the day (:meth:`~qroll.online.RollingStrategy.prepare_tasks`) are looked up
   by window key (:func:`~qroll.tasks.shape.window_key`) and only those with no run are trained,
   on the data as of the day (the trainer's ``as_of``: a window trained on day d sees nothing
   after d, and its ``pred.pkl`` ends on d): a second routine on the same day trains nothing; a
   delay trainer's ``end_train`` fits them within the routine (Qlib's ``delay_prepare`` is not
   ported);
2. the online tags move (:meth:`~qroll.online.RollingStrategy.prepare_online_models`), new ones
   first;
3. the online models' predictions are extended **to the as-of day** (Qlib: to the calendar's
   end), on data that ends on it.

Then the signal is recomputed from the runs (latest-start window wins per template, then the
per-day z-score average across templates and strategies, Qlib's :class:`AverageEnsemble`), cut at
the as-of day, never appended to. The manager holds no state of its own that matters: there is
nothing to pickle, and a manager rebuilt from the same strategies and store carries on (Qlib's
``history`` is a query over the runs' tags here). The library never takes the data's last day as
the as-of day by itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from qroll.collect import AverageEnsemble, MergeCollector
from qroll.config import accepts_keyword
from qroll.errors import ConfigTypeError, ConfigValueError
from qroll.home import qroll_home
from qroll.online.lock import strategy_lock
from qroll.online.strategy import OnlineStrategy, as_of_day
from qroll.online.tool import OnlineToolR
from qroll.pool.run import takes_keyword
from qroll.record import Experiment, ExpManager, Recorder
from qroll.record.tags import KIND_MERGED, TAG_KIND, TAG_ONLINE_SINCE, TAG_WINDOW_KEY
from qroll.tasks.shape import window_key
from qroll.train.trainer import PHASE_BEGIN, TAG_PHASE, Trainer, TrainerR

__all__ = ["OnlineManager", "known_windows"]

log = logging.getLogger("qroll.online")


def known_windows(experiment: Experiment) -> dict[str, Recorder]:
    """The newest trained run of each window key in ``experiment`` (one listing).

    A delay trainer's runs not fitted yet and merged-signal runs do not count.
    """
    found: dict[str, Recorder] = {}
    for rec in experiment.list_recorders(status={Recorder.STATUS_FI}):
        key = rec.tags.get(TAG_WINDOW_KEY)
        unusable = rec.tags.get(TAG_PHASE) == PHASE_BEGIN or rec.tags.get(TAG_KIND) == KIND_MERGED
        if not key or key in found or unusable:
            continue
        found[key] = rec
    return found


def _strategies(value: OnlineStrategy | Iterable[OnlineStrategy]) -> list[OnlineStrategy]:
    items = [value] if isinstance(value, OnlineStrategy) else list(value)
    bad = [s for s in items if not isinstance(s, OnlineStrategy)]
    if bad:
        raise ConfigTypeError(f"expected OnlineStrategy objects (RollingStrategy, ...), got {bad[0]!r}")
    return items


class OnlineManager:
    """Train, tag and extend online strategies as the data gains days (Qlib's ``OnlineManager``).

    Parameters
    ----------
    strategies : OnlineStrategy or list of OnlineStrategy
        Each records into its own experiment (``name_id``); names must differ.
    trainer : Trainer, optional
        Shared by all strategies; default ``TrainerR(exp_manager=exp_manager)``. A pool trainer
        (``TrainerRM``) and the delay trainers work too.
    begin_time : date, optional
        The as-of day of :meth:`first_train` and of a :meth:`routine` called without
        ``cur_time``. Qlib defaults it to the data's last day; qroll never guesses it.
    freq : {"day"}
        The data frequency.
    exp_manager : ExpManager, optional
        The tracking store of the default trainer (a given trainer brings its own); strategies
        that name no store use the trainer's.
    home : path, optional
        The qroll home of the strategies' locks (see :func:`qroll.home.qroll_home`).

    Attributes
    ----------
    cur_time : pandas.Timestamp or None
        The as-of day of the last routine (``begin_time`` before any).
    signals : pandas.Series or None
        The signal the last routine computed (Qlib's ``get_signals()``).
    status : {"online", "simulating"}
        ``"simulating"`` while :meth:`simulate` runs.

    Raises
    ------
    ConfigValueError, ConfigTypeError
        For a ``freq`` other than ``"day"``, two strategies with one name, a strategy whose store
        is not the trainer's, or an argument of the wrong kind.

    Examples
    --------
    A day of online rolling (a :class:`~qroll.online.RollingStrategy` per template family)::

        manager = OnlineManager(RollingStrategy("rolling", task, RollingGen(step=20, trunc_days="auto")),
                                begin_time="2018-01-02")
        manager.first_train()                   # the windows up to 2018-01-02; the latest online
        signal = manager.routine("2018-01-31")  # due windows trained, predictions to 01-31
    """

    STATUS_ONLINE = "online"
    STATUS_SIMULATING = "simulating"

    def __init__(
        self,
        strategies: OnlineStrategy | Iterable[OnlineStrategy],
        trainer: Trainer | None = None,
        begin_time: Any = None,
        freq: str = "day",
        *,
        exp_manager: ExpManager | None = None,
        home: str | os.PathLike[str] | None = None,
    ) -> None:
        if freq != "day":
            raise ConfigValueError(f"freq={freq!r} is not supported: qroll's online rolling runs on daily "
                                   "data ('day')")
        self.trainer: Trainer = trainer if trainer is not None else TrainerR(exp_manager=exp_manager)
        self.strategies: list[OnlineStrategy] = []
        self.begin_time = None if begin_time is None else as_of_day(begin_time, "begin_time")
        self.cur_time: pd.Timestamp | None = self.begin_time
        self.freq = freq
        self.home = qroll_home(home).resolve()
        self.status = self.STATUS_ONLINE
        self.signals: pd.Series | None = None
        self._store: ExpManager | None = None
        self._add(_strategies(strategies))

    def __repr__(self) -> str:
        names = [s.name_id for s in self.strategies]
        return (f"OnlineManager(strategies={names}, trainer={type(self.trainer).__name__}, "
                f"cur_time={self.cur_time!r})")

    # -- plumbing --------------------------------------------------------------------------------
    @property
    def exp_manager(self) -> ExpManager:
        """The trainer's tracking store (the strategies record into it)."""
        if self._store is None:
            manager = getattr(self.trainer, "manager", None)
            self._store = manager if isinstance(manager, ExpManager) else ExpManager()
        return self._store

    def _add(self, new: Sequence[OnlineStrategy]) -> None:
        names = [s.name_id for s in self.strategies] + [s.name_id for s in new]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ConfigValueError(f"strategies {doubled} appear twice: each strategy needs a name_id of its "
                                   "own (it names the experiment its runs go into)")
        store = self.exp_manager
        for strategy in new:
            tool = strategy.tool
            if isinstance(tool, OnlineToolR):
                if tool.exp_manager is None:
                    tool.exp_manager = store
                elif tool.exp_manager.uri != store.uri:
                    raise ConfigValueError(
                        f"strategy {strategy.name_id!r} records into {tool.exp_manager.display_uri} but the "
                        f"trainer trains into {store.display_uri}: give both the same ExpManager"
                    )
        self.strategies.extend(new)

    def _as_of(self, cur_time: Any) -> pd.Timestamp:
        if cur_time is not None:
            return as_of_day(cur_time)
        if self.cur_time is None:
            raise ConfigValueError(
                "no as-of day: pass cur_time=... (the day whose data has arrived), or build the manager "
                "with OnlineManager(begin_time=...); qroll never takes the data's last day by itself"
            )
        return self.cur_time

    def _lock(self, strategy: OnlineStrategy) -> Any:
        return strategy_lock(self.exp_manager.uri, strategy.name_id, self.home)

    def _train(self, strategy: OnlineStrategy, tasks: Sequence[Mapping[str, Any]],
               as_of: pd.Timestamp) -> list[Recorder]:
        """The runs of ``tasks``: each window's existing run, or a new one trained (and ended) now, on
        the data as of ``as_of`` (for a trainer that takes it: nothing after the day is visible)."""
        if not tasks:
            return []
        keys = [window_key(task) for task in tasks]
        known = known_windows(self.exp_manager.get_exp(strategy.name_id))
        found = {key: known[key] for key in keys if key in known}
        todo: list[int] = []
        for i, key in enumerate(keys):
            # One fit per window, even if two tasks name it.
            if key not in found and all(keys[j] != key for j in todo):
                todo.append(i)
        if todo:
            log.info("strategy %r: training %d window(s)", strategy.name_id, len(todo))
            day = {"as_of": as_of} if takes_keyword(self.trainer.train, "as_of") else {}
            runs = self.trainer.train([tasks[i] for i in todo], experiment_name=strategy.name_id, **day)
            # Delay trainers fit in end_train: here, within the routine, so the runs can predict.
            day = {"as_of": as_of} if takes_keyword(self.trainer.end_train, "as_of") else {}
            runs = self.trainer.end_train(runs, experiment_name=strategy.name_id, **day)
            for i, rec in zip(todo, runs, strict=True):
                if rec.tags.get(TAG_WINDOW_KEY) != keys[i]:
                    rec.set_tags(**{TAG_WINDOW_KEY: keys[i]})  # a run trained before window keys existed
                found[keys[i]] = rec
        return [found[key] for key in keys]

    # -- Qlib's API ------------------------------------------------------------------------------
    def first_train(self, strategies: Iterable[OnlineStrategy] | None = None,
                    model_kwargs: Mapping[str, Any] | None = None) -> None:
        """Train each strategy's first windows up to the as-of day and put the latest online.

        The as-of day is :attr:`cur_time` (``begin_time`` before any routine). Windows already in
        the store are not trained again. No signal is computed (as in Qlib).

        Raises
        ------
        ConfigValueError
            With no as-of day (no ``begin_time``), or one before a template's first window.
        """
        as_of = self._as_of(None)
        for strategy in self.strategies if strategies is None else _strategies(strategies):
            with self._lock(strategy):
                # Qlib's first_tasks() takes no day: such a strategy rolls on what it knows.
                dated = accepts_keyword(strategy.first_tasks, "cur_time", default=True)
                first = strategy.first_tasks(as_of) if dated else strategy.first_tasks()
                trained = self._train(strategy, first, as_of)
                strategy.prepare_online_models(trained, cur_time=as_of, **dict(model_kwargs or {}))

    def routine(self, cur_time: Any = None, task_kwargs: Mapping[str, Any] | None = None,
                model_kwargs: Mapping[str, Any] | None = None,
                signal_kwargs: Mapping[str, Any] | None = None) -> pd.Series:
        """One day of online rolling: train what is due, move the tags, extend, recompute the signal.

        Parameters
        ----------
        cur_time : date, optional
            The as-of day; default :attr:`cur_time` (the last routine's, else ``begin_time``).
        task_kwargs : dict, optional
            Passed to each strategy's ``prepare_tasks``.
        model_kwargs : dict, optional
            Passed to each strategy's ``prepare_online_models``.
        signal_kwargs : dict, optional
            Passed to :meth:`prepare_signals`.

        Returns
        -------
        pandas.Series
            The signal up to ``cur_time`` (:meth:`prepare_signals`).

        Raises
        ------
        ConfigValueError
            With no as-of day at all.
        TrainingError
            If a due window failed to train; the others are kept, and the next routine
            trains only what is still missing.
        """
        as_of = self._as_of(cur_time)
        for strategy in self.strategies:
            with self._lock(strategy):
                tasks = strategy.prepare_tasks(as_of, **dict(task_kwargs or {}))
                trained = self._train(strategy, tasks, as_of)
                strategy.prepare_online_models(trained, cur_time=as_of, **dict(model_kwargs or {}))
                strategy.tool.update_online_pred(to_date=as_of)
        self.cur_time = as_of
        return self.prepare_signals(**dict(signal_kwargs or {}))

    def get_collector(self, **kwargs: Any) -> MergeCollector:
        """``MergeCollector({name_id: strategy.get_collector(**kwargs)})``, cut at :attr:`cur_time`
        unless ``as_of`` is given."""
        as_of = kwargs.pop("as_of", self.cur_time)
        collectors = {}
        for s in self.strategies:
            # A strategy written for Qlib's get_collector(...) takes no day: its collector is not cut.
            day = {"as_of": as_of} if accepts_keyword(s.get_collector, "as_of", default=True) else {}
            collectors[s.name_id] = s.get_collector(**kwargs, **day)
        return MergeCollector(collectors, process_list=[])

    def prepare_signals(self, prepare_func: Callable[[Any], Any] | None = None, over_write: bool = False,
                        *, as_of: Any = None) -> pd.Series:
        """Recompute the signal from the runs, up to ``as_of`` (default :attr:`cur_time`).

        Parameters
        ----------
        prepare_func : callable, default AverageEnsemble()
            Turns the collected ``{(strategy, "pred"): {key: predictions}}`` into the signal.
        over_write : bool
            Ignored: the signal is always recomputed whole (Qlib appends unless it is set, and
            duplicates a day on every append).
        as_of : date, optional
            The last day of the signal.

        Returns
        -------
        pandas.Series
            Indexed by (``datetime``, ``instrument``), sorted, no duplicated row; also kept as
            :attr:`signals`.
        """
        day = self.cur_time if as_of is None else as_of_day(as_of, "as_of")
        collected = self.get_collector(as_of=day)()
        signals = (prepare_func or AverageEnsemble())(collected)
        if day is not None and len(signals):
            signals = signals[signals.index.get_level_values("datetime") <= day]
        self.signals = signals
        return signals

    def get_signals(self) -> pd.Series | None:
        """The signal of the last routine (None before any, as in Qlib)."""
        return self.signals

    def add_strategy(self, strategies: OnlineStrategy | Iterable[OnlineStrategy]) -> None:
        """Add strategies: their first windows are trained at :attr:`cur_time` (:meth:`first_train`)."""
        new = _strategies(strategies)
        self._add(new)
        self.first_train(new)

    @property
    def history(self) -> dict[pd.Timestamp, dict[str, list[Recorder]]]:
        """``{as-of day: {strategy: [runs that went online that day]}}``, from the runs' tags.

        Qlib keeps one entry per routine call in the (pickled) manager; this is a query over the
        ``qroll.online_since`` tags, so it has an entry per day the online set changed and reads
        the same from any process.
        """
        out: dict[pd.Timestamp, dict[str, list[Recorder]]] = {}
        for strategy in self.strategies:
            for rec in self.exp_manager.get_exp(strategy.name_id).list_recorders(status={Recorder.STATUS_FI}):
                since = rec.tags.get(TAG_ONLINE_SINCE)
                if since:
                    out.setdefault(pd.Timestamp(since), {}).setdefault(strategy.name_id, []).append(rec)
        return dict(sorted(out.items()))

    def simulate(self, end_time: Any = None, frequency: str = "day",
                 task_kwargs: Mapping[str, Any] | None = None, model_kwargs: Mapping[str, Any] | None = None,
                 signal_kwargs: Mapping[str, Any] | None = None, *, start_time: Any = None) -> pd.Series:
        """Replay the trading days from ``start_time`` to ``end_time``: one :meth:`routine` per day.

        Each day's predictions are extended on data cut at that day. A strategy whose store
        already holds online windows is not trained from its first windows again (Qlib's
        ``simulate`` re-runs ``first_train`` on every call); no log level is changed.

        Parameters
        ----------
        end_time : date
            The last day replayed (required: qroll does not default it to the data's last day).
        frequency : {"day"}
            One routine per trading day.
        task_kwargs, model_kwargs, signal_kwargs : dict, optional
            As :meth:`routine`.
        start_time : date, optional
            The first day replayed; default :attr:`cur_time` (``begin_time``), as in Qlib.

        Returns
        -------
        pandas.Series
            The signal up to ``end_time``.

        Raises
        ------
        ConfigValueError
            With no ``end_time``, no start, ``end_time`` before the start, a ``frequency`` other
            than ``"day"``, or no trading day between them.
        ConfigTypeError
            If a strategy has no ``calendar`` (a :class:`~qroll.online.RollingStrategy` has).
        """
        if frequency != "day":
            raise ConfigValueError(f"frequency={frequency!r} is not supported: simulate replays trading "
                                   "days ('day')")
        if end_time is None:
            raise ConfigValueError("simulate needs end_time=...: the last day to replay (qroll never takes "
                                   "the data's last day by itself)")
        start = as_of_day(start_time, "start_time") if start_time is not None else self._as_of(None)
        end = as_of_day(end_time, "end_time")
        if end < start:
            raise ConfigValueError(f"end_time {end.date()} is before the start {start.date()}: swap them")
        if not self.strategies:
            raise ConfigValueError("the manager has no strategy to simulate: add one")
        calendar = getattr(self.strategies[0], "calendar", None)
        if not callable(calendar):
            raise ConfigTypeError(f"strategy {self.strategies[0].name_id!r} has no calendar(as_of): simulate "
                                  "needs one to know the trading days")
        days = calendar(end).days
        days = days[days >= start]
        if len(days) == 0:
            raise ConfigValueError(f"no trading day in {start.date()}..{end.date()}: nothing to simulate")
        self.status = self.STATUS_SIMULATING
        try:
            self.cur_time = days[0]
            fresh = [s for s in self.strategies if not s.tool.online_models()]
            if fresh:
                self.first_train(fresh)
            for day in days:
                self.routine(day, task_kwargs, model_kwargs, signal_kwargs)
        finally:
            self.status = self.STATUS_ONLINE
        return self.signals if self.signals is not None else pd.Series(dtype=float)
