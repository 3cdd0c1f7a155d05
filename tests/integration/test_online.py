"""Online rolling for real: ``OnlineManager`` + ``RollingStrategy`` + updaters on a real SQLite MLflow
store, a synthetic market (and a table of it that gains days), ``LinearModel`` fits of a two-feature
``DataHandlerLP``; one test with ``LGBModel``, one through a SQLite task pool, one with two processes.

The conformance cases of reference ``qlib_online.md`` §8.1 are adapted to qroll; where qroll differs
from Qlib on purpose, the test's docstring names the difference. Qlib's reference runs used the
same setup: a Mon–Fri calendar from 2017-01-02, 12 instruments, a linear model on two price
features with Qlib's default label, ``RollingGen(step=20, sliding)`` and the template test segment
2017-09-01..2017-12-29.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qroll import (
    ConfigTypeError,
    ConfigValueError,
    DelayTrainerR,
    ExpManager,
    LabelUpdater,
    OnlineManager,
    OnlineToolR,
    PredUpdater,
    RollingGen,
    RollingStrategy,
    TrainerR,
    task_hash,
)
from qroll.collect import RecorderCollector, RollingEnsemble, RollingGroup
from qroll.data.source import open_source
from qroll.data.synthetic import SyntheticMarket
from qroll.online.update import load_online
from qroll.record.tags import TAG_ONLINE_SINCE, TAG_TEMPLATE, TAG_WINDOW_KEY
from qroll.tasks.shape import window_key
from qroll.train.pool_trainer import TrainerRM

URI = "synthetic://?instruments=12&start=2017-01-02&end=2018-06-29&seed=0"
FEATURES = (["$close/Ref($close, 1) - 1", "Mean($close, 5)/$close"], ["RET1", "MA5"])
LABEL = (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])  # Qlib's default label
SEGMENTS = {"train": ("2017-01-02", "2017-06-30"), "valid": ("2017-07-03", "2017-08-25"),
            "test": ("2017-09-01", "2017-12-29")}


def make_task(source: str = URI, model: dict[str, Any] | None = None, segments: dict[str, Any] | None = None,
              instruments: Any = "all") -> dict[str, Any]:
    handler = {"class": "DataHandlerLP", "kwargs": {
        "instruments": instruments, "start_time": "2017-01-02", "end_time": "2017-12-29", "source": source,
        "data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {"feature": FEATURES, "label": LABEL}}},
        "infer_processors": [{"class": "Fillna", "kwargs": {"fields_group": "feature"}}],
        "learn_processors": ["DropnaLabel"]}}
    return {"model": model or {"class": "LinearModel", "kwargs": {"estimator": "ols"}},
            "dataset": {"class": "DatasetH", "kwargs": {"handler": handler, "segments": dict(segments or SEGMENTS)}},
            "record": [{"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}]}


def rolling() -> RollingGen:
    return RollingGen(step=20, rtype=RollingGen.ROLL_SD, trunc_days="auto")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    mp = pytest.MonkeyPatch()
    mp.setenv("QROLL_HOME", str(root / "home"))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def store(home) -> ExpManager:
    # One store for the module (creating one takes seconds); each test has experiments of its own.
    return ExpManager(f"sqlite:///{home}/mlflow.db")


def online(store: ExpManager, name: str, begin: Any, tasks: Any = None, trainer: Any = None,
           strategy_cls: type = RollingStrategy, **kwargs: Any) -> tuple[OnlineManager, RollingStrategy]:
    strategy = strategy_cls(name, tasks if tasks is not None else make_task(), rolling(), **kwargs)
    manager = OnlineManager(strategy, trainer or TrainerR(exp_manager=store), begin_time=begin)
    return manager, strategy


def runs(strategy: RollingStrategy) -> list[Any]:
    return strategy.experiment.list_recorders()


def online_windows(strategy: RollingStrategy) -> list[tuple[str, str]]:
    return sorted((r.tags["qroll.test_start"], r.tags["qroll.test_end"]) for r in strategy.tool.online_models())


def offline_tasks(template: dict[str, Any], until: str) -> list[dict[str, Any]]:
    """What ``qroll run`` trains: the template rolled over the full calendar up to ``until``."""
    rg = rolling()
    rg.calendar = open_source(template["dataset"]["kwargs"]["handler"]["kwargs"]["source"]).calendar
    t = copy.deepcopy(template)
    t["dataset"]["kwargs"]["segments"]["test"] = (t["dataset"]["kwargs"]["segments"]["test"][0], until)
    return rg.generate(t)


def zscore(pred: pd.Series) -> pd.Series:
    by_day = pred.groupby(level="datetime")
    return (pred - by_day.transform("mean")) / by_day.transform("std")


def artifact_bytes(rec: Any, name: str) -> bytes:
    return Path(rec.artifact_uri.removeprefix("file://"), name).read_bytes()


# -- conformance cases ------------------------------------------------------------------------------


def test_first_train_puts_only_the_latest_window_of_each_template_online(store):
    """§8.1 case 1: the template's 5 windows start 09-01, 09-29, 10-27, 11-24, 12-22 (the last ends
    2018-01-18) and no signal is prepared. Differences from Qlib: only the latest window is online
    (Qlib: all 5, O4), and a second template with another segment layout keeps its own latest window
    online (Qlib keeps only the global maximum segment tuple rolling, O10)."""
    other = make_task(segments={"train": ("2017-02-01", "2017-07-31"), "test": ("2017-09-15", "2017-12-29")})
    manager, strategy = online(store, "case1", "2018-06-29", tasks=[make_task(), other])
    manager.first_train()
    recs = runs(strategy)
    assert len(recs) == 9  # the second template's windows start 09-15, 10-13, 11-10, 12-08
    mine = sorted((r.tags["qroll.test_start"], r.tags["qroll.test_end"]) for r in recs
                  if r.tags["qroll.test_start"] in {"2017-09-01", "2017-09-29", "2017-10-27", "2017-11-24", "2017-12-22"})
    assert mine == [("2017-09-01", "2017-09-28"), ("2017-09-29", "2017-10-26"), ("2017-10-27", "2017-11-23"),
                    ("2017-11-24", "2017-12-21"), ("2017-12-22", "2018-01-18")]
    assert online_windows(strategy) == [("2017-12-08", "2018-01-04"), ("2017-12-22", "2018-01-18")]
    assert len({r.tags[TAG_TEMPLATE] for r in strategy.tool.online_models()}) == 2  # one per template
    assert manager.get_signals() is None
    # The windows are exactly qroll run's tasks (closed ends, handler ends as handler_mod sets them).
    assert {task_hash(t) for t in offline_tasks(make_task(), "2017-12-29")} <= {r.tags["qroll.task_hash"] for r in recs}


def test_a_window_is_due_step_trading_days_after_the_latest_start(store):
    """§8.1 case 3: 19 trading days after the latest start trains nothing, 20 trains exactly one."""
    manager, strategy = online(store, "case3", "2017-12-22")
    manager.first_train()
    before = len(runs(strategy))
    manager.routine("2018-01-18")  # 19 trading days after 12-22
    assert len(runs(strategy)) == before
    manager.routine("2018-01-19")  # the 20th
    assert len(runs(strategy)) == before + 1
    assert online_windows(strategy) == [("2018-01-19", "")]


def test_the_calendar_edge_is_not_due(store):
    """§8.1 case 3, at the edge: the data end on 2018-01-18, the 19th day of the latest window. Qlib
    raises TypeError there (O2); qroll reports nothing due, also for an as-of past the data."""
    short = "synthetic://?instruments=12&start=2017-01-02&end=2018-01-18&seed=0"
    manager, strategy = online(store, "edge", "2017-12-22", tasks=make_task(source=short))
    manager.first_train()
    before = {r.id for r in runs(strategy)}
    assert strategy.prepare_tasks("2018-01-18") == []
    assert strategy.prepare_tasks("2018-03-01") == []
    signal = manager.routine("2018-03-01")
    assert {r.id for r in runs(strategy)} == before
    assert signal.index.get_level_values("datetime").max() == pd.Timestamp("2018-01-18")


def test_catch_up_trains_every_missed_window_closed_like_offline_rolling(store):
    """§8.1 case 4: latest 12-22, as-of 2018-02-20 → windows 01-19 and 02-16. Differences from Qlib:
    01-19, whose successor starts within the data, is closed exactly as offline rolling closes it (Qlib
    keeps it open-ended like the latest was), and only 02-16 is online (Qlib: both)."""
    manager, strategy = online(store, "case4", "2017-12-22")
    manager.first_train()
    assert online_windows(strategy) == [("2017-12-22", "")]  # the data up to 12-22 end the window early
    tasks = strategy.prepare_tasks("2018-02-20")
    offline = {t["dataset"]["kwargs"]["segments"]["test"][0]: t for t in offline_tasks(make_task(), "2018-02-20")}
    (closed, newest) = tasks
    assert task_hash(closed) == task_hash(offline[pd.Timestamp("2018-01-19")])
    assert newest["dataset"]["kwargs"]["segments"]["test"] == (pd.Timestamp("2018-02-16"), None)
    assert newest["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] is None
    assert window_key(newest) == window_key(offline[pd.Timestamp("2018-02-16")])
    manager.routine("2018-02-20")
    assert online_windows(strategy) == [("2018-02-16", "")]
    assert sorted(r.tags["qroll.test_start"] for r in runs(strategy))[-3:] == ["2017-12-22", "2018-01-19", "2018-02-16"]


def test_a_second_routine_trains_nothing_and_returns_the_same_signal_also_when_rebuilt(store):
    """Idempotence (O8), and no pickle (O3): a manager rebuilt from the strategy and the store carries
    on from the tags."""
    manager, strategy = online(store, "again", "2017-12-22")
    manager.first_train()
    first = manager.routine("2018-01-19")
    ids = {r.id for r in runs(strategy)}
    assert manager.routine("2018-01-19").equals(first)
    rebuilt, again = online(store, "again", None)
    assert rebuilt.routine("2018-01-19").equals(first)
    assert {r.id for r in runs(again)} == ids
    assert not first.index.duplicated().any()
    assert first.index.get_level_values("datetime").max() == pd.Timestamp("2018-01-19")


@pytest.mark.slow
def test_simulate_equals_offline_rolling_day_by_day_and_trains_nothing_the_second_time(store):
    """§8.1 cases 2 and 6: simulate 2017-12-01..2018-01-31 gives 6 windows, no duplicated row (Qlib:
    516), and the signal is the per-day z-score of the RollingEnsemble of the windows. Differences from
    Qlib: first_train sees the data up to 12-01 only, so the 12-22 window is trained on 12-22 and the
    online set changes on 12-22 and 01-19 (Qlib: on 01-19 only); ``history`` has an entry per change
    (Qlib: 44, one per routine); the signal stops at the as-of day 01-31 (Qlib: 02-15, O5); a second
    simulate trains nothing (Qlib re-runs first_train, O7). Each window is trained on the data as of
    the day it is trained (the open ones' pred.pkl end there; pred_online.pkl carries them on). The
    signal equals, value by value, the offline rolling of the same template over the same span
    (``qroll run``'s windows, trained on all the data)."""
    manager, strategy = online(store, "simulate", "2017-12-01")
    signal = manager.simulate("2018-01-31")
    recs = runs(strategy)
    assert sorted(r.tags["qroll.test_start"] for r in recs) == [
        "2017-09-01", "2017-09-29", "2017-10-27", "2017-11-24", "2017-12-22", "2018-01-19"]
    assert list(manager.history) == [pd.Timestamp(d) for d in ("2017-12-01", "2017-12-22", "2018-01-19")]
    assert not signal.index.duplicated().any()
    days = signal.index.get_level_values("datetime")
    assert (days.min(), days.max()) == (pd.Timestamp("2017-09-01"), pd.Timestamp("2018-01-31"))
    windows = {rec.id: load_online(rec) for rec in recs}  # pred.pkl and its online extension
    merged = RollingEnsemble()(windows)["score"]
    expected = zscore(merged[merged.index.get_level_values("datetime") <= "2018-01-31"])
    pd.testing.assert_series_equal(signal, expected, check_names=False)
    # qroll run's windows (closed, trained on the full data) give the same signal, value by value.
    offline = TrainerR(experiment_name="simulate-offline", exp_manager=store).train(
        offline_tasks(make_task(), "2018-01-31"))
    assert {window_key(r.load_object("task")) for r in offline} == {r.tags[TAG_WINDOW_KEY] for r in recs}
    run = RecorderCollector(lambda: offline, process_list=[RollingGroup()])()["pred"][("LinearModel",)]["score"]
    pd.testing.assert_series_equal(signal, zscore(run[run.index.get_level_values("datetime") <= "2018-01-31"]),
                                   check_names=False, rtol=1e-9)
    again = manager.simulate("2018-01-31", start_time="2017-12-01")
    assert {r.id for r in runs(strategy)} == {r.id for r in recs}
    pd.testing.assert_series_equal(again, signal)


def test_a_window_trained_in_a_routine_sees_nothing_after_its_day(store):
    """The routine passes its as-of day to the trainer: the window due on 2017-12-22, trained that day,
    predicts up to 12-22 only (its pred.pkl ends there, and its label.pkl has no label needing a later
    day), although the data go on to 2018-06-29; the later days come from pred_online.pkl, and equal
    what the same window trained on all the data predicts (offline rolling), value by value. The
    task as recorded is the plain window task (its hash unchanged)."""
    manager, strategy = online(store, "asof-train", "2017-12-01")
    manager.first_train()
    (opened,) = strategy.tool.online_models()
    assert opened.tags["qroll.test_start"] == "2017-11-24"
    assert opened.load_object("pred.pkl").index.get_level_values("datetime").max() == pd.Timestamp("2017-12-01")
    manager.routine("2017-12-22")
    (rec,) = strategy.tool.online_models()
    assert rec.tags["qroll.test_start"] == "2017-12-22"
    pred = rec.load_object("pred.pkl")
    assert set(pred.index.get_level_values("datetime")) == {pd.Timestamp("2017-12-22")}
    label = rec.load_object("label.pkl")
    assert label.index.get_level_values("datetime").max() == pd.Timestamp("2017-12-22")
    assert label.isna().all().all()  # 12-22's label needs 12-26 and 12-27, not known on 12-22
    task = rec.load_object("task")
    assert task["dataset"]["kwargs"]["handler"]["kwargs"]["source"] == URI  # the data as given, no view
    assert rec.tags["qroll.task_hash"] == task_hash(task)
    manager.routine("2018-01-05")
    extended = load_online(rec.refresh())
    days = extended.index.get_level_values("datetime")
    assert (days.min(), days.max()) == (pd.Timestamp("2017-12-22"), pd.Timestamp("2018-01-05"))
    (twin,) = [t for t in offline_tasks(make_task(), "2018-01-18")
               if t["dataset"]["kwargs"]["segments"]["test"][0] == pd.Timestamp("2017-12-22")]
    (trained,) = TrainerR(experiment_name="asof-train-offline", exp_manager=store).train([twin])
    offline = trained.load_object("pred.pkl")
    pd.testing.assert_frame_equal(extended, offline[offline.index.get_level_values("datetime") <= "2018-01-05"],
                                  check_exact=True)


def test_a_crash_between_training_and_tagging_is_completed_without_training_again(store):
    """O8: the tagging call fails after the due window trained; the next routine tags it, trains nothing."""

    class FailingOnce(OnlineToolR):
        failures = 1

        def set_online_tag(self, tag, recorder, exp_name=None, **kwargs):
            if self.failures:
                self.failures -= 1
                raise RuntimeError("the store went away while tagging")
            super().set_online_tag(tag, recorder, exp_name, **kwargs)

    manager, strategy = online(store, "crash", "2017-12-22")
    manager.first_train()
    strategy.tool = FailingOnce("crash", exp_manager=store)
    with pytest.raises(RuntimeError, match="while tagging"):
        manager.routine("2018-01-19")
    ids = {r.id for r in runs(strategy)}
    assert online_windows(strategy) == [("2017-12-22", "")]  # the old window is still online
    manager.routine("2018-01-19")
    assert {r.id for r in runs(strategy)} == ids
    assert online_windows(strategy) == [("2018-01-19", "")]


def test_a_crash_between_the_new_online_tag_and_the_old_offline_tag_is_completed(store):
    """The second tagging call (old window offline) fails: two windows stay online, never none; the
    next routine leaves one, without training."""

    class FailingSecond(OnlineToolR):
        calls = 0

        def set_online_tag(self, tag, recorder, exp_name=None, **kwargs):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("killed between the two tags")
            super().set_online_tag(tag, recorder, exp_name, **kwargs)

    manager, strategy = online(store, "crash2", "2017-12-22")
    manager.first_train()
    strategy.tool = FailingSecond("crash2", exp_manager=store)
    with pytest.raises(RuntimeError):
        manager.routine("2018-01-19")
    assert online_windows(strategy) == [("2017-12-22", ""), ("2018-01-19", "")]
    ids = {r.id for r in runs(strategy)}
    manager.routine("2018-01-19")
    assert online_windows(strategy) == [("2018-01-19", "")]
    assert {r.id for r in runs(strategy)} == ids


# -- data that grows ----------------------------------------------------------------------------------


def write_table(path: Path, end: str, stop: dict[str, str] | None = None) -> None:
    """The synthetic market's rows up to ``end`` as a long Parquet table (an instrument in ``stop`` ends
    on its day, as a delisted one does)."""
    market = SyntheticMarket(URI)
    symbols = list(market.instruments())
    frames = market.load(market.fields(), symbols, None, end)
    long = pd.concat({f: frames[f].stack(future_stack=True) for f in frames}, axis=1).reset_index()
    for symbol, last in (stop or {}).items():
        long = long[(long["instrument"] != symbol) | (long["datetime"] <= last)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    long.rename(columns={"datetime": "date"}).to_parquet(tmp, index=False)
    tmp.replace(path)


def test_predictions_reach_each_new_day_and_pred_pkl_is_never_rewritten(store, home):
    """Data arrive day by day (a table rewritten with more days): routine(d) extends the online
    window to d only, in pred_online.pkl; pred.pkl keeps its bytes; the extension equals what the same
    window predicts when trained on all the data (offline rolling)."""
    table = home / "grow" / "prices.parquet"
    write_table(table, "2018-01-10")
    source = f"table://{table}"
    manager, strategy = online(store, "grow", "2018-01-10", tasks=make_task(source=source))
    manager.first_train()
    (rec,) = strategy.tool.online_models()
    assert (rec.tags["qroll.test_start"], rec.tags["qroll.test_end"]) == ("2017-12-22", "")
    stored = artifact_bytes(rec, "pred.pkl")
    assert rec.load_object("pred.pkl").index.get_level_values("datetime").max() == pd.Timestamp("2018-01-10")

    write_table(table, "2018-01-18")
    signal = manager.routine("2018-01-16")  # the data reach 01-18; the as-of day is 01-16
    (rec,) = strategy.tool.online_models()
    ext = rec.load_object("pred_online.pkl")
    assert sorted(set(ext.index.get_level_values("datetime").strftime("%m-%d"))) == ["01-11", "01-12", "01-15", "01-16"]
    assert signal.index.get_level_values("datetime").max() == pd.Timestamp("2018-01-16")
    assert not signal.index.duplicated().any()
    manager.routine("2018-01-18")
    ext = rec.refresh().load_object("pred_online.pkl")
    assert ext.index.get_level_values("datetime").max() == pd.Timestamp("2018-01-18")
    assert not ext.index.duplicated().any()
    assert artifact_bytes(rec, "pred.pkl") == stored
    again = artifact_bytes(rec, "pred_online.pkl")
    manager.routine("2018-01-18")
    assert artifact_bytes(rec, "pred_online.pkl") == again  # up to date: nothing written

    # The same window trained on the whole data (closed at 01-18) predicts the same values.
    full = home / "full" / "prices.parquet"
    write_table(full, "2018-06-29")
    (twin,) = [t for t in offline_tasks(make_task(source=f"table://{full}"), "2018-01-18")
               if t["dataset"]["kwargs"]["segments"]["test"][0] == pd.Timestamp("2017-12-22")]
    (trained,) = TrainerR(experiment_name="grow-offline", exp_manager=store).train([twin])
    pd.testing.assert_frame_equal(load_online(rec), trained.load_object("pred.pkl"), rtol=1e-6)

    write_table(table, "2018-02-28")
    manager.routine("2018-02-28")  # 01-19 (closed) and 02-16 (open) are due
    assert online_windows(strategy) == [("2018-02-16", "")]
    assert [r.tags["qroll.test_end"] for r in runs(strategy) if r.tags["qroll.test_start"] == "2018-01-19"] == ["2018-02-15"]


def test_pred_updater_semantics(store, home):
    """§8.1 case 5 on a window kept past its test end: ``from_date``/``to_date`` recompute only that
    range, a repeat call without dates is a no-op, a ``to_date`` past the data is clipped, a weekend
    ``from_date`` starts on the Monday. Difference from Qlib: the days of pred.pkl are never recomputed
    (a ``from_date`` inside them starts after them) and pred.pkl keeps its bytes."""
    (closed,) = [t for t in offline_tasks(make_task(), "2018-01-18")
                 if t["dataset"]["kwargs"]["segments"]["test"][0] == pd.Timestamp("2017-12-22")]
    (rec,) = TrainerR(experiment_name="updater", exp_manager=store).train([closed])
    stored = artifact_bytes(rec, "pred.pkl")
    assert PredUpdater(rec, to_date="2018-02-28").update() is not None
    ext = rec.load_object("pred_online.pkl")
    days = ext.index.get_level_values("datetime")
    assert (days.min(), days.max()) == (pd.Timestamp("2018-01-19"), pd.Timestamp("2018-02-28"))
    assert PredUpdater(rec.refresh(), to_date="2018-02-28").update() is None
    new = PredUpdater(rec.refresh(), from_date="2018-02-10", to_date="2018-02-14").update(ret_new=True)
    assert sorted(set(new.index.get_level_values("datetime").strftime("%m-%d"))) == ["02-12", "02-13", "02-14"]
    pd.testing.assert_frame_equal(rec.load_object("pred_online.pkl"), ext)  # the rest as it was
    assert PredUpdater(rec.refresh(), to_date="2019-01-01").to_date == pd.Timestamp("2018-06-29")
    assert PredUpdater(rec.refresh(), from_date="2018-01-02").from_date == pd.Timestamp("2018-01-19")
    assert artifact_bytes(rec, "pred.pkl") == stored

    # The labels, from the closes alone: Ref($close, -2)/Ref($close, -1) - 1 (qroll keeps float32 features).
    close = SyntheticMarket(URI).load(["close"], [f"SYN{i:04d}" for i in range(1, 13)])["close"].astype("float64")
    truth = (close.shift(-2) / close.shift(-1) - 1).stack(future_stack=True)
    labels = LabelUpdater(rec.refresh(), to_date="2018-02-28")
    assert labels.from_date == pd.Timestamp("2018-01-19")
    labels.update()
    got = rec.refresh().load_object("label_online.pkl")["LABEL0"]
    # On 02-28 the labels of 02-27 and 02-28 look past the data: NaN, as they were that day.
    assert got.loc["2018-02-27":].isna().all()
    known = got.loc[:"2018-02-26"]
    np.testing.assert_allclose(known.to_numpy(), truth.reindex(known.index).to_numpy(), rtol=0, atol=1e-6)
    assert LabelUpdater(rec.refresh(), to_date="2018-03-02").from_date == pd.Timestamp("2018-02-27")
    LabelUpdater(rec.refresh(), to_date="2018-03-02").update()  # the two days are redone
    redone = rec.refresh().load_object("label_online.pkl")["LABEL0"].loc["2018-02-27":"2018-02-28"]
    assert redone.notna().sum() > 0
    np.testing.assert_allclose(redone.to_numpy(), truth.reindex(redone.index).to_numpy(), rtol=0, atol=1e-6)


def test_an_empty_prediction_is_nothing_to_extend(store, home):
    """O9: a window of an instrument that stopped trading before the test predicts nothing; the routine
    does not crash (Qlib: "NaT is not trading day") and the signal is empty."""
    table = home / "gone" / "prices.parquet"
    write_table(table, "2018-03-30", stop={"SYN0001": "2017-08-31"})
    task = make_task(source=f"table://{table}", instruments=["SYN0001"])
    manager, strategy = online(store, "empty", "2017-12-22", tasks=task)
    manager.first_train()
    (rec,) = strategy.tool.online_models()
    assert rec.load_object("pred.pkl").empty
    assert PredUpdater(rec, to_date="2018-01-10").update() is None
    assert manager.routine("2018-01-10").empty


# -- trainers ------------------------------------------------------------------------------------------


def test_delay_trainer_fits_within_the_routine(store):
    """Qlib's delay_prepare is not ported (§8 Fix 9): a delay trainer's end_train runs in the routine."""
    manager, strategy = online(store, "delay", "2017-12-22", trainer=DelayTrainerR(exp_manager=store))
    manager.first_train()
    signal = manager.routine("2018-01-19")
    (rec,) = strategy.tool.online_models()
    assert rec.tags["qroll.delay_phase"] == "end" and not rec.load_object("pred.pkl").empty
    assert signal.index.get_level_values("datetime").max() == pd.Timestamp("2018-01-19")
    ids = {r.id for r in runs(strategy)}
    manager.routine("2018-01-19")
    assert {r.id for r in runs(strategy)} == ids


def test_trainer_rm_on_a_sqlite_pool(store, home):
    """Windows trained through a SQLite task pool (this process works on it), looked up the same way."""
    trainer = TrainerRM(pool_url=f"sqlite:///{home}/pool.db", exp_manager=store, n_workers=0, poll=0.2,
                        timeout=120)
    manager, strategy = online(store, "pooled", "2017-12-22", trainer=trainer)
    manager.first_train()
    signal = manager.routine("2018-02-20")
    assert online_windows(strategy) == [("2018-02-16", "")]
    assert all("qroll.pool_task_id" in r.tags for r in runs(strategy))
    ids = {r.id for r in runs(strategy)}
    assert manager.routine("2018-02-20").equals(signal)
    assert {r.id for r in runs(strategy)} == ids


def test_lgbmodel_windows_roll_online(store):
    model = {"class": "LGBModel", "kwargs": {"loss": "mse", "num_boost_round": 5, "num_leaves": 4,
                                             "num_threads": 1, "seed": 0, "verbosity": -1}}
    manager, strategy = online(store, "lgb", "2017-12-22", tasks=make_task(model=model))
    manager.first_train()
    signal = manager.routine("2018-01-19")
    assert online_windows(strategy) == [("2018-01-19", "")]
    assert not signal.index.duplicated().any() and signal.notna().mean() > 0.9


# -- arguments --------------------------------------------------------------------------------------------


def test_no_as_of_day_is_a_config_error_never_the_calendar_end(store):
    manager, _ = online(store, "no-as-of", None)
    with pytest.raises(ConfigValueError, match="no as-of day"):
        manager.routine()
    with pytest.raises(ConfigValueError, match="no as-of day"):
        manager.first_train()
    with pytest.raises(ConfigValueError, match="end_time"):
        manager.simulate(start_time="2017-12-01")
    early, _ = online(store, "too-early", "2017-08-15")
    with pytest.raises(ConfigValueError, match="before the first window.*2017-09-01"):
        early.first_train()


def test_task_and_model_kwargs_reach_the_strategy(store):
    """O6: task_kwargs reach prepare_tasks, model_kwargs prepare_online_models (with the as-of day)."""
    seen: dict[str, Any] = {}

    class Recording(RollingStrategy):
        def prepare_tasks(self, cur_time, **kwargs):
            seen["tasks"] = kwargs
            return super().prepare_tasks(cur_time)

        def prepare_online_models(self, trained_models, cur_time=None, **kwargs):
            seen["models"] = (kwargs, cur_time)
            return super().prepare_online_models(trained_models, cur_time)

    manager, strategy = online(store, "kwargs", "2017-12-22", strategy_cls=Recording)
    manager.first_train()
    manager.routine("2018-01-02", task_kwargs={"a": 1}, model_kwargs={"b": 2})
    assert seen == {"tasks": {"a": 1}, "models": ({"b": 2}, pd.Timestamp("2018-01-02"))}
    plain, _ = online(store, "kwargs", "2017-12-22")
    with pytest.raises(ConfigTypeError, match=r"takes no \['a'\]"):
        plain.routine("2018-01-02", task_kwargs={"a": 1})


# -- one routine at a time -----------------------------------------------------------------------------------

RACE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from test_online import online, make_task
    from qroll import ExpManager
    manager, strategy = online(ExpManager({uri!r}), "race", None)
    manager.routine("2018-01-19")
""")


@pytest.mark.slow
def test_two_processes_routine_the_same_day_and_the_due_window_trains_once(store, home):
    """The per-strategy lock: two processes run the same routine at once; one trains the due window,
    the other waits, then finds it."""
    manager, strategy = online(store, "race", "2017-12-22")
    manager.first_train()
    script = RACE.format(here=str(Path(__file__).parent), uri=store.uri)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    new = [r for r in runs(strategy) if r.tags["qroll.test_start"] == "2018-01-19"]
    assert len(new) == 1
    assert online_windows(strategy) == [("2018-01-19", "")]
    assert list((home / "home" / "locks").glob("online-*.lock"))


def test_history_is_a_query_over_the_tags(store):
    manager, strategy = online(store, "history", "2017-12-22")
    manager.first_train()
    manager.routine("2018-02-20")
    history = OnlineManager(strategy, TrainerR(exp_manager=store)).history
    assert list(history) == [pd.Timestamp("2017-12-22"), pd.Timestamp("2018-02-20")]
    assert [r.tags["qroll.test_start"] for r in history[pd.Timestamp("2018-02-20")]["history"]] == ["2018-02-16"]
    assert all(TAG_ONLINE_SINCE in r.tags for recs in history.values() for r in recs["history"])
