"""The feature cache: computed once, sliced many times; damaged or half-written entries never read as valid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qroll.data import cache
from qroll.data.cache import (
    cache_clear,
    cache_dir,
    cache_info,
    feature_cache_key,
    forget_memory,
    load_features,
)
from qroll.data.handler import Alpha158
from qroll.data.source import open_source
from qroll.errors import FeatureCacheWarning
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


@pytest.fixture(autouse=True)
def fresh_memory():
    forget_memory()
    yield
    forget_memory()


def entry_files(home: Path) -> list[str]:
    return sorted(p.name for p in cache_dir(home).iterdir()) if cache_dir(home).is_dir() else []


def same(a, b) -> bool:
    return (a.index.equals(b.index) and a.columns.equals(b.columns) and list(a.dtypes) == list(b.dtypes)
            and np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True))


def test_first_call_computes_and_writes_later_calls_read(tmp_path):
    src = CountingSource()
    first = load_features(src, "all", FEATURE, LABEL, home=tmp_path)
    assert src.loads == 1
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    assert entry_files(tmp_path) == [f"{key}.bin", f"{key}.json"]
    manifest = json.loads((cache_dir(tmp_path) / f"{key}.json").read_text())
    assert manifest["rows"] == len(first) and manifest["columns"] == [["feature", "RET1"], ["feature", "VMA5"],
                                                                      ["label", "LABEL0"]]
    assert load_features(src, "all", FEATURE, LABEL, home=tmp_path) is first  # in-process LRU
    forget_memory()
    again = load_features(src, "all", FEATURE, LABEL, home=tmp_path)
    assert src.loads == 1 and again is not first and same(again, first)


def test_key_ignores_dates_but_not_data_features_or_universe(tmp_path, monkeypatch):
    monkeypatch.setenv("QROLL_HOME", str(tmp_path))
    src = CountingSource()
    for start, end in [("2015-02-01", "2015-06-30"), ("2015-04-01", "2015-12-31")]:
        h = Alpha158(instruments="all", start_time=start, end_time=end, source=src)
        assert len(h.fetch()) == stored_rows(src.inner, start, end)[0]
    assert src.loads == 1 and len(cache_info(tmp_path)) == 1
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    assert key != feature_cache_key(src, ["SYN0001"], FEATURE, LABEL)
    assert key != feature_cache_key(src, "all", (FEATURE[0][:1], FEATURE[1][:1]), LABEL)
    assert key != feature_cache_key(CountingSource(URI.replace("seed=3", "seed=4")), "all", FEATURE, LABEL)


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "delete_data"])
def test_damaged_entry_warns_and_is_rebuilt(tmp_path, damage):
    src = CountingSource()
    first = load_features(src, "all", FEATURE, LABEL, home=tmp_path)
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    data, manifest = cache_dir(tmp_path) / f"{key}.bin", cache_dir(tmp_path) / f"{key}.json"
    raw = data.read_bytes()
    if damage == "truncate":
        data.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        data.write_bytes(raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:])
    elif damage == "manifest":
        manifest.write_text("{not json")
    else:
        data.unlink()
    forget_memory()
    with pytest.warns(FeatureCacheWarning, match=key[:12]):
        rebuilt = load_features(src, "all", FEATURE, LABEL, home=tmp_path)
    assert src.loads == 2 and same(rebuilt, first)
    forget_memory()
    assert same(load_features(src, "all", FEATURE, LABEL, home=tmp_path), first) and src.loads == 2


CRASH = """
import os, sys
from qroll.data import cache
from qroll.data.source import open_source
calls = []
real = os.fsync
def crash(fd):
    calls.append(fd)
    if len(calls) == int(sys.argv[2]):
        os._exit(9)  # the process dies here, as under SIGKILL: no cleanup, no finally
    real(fd)
cache.os.fsync = crash
cache.load_features(open_source(sys.argv[3]), "all", ({FEATURE}), ({LABEL}), home=sys.argv[1])
"""


@pytest.mark.parametrize("crash_at", [1, 3], ids=["during_data_write", "during_manifest_write"])
def test_a_crash_mid_write_leaves_no_valid_entry(tmp_path, crash_at):
    script = CRASH.replace("{FEATURE}", repr(FEATURE)).replace("{LABEL}", repr(LABEL))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(crash_at), URI],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert cache_info(tmp_path) == []  # no manifest was published
    leftovers = entry_files(tmp_path)
    assert leftovers and not any(name.endswith(".json") for name in leftovers)
    src = CountingSource()
    frame = load_features(src, "all", FEATURE, LABEL, home=tmp_path)  # a plain miss: no warning
    assert src.loads == 1 and len(cache_info(tmp_path)) == 1
    assert same(frame, load_features(open_source(URI), "all", FEATURE, LABEL, use_cache=False))
    assert len(frame) == stored_rows(src.inner, "2015-01-01", "2015-12-31")[0]


def test_cache_info_and_clear(tmp_path):
    src = CountingSource()
    load_features(src, "all", FEATURE, LABEL, home=tmp_path)
    load_features(src, ["SYN0001", "SYN0002"], FEATURE, LABEL, home=tmp_path)
    (cache_dir(tmp_path) / ".orphan.bin.123.tmp").write_bytes(b"partial")
    entries = cache_info(tmp_path)
    assert len(entries) == 2 and {e.instruments if isinstance(e.instruments, str) else tuple(e.instruments)
                                  for e in entries} == {"all", ("SYN0001", "SYN0002")}
    assert all(e.size == e.path.stat().st_size and e.rows > 0 and e.columns == 3 for e in entries)
    assert cache_clear(tmp_path) == 2
    assert entry_files(tmp_path) == [] and cache_info(tmp_path) == []
    assert cache_clear(tmp_path / "nowhere") == 0


def test_use_cache_false_writes_nothing(tmp_path):
    src = CountingSource()
    load_features(src, "all", FEATURE, LABEL, home=tmp_path, use_cache=False)
    load_features(src, "all", FEATURE, LABEL, home=tmp_path, use_cache=False)
    assert src.loads == 2 and not cache_dir(tmp_path).exists()


def test_memory_keeps_only_the_last_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "MEMORY_ENTRIES", 1)
    src = CountingSource()
    a = load_features(src, "all", FEATURE, LABEL, home=tmp_path)
    load_features(src, ["SYN0001"], FEATURE, LABEL, home=tmp_path)
    assert load_features(src, "all", FEATURE, LABEL, home=tmp_path) is not a  # evicted, read from disk
    assert src.loads == 2 and os.listdir(cache_dir(tmp_path))


def test_background_write_publishes_the_same_entry(tmp_path):
    src = CountingSource()
    first = load_features(src, "all", FEATURE, LABEL, home=tmp_path, background=True)
    cache.wait_for_writes()
    key = feature_cache_key(src, "all", FEATURE, LABEL)
    assert entry_files(tmp_path) == [f"{key}.bin", f"{key}.json"]
    forget_memory()
    again = load_features(src, "all", FEATURE, LABEL, home=tmp_path)
    assert src.loads == 1 and again is not first and same(again, first)


def test_a_failed_background_write_warns_and_the_frame_is_still_returned(tmp_path, monkeypatch):
    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "fsync", disk_full)
    src = CountingSource()
    frame = load_features(src, "all", FEATURE, LABEL, home=tmp_path, background=True)
    assert same(frame, load_features(open_source(URI), "all", FEATURE, LABEL, use_cache=False))
    with pytest.warns(FeatureCacheWarning, match="could not be written.*No space left"):
        cache.wait_for_writes()
    cache.wait_for_writes()  # reported once
    assert cache_info(tmp_path) == [] and entry_files(tmp_path) == []  # nothing half-written is left


def test_handler_cache_write_is_complete_once_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("QROLL_HOME", str(tmp_path))
    src = CountingSource()
    h = Alpha158(instruments="all", start_time="2015-03-02", end_time="2015-06-30", source=src)
    learn = h.fetch(data_key="learn")
    entries = cache_info(tmp_path)  # waits for the handler's background write
    # The entry holds the whole source (its key ignores dates); learn is the range less NaN labels.
    rows, nan_labels = stored_rows(src.inner, "2015-03-02", "2015-06-30")
    assert len(entries) == 1 and entries[0].rows == stored_rows(src.inner, "2015-01-01", "2015-12-31")[0]
    assert len(learn) == rows - nan_labels
    assert not any(p.name.endswith(".tmp") for p in cache_dir(tmp_path).iterdir())
