"""`qroll update`, `qroll signals`, `qroll simulate` and `qroll data dump --end/--append`, run as a desk
would run them: `python -m qroll` in subprocesses from a fresh home, against real SQLite MLflow stores.

The invariant that makes online rolling trustworthy: `qroll simulate` over a span gives, day by day,
the signal `qroll run` of the same config gives over the same span (each day's scores as the routine
of that day computed them, on data cut at that day), on the synthetic market and on the real
`cn_csi300`; a second `simulate` or `update` trains nothing. Then data arriving in a Qlib directory
(appended as Qlib's collectors append), and every bad input: exit 2, one line, the store unchanged.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from qroll.collect.merged import merged_runs
from qroll.data.qlib_bin import QlibBinSource
from qroll.online.update import load_online
from qroll.record import ExpManager
from tests.conftest import shared_dataset

pytestmark = pytest.mark.slow

SYN = "synthetic://?instruments=30&start=2017-01-02&end=2018-06-29&seed=0"
FEATURES = [["$close/Ref($close, 1) - 1", "Mean($close, 5)/$close", "Std($close/Ref($close, 1), 10)"],
            ["RET1", "MA5", "STD10"]]
LABEL = [["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"]]


def config(path: Path, *, data: str = SYN, experiment: str = "online", instruments: str = "all",
           handler: tuple[str, str] = ("2017-01-02", "2018-01-31"),
           segments: dict[str, list[str]] | None = None, model: dict[str, Any] | None = None,
           backtest: dict[str, Any] | None = None) -> Path:
    """A run config of a linear model on three price features, rolled every 20 trading days."""
    segments = segments or {"train": ["2017-01-02", "2017-06-30"], "valid": ["2017-07-03", "2017-08-25"],
                            "test": ["2017-09-01", "2018-01-31"]}
    loader = {"class": "QlibDataLoader", "kwargs": {"config": {"feature": FEATURES, "label": LABEL}}}
    task = {"model": model or {"class": "LinearModel", "kwargs": {"estimator": "ols"}},
            "dataset": {"class": "DatasetH", "kwargs": {
                "handler": {"class": "DataHandlerLP", "kwargs": {
                    "instruments": instruments, "start_time": handler[0], "end_time": handler[1],
                    "data_loader": loader, "learn_processors": ["DropnaLabel"],
                    "infer_processors": [{"class": "Fillna", "kwargs": {"fields_group": "feature"}}]}},
                "segments": segments}},
            "record": ["SignalRecord"]}
    raw = {"experiment": experiment, "data": data, "tracking": f"sqlite:///{path.parent}/mlflow.db",
           "rolling": {"step": 20, "rtype": "sliding", "trunc_days": "auto"}, "tasks": [task],
           "backtest": backtest or {"strategy": {"class": "TopkDropoutStrategy", "kwargs": {"topk": 5, "n_drop": 1}}}}
    path.write_text(yaml.safe_dump(raw))
    return path


def qroll_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qroll", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=900)


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stderr
    return " ".join(res.stdout.split())


def store(folder: Path) -> ExpManager:
    return ExpManager(f"sqlite:///{folder}/mlflow.db")


def run_ids(folder: Path, name: str) -> set[str]:
    manager = store(folder)
    if name not in {e.name for e in manager.list_experiments()}:
        return set()
    return {r.id for r in manager.get_exp(name).list_recorders()}


def state(folder: Path, name: str) -> Any:
    """Everything a command could change in an experiment: its runs (status, tags), its own tags, and
    every artifact file beside the store (path, size, modification time)."""
    manager = store(folder)
    if name not in {e.name for e in manager.list_experiments()}:
        return None
    exp = manager.get_exp(name)
    runs = sorted((r.id, r.status, tuple(sorted(r.tags.items()))) for r in exp.list_recorders())
    files = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in (folder / "artifacts").rglob("*")
                   if p.is_file())
    return runs, dict(manager.client.get_experiment(exp.id).tags), files


def zscore(pred: pd.Series) -> pd.Series:
    by_day = pred.groupby(level="datetime")
    return (pred - by_day.transform("mean")) / by_day.transform("std")


def read_signal(path: Path) -> pd.Series:
    frame = pd.read_parquet(path)
    return frame["score"].sort_index()


def check_simulate_equals_run(tmp_path: Path, cfg: Path, start: str, end: str, days: pd.DatetimeIndex) -> None:
    home = tmp_path / "home"
    ok(qroll_cli("run", str(cfg), "--experiment", "offline", home=home))
    out = ok(qroll_cli("simulate", str(cfg), "--start", start, "--end", end, "--out", str(tmp_path / "sim.parquet"),
                       home=home))
    assert f"replayed {len(days)} trading day(s) {days[0]:%Y-%m-%d}..{days[-1]:%Y-%m-%d}" in out
    assert "online signal" in out and "IC" in out and "excess w/ cost" in out
    simulated = read_signal(tmp_path / "sim.parquet")
    assert not simulated.index.duplicated().any()
    assert pd.DatetimeIndex(simulated.index.get_level_values("datetime").unique()).equals(days)

    # qroll run's merged signal of the same config, z-scored per day as the online signal is.
    (merged,) = merged_runs(store(tmp_path).get_exp("offline")).values()
    offline = zscore(merged.load_object("pred.pkl")["score"])
    for day in days:
        got = simulated.xs(day, level="datetime")
        want = offline.xs(day, level="datetime")
        # Parquet reads the instrument codes back as strings: the codes and values are compared.
        pd.testing.assert_series_equal(got, want, check_names=False, check_index_type=False, rtol=1e-9,
                                       obj=f"signal of {day.date()}")

    # A second simulation, and an update to the span's end, train nothing.
    before = run_ids(tmp_path, "online")
    out = ok(qroll_cli("simulate", str(cfg), "--start", start, "--end", end, home=home))
    assert "trained 0 window(s)" in out
    written = state(tmp_path, "online")
    out = ok(qroll_cli("update", str(cfg), "--as-of", end, home=home))
    assert "trained nothing: no window due" in out and "predicted 0 new trading day(s)" in out
    assert run_ids(tmp_path, "online") == before
    assert state(tmp_path, "online") == written  # nothing new: no tag, no run, no prediction written
    # The store's signal (qroll signals) ends with the span's last day as simulated.
    ok(qroll_cli("signals", "online", "--tracking", f"sqlite:///{tmp_path}/mlflow.db", "--out",
                 str(tmp_path / "signal.parquet"), home=home))
    stored = read_signal(tmp_path / "signal.parquet")
    pd.testing.assert_series_equal(stored.xs(days[-1], level="datetime"), simulated.xs(days[-1], level="datetime"))


def test_simulate_equals_run_day_by_day_on_the_synthetic_market(tmp_path):
    cfg = config(tmp_path / "run.yaml")
    check_simulate_equals_run(tmp_path, cfg, "2017-12-01", "2018-01-31", pd.bdate_range("2017-12-01", "2018-01-31"))


def test_simulate_equals_run_day_by_day_on_cn_csi300(tmp_path):
    data = shared_dataset("cn_csi300", "calendars/day.txt").resolve()
    days = QlibBinSource(data).calendar.days
    segments = {"train": ["2017-01-03", "2018-06-29"], "valid": ["2018-07-02", "2018-11-30"],
                "test": ["2019-01-02", "2019-03-29"]}
    # CSI300's percent $change: the limits as expressions, as the bundled csi300 example writes them.
    backtest = {"strategy": {"class": "TopkDropoutStrategy", "kwargs": {"topk": 30, "n_drop": 3}},
                "backtest": {"benchmark": "SH000300", "exchange_kwargs": {
                    "limit_threshold": ["$change >= 9.5", "$change <= -9.5"], "deal_price": "close",
                    "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5}}}
    cfg = config(tmp_path / "run.yaml", data=f"qlib://{data}", instruments="csi300",
                 handler=("2016-06-01", "2019-03-29"), segments=segments, backtest=backtest)
    span = days[(days >= "2019-03-01") & (days <= "2019-03-29")]
    check_simulate_equals_run(tmp_path, cfg, "2019-03-01", "2019-03-29", span)


# -- data that arrives -----------------------------------------------------------------------------------


GROWTH = [  # (the directory's last day, the windows its update trains)
    ("2018-01-10", ["2017-09-01..2017-09-28", "2017-09-29..2017-10-26", "2017-10-27..2017-11-23",
                    "2017-11-24..2017-12-21", "2017-12-22..open"]),
    ("2018-01-18", []),  # the 19th trading day of the latest window: nothing due
    ("2018-01-19", ["2018-01-19..open"]),  # the 20th: one window
    ("2018-01-24", []),
]


@pytest.fixture(scope="module")
def grown(tmp_path_factory) -> tuple[Path, list[dict[str, Any]]]:
    """A Qlib directory dumped to 2018-01-10, then appended to, with `qroll update` after each day that
    arrives; what each update printed and left in the store."""
    folder = tmp_path_factory.mktemp("grown")
    home, qlib = folder / "home", folder / "qlib_data"
    cfg = config(folder / "run.yaml", data=f"qlib://{qlib}")
    steps = []
    for last, _ in GROWTH:
        args = ("--append",) if qlib.exists() else ()
        dumped = ok(qroll_cli("data", "dump", SYN, str(qlib), *args, "--end", last, home=home))
        before = run_ids(folder, "online")
        out = ok(qroll_cli("update", str(cfg), home=home))
        ok(qroll_cli("signals", "online", "--tracking", f"sqlite:///{folder}/mlflow.db", "--out",
                     str(folder / "s.parquet"), home=home))
        (online,) = store(folder).get_exp("online").list_recorders(tags={"online_status": "online"})
        steps.append({"last": last, "dumped": dumped, "out": out, "new": run_ids(folder, "online") - before,
                      "signal": read_signal(folder / "s.parquet"), "pred": load_online(online),
                      "calendar": QlibBinSource(qlib).calendar.last_day})
    return folder, steps


def test_days_appended_to_a_qlib_directory_are_predicted_and_only_due_windows_train(grown):
    folder, steps = grown
    assert "up to 2018-01-10" in steps[0]["dumped"]
    for step, (last, windows) in zip(steps, GROWTH, strict=True):
        assert step["calendar"] == pd.Timestamp(last)
        if last != GROWTH[0][0]:
            assert f"..{last} to {folder / 'qlib_data'}" in step["dumped"]  # appended, not dumped again
        assert len(step["new"]) == len(windows), step["out"]
        assert all(f"LinearModel {w}" in step["out"] for w in windows), step["out"]
        assert f"signal of {last}" in step["out"]
        signal, pred = step["signal"], step["pred"]
        assert not signal.index.duplicated().any() and not pred.index.duplicated().any()
        days = pd.DatetimeIndex(signal.index.get_level_values("datetime").unique())
        assert days.equals(pd.bdate_range("2017-09-01", last))  # every day, each once
        assert pred.index.get_level_values("datetime").max() == pd.Timestamp(last)
    # The appended directory reads as a direct dump of the market up to its last day.
    ok(qroll_cli("data", "dump", SYN, str(folder / "direct"), "--end", GROWTH[-1][0], home=folder / "home"))
    grown_dir, direct = QlibBinSource(folder / "qlib_data"), QlibBinSource(folder / "direct")
    assert grown_dir.calendar == direct.calendar and grown_dir.instruments() == direct.instruments()


def test_the_feature_cache_grew_by_the_new_days_without_recomputing_history(grown):
    """The cache's own record of each entry (written by every process that computed or grew it): the
    directory's features were computed over the whole calendar once, on the first day, and every
    later day was appended to that entry, never computed again with the history."""
    from qroll.data.cache import FeatureCache

    folder, steps = grown
    entries = [e for e in FeatureCache.at(folder / "home").info() if str(folder / "qlib_data") in e.source]
    assert len(entries) == 1, entries
    (entry,) = entries
    assert entry.computed == 1 and entry.extensions >= 1, entry
    # Grown at least to the day a window trained on it (2018-01-19), by exactly the days after 01-10.
    assert entry.last_day >= "2018-01-19"
    assert entry.days_appended == len(pd.bdate_range("2018-01-11", entry.last_day)), entry
    out = ok(qroll_cli("cache", "info", home=folder / "home"))
    assert "grown" in out and entry.last_day in out


# -- bad input ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def updated(tmp_path_factory) -> Path:
    """A store whose experiment 'online' was updated to 2018-01-31."""
    folder = tmp_path_factory.mktemp("bad")
    cfg = config(folder / "run.yaml")
    ok(qroll_cli("update", str(cfg), "--as-of", "2018-01-31", home=folder / "home"))
    return folder


def changed_model(folder: Path) -> Path:
    return config(folder / "changed.yaml", model={"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 1}})


BAD = [
    (lambda f: ("update", str(f / "run.yaml"), "--as-of", "2017-08-15"), "is before the first window"),
    (lambda f: ("update", str(f / "run.yaml"), "--as-of", "2018-07-02"), "the data of that day has not arrived"),
    (lambda f: ("update", str(changed_model(f))),
     "keys that differ: tasks[0].model.kwargs.alpha, tasks[0].model.kwargs.estimator); pass --reset"),
    (lambda f: ("update", str(config(f / "old.yaml", data=SYN.replace("2018-06-29", "2018-01-10")))),
     "ends 2018-01-10, before the online models of experiment 'online' last predicted (2018-01-31)"),
    (lambda f: ("simulate", str(f / "run.yaml"), "--start", "2018-01-31", "--end", "2018-01-02"),
     "--end 2018-01-02 is before --start 2018-01-31"),
    (lambda f: ("simulate", str(f / "run.yaml"), "--start", "2017-08-01", "--end", "2017-09-29"),
     "--start 2017-08-01 is before the first window"),
    (lambda f: ("signals", "no_such_experiment", "--tracking", f"sqlite:///{f}/mlflow.db"),
     "no experiment named 'no_such_experiment'"),
    (lambda f: ("signals", "online", "--tracking", f"sqlite:///{f}/mlflow.db", "--out", str(f / "s.txt")),
     "give a .parquet or .csv file"),
]


@pytest.mark.parametrize(("command", "message"), BAD, ids=["early", "future", "template", "old-data", "swapped",
                                                           "simulate-early", "unknown", "out-suffix"])
def test_a_bad_input_exits_2_with_one_line_and_changes_nothing(updated, command, message):
    before = state(updated, "online")
    res = qroll_cli(*command(updated), home=updated / "home")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("qroll: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert message in res.stderr
    assert state(updated, "online") == before


def test_reset_starts_a_changed_template_again(tmp_path):
    home = tmp_path / "home"
    ok(qroll_cli("update", str(config(tmp_path / "run.yaml")), "--as-of", "2018-01-31", home=home))
    old = run_ids(tmp_path, "online")
    changed = changed_model(tmp_path)
    res = qroll_cli("update", str(changed), "--as-of", "2018-01-31", home=home)
    assert res.returncode == 2 and "--reset" in res.stderr
    out = ok(qroll_cli("update", str(changed), "--as-of", "2018-01-31", "--reset", home=home))
    assert "trained 6 first windows" in out
    new = run_ids(tmp_path, "online")
    assert len(new) == 6 and not new & old  # the old online runs are gone, the new ones trained
    out = ok(qroll_cli("update", str(changed), "--as-of", "2018-01-31", home=home))
    assert "trained nothing" in out and run_ids(tmp_path, "online") == new


def test_update_trains_through_the_pool_the_config_names(tmp_path):
    cfg = config(tmp_path / "run.yaml")
    raw = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**raw, "pool": f"sqlite:///{tmp_path}/pool.db"}))
    home = tmp_path / "home"
    out = ok(qroll_cli("update", str(cfg), "--as-of", "2017-12-22", home=home))
    assert "trained 5 first windows" in out
    runs = store(tmp_path).get_exp("online").list_recorders()
    assert len(runs) == 5 and all("qroll.pool_task_id" in r.tags for r in runs)  # TrainerRM's runs
    out = ok(qroll_cli("update", str(cfg), "--as-of", "2018-01-19", home=home))
    assert "LinearModel 2018-01-19..open" in out and len(run_ids(tmp_path, "online")) == 6
    res = qroll_cli("pool", "status", "--pool", f"sqlite:///{tmp_path}/pool.db", "--pool-name", "online",
                    home=home)
    assert re.search(r"done\W+6\W", res.stdout), res.stdout  # every window was a pool task, done


def test_a_dump_appended_from_another_history_exits_2_and_writes_nothing(tmp_path):
    qlib = tmp_path / "qlib_data"
    ok(qroll_cli("data", "dump", SYN, str(qlib), "--end", "2018-01-10", home=tmp_path))
    files = {p: p.read_bytes() for p in qlib.rglob("*") if p.is_file()}
    res = qroll_cli("data", "dump", SYN.replace("seed=0", "seed=1"), str(qlib), "--append", home=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "disagrees with" in res.stderr, res.stderr
    assert {p: p.read_bytes() for p in qlib.rglob("*") if p.is_file()} == files


def test_help_says_the_units():
    for command, words in [("update", "trading day"), ("simulate", "trading day"), ("signals", "as-of"),
                           ("data dump", "trading day")]:
        res = subprocess.run([sys.executable, "-m", "qroll", *command.split(), "--help"], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0 and words in " ".join(res.stdout.split()), command
