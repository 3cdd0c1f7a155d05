"""Data that grows (issue 12): a Qlib directory dumped up to a day, then appended to as Qlib's data
collectors do, reads back as a direct dump; ``fingerprint_until`` digests the past and only it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qroll.data.qlib_append import append_qlib_bin
from qroll.data.qlib_bin import QlibBinSource, dump_qlib_bin
from qroll.data.source import prefix_digest
from qroll.data.synthetic import SyntheticMarket
from qroll.data.table import TableSource
from qroll.errors import ConfigTypeError, ConfigValueError, DataError, DataNotFoundError
from tests.conftest import ROOT, shared_dataset

# 200 instruments from 2012: in 2019's second half 3 list, 2 delist and 1 leaves or rejoins synth100.
URI = "synthetic://?instruments=200&start=2012-01-01&end=2019-12-31&seed=0"
HALF, FULL = "2019-06-28", "2019-12-31"


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(URI)


@pytest.fixture(scope="module")
def direct(market: SyntheticMarket, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The market dumped in one go, up to its last day."""
    return dump_qlib_bin(market, tmp_path_factory.mktemp("direct") / "q")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included), by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_tree(got: Path, want: Path) -> None:
    a, b = tree(got), tree(want)
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []


def assert_reads_equal(got: QlibBinSource, want: QlibBinSource) -> None:
    assert got.calendar == want.calendar and got.markets() == want.markets() and got.fields() == want.fields()
    for market in want.markets():
        assert got.instruments(market) == want.instruments(market)
    symbols = list(want.instruments())
    a, b = got.load(got.fields(), symbols), want.load(want.fields(), symbols)
    for field in want.fields():
        assert np.array_equal(a[field].to_numpy().view(np.uint32), b[field].to_numpy().view(np.uint32)), field
    ra, rb = got.stored_ranges(got.fields(), symbols), want.stored_ranges(want.fields(), symbols)
    for field in want.fields():
        np.testing.assert_array_equal(np.stack(ra[field]), np.stack(rb[field]), err_msg=field)


def test_the_appended_half_year_has_listings_delistings_and_index_changes(market: SyntheticMarket) -> None:
    half, last = pd.Timestamp(HALF), market.calendar.last_day
    spans = market.instruments()
    assert sum(a > half for ((a, _),) in spans.values()) == 3
    assert sum(half < b < last for ((_, b),) in spans.values()) == 2
    moves = [s for s, v in market.instruments("synth100").items()
             if len(v) == 2 and (half < v[0][1] < last or half < v[1][0] <= last)]
    assert len(moves) == 1


def test_dump_until_a_day_is_the_market_as_it_stood_then(market: SyntheticMarket, tmp_path: Path) -> None:
    cut = QlibBinSource(dump_qlib_bin(market, tmp_path / "cut", end=HALF))
    then = SyntheticMarket(URI.replace(FULL, HALF))  # prefix-stable: the same data up to HALF
    assert cut.calendar == then.calendar and cut.calendar.last_day == pd.Timestamp(HALF)
    assert cut.instruments() == then.instruments() and cut.instruments("synth100") == then.instruments("synth100")
    assert_same_tree(tmp_path / "cut", dump_qlib_bin(then, tmp_path / "then"))


def test_append_reads_back_as_a_direct_dump(market: SyntheticMarket, direct: Path, tmp_path: Path) -> None:
    grown = dump_qlib_bin(market, tmp_path / "q", end=HALF)
    before = set(QlibBinSource(grown).instruments())
    headers = {p: p.read_bytes()[:4] for p in (grown / "features").rglob("*.day.bin")}
    done = append_qlib_bin(market, grown, end=FULL)
    assert (done.path, done.first_day, done.last_day) == (grown, pd.Timestamp("2019-07-01"), pd.Timestamp(FULL))
    assert done.days == 132 and len(done.new_instruments) == 3
    assert set(done.new_instruments) == set(market.instruments()) - before
    # Each existing file was extended in place: its start index is unchanged.
    assert all(p.read_bytes()[:4] == head for p, head in headers.items())
    assert_same_tree(grown, direct)
    assert_reads_equal(QlibBinSource(grown), QlibBinSource(direct))


def test_appending_in_small_steps_equals_one_step(market: SyntheticMarket, direct: Path, tmp_path: Path) -> None:
    grown = dump_qlib_bin(market, tmp_path / "q", end=HALF)
    steps = [append_qlib_bin(market, grown, end="2019-07-01"), append_qlib_bin(market, grown, end="2019-09-30"),
             append_qlib_bin(market, grown)]
    assert [s.days for s in steps] == [1, 65, 66] and sum(s.days for s in steps) == 132
    assert_same_tree(grown, direct)


def test_a_table_that_gains_rows_appends_like_qlib_collectors(market: SyntheticMarket, tmp_path: Path) -> None:
    # One row per (day, instrument) of the stored ranges, suspended (NaN) days included.
    symbols = list(market.instruments())
    frames = market.load(market.fields(), symbols)
    first, last = market.stored_ranges(["close"], symbols)["close"]
    pos = np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last, strict=True)])
    col = np.repeat(np.arange(len(symbols)), last - first + 1)
    long = pd.DataFrame({"date": market.calendar.days[pos], "instrument": np.array(symbols)[col],
                         **{f: frames[f].to_numpy()[pos, col] for f in market.fields()}})

    def table(until: str, name: str) -> TableSource:
        pq.write_table(pa.Table.from_pandas(long[long["date"] <= until], preserve_index=False), tmp_path / name)
        return TableSource(tmp_path / name)

    early, late = table(HALF, "early.parquet"), table(FULL, "late.parquet")
    # The same rows up to HALF, whatever the class: the synthetic market (its market `all`), both
    # tables, and their Qlib dumps.
    digest = prefix_digest(market, HALF, markets=["all"])
    assert early.fingerprint_until(HALF) == late.fingerprint_until(HALF) == digest
    assert late.fingerprint_until(FULL) != digest
    grown = dump_qlib_bin(early, tmp_path / "grown")
    assert QlibBinSource(grown).fingerprint_until(HALF) == digest
    done = append_qlib_bin(late, grown)
    assert done.days == 132 and QlibBinSource(grown).fingerprint_until(HALF) == digest
    assert_same_tree(grown, dump_qlib_bin(late, tmp_path / "direct"))
    assert QlibBinSource(grown).fingerprint_until(None) == late.fingerprint_until(None)


def test_dump_end_is_checked(market: SyntheticMarket, tmp_path: Path) -> None:
    with pytest.raises(ConfigValueError, match=r"end 2011-12-30 is before the first trading day 2012-01-02"):
        dump_qlib_bin(market, tmp_path / "early", end="2011-12-30")
    with pytest.raises(ConfigTypeError, match=r"end='June' is not a date"):
        dump_qlib_bin(market, tmp_path / "bad", end="June")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
    later = dump_qlib_bin(market, tmp_path / "later", end="2021-01-01", markets=[], fields=["close"])
    assert QlibBinSource(later).calendar == market.calendar


def test_known_future_days_follow_the_appends(direct: Path, tmp_path: Path) -> None:
    with_future = dump_qlib_bin(QlibBinSource(direct), tmp_path / "src")
    future = pd.bdate_range("2020-01-01", "2020-03-31")
    days = QlibBinSource(direct).calendar.days
    (with_future / "calendars" / "day_future.txt").write_text("".join(f"{d:%Y-%m-%d}\n" for d in days.append(future)))
    source = QlibBinSource(with_future)
    assert source.calendar.future.equals(future)
    grown = dump_qlib_bin(source, tmp_path / "grown", end=HALF)
    assert QlibBinSource(grown).calendar.future[0] == pd.Timestamp("2019-07-01")  # known, not yet data
    append_qlib_bin(source, grown)
    assert QlibBinSource(grown).calendar == source.calendar
    assert_same_tree(grown, dump_qlib_bin(source, tmp_path / "direct"))


# -- fingerprint_until -------------------------------------------------------------------------------


def test_fingerprint_until_is_the_past_and_only_the_past(market: SyntheticMarket, direct: Path,
                                                          tmp_path: Path) -> None:
    grown = dump_qlib_bin(market, tmp_path / "q", end=HALF)
    old = QlibBinSource(grown).fingerprint_until(HALF)
    assert old == market.fingerprint_until(HALF) == prefix_digest(QlibBinSource(grown), HALF)
    assert old == QlibBinSource(grown).fingerprint_until("2019-07-04")  # no day after HALF yet
    append_qlib_bin(market, grown)
    appended = QlibBinSource(grown)
    assert appended.fingerprint_until(HALF) == old  # the appended directory keeps its old prefix digest
    assert appended.fingerprint_until(None) == market.fingerprint_until(FULL) != old
    assert appended.fingerprint_until("2019-06-27") != old  # a day less
    # The fast path (bytes from the files) and the generic one (through load) agree at every cut.
    for day in ("2012-01-02", "2015-03-13", HALF, "2019-10-01", None):
        assert appended.fingerprint_until(day) == prefix_digest(appended, day)


def _rewrite_value(path: Path, position: int, value: float) -> None:
    """Set the value a ``.bin`` file stores for calendar index ``position``."""
    raw = np.fromfile(path, dtype="<f4")
    raw[1 + position - int(raw[0])] = value
    raw.tofile(path)


def test_a_changed_past_value_changes_the_digest_a_later_one_does_not(market: SyntheticMarket,
                                                                      direct: Path, tmp_path: Path) -> None:
    copy = dump_qlib_bin(QlibBinSource(direct), tmp_path / "q")
    src = QlibBinSource(copy)
    days = src.calendar.days
    before = {d: src.fingerprint_until(d) for d in (HALF, None)}
    close = copy / "features" / "syn0001" / "close.day.bin"
    _rewrite_value(close, int(days.searchsorted(pd.Timestamp("2019-09-02"))), 1.5)
    assert QlibBinSource(copy).fingerprint_until(HALF) == before[HALF]
    assert QlibBinSource(copy).fingerprint_until(None) != before[None]
    _rewrite_value(close, int(days.searchsorted(pd.Timestamp("2016-05-02"))), 1.5)
    assert QlibBinSource(copy).fingerprint_until(HALF) != before[HALF]


def test_memberships_and_calendar_are_part_of_the_digest(direct: Path, tmp_path: Path) -> None:
    copy = dump_qlib_bin(QlibBinSource(direct), tmp_path / "q")
    before = QlibBinSource(copy).fingerprint_until(HALF)
    sub = copy / "instruments" / "synth100.txt"
    lines = sub.read_text().splitlines()
    # A span from before 2019 that runs to FULL, moved to end later still: unseen on HALF.
    k = next(i for i, line in enumerate(lines) if line.endswith(FULL) and line.split("\t")[1] < "2019")
    sub.write_text("\n".join(lines[:k] + [lines[k][: -len(FULL)] + "2020-01-31"] + lines[k + 1:]) + "\n")
    assert QlibBinSource(copy).fingerprint_until(HALF) == before
    # One ending earlier: seen.
    sub.write_text("\n".join(lines[:k] + [lines[k][: -len(FULL)] + "2019-01-31"] + lines[k + 1:]) + "\n")
    assert QlibBinSource(copy).fingerprint_until(HALF) != before
    sub.write_text("\n".join(lines) + "\n")
    day_txt = copy / "calendars" / "day.txt"
    day_txt.write_text(day_txt.read_text().replace("2015-06-01\n", ""))
    assert QlibBinSource(copy).fingerprint_until(HALF) != before


def test_fast_path_matches_the_generic_digest_on_qlib_edge() -> None:
    edge = QlibBinSource(shared_dataset("qlib_edge", "calendars/day.txt"))
    for day in ("2008-03-31", "2009-01-02", None):
        assert edge.fingerprint_until(day) == prefix_digest(edge, day)


# -- refusals ----------------------------------------------------------------------------------------


@pytest.fixture()
def half(market: SyntheticMarket, tmp_path: Path) -> Path:
    return dump_qlib_bin(market, tmp_path / "q", end=HALF)


def test_an_end_not_after_the_last_day_is_refused(market: SyntheticMarket, half: Path) -> None:
    snapshot = tree(half)
    for end in (HALF, "2019-01-02"):
        with pytest.raises(ConfigValueError, match=rf"end {end} is not after {half}'s last day {HALF}"):
            append_qlib_bin(market, half, end=end)
    with pytest.raises(DataError, match=rf"no trading day after {half}'s last day {HALF}: nothing to append"):
        append_qlib_bin(SyntheticMarket(URI.replace(FULL, HALF)), half)
    with pytest.raises(DataError, match=r"no trading day .* up to 2019-06-30: nothing to append"):
        append_qlib_bin(market, half, end="2019-06-30")  # a Sunday
    assert tree(half) == snapshot


def test_a_source_with_another_past_is_refused(market: SyntheticMarket, half: Path) -> None:
    snapshot = tree(half)
    with pytest.raises(DataError, match=rf"disagrees with {half} on or before its last day {HALF}"):
        append_qlib_bin(SyntheticMarket(URI.replace("seed=0", "seed=1")), half)
    # One past value changed in the directory: the source no longer continues it.
    _rewrite_value(half / "features" / "syn0007" / "volume.day.bin", 100, 12345.0)
    with pytest.raises(DataError, match="disagrees"):
        append_qlib_bin(market, half)
    snapshot["features/syn0007/volume.day.bin"] = (half / "features/syn0007/volume.day.bin").read_bytes()
    assert tree(half) == snapshot


def test_a_source_without_the_directory_markets_or_fields_is_refused(market: SyntheticMarket, half: Path,
                                                                     tmp_path: Path) -> None:
    snapshot = tree(half)
    close_only = tmp_path / "close.csv"
    frame = market.load(["close"], ["SYN0001"])["close"].rename(columns=str).stack().rename("close").reset_index()
    frame.to_csv(close_only, index=False)
    with pytest.raises(DataNotFoundError, match=r"lacks the market\(s\) synth100 that .* holds"):
        append_qlib_bin(TableSource(close_only), half)
    no_vwap = dump_qlib_bin(market, tmp_path / "five", fields=["close", "open"], markets=["synth100"])
    with pytest.raises(DataNotFoundError, match=r"lacks the field\(s\) change, factor, high, low, volume, vwap"):
        append_qlib_bin(QlibBinSource(no_vwap), half)
    with pytest.raises(DataNotFoundError, match="is not a Qlib data directory"):
        append_qlib_bin(market, tmp_path)
    assert tree(half) == snapshot


def test_a_directory_with_fewer_fields_and_markets_appends_those(market: SyntheticMarket, tmp_path: Path) -> None:
    grown = dump_qlib_bin(market, tmp_path / "q", end=HALF, markets=[], fields=["close", "volume"])
    append_qlib_bin(market, grown)
    assert_same_tree(grown, dump_qlib_bin(market, tmp_path / "d", markets=[], fields=["close", "volume"]))


# -- crash safety --------------------------------------------------------------------------------------

# Appends the market to a directory and is killed (SIGKILL) while loading the second chunk of values
# to write: the first chunk's .bin files are extended, nothing else is written.
KILLED_APPEND = """
import os, signal, sys
from qroll.data.qlib_append import append_qlib_bin
from qroll.data.synthetic import SyntheticMarket

class Killed(SyntheticMarket):
    writes = 0
    def load(self, fields, instruments, start=None, end=None):
        if start is not None:  # only the write phase loads from a given day
            Killed.writes += 1
            if Killed.writes == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().load(fields, instruments, start, end)

append_qlib_bin(Killed(sys.argv[1]), sys.argv[2], chunk=50)
"""


def test_an_append_killed_midway_leaves_the_old_data_and_completes_when_run_again(
        market: SyntheticMarket, direct: Path, half: Path) -> None:
    before = QlibBinSource(half).fingerprint_until(None)
    calendar = (half / "calendars" / "day.txt").read_bytes()
    proc = subprocess.run([sys.executable, "-c", KILLED_APPEND, URI, str(half)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # Some .bin files hold values past the calendar; a reader sees the directory as it was.
    n_days = len(QlibBinSource(half).calendar)
    longer = [p for p in (half / "features").rglob("*.day.bin")
              if (raw := np.fromfile(p, dtype="<f4")).size - 1 > n_days - int(raw[0])]
    assert 0 < len(longer) <= 50 * 8 and len(longer) % 8 == 0  # the first chunk's symbols, every field
    assert (half / "calendars" / "day.txt").read_bytes() == calendar
    assert QlibBinSource(half).fingerprint_until(None) == before == market.fingerprint_until(HALF)
    done = append_qlib_bin(market, half)
    assert done.days == 132
    assert_same_tree(half, direct)


# -- Qlib reads the appended directory -------------------------------------------------------------

QLIB_READ = """
from qlib.data import D
qlib.init(provider_uri=inp["data"], region="cn", kernels=1)
df = D.features(D.instruments(inp["market"]), inp["fields"], start_time=inp["start"], end_time=inp["end"])
with open(inp["out"], "w") as fh:
    json.dump({"rows": [[f"{d:%Y-%m-%d}", c] for c, d in df.index],
               "values": {f: [None if v != v else float(v) for v in df[f]] for f in inp["fields"]}}, fh)
"""


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("market_name", ["all", "synth100"])
def test_qlib_reads_the_appended_directory_as_qroll_does(market: SyntheticMarket, half: Path, tmp_path: Path,
                                                         market_name: str) -> None:
    from backtest_examples import run_qlib

    steps = [append_qlib_bin(market, half, end="2019-09-30"), append_qlib_bin(market, half)]
    fields = ["$close", "$volume", "$factor", "$vwap"]
    start = "2019-03-01"
    got = run_qlib(QLIB_READ, {"data": str(half), "market": market_name, "fields": fields, "start": start,
                               "end": FULL}, tmp_path)
    # qroll's reading: each member's stored days inside its spans and [start, FULL].
    src = QlibBinSource(half)
    members = src.instruments(market_name)
    frames = src.load([f[1:] for f in fields], list(members), start, FULL)
    first, last = src.stored_ranges(["close"], list(members), start, FULL)["close"]
    days = src.calendar.days
    rows, values = [], {f: [] for f in fields}
    for j, symbol in enumerate(members):
        stored = days[first[j] : last[j] + 1]
        inside = np.zeros(len(stored), dtype=bool)
        for a, b in members[symbol]:
            inside |= (stored >= a) & (stored <= b)
        for day in stored[inside]:
            rows.append([f"{day:%Y-%m-%d}", symbol])
            for f in fields:
                v = frames[f[1:]].at[day, symbol]
                values[f].append(None if np.isnan(v) else float(v))
    order = sorted(range(len(rows)), key=lambda i: (rows[i][1], rows[i][0]))
    assert got["rows"] == [rows[i] for i in order]
    assert max(r[0] for r in got["rows"]) == FULL
    if market_name == "all":  # the instruments the appends added are there too
        assert {s for step in steps for s in step.new_instruments} <= {r[1] for r in got["rows"]}
    for f in fields:
        assert got["values"][f] == [values[f][i] for i in order], f
