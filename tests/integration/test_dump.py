"""dump_qlib_bin writes any source in Qlib's layout; QlibBinSource reads back the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from qroll.data.qlib_bin import QlibBinSource, dump_qlib_bin
from qroll.data.source import Source
from qroll.data.synthetic import SyntheticMarket
from qroll.data.table import TableSource
from qroll.errors import DataError
from tests.conftest import shared_dataset


def assert_same_data(a: Source, b: Source, markets: list[str] | None = None) -> None:
    assert a.calendar == b.calendar
    for market in markets or a.markets():
        assert a.instruments(market) == b.instruments(market)
    syms = list(a.instruments())
    fields = a.fields()
    assert sorted(b.fields()) == sorted(fields)
    got, want = b.load(fields, syms), a.load(fields, syms)
    for f in fields:
        assert got[f].index.equals(want[f].index)
        np.testing.assert_array_equal(got[f].to_numpy(), want[f].to_numpy(), err_msg=f)


def test_synthetic_round_trip(tmp_path: Path) -> None:
    src = SyntheticMarket(instruments=130, start="2018-06-01", end="2020-12-31", seed=5)
    out = dump_qlib_bin(src, tmp_path / "synth")
    back = QlibBinSource(out)
    assert back.markets() == ["all", "synth100"]
    assert_same_data(src, back)
    text = (out / "instruments" / "all.txt").read_text().splitlines()
    assert text[0].split("\t") == ["SYN0001", "2018-06-01", "2020-12-31"]
    # Element 0 is the calendar index of the first stored value, as a float32.
    (first, _), = src.instruments()["SYN0042"]
    raw = np.fromfile(out / "features" / "syn0042" / "close.day.bin", dtype="<f4")
    assert src.calendar.days[int(raw[0])] == first
    assert (out / "calendars" / "day.txt").read_text().splitlines()[0] == "2018-06-01"


def test_table_round_trip(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "date": pd.to_datetime(["2021-01-04", "2021-01-05", "2021-01-06", "2021-01-05", "2021-01-06"]),
        "ticker": ["AAA", "AAA", "AAA", "bbb", "bbb"],
        "close": [1.5, np.nan, 2.5, 10.0, 11.0],
        "volume": [100, 200, 300, 400, 500],
    })
    frame.to_parquet(tmp_path / "t.parquet")
    src = TableSource(f"table://{tmp_path / 't.parquet'}?instrument=ticker")
    back = QlibBinSource(dump_qlib_bin(src, tmp_path / "q"))
    assert_same_data(src, back)
    assert back.instruments()["BBB"] == [(pd.Timestamp("2021-01-05"), pd.Timestamp("2021-01-06"))]


def test_sp500_subset_round_trip(tmp_path: Path) -> None:
    path = shared_dataset("sp500", "prices.parquet") / "prices.parquet"
    tbl = pq.read_table(path, filters=[("ticker", "in", ["AAPL", "BRK.B", "WELL", "CARR", "VAR"]),
                                       ("date", ">=", pd.Timestamp("2019-01-01").date())])
    pq.write_table(tbl, tmp_path / "sub.parquet")
    src = TableSource(tmp_path / "sub.parquet", instrument="ticker")
    out = dump_qlib_bin(src, tmp_path / "q")
    assert (out / "features" / "brk.b").is_dir()
    back = QlibBinSource(out)
    assert_same_data(src, back)
    # float32, as Qlib stores: the values read back equal the float64 table cast to float32.
    aapl = back.load(["adj_close"], ["AAPL"])["adj_close"]["AAPL"].dropna()
    df = tbl.to_pandas()
    ref = df.loc[df["ticker"] == "AAPL", "adj_close"].to_numpy().astype(np.float32)
    np.testing.assert_array_equal(aapl.to_numpy(), ref)


def test_qlib_round_trip_keeps_edge_cases(tmp_path: Path) -> None:
    edge = QlibBinSource(shared_dataset("qlib_edge", "calendars/day.txt"))
    back = QlibBinSource(dump_qlib_bin(edge, tmp_path / "edge"))
    assert_same_data(edge, back)
    assert back.load(["vwap"], ["TST008"])["vwap"].isna().all().all()


def test_refuses_non_empty_dir_unless_overwrite(tmp_path: Path) -> None:
    src = SyntheticMarket(instruments=3, start="2020-01-01", end="2020-02-28", seed=1)
    out = tmp_path / "q"
    out.mkdir()
    dump_qlib_bin(src, out)  # an empty folder is fine
    with pytest.raises(DataError, match=rf"{out} is not empty: pass overwrite=True"):
        dump_qlib_bin(src, out)
    other = SyntheticMarket(instruments=2, start="2020-01-01", end="2020-02-28", seed=2)
    dump_qlib_bin(other, out, overwrite=True)
    assert list(QlibBinSource(out).instruments()) == ["SYN0001", "SYN0002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]  # no temporary folder left


class _Broken(SyntheticMarket):
    def load(self, fields, instruments, start=None, end=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")


def test_crash_leaves_no_half_dump(tmp_path: Path) -> None:
    src = _Broken(instruments=3, start="2020-01-01", end="2020-02-28", seed=1)
    with pytest.raises(RuntimeError, match="disk on fire"):
        dump_qlib_bin(src, tmp_path / "q")
    assert list(tmp_path.iterdir()) == []
    good = tmp_path / "good"
    dump_qlib_bin(SyntheticMarket(instruments=2, start="2020-01-01", end="2020-02-28"), good)
    with pytest.raises(RuntimeError):
        dump_qlib_bin(src, good, overwrite=True)
    assert list(QlibBinSource(good).instruments()) == ["SYN0001", "SYN0002"]  # old dump intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]


def test_markets_and_fields_subset(tmp_path: Path) -> None:
    src = SyntheticMarket(instruments=5, start="2020-01-01", end="2020-03-31", seed=4)
    out = dump_qlib_bin(src, tmp_path / "q", markets=[], fields=["close", "$VOLUME"])
    back = QlibBinSource(out)
    assert back.markets() == ["all"] and back.fields() == ["close", "volume"]
