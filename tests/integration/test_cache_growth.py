"""The feature cache as the data grows: entries extended by new days (never recomputing history),
rebuilt when the past changed, and as-of views cut out of them, bit for bit what computing the
view gives. Real data throughout: the synthetic market, its Qlib dumps grown by ``append_qlib_bin``,
a table, and ``cn_csi300`` where present."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qroll.data.asof import AsOfSource
from qroll.data.cache import FeatureCache, feature_cache_key
from qroll.data.cache_files import MAX_PARTS
from qroll.data.expression import look_ahead, look_back
from qroll.data.features import DEFAULT_LABEL, alpha158_config, compute_features
from qroll.data.qlib_append import append_qlib_bin
from qroll.data.qlib_bin import QlibBinSource, dump_qlib_bin
from qroll.data.synthetic import SyntheticMarket
from qroll.data.table import TableSource
from qroll.errors import FeatureCacheWarning
from tests.conftest import shared_dataset

ALPHA158 = alpha158_config()
# A feature that looks ahead, among the others: the views and extensions redo it too.
AHEAD = (["$close/Ref($close, 1) - 1", "Mean(Ref($close, -1), 3)/$close", "Std($volume, 10)"],
         ["RET1", "AHEAD1", "VSTD10"])
MARKET = dict(instruments=40, start="2014-01-01", seed=5)
END = "2016-12-30"


def market(end: str = END, **kwargs: Any) -> SyntheticMarket:
    return SyntheticMarket(**{**MARKET, **kwargs}, end=end)


@pytest.fixture
def cache(tmp_path: Path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache")


def grow(src_market: SyntheticMarket, folder: Path, until: Any) -> QlibBinSource:
    """Days appended to the Qlib directory as Qlib's collectors do; the directory opened afresh."""
    append_qlib_bin(src_market, folder, end=until)
    return QlibBinSource(folder)


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 units in the last place (0 where both are NaN)."""
    ia, ib = (np.where(x < 0, -(x & 0x7FFFFFFF), x).astype(np.int64)
              for x in (a.view(np.int32), b.view(np.int32)))
    out = np.abs(ia - ib)
    out[np.isnan(a) & np.isnan(b)] = 0
    return out


def identical(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Same rows, levels, columns, dtypes and bits (NaN where the other is NaN)."""
    ia, ib = a.index, b.index
    assert isinstance(ia, pd.MultiIndex) and isinstance(ib, pd.MultiIndex)
    return (ia.equals(ib) and all(x.equals(y) for x, y in zip(ia.levels, ib.levels, strict=True))
            and a.columns.equals(b.columns) and list(a.dtypes) == list(b.dtypes)
            and np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)
            and np.array_equal(np.signbit(a.to_numpy()), np.signbit(b.to_numpy())))


def manifest(cache: FeatureCache, key: str) -> dict[str, Any]:
    return dict(json.loads((cache.folder / f"{key}.json").read_text()))


# -- look_back ------------------------------------------------------------------------------------


def test_look_back_is_the_history_an_expression_reads_none_when_unbounded():
    assert look_back("$close") == 0 and look_back("Ref($close, 5)") == 5
    assert look_back("Std($close, 20)/Ref($close, 1)") == 19
    assert look_back("Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 60)") == 60
    assert look_back("Ref(Mean($close, 5), -2)") == 2  # 4 days back from two days ahead
    assert look_back("Ref($close, -2)/Ref($close, -1) - 1") == 0
    assert look_back("Slope($close, 20)") == 19  # a stored field is finite: the sums forget
    for unbounded in ("EMA($close, 10)", "Mean($close, 0)", "Ref($close, 0)", "Slope($close/$volume, 5)",
                      "Rsquare(Log($volume), 10)", "Mean(EMA($close, 5), 3)"):
        assert look_back(unbounded) is None, unbounded
    assert max(look_back(e) or 0 for e in ALPHA158[0]) == 60 and all(look_back(e) is not None for e in ALPHA158[0])
    assert [look_ahead(e) for e in AHEAD[0]] == [0, 1, 0]


# -- extension by new days ------------------------------------------------------------------------


def test_new_days_extend_the_entry_without_recomputing_history(cache, tmp_path):
    """Days appended to a Qlib dump: each load computes only the new days (plus the two label days
    it redoes); the first part stays as written; the result is what a full computation gives, within
    the documented bound, with the labels of the former last days now known."""
    full_market = market()
    days = full_market.calendar.days
    folder = dump_qlib_bin(full_market, tmp_path / "qlib", end=days[-8])
    first = cache.load(QlibBinSource(folder), "all", ALPHA158, DEFAULT_LABEL)
    key = feature_cache_key(QlibBinSource(folder), "all", ALPHA158, DEFAULT_LABEL)
    base = cache.folder / f"{key}.bin"
    base_stat = base.stat()
    assert cache.counters.full_computes == 1 and cache.counters.rows_computed == len(first)
    assert first.xs(days[-9], level="datetime")[("label", "LABEL0")].isna().all()  # not known on days[-8]

    for step, until in enumerate([days[-7], days[-4], days[-1]], start=1):
        grown = cache.load(grow(full_market, folder, until), "all", ALPHA158, DEFAULT_LABEL)
        c = cache.counters
        assert (c.full_computes, c.extensions, c.rebuilds) == (1, step, 0)
        assert grown.index.get_level_values("datetime").max() == until
    c = cache.counters
    assert c.days_appended == 7
    per_day = first.index.get_level_values("datetime").value_counts().max()
    assert c.rows_computed - len(first) <= (7 + 3 * 2) * per_day  # new days, and 2 label days per extension
    assert base.stat().st_ino == base_stat.st_ino and base.stat().st_mtime_ns == base_stat.st_mtime_ns
    data = manifest(cache, key)
    assert len(data["parts"]) == 4 and data["history"] == {"computed": 1, "extensions": 3, "days_appended": 7}
    (entry,) = cache.info()
    assert (entry.parts, entry.last_day, entry.extensions, entry.computed) == (4, str(days[-1].date()), 3, 1)

    expected = compute_features(QlibBinSource(folder), *ALPHA158, *DEFAULT_LABEL)
    assert grown.index.equals(expected.index) and grown.columns.equals(expected.columns)
    a, b = grown.to_numpy(), expected.to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert ulps(a, b).max() <= 8 and np.nanmax(np.abs(a.astype(np.float64) - b)) <= 2.5e-7
    # The labels (element-wise) are exact, the former last days' included; history is untouched:
    # every stored day's features, and the labels that were known.
    assert np.array_equal(a[:, -1], b[:, -1], equal_nan=True)
    stored = np.asarray(grown.index.get_level_values("datetime") <= days[-8])
    assert np.array_equal(a[stored, :-1], first.to_numpy()[:, :-1], equal_nan=True)
    known = np.asarray(first.index.get_level_values("datetime") <= days[-10])
    assert np.array_equal(a[stored][known], first.to_numpy()[known], equal_nan=True)
    # Read back from its parts in another process's way: the same frame.
    cache.forget_memory()
    again = cache.load(QlibBinSource(folder), "all", ALPHA158, DEFAULT_LABEL)
    assert identical(again, grown) and cache.counters.extensions == 3 and cache.counters.hits == 1


def test_the_extension_stays_within_the_bound_over_a_long_history(tmp_path):
    """The bound the cache documents (cache_growth's docstring), on 13 years of 60 instruments, new
    days appended in one-day steps and then a month at once."""
    long_market = SyntheticMarket(instruments=60, start="2008-01-01", end="2020-12-31", seed=0)
    days = long_market.calendar.days
    folder = dump_qlib_bin(long_market, tmp_path / "qlib", end=days[-25])
    cache = FeatureCache(tmp_path / "cache")
    cache.load(QlibBinSource(folder), "all", ALPHA158, DEFAULT_LABEL)
    for until in (days[-24], days[-23], days[-1]):
        grown = cache.load(grow(long_market, folder, until), "all", ALPHA158, DEFAULT_LABEL)
    assert cache.counters.extensions == 3 and cache.counters.full_computes == 1
    expected = compute_features(QlibBinSource(folder), *ALPHA158, *DEFAULT_LABEL)
    new = grown.index.get_level_values("datetime") > days[-25]
    a, b = grown.to_numpy()[new], expected.to_numpy()[np.asarray(new)]
    distance = ulps(a, b)
    assert grown.index.equals(expected.index) and np.array_equal(np.isnan(a), np.isnan(b))
    assert distance.max() <= 8 and np.nanmax(np.abs(a.astype(np.float64) - b)) <= 2.5e-7
    assert (distance > 0).mean() < 1e-3  # nearly every value is bit-identical


def test_a_look_ahead_feature_is_redone_on_the_entrys_last_days(cache, tmp_path):
    """A feature reading tomorrow (AHEAD1) was NaN-ish on the entry's last day; the extension
    redoes it there, and keeps the stored values of the look-back columns."""
    full_market = market()
    days = full_market.calendar.days
    folder = dump_qlib_bin(full_market, tmp_path / "qlib", end=days[-5])
    first = cache.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)
    grown = cache.load(grow(full_market, folder, days[-1]), "all", AHEAD, DEFAULT_LABEL)
    expected = compute_features(QlibBinSource(folder), *AHEAD, *DEFAULT_LABEL)
    assert cache.counters.extensions == 1 and identical(grown, expected)
    last = first.xs(days[-5], level="datetime")
    assert not last[("feature", "AHEAD1")].equals(grown.xs(days[-5], level="datetime")[("feature", "AHEAD1")])


def test_a_source_whose_past_changed_is_rebuilt_with_a_warning(cache, tmp_path):
    full_market = market()
    days = full_market.calendar.days
    folder = dump_qlib_bin(full_market, tmp_path / "qlib", end=days[-5])
    cache.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)
    # Another market written at the same path, with more days: the same lineage, another past.
    other = dump_qlib_bin(market(seed=6), folder, overwrite=True)
    with pytest.warns(FeatureCacheWarning, match=rf"as it stood on {days[-5].date()}.*has changed"):
        rebuilt = cache.load(QlibBinSource(other), "all", AHEAD, DEFAULT_LABEL)
    c = cache.counters
    assert (c.full_computes, c.rebuilds, c.extensions) == (2, 1, 0)
    assert identical(rebuilt, compute_features(QlibBinSource(other), *AHEAD, *DEFAULT_LABEL))
    cache.forget_memory()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert identical(cache.load(QlibBinSource(other), "all", AHEAD, DEFAULT_LABEL), rebuilt)


def test_an_expression_of_unbounded_memory_is_computed_again_not_extended(cache, tmp_path):
    feature = (["EMA($close, 10)/$close", "Mean($close, 5)/$close"], ["EMA10", "MA5"])
    full_market = market()
    days = full_market.calendar.days
    folder = dump_qlib_bin(full_market, tmp_path / "qlib", end=days[-5])
    cache.load(QlibBinSource(folder), "all", feature, DEFAULT_LABEL)
    grown = cache.load(grow(full_market, folder, days[-1]), "all", feature, DEFAULT_LABEL)
    assert (cache.counters.full_computes, cache.counters.extensions) == (2, 0)
    assert identical(grown, compute_features(QlibBinSource(folder), *feature, *DEFAULT_LABEL))


def test_a_shorter_source_of_the_same_lineage_gets_an_entry_of_its_own(cache):
    """A synthetic market with an earlier end is the longer one's past: no warning, and the longer
    one's entry is not replaced (it is found again without computing)."""
    long, short = market(), market("2016-06-30")
    assert feature_cache_key(long, "all", AHEAD, DEFAULT_LABEL) == feature_cache_key(short, "all", AHEAD,
                                                                                     DEFAULT_LABEL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.load(long, "all", AHEAD, DEFAULT_LABEL)
        got = cache.load(short, "all", AHEAD, DEFAULT_LABEL)
        assert identical(got, compute_features(short, *AHEAD, *DEFAULT_LABEL))
        cache.forget_memory()
        cache.load(long, "all", AHEAD, DEFAULT_LABEL)
    c = cache.counters
    assert (c.full_computes, c.rebuilds, c.hits) == (2, 0, 1) and len(cache.info()) == 2


def test_the_same_data_with_its_files_touched_is_a_hit(cache, tmp_path):
    folder = dump_qlib_bin(market(), tmp_path / "qlib")
    frame = cache.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)
    key = feature_cache_key(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)
    before = manifest(cache, key)["fingerprint"]
    day_txt = folder / "calendars" / "day.txt"
    os.utime(day_txt, ns=(day_txt.stat().st_atime_ns, day_txt.stat().st_mtime_ns + 10**9))
    cache.forget_memory()
    again = cache.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)
    assert cache.counters.full_computes == 1 and cache.counters.hits == 1 and identical(again, frame)
    assert manifest(cache, key)["fingerprint"] == QlibBinSource(folder).fingerprint() != before


def test_many_extensions_are_compacted_and_read_back_whole(cache, tmp_path):
    full_market = market()
    days = full_market.calendar.days
    folder = dump_qlib_bin(full_market, tmp_path / "qlib", end=days[-(MAX_PARTS + 4)])
    key = feature_cache_key(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)
    cache.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)
    for back in range(MAX_PARTS + 3, 0, -1):
        grown = cache.load(grow(full_market, folder, days[-back]), "all", AHEAD, DEFAULT_LABEL, background=True)
    cache.wait()
    parts = manifest(cache, key)["parts"]
    assert cache.counters.extensions == MAX_PARTS + 3 and len(parts) <= MAX_PARTS
    assert parts[0]["file"] == f"{key}.bin"  # the first part, as written by the full computation
    on_disk = sorted(p.name for p in cache.folder.glob(f"{key}*.bin"))
    assert on_disk == sorted(p["file"] for p in parts)  # the compacted parts were removed
    assert identical(grown, compute_features(QlibBinSource(folder), *AHEAD, *DEFAULT_LABEL))
    cache.forget_memory()
    assert identical(cache.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL), grown)


def test_a_second_writer_extending_the_same_entry_meanwhile_is_not_overwritten(cache, tmp_path, monkeypatch):
    """Two processes extend the entry at once (here: another cache of the folder extends it while
    this one is about to write): the one that finds the manifest changed writes nothing, and the
    entry on disk is one complete extension."""
    from qroll.data import cache_files

    full_market = market()
    days = full_market.calendar.days
    folder = dump_qlib_bin(full_market, tmp_path / "qlib", end=days[-3])
    cache.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)
    source = grow(full_market, folder, days[-1])
    other = FeatureCache(cache.folder)  # another process: its own memory and writers
    real = cache_files.append_part
    written: list[bool] = []
    raced: list[bool] = []

    def racing(*args: Any, **kwargs: Any) -> bool:
        if not raced:
            raced.append(True)
            other.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)  # writes first
        written.append(real(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(cache_files, "append_part", racing)
    mine = cache.load(source, "all", AHEAD, DEFAULT_LABEL)
    assert written == [True, False]  # the other's append, then ours, refused
    assert cache.counters.extensions == other.counters.extensions == 1
    key = feature_cache_key(source, "all", AHEAD, DEFAULT_LABEL)
    assert len(manifest(cache, key)["parts"]) == 2
    fresh = FeatureCache(cache.folder)
    assert identical(fresh.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL), mine)
    assert fresh.counters.hits == 1


def test_a_table_that_gains_rows_and_a_synthetic_market_with_a_later_end_extend(cache, tmp_path):
    short, long = market("2016-11-30"), market()
    path = tmp_path / "prices.parquet"

    def write(source: SyntheticMarket) -> TableSource:
        frames = source.load(source.fields(), list(source.instruments()))
        table = pd.concat({f: frames[f].stack(future_stack=True) for f in frames}, axis=1).dropna(how="all")
        table.reset_index().rename(columns={"datetime": "date"}).to_parquet(path, index=False)
        return TableSource(f"table://{path}")

    cache.load(write(short), "all", AHEAD, DEFAULT_LABEL)
    grown = cache.load(write(long), "all", AHEAD, DEFAULT_LABEL)
    cache.load(short, "all", AHEAD, DEFAULT_LABEL)
    from_market = cache.load(long, "all", AHEAD, DEFAULT_LABEL)
    c = cache.counters
    assert (c.full_computes, c.extensions, c.rebuilds) == (2, 2, 0)
    assert identical(grown, compute_features(TableSource(f"table://{path}"), *AHEAD, *DEFAULT_LABEL))
    assert identical(from_market, compute_features(long, *AHEAD, *DEFAULT_LABEL))


# -- as-of views ----------------------------------------------------------------------------------


def resumed_day(source: Any, symbols: list[str]) -> pd.Timestamp:
    """A day on which some instrument trades again after a suspension (a stored NaN close)."""
    close = source.load(["close"], symbols)["close"]
    after = close.notna() & close.shift(1).isna() & close.shift(2).notna()
    hits = after.any(axis=1)
    assert hits.any(), "the data has no suspension to test"
    return pd.Timestamp(hits[hits].index[len(hits[hits]) // 2])


def check_views(cache: FeatureCache, source: Any, instruments: Any, feature: Any, days: list[pd.Timestamp]) -> None:
    full = cache.load(source, instruments, feature, DEFAULT_LABEL)
    for day in days:
        view = AsOfSource(source, day)
        served = cache.load(view, instruments, feature, DEFAULT_LABEL)
        expected = compute_features(view, *feature, *DEFAULT_LABEL, instruments=instruments)
        assert identical(served, expected), day
        assert served.index.get_level_values("datetime").max() == view.as_of
        # The look-back columns are the entry's memory, not copies.
        assert np.shares_memory(served[("feature", feature[1][0])].to_numpy(), full.to_numpy())
        assert cache.load(view, instruments, feature, DEFAULT_LABEL) is served


def test_as_of_views_are_the_view_computed_bit_for_bit_on_the_synthetic_market(cache):
    source = market()
    days = source.calendar.days
    check_days = [days[30], resumed_day(source, list(source.instruments())), days[-3], days[-2], days[-1]]
    check_views(cache, source, "all", ALPHA158, check_days)
    check_views(cache, source, "synth100", AHEAD, [days[300], days[-2]])  # membership gaps
    check_views(cache, source, ["SYN0003", "SYN0001", "syn0039"], AHEAD, [days[10], days[-2]])
    c = cache.counters
    assert c.full_computes == 3 and c.views == 9 and c.extensions == 0


def test_a_view_is_served_from_the_entry_grown_to_its_day(cache, tmp_path):
    """A view past the entry's last day extends the entry first (its source gained the day)."""
    full_market = market()
    days = full_market.calendar.days
    folder = dump_qlib_bin(full_market, tmp_path / "qlib", end=days[-3])
    cache.load(QlibBinSource(folder), "all", AHEAD, DEFAULT_LABEL)
    source = grow(full_market, folder, days[-1])
    view = AsOfSource(source, days[-2])
    served = cache.load(view, "all", AHEAD, DEFAULT_LABEL)
    assert cache.counters.extensions == 1 and cache.counters.views == 1
    assert identical(served, compute_features(view, *AHEAD, *DEFAULT_LABEL))


@pytest.mark.slow
def test_as_of_views_on_cn_csi300_are_the_view_computed_bit_for_bit(tmp_path):
    source = QlibBinSource(shared_dataset("cn_csi300", "calendars/day.txt"))
    days = source.calendar.days
    # One of each operator family of Alpha158 (cn_csi300 has no $vwap), and a look-ahead feature.
    names = ["KMID", "ROC5", "MA10", "STD20", "BETA20", "RSQR30", "RESI5", "MAX10", "QTLU20", "RANK10",
             "IMAX20", "CORR20", "CNTP10", "SUMP20", "VMA5", "WVMA30", "VSUMD60"]
    exprs = [ALPHA158[0][ALPHA158[1].index(n)] for n in names]
    feature = (exprs + ["Ref($close, -1)/$close"], names + ["NEXT1"])
    symbols = list(source.instruments("csi300"))
    check_days = [days[400], resumed_day(source, symbols), days[-3], days[-2], days[-1]]
    cache = FeatureCache(tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_views(cache, source, "csi300", feature, check_days)
