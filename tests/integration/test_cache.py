"""The feature cache: computed once, sliced many times; damaged or half-written entries never read as valid."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qroll.data.cache import FeatureCache, feature_cache_key
from qroll.data.features import compute_features
from qroll.data.handler import Alpha158
from qroll.data.source import open_source
from qroll.errors import CacheError, ConfigTypeError, ConfigValueError, FeatureCacheWarning
from tests.conftest import stored_rows

URI = "synthetic://?instruments=6&start=2015-01-01&end=2015-12-31&seed=3"
FEATURE = (["$close/Ref($close, 1) - 1", "Mean($volume, 5)"], ["RET1", "VMA5"])
LABEL = (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])
ROOT = Path(__file__).resolve().parents[2]


class CountingSource:
    """A real synthetic market that counts how often its raw fields are loaded."""

    def __init__(self, uri: str = URI) -> None:
        self.inner = open_source(uri)
        self.uri = self.inner.uri
        self.loads = 0

    @property
    def calendar(self):
        return self.inner.calendar

    def markets(self):
        return self.inner.markets()

    def instruments(self, market="all"):
        return self.inner.instruments(market)

    def fields(self):
        return self.inner.fields()

    def fingerprint(self):
        return self.inner.fingerprint()

    def load(self, *args, **kwargs):
        self.loads += 1
        return self.inner.load(*args, **kwargs)


@pytest.fixture
def cache(tmp_path):
    """The cache of the test's home, as every handler of that home gets it."""
    cache = FeatureCache.at(tmp_path)
    yield cache
    cache.forget_memory()


def entry_files(home: Path) -> list[str]:
    folder = FeatureCache.at(home).folder
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def uncached(source, instruments="all"):
    """The features computed straight from the source, as the cache must return them."""
    return compute_features(source, FEATURE[0], FEATURE[1], LABEL[0], LABEL[1], instruments)


def same(a, b) -> bool:
    return (a.index.equals(b.index) and a.columns.equals(b.columns) and list(a.dtypes) == list(b.dtypes)
            and np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True))


def test_first_call_computes_and_writes_later_calls_read(cache, tmp_path):
    src = CountingSource()
    first = cache.load(src, "all", FEATURE, LABEL)
    assert src.loads == 1
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    assert entry_files(tmp_path) == [f"{key}.bin", f"{key}.json"]
    manifest = json.loads((cache.folder / f"{key}.json").read_text())
    assert manifest["rows"] == len(first) and manifest["columns"] == [["feature", "RET1"], ["feature", "VMA5"],
                                                                      ["label", "LABEL0"]]
    assert cache.load(src, "all", FEATURE, LABEL) is first  # in-process LRU
    cache.forget_memory()
    again = cache.load(src, "all", FEATURE, LABEL)
    assert src.loads == 1 and again is not first and same(again, first)
    c = cache.counters
    assert (c.full_computes, c.hits, c.rows_computed, c.extensions) == (1, 2, len(first), 0)
    (entry,) = cache.info()
    assert (entry.parts, entry.computed, entry.extensions, entry.last_day) == (1, 1, 0, "2015-12-31")


def test_key_ignores_dates_but_not_data_features_or_universe(cache, tmp_path):
    src = CountingSource()
    for start, end in [("2015-02-01", "2015-06-30"), ("2015-04-01", "2015-12-31")]:
        h = Alpha158(instruments="all", start_time=start, end_time=end, source=src, home=tmp_path)
        assert len(h.fetch()) == stored_rows(src.inner, start, end)[0]
    assert src.loads == 1 and len(cache.info()) == 1
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    assert key != feature_cache_key(src, ["SYN0001"], FEATURE, LABEL)
    assert key != feature_cache_key(src, "all", (FEATURE[0][:1], FEATURE[1][:1]), LABEL)
    assert key != feature_cache_key(CountingSource(URI.replace("seed=3", "seed=4")), "all", FEATURE, LABEL)


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "delete_data"])
def test_damaged_entry_warns_and_is_rebuilt(cache, tmp_path, damage):
    src = CountingSource()
    first = cache.load(src, "all", FEATURE, LABEL)
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    data, manifest = cache.folder / f"{key}.bin", cache.folder / f"{key}.json"
    raw = data.read_bytes()
    if damage == "truncate":
        data.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        data.write_bytes(raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:])
    elif damage == "manifest":
        manifest.write_text("{not json")
    else:
        data.unlink()
    cache.forget_memory()
    with pytest.warns(FeatureCacheWarning, match=key[:12]):
        rebuilt = cache.load(src, "all", FEATURE, LABEL)
    assert src.loads == 2 and same(rebuilt, first)
    cache.forget_memory()
    assert same(cache.load(src, "all", FEATURE, LABEL), first) and src.loads == 2


CRASH = """
import os, sys
from qroll.data import cache
from qroll.data.cache import FeatureCache
from qroll.data.source import open_source
calls = []
real = os.fsync
def crash(fd):
    calls.append(fd)
    if len(calls) == int(sys.argv[2]):
        os._exit(9)  # the process dies here, as under SIGKILL: no cleanup, no finally
    real(fd)
cache.os.fsync = crash
FeatureCache.at(sys.argv[1]).load(open_source(sys.argv[3]), "all", ({FEATURE}), ({LABEL}))
"""


@pytest.mark.parametrize("crash_at", [1, 3], ids=["during_data_write", "during_manifest_write"])
def test_a_crash_mid_write_leaves_no_valid_entry(cache, tmp_path, crash_at):
    script = CRASH.replace("{FEATURE}", repr(FEATURE)).replace("{LABEL}", repr(LABEL))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(crash_at), URI],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert cache.info() == []  # no manifest was published
    leftovers = entry_files(tmp_path)
    assert leftovers and not any(name.endswith(".json") for name in leftovers)
    src = CountingSource()
    frame = cache.load(src, "all", FEATURE, LABEL)  # a plain miss: no warning
    assert src.loads == 1 and len(cache.info()) == 1
    assert same(frame, uncached(open_source(URI)))
    assert len(frame) == stored_rows(src.inner, "2015-01-01", "2015-12-31")[0]


def test_cache_info_and_clear(cache, tmp_path):
    src = CountingSource()
    cache.load(src, "all", FEATURE, LABEL)
    cache.load(src, ["SYN0001", "SYN0002"], FEATURE, LABEL)
    (cache.folder / ".orphan.bin.123.tmp").write_bytes(b"partial")
    entries = cache.info()
    assert len(entries) == 2 and {e.instruments if isinstance(e.instruments, str) else tuple(e.instruments)
                                  for e in entries} == {"all", ("SYN0001", "SYN0002")}
    assert all(e.size == e.path.stat().st_size and e.rows > 0 and e.columns == 3 for e in entries)
    assert cache.memory_bytes > 0
    assert cache.clear() == 2
    assert entry_files(tmp_path) == [] and cache.info() == [] and cache.memory_bytes == 0
    assert FeatureCache.at(tmp_path / "nowhere").clear() == 0


def test_one_cache_per_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("QROLL_HOME", str(tmp_path))
    assert FeatureCache.at() is FeatureCache.at(tmp_path) is FeatureCache.at(str(tmp_path) + "/")
    assert FeatureCache.at(tmp_path).folder == tmp_path.resolve() / "cache" / "features"
    assert FeatureCache.at(tmp_path / "other") is not FeatureCache.at(tmp_path)
    # A handler's cache survives pickling as the receiving process's cache of the same folder.
    assert pickle.loads(pickle.dumps(FeatureCache.at(tmp_path))) is FeatureCache.at(tmp_path)


def test_a_handler_without_cache_writes_nothing(tmp_path):
    src = CountingSource()
    for _ in range(2):
        h = Alpha158(instruments="all", start_time="2015-03-02", end_time="2015-06-30", source=src,
                     cache=False, home=tmp_path)
        h.fetch()
    assert src.loads == 2 and not FeatureCache.at(tmp_path).folder.exists()


def test_memory_keeps_the_last_entries_within_its_budget(cache):
    src = CountingSource()
    a = cache.load(src, "all", FEATURE, LABEL)
    one = cache.memory_bytes

    def size(frame):  # 3 float32 columns, and the row codes of the (datetime, instrument) index
        return 3 * 4 * len(frame) + sum(codes.nbytes for codes in frame.index.codes)

    assert one == size(a) > 0
    small = cache.load(src, ["SYN0001"], FEATURE, LABEL)
    assert cache.memory_bytes == one + size(small)
    cache.memory_budget = one  # the newer, smaller entry stays; the older goes
    assert cache.memory_bytes == size(small)
    assert cache.load(src, ["SYN0001"], FEATURE, LABEL) is small
    assert cache.load(src, "all", FEATURE, LABEL) is not a  # evicted, read from disk
    assert src.loads == 2 and os.listdir(cache.folder)
    cache.memory_budget = one - 1  # an entry larger than the whole budget is not kept
    assert cache.load(src, "all", FEATURE, LABEL) is not cache.load(src, "all", FEATURE, LABEL)
    with pytest.raises(ConfigValueError, match="memory_budget=-1 must be >= 0 bytes"):
        cache.memory_budget = -1
    with pytest.raises(ConfigTypeError, match="memory_budget='1G' must be a whole number of bytes"):
        FeatureCache(cache.folder, memory_budget="1G")


def test_background_write_publishes_the_same_entry(cache, tmp_path):
    src = CountingSource()
    first = cache.load(src, "all", FEATURE, LABEL, background=True)
    cache.wait()
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    assert entry_files(tmp_path) == [f"{key}.bin", f"{key}.json"]
    cache.forget_memory()
    again = cache.load(src, "all", FEATURE, LABEL)
    assert src.loads == 1 and again is not first and same(again, first)


def test_a_failed_background_write_raises_on_wait_and_the_frame_is_still_returned(cache, tmp_path):
    src = CountingSource()
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    # A directory where the entry's data file goes: renaming the written file there fails, for
    # any user (root included).
    (cache.folder / f"{key}.bin").mkdir(parents=True)
    frame = cache.load(src, "all", FEATURE, LABEL, background=True)
    assert same(frame, uncached(open_source(URI)))
    with pytest.raises(CacheError, match=f"1 entry could not be written: {key[:12]}.*IsADirectoryError"):
        cache.wait()
    cache.wait()  # reported once
    assert cache.info() == [] and entry_files(tmp_path) == [f"{key}.bin"]  # nothing half-written is left


def test_a_failed_foreground_write_raises(cache):
    src = CountingSource()
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    (cache.folder / f"{key}.bin").mkdir(parents=True)
    with pytest.raises(CacheError, match="check that the folder is writable"):
        cache.load(src, "all", FEATURE, LABEL)


def test_handler_cache_write_is_complete_once_listed(cache, tmp_path):
    src = CountingSource()
    h = Alpha158(instruments="all", start_time="2015-03-02", end_time="2015-06-30", source=src, home=tmp_path)
    assert h.cache is cache
    learn = h.fetch(data_key="learn")
    entries = cache.info()  # waits for the handler's background write
    # The entry holds the whole source (its key ignores dates); learn is the range less NaN labels.
    rows, nan_labels = stored_rows(src.inner, "2015-03-02", "2015-06-30")
    assert len(entries) == 1 and entries[0].rows == stored_rows(src.inner, "2015-01-01", "2015-12-31")[0]
    assert len(learn) == rows - nan_labels
    assert not any(p.name.endswith(".tmp") for p in cache.folder.iterdir())


def test_task_train_keeps_the_cache_in_the_runs_home_and_the_task_as_given(tmp_path, monkeypatch):
    from qroll import ExpManager, task_hash, task_train

    monkeypatch.setenv("QROLL_HOME", str(tmp_path / "env_home"))  # the run's home wins over it
    manager = ExpManager(f"sqlite:///{tmp_path}/mlflow.db", home=tmp_path / "run_home")
    handler = {"class": "DataHandlerLP", "kwargs": {
        "instruments": "all", "start_time": "2015-01-01", "end_time": "2015-12-31", "source": URI,
        "data_loader": {"feature": FEATURE, "label": LABEL}, "learn_processors": ["DropnaLabel"]}}
    # OLS: a ridge on the raw volume mean (~1e6) solves an ill-conditioned system (scipy's LinAlgWarning).
    task = {"model": {"class": "LinearModel", "kwargs": {"estimator": "ols"}},
            "dataset": {"class": "DatasetH", "kwargs": {"handler": handler, "segments": {
                "train": ("2015-02-01", "2015-09-30"), "test": ("2015-10-01", "2015-12-15")}}}}
    before, key = copy.deepcopy(task), task_hash(task)
    rec = task_train(task, "home", exp_manager=manager)
    assert task == before and task_hash(task) == key  # the home went to a copy
    assert rec.load_object("task") == before and "home" not in rec.load_object("dataset")["kwargs"]["handler"]["kwargs"]
    assert not any(name.endswith(".home") for name in rec.params)
    FeatureCache.at(tmp_path / "run_home").wait()
    assert len(FeatureCache.at(tmp_path / "run_home").info()) == 1
    assert not (tmp_path / "env_home").exists()
