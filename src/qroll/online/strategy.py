"""Online strategies: which windows to train on a day, and which models are then online.

:class:`RollingStrategy` keeps Qlib's rolling rule (reference ``qlib_online.md`` §2.2): the next
window starts ``step`` trading days after the latest online window's start, and is due when that
start is on or before the as-of day; windows missed by earlier calls are all trained (catch-up),
each derived from the latest window's stored ``task``. The fixes (§8):

- the calendar is read afresh on every call, cut at the as-of day (an
  :class:`~qroll.data.asof.AsOfSource` view), never frozen in a pickle (O3); a next start past
  the known calendar is "not due", not a ``TypeError`` (O2);
- a window whose successor starts within the known calendar gets the closed test end offline
  rolling gives it, so it is exactly the task ``qroll run`` trains; only the newest window of a
  template is open-ended (test end ``None``, handler end ``None``: it reads up to the as-of). Both
  forms are one window (:func:`~qroll.tasks.shape.window_key`), trained once;
- after training, only the latest window **of each template** is online (O4: Qlib puts every
  first window online; O10: Qlib keeps the global maximum segment tuple, so templates with another
  layout stop rolling). A run's template is its ``qroll.template`` tag;
- the online tags move new-first, then old-off, and moving them is repeated on every call, so a
  process killed in between leaves a state the next call completes without training again;
- the signal is collected from every window's stored predictions and their online extensions, cut
  at the as-of day (:class:`~qroll.online.signals.OnlinePredCollector`).

Training a window needs no as-of cut of its data: with ``trunc_days="auto"`` its train and valid
labels end before its test start, which is on or before the as-of day.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from qroll.calendar import TimeAdjuster, TradingCalendar
from qroll.collect import RollingGroup
from qroll.config import init_instance_by_config, task_hash
from qroll.data.asof import AsOfSource
from qroll.data.source import Source, open_source
from qroll.data.uri import DEFAULT_SOURCE
from qroll.errors import ConfigTypeError, ConfigValueError
from qroll.home import data_uri
from qroll.online.signals import OnlinePredCollector
from qroll.online.tool import OnlineTool, OnlineToolR
from qroll.record import Experiment, ExpManager, Recorder
from qroll.record.tags import (
    OFFLINE,
    ONLINE,
    TAG_MODEL,
    TAG_ONLINE,
    TAG_TEMPLATE,
    TAG_TEST_START,
    TAG_WINDOW_KEY,
)
from qroll.tasks import shape
from qroll.tasks.gen import RollingGen

__all__ = ["OnlineStrategy", "RollingStrategy", "model_key", "template_key"]

log = logging.getLogger("qroll.online")


def template_key(template: Mapping[str, Any]) -> str:
    """The digest that names a task template's windows: 16 hex digits of its :func:`task_hash`.

    >>> key = template_key({"model": {"class": "LinearModel"}})
    >>> len(key), key == template_key({"model": {"class": "LinearModel"}})
    (16, True)
    """
    return task_hash(template)[:16]


def model_key(rec: Recorder) -> str:
    """The key a run's online window is kept under: its ``qroll.template`` tag, else its model class.

    A run tagged online by hand (no template tag) is grouped with the others of its model class.
    """
    return rec.tags.get(TAG_TEMPLATE) or f"model:{rec.tags.get(TAG_MODEL, '')}"


def _template_tags(key: str) -> dict[str, str]:
    # A "model:" key is a fallback for runs tagged by hand, not a template to write down.
    return {TAG_TEMPLATE: key} if key and not key.startswith("model:") else {}


def _start(rec: Recorder) -> pd.Timestamp:
    text = rec.tags.get(TAG_TEST_START)
    return pd.Timestamp(text) if text else pd.Timestamp.min


def _latest(recs: Sequence[Recorder]) -> Recorder:
    # The latest test start wins; on a tie, the run started last.
    return max(recs, key=lambda r: (_start(r), r.start_time or pd.Timestamp.min.to_pydatetime(), r.id))


def as_of_day(value: Any, what: str = "cur_time") -> pd.Timestamp:
    """``value`` as a day (a Timestamp at midnight); a clear error if it is not a date."""
    try:
        day = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ConfigTypeError(f"{what}={value!r} is not a date: give one such as '2018-01-19'") from exc
    if day is pd.NaT:
        raise ConfigTypeError(f"{what}={value!r} is not a date: give one such as '2018-01-19'")
    return day.normalize()


class OnlineStrategy:
    """Decide the tasks to train on a day and the online models after training (Qlib's).

    Subclasses implement :meth:`first_tasks`, :meth:`prepare_tasks` and :meth:`get_collector`;
    :meth:`prepare_online_models` here is Qlib's naive rule (the trained runs replace the online
    set), made crash-safe by :meth:`OnlineToolR.reset_online_tag`.

    Parameters
    ----------
    name_id : str
        The strategy's name; :class:`RollingStrategy` records into the experiment of this name.

    Notes
    -----
    A strategy of your own subclasses this (or :class:`RollingStrategy`); the
    :class:`~qroll.online.OnlineManager` calls, under the strategy's lock,
    ``prepare_tasks(as_of, **task_kwargs)``, trains what it returns (a window whose
    :func:`~qroll.tasks.shape.window_key` already has a run is not trained again), then
    ``prepare_online_models(runs, cur_time=as_of, **model_kwargs)`` and
    ``tool.update_online_pred(to_date=as_of)``.
    """

    def __init__(self, name_id: str) -> None:
        if not isinstance(name_id, str) or not name_id:
            raise ConfigValueError(f"name_id={name_id!r} must be a non-empty string (the experiment's name)")
        self.name_id = name_id
        self.tool: OnlineTool = OnlineTool()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name_id={self.name_id!r})"

    def first_tasks(self, cur_time: Any = None) -> list[dict[str, Any]]:
        """The tasks :meth:`~qroll.online.OnlineManager.first_train` trains."""
        raise NotImplementedError(f"{type(self).__name__} must implement first_tasks()")

    def prepare_tasks(self, cur_time: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """The tasks due on ``cur_time`` (the as-of day)."""
        raise NotImplementedError(f"{type(self).__name__} must implement prepare_tasks()")

    def prepare_online_models(self, trained_models: Sequence[Any], cur_time: Any = None,
                              **kwargs: Any) -> list[Any]:
        """Make the trained runs the online ones (Qlib's rule); with none, keep the online set.

        Raises
        ------
        ConfigTypeError
            For a keyword this rule does not take (a subclass may take some).
        """
        if kwargs:
            raise ConfigTypeError(f"{type(self).__name__}.prepare_online_models takes no {sorted(kwargs)}: "
                                  "model_kwargs reach it, so pass only what a subclass of yours reads")
        if not trained_models:
            return self.tool.online_models()
        self.tool.reset_online_tag(list(trained_models), as_of=cur_time)
        return list(trained_models)

    def get_collector(self, *args: Any, **kwargs: Any) -> Any:
        """A collector of the strategy's predictions (see :meth:`RollingStrategy.get_collector`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_collector()")


class RollingStrategy(OnlineStrategy):
    """Roll task templates forward as days pass: Qlib's ``RollingStrategy``, with §8's fixes.

    One experiment per strategy, named ``name_id``; several templates may roll side by side,
    each keeping its own latest window online.

    Parameters
    ----------
    name_id : str
        The strategy's name and its experiment's.
    task_template : dict or list of dict
        Task templates, as for :class:`~qroll.tasks.gen.RollingGen` (their test segment starts
        the first window).
    rolling_gen : RollingGen or dict
        The rolling rule (``step``, ``rtype``, ``trunc_days``, ...), or its config
        (``{"class": "RollingGen", "kwargs": {...}}``). Its calendar is replaced on every call by
        the data's, cut at the as-of day.
    source : Source or str, optional
        The data whose calendar the windows roll on; default the first template's handler
        ``source``, else ``$QROLL_DATA`` or the default synthetic market. A URI is opened afresh on
        every call, so data that gained days shows them.
    exp_manager : ExpManager, optional
        The tracking store; default the trainer's when an :class:`~qroll.online.OnlineManager`
        runs the strategy, else the qroll home's.

    Raises
    ------
    ConfigTypeError
        If ``rolling_gen`` is not a :class:`~qroll.tasks.gen.RollingGen` (Qlib asserts it) or a
        template is not a dict.

    Examples
    --------
    >>> task = {"model": {"class": "LinearModel"}, "dataset": {"class": "DatasetH", "kwargs": {
    ...     "handler": {"class": "Alpha158", "kwargs": {"end_time": "2019-06-28"}},
    ...     "segments": {"train": ("2019-01-02", "2019-03-29"), "test": ("2019-04-01", "2019-06-28")}}}}
    >>> market = "synthetic://?instruments=5&start=2019-01-01&end=2019-12-31&seed=0"
    >>> strategy = RollingStrategy("rolling", task, RollingGen(step=20, trunc_days=3), source=market)
    >>> [shape.window_text(t) for t in strategy.first_tasks("2019-05-10")]
    ['2019-04-01..2019-04-26', '2019-04-29..open']
    """

    def __init__(
        self,
        name_id: str,
        task_template: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        rolling_gen: RollingGen,
        *,
        source: Source | str | None = None,
        exp_manager: ExpManager | None = None,
    ) -> None:
        super().__init__(name_id)
        if isinstance(rolling_gen, Mapping):  # a config, as a YAML file gives it
            rolling_gen = init_instance_by_config(dict(rolling_gen), default_module="qroll.tasks.gen")
        if not isinstance(rolling_gen, RollingGen):
            raise ConfigTypeError(f"rolling_gen must be a RollingGen, got {type(rolling_gen).__name__}")
        templates = [task_template] if isinstance(task_template, Mapping) else list(task_template)
        bad = [t for t in templates if not isinstance(t, Mapping)]
        if bad or not templates:
            raise ConfigTypeError("task_template must be a task dict or a non-empty list of them, got "
                                  f"{bad[:1] or []}")
        self.exp_name = name_id
        self.task_template = [dict(t) for t in templates]
        self.rg = rolling_gen
        self.source = source
        # A handler without a source reads $QROLL_DATA or the default market: resolved once, here.
        self._default_data = data_uri() or DEFAULT_SOURCE
        self.tool: OnlineToolR = OnlineToolR(name_id, exp_manager=exp_manager, source=source)
        # window key -> template key of the tasks generated by the last first_tasks/prepare_tasks:
        # how prepare_online_models knows the template of what was just trained.
        self._lineage: dict[str, str] = {}

    def __repr__(self) -> str:
        return (f"RollingStrategy(name_id={self.name_id!r}, templates={len(self.task_template)}, "
                f"rolling_gen={self.rg!r})")

    # -- data and calendar ---------------------------------------------------------------------
    def _source_arg(self) -> Source | str:
        if self.source is not None:
            return self.source
        kwargs = shape.handler_kwargs(self.task_template[0])
        given = kwargs.get("source") if kwargs is not None else None
        return given or self._default_data

    def open_data(self) -> Source:
        """The strategy's data, opened afresh when given as a URI."""
        arg = self._source_arg()
        return open_source(arg) if isinstance(arg, str) else arg

    def calendar(self, as_of: Any = None) -> TradingCalendar:
        """The data's trading calendar, up to ``as_of`` when given (read afresh on each call)."""
        data = self.open_data()
        return data.calendar if as_of is None else AsOfSource(data, as_of_day(as_of)).calendar

    def rolling_gen_at(self, as_of: Any = None) -> RollingGen:
        """A copy of ``rolling_gen`` on the data's calendar up to ``as_of`` (the whole calendar if None)."""
        rg = copy.copy(self.rg)
        rg.calendar = TimeAdjuster(self.calendar(as_of))
        # The copy must not reuse the original's adjuster or period table, built on another calendar.
        rg._ta = None
        rg._periods = None
        return rg

    @property
    def experiment(self) -> Experiment:
        """The strategy's experiment (created when missing)."""
        return self.tool.experiment()

    # -- tasks -----------------------------------------------------------------------------------
    def _check_first_window(self, index: int, template: Mapping[str, Any], rg: RollingGen) -> None:
        span = shape.task_segment(template, rg.test_key)
        if span is None or span[0] is None:
            return  # RollingGen says what is wrong with the template
        first = pd.Timestamp(span[0])
        if first > rg.ta.calendar.last_day:
            raise ConfigValueError(
                f"the as-of day {shape.format_day(rg.ta.calendar.last_day)} is before the first window of "
                f"strategy {self.name_id!r}: template {index}'s test starts {shape.format_day(first)}; "
                "start the online rolling on or after that day"
            )

    def first_tasks(self, cur_time: Any = None) -> list[dict[str, Any]]:
        """Every template's windows up to ``cur_time`` (offline rolling on the data up to it).

        With ``cur_time`` None, the data's whole calendar (Qlib's ``first_tasks()``). The newest
        window of each template is open-ended when the data ends before its test window does.

        Raises
        ------
        ConfigValueError
            If ``cur_time`` is before a template's first test day.
        TaskGenError, CalendarError
            As :meth:`RollingGen.generate`.
        """
        rg = self.rolling_gen_at(cur_time)
        tasks: list[dict[str, Any]] = []
        self._lineage = {}
        for i, template in enumerate(self.task_template):
            self._check_first_window(i, template, rg)
            key = template_key(template)
            for task in rg.generate(template):
                self._lineage[shape.window_key(task, rg.test_key)] = key
                tasks.append(task)
        return tasks

    def latest_online(self) -> dict[str, Recorder]:
        """The latest online run of each template (:func:`model_key`), found by tags."""
        groups: dict[str, list[Recorder]] = {}
        for rec in self.tool.online_models():
            if rec.status == Recorder.STATUS_FI:
                groups.setdefault(model_key(rec), []).append(rec)
        return {key: _latest(recs) for key, recs in groups.items()}

    def _template(self, key: str) -> Mapping[str, Any] | None:
        return next((t for t in self.task_template if template_key(t) == key), None)

    def _closed(self, task: dict[str, Any], rg: RollingGen, next_start: pd.Timestamp,
                key: str) -> dict[str, Any]:
        """``task`` with an open test end closed as offline rolling closes it: the day before the
        next window, and the handler end offline rolling gives (the template's, or the test end)."""
        t = copy.deepcopy(task)
        segs = shape.segments(t)
        start, end = segs[rg.test_key]
        if end is not None:
            return t
        ta = rg.ta
        test_end = ta.get(ta.align_idx(next_start) - 1)
        segs[rg.test_key] = (start, test_end)
        shape.set_segments(t, segs)
        kwargs = shape.handler_kwargs(t)
        if kwargs is not None and kwargs.get("end_time") is None:
            template = self._template(key)
            first = shape.handler_kwargs(template) if template is not None else None
            h_end = first.get("end_time") if first is not None else test_end
            # handler_mod's rule: the template's end, extended to the test end when shorter.
            if h_end is not None and ta.cal_interval(h_end, test_end) < 0:
                h_end = test_end
            kwargs["end_time"] = h_end
        return t

    def prepare_tasks(self, cur_time: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """The windows due on ``cur_time``: after each template's latest online window, every window
        whose test start is on or before ``cur_time`` (catch-up), derived from its stored ``task``.

        Nothing is downloaded unless a window is due (the due rule reads the run's tags).

        Parameters
        ----------
        cur_time : date
            The as-of day.
        **kwargs
            None here (the manager's ``task_kwargs`` reach this method; a subclass may take some).

        Raises
        ------
        ConfigTypeError
            For a keyword argument.
        """
        if kwargs:
            raise ConfigTypeError(f"RollingStrategy.prepare_tasks takes no {sorted(kwargs)}: task_kwargs "
                                  "reach it, so pass only what a subclass of yours reads")
        as_of = as_of_day(cur_time)
        latest = self.latest_online()
        self._lineage = {}
        if not latest:
            log.warning("strategy %r has no online window: run OnlineManager.first_train first", self.name_id)
            return []
        rg = self.rolling_gen_at(as_of)
        probe_rg = copy.copy(rg)
        probe_rg.ds_extra_mod_func = None
        tasks: list[dict[str, Any]] = []
        for key, rec in sorted(latest.items()):
            start = _start(rec)
            if start == pd.Timestamp.min:
                log.warning("online run %s has no %s tag: it cannot roll on", rec.id, TAG_TEST_START)
                continue
            probe: dict[str, Any] = {"dataset": {"kwargs": {"segments": {rg.test_key: (start, start)}}}}
            following = next(iter(probe_rg.gen_following_tasks(probe, as_of)), None)
            if following is None:
                continue  # the next start is after the as-of day, or past the known calendar
            next_start = shape.segments(following)[rg.test_key][0]
            seed = self._closed(rec.load_object("task"), rg, next_start, key)
            for task in rg.gen_following_tasks(seed, as_of):
                self._lineage[shape.window_key(task, rg.test_key)] = key
                tasks.append(task)
        return tasks

    # -- online models ---------------------------------------------------------------------------
    def prepare_online_models(self, trained_models: Sequence[Recorder], cur_time: Any = None,
                              **kwargs: Any) -> list[Recorder]:
        """Put the latest window of each template online, the others offline; return the online runs.

        The runs just trained join the online runs of the store; of each template's, the one
        with the latest test start is online. Tags are written in a crash-safe order: the
        template of every trained run, then the new online runs, then the old ones offline; a
        call that changes nothing writes nothing.

        Parameters
        ----------
        trained_models : list of Recorder
            The runs of the tasks :meth:`first_tasks` / :meth:`prepare_tasks` gave last.
        cur_time : date, optional
            The as-of day, written as ``qroll.online_since`` / ``qroll.online_until``.

        Raises
        ------
        ConfigTypeError
            For a keyword argument (the manager's ``model_kwargs`` reach this method).
        """
        if kwargs:
            raise ConfigTypeError(f"RollingStrategy.prepare_online_models takes no {sorted(kwargs)}: "
                                  "model_kwargs reach it, so pass only what a subclass of yours reads")
        as_of = None if cur_time is None else as_of_day(cur_time)
        trained = list(trained_models)
        key_of: dict[str, str] = {}
        for rec in trained:
            key_of[rec.id] = self._lineage.get(rec.tags.get(TAG_WINDOW_KEY, "")) or model_key(rec)
        online_now = [r for r in self.tool.online_models() if r.status == Recorder.STATUS_FI]
        groups: dict[str, dict[str, Recorder]] = {}
        for rec in online_now:
            groups.setdefault(model_key(rec), {})[rec.id] = rec
        for rec in trained:
            groups.setdefault(key_of[rec.id], {}).setdefault(rec.id, rec)
        latest = {key: _latest(list(recs.values())) for key, recs in groups.items()}
        latest_ids = {rec.id for rec in latest.values()}
        # 1. The template of every trained run that stays offline, first: a crash later leaves
        #    runs the next call finds by window key and tags again.
        for key in sorted(set(key_of.values())):
            behind = [r for r in trained if key_of[r.id] == key and r.id not in latest_ids
                      and r.tags.get(TAG_ONLINE) != ONLINE and r.tags.get(TAG_TEMPLATE) != key]
            if behind:
                self.tool.set_online_tag(OFFLINE, behind, tags=_template_tags(key))
        # 2. The new online runs, before any is taken offline: there is always an online window.
        for key, rec in sorted(latest.items()):
            wanted = _template_tags(key)
            if rec.tags.get(TAG_ONLINE) != ONLINE or any(rec.tags.get(k) != v for k, v in wanted.items()):
                self.tool.set_online_tag(ONLINE, rec, as_of=as_of, tags=wanted)
        # 3. The runs that were online and are not the latest of their template.
        old = [r for r in online_now if r.id not in latest_ids]
        for rec in old:
            self.tool.set_online_tag(OFFLINE, rec, as_of=as_of, tags=_template_tags(key_of.get(rec.id, "")))
        if old or any(r.id not in {o.id for o in online_now} for r in latest.values()):
            log.info("strategy %r: online %s", self.name_id,
                     ", ".join(f"{r.tags.get(TAG_MODEL, '?')} {r.tags.get(TAG_TEST_START, '?')}"
                               for r in latest.values()))
        return sorted(latest.values(), key=lambda r: (model_key(r), r.id))

    # -- signals ---------------------------------------------------------------------------------
    def rec_key(self, rec: Recorder) -> tuple[str, str, pd.Timestamp]:
        """A window's collector key: ``(model class, template key, test start)``, from its tags."""
        return rec.tags.get(TAG_MODEL, ""), model_key(rec), _start(rec)

    def get_collector(
        self,
        process_list: Any = None,
        rec_key_func: Callable[[Recorder], Any] | None = None,
        rec_filter_func: Callable[[Recorder], bool] | None = None,
        artifacts_key: Any = None,
        *,
        as_of: Any = None,
    ) -> OnlinePredCollector:
        """A collector of every window's predictions with their online extensions, cut at ``as_of``.

        Called, it gives ``{"pred": {(model class, template key): merged}}`` with the default
        ``[RollingGroup()]``: each template's windows merged, the latest start winning on overlap
        (Qlib keys by model class alone, and collects only ``pred.pkl``).

        Parameters
        ----------
        process_list : list, default [RollingGroup()]
            Applied to ``{rec_key: predictions}``.
        rec_key_func : callable, optional
            Default :meth:`rec_key`.
        rec_filter_func : callable, optional
            Keep only the runs for which it is true.
        artifacts_key : str, optional
            Only ``"pred"`` (Qlib's argument; any other raises).
        as_of : date, optional
            Keep windows starting by then, and their predictions up to then.

        Raises
        ------
        ConfigValueError
            For an ``artifacts_key`` other than ``"pred"``.
        """
        if artifacts_key not in (None, "pred", ["pred"]):
            raise ConfigValueError(f"artifacts_key={artifacts_key!r}: an online strategy collects 'pred' "
                                   "only")
        return OnlinePredCollector(
            self.experiment, process_list=[RollingGroup()] if process_list is None else process_list,
            rec_key_func=rec_key_func or self.rec_key, rec_filter_func=rec_filter_func,
            as_of=None if as_of is None else as_of_day(as_of, "as_of"),
        )
