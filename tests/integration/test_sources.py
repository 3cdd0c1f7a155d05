"""QlibBinSource and TableSource on the shared real data, and their errors on broken data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qroll import QrollError
from qroll.data.qlib_bin import QlibBinSource
from qroll.data.source import Source, open_source
from qroll.data.table import TableSource
from qroll.errors import DataError, DataFormatError, DataNotFoundError
from tests.conftest import shared_dataset

FIELDS6 = ["open", "high", "low", "close", "volume", "factor"]


@pytest.fixture(scope="module")
def csi300() -> QlibBinSource:
    return QlibBinSource(shared_dataset("cn_csi300", "calendars/day.txt"))


@pytest.fixture(scope="module")
def edge() -> QlibBinSource:
    return QlibBinSource("qlib://" + str(shared_dataset("qlib_edge", "calendars/day.txt")))


@pytest.fixture(scope="module")
def sp500() -> TableSource:
    path = shared_dataset("sp500", "prices.parquet") / "prices.parquet"
    return TableSource(f"table://{path}?date=date&instrument=ticker")


# -- QlibBinSource on cn_csi300 --------------------------------------------------------------


def test_csi300_structure(csi300: QlibBinSource) -> None:
    assert isinstance(csi300, Source)
    assert csi300.markets() == ["all", "csi300"]
    assert csi300.fields() == ["change", "close", "factor", "high", "low", "open", "volume"]
    assert len(csi300.calendar) == 3966
    assert csi300.calendar.days[0] == pd.Timestamp("2010-01-04")
    assert csi300.calendar.days[-1] == pd.Timestamp("2026-05-08")
    members = csi300.instruments("CSI300")
    # 789 names, 38 of them with no feature folder (Qlib skips them).
    assert len(members) == 751
    assert csi300.info()["markets"]["csi300"] == {"instruments": 751, "skipped": 38}
    assert len(csi300.instruments()) == 752
    assert members["SH600004"][:2] == [
        (pd.Timestamp("2010-01-04"), pd.Timestamp("2011-12-12")),
        (pd.Timestamp("2018-12-17"), pd.Timestamp("2021-06-14")),
    ]


def test_csi300_values(csi300: QlibBinSource) -> None:
    d = csi300.load(["$close", "FACTOR"], ["sh600519", "SH600930"], start="2025-01-01", end="2026-12-31")
    close = d["close"]
    assert list(close.columns) == ["sh600519", "SH600930"]
    assert (close.dtypes == np.float32).all()
    assert close.index[0] == pd.Timestamp("2025-01-02") and close.index[-1] == pd.Timestamp("2026-05-08")
    assert close.loc["2026-05-08", "sh600519"] == pytest.approx(10286.40, abs=0.01)
    assert d["factor"].loc["2026-05-08", "sh600519"] == pytest.approx(7.49197, abs=1e-4)
    # SH600930 starts 2025-07-16: NaN before, values from then on.
    late = close["SH600930"]
    assert late[:"2025-07-15"].isna().all() and not np.isnan(late["2025-07-16"])
    # Bit-identical to the raw file.
    raw = np.fromfile(csi300.root / "features" / "sh600930" / "close.day.bin", dtype="<f4")
    np.testing.assert_array_equal(late["2025-07-16":].to_numpy(), raw[1:])
    assert csi300.calendar.days[int(raw[0])] == pd.Timestamp("2025-07-16")


def test_csi300_load_six_fields(csi300: QlibBinSource) -> None:
    syms = sorted(csi300.instruments("csi300"))
    d = csi300.load(FIELDS6, syms, "2010-01-01", "2026-12-31")
    assert set(d) == set(FIELDS6)
    assert d["close"].shape == (3966, 751)
    assert d["close"].notna().sum().sum() > 2_000_000


def test_fingerprint_is_stable(csi300: QlibBinSource, edge: QlibBinSource) -> None:
    assert csi300.fingerprint() == QlibBinSource(csi300.root).fingerprint()
    assert csi300.fingerprint() != edge.fingerprint()


# -- QlibBinSource on qlib_edge --------------------------------------------------------------


def test_edge_cases(edge: QlibBinSource) -> None:
    assert edge.markets() == ["all", "edge"]
    assert "vwap" in edge.fields()
    assert edge.instruments("edge")["TST001"] == [
        (pd.Timestamp("2008-01-01"), pd.Timestamp("2008-07-29")),
        (pd.Timestamp("2008-11-04"), pd.Timestamp("2009-07-13")),
    ]
    d = edge.load(["close", "vwap"], ["TST007", "TST008", "TST004"])
    assert d["vwap"]["TST008"].isna().all()
    assert d["close"]["TST008"].notna().any()
    last_close = d["close"]["TST007"].last_valid_index()
    last_vwap = d["vwap"]["TST007"].last_valid_index()
    assert last_vwap < last_close
    assert d["close"]["TST004"][:"2009-05-04"].isna().all()


def test_open_source_picks_qlib(edge: QlibBinSource) -> None:
    src = open_source(edge.uri)
    assert isinstance(src, QlibBinSource) and src.calendar == edge.calendar
    assert isinstance(open_source(str(edge.root)), QlibBinSource)  # a bare path is a Qlib dir


def test_unknown_market_lists_available(edge: QlibBinSource) -> None:
    with pytest.raises(DataNotFoundError, match=r"'csi500'.*all, edge"):
        edge.instruments("csi500")


# -- QlibBinSource errors, on small hand-made directories ------------------------------------


def _mini(root: Path, values: bytes | None = None) -> Path:
    (root / "calendars").mkdir(parents=True)
    (root / "calendars" / "day.txt").write_text("2020-01-02\n2020-01-03\n2020-01-06\n")
    (root / "instruments").mkdir()
    (root / "instruments" / "all.txt").write_text("AAA\t2020-01-02\t2020-01-06\nGONE\t2020-01-02\t2020-01-03\n")
    (root / "features" / "aaa").mkdir(parents=True)
    data = values if values is not None else np.array([1, 10, 11], dtype="<f4").tobytes()
    (root / "features" / "aaa" / "close.day.bin").write_bytes(data)
    return root


def test_mini_directory_reads(tmp_path: Path) -> None:
    src = QlibBinSource(_mini(tmp_path / "q"))
    assert src.instruments() == {"AAA": [(pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-06"))]}
    assert src.info()["skipped"] == {"all": ["GONE"]}
    close = src.load(["close", "open"], ["AAA"])
    np.testing.assert_array_equal(close["close"]["AAA"].to_numpy(), [np.nan, 10, 11])
    assert close["open"].isna().all().all()


def test_missing_directory_and_calendar(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "nope")):
        QlibBinSource(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"calendars/day\.txt does not exist"):
        QlibBinSource(tmp_path / "empty")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (np.array([0, 1], dtype="<f4").tobytes() + b"\x00", "not a positive multiple of 4"),
        (b"\x00\x00", "not a positive multiple of 4"),
        (np.array([-1, 1], dtype="<f4").tobytes(), r"start index -1.0 is not a calendar index"),
        (np.array([np.nan, 1], dtype="<f4").tobytes(), r"start index nan is not a calendar index"),
        (np.array([0.5, 1], dtype="<f4").tobytes(), r"start index 0.5 is not a calendar index"),
    ],
)
def test_malformed_bin(tmp_path: Path, payload: bytes, message: str) -> None:
    src = QlibBinSource(_mini(tmp_path / "q", payload))
    for read in (lambda: src.load(["close"], ["AAA"]), lambda: src.stored_ranges(["close"], ["AAA"]),
                 lambda: src.fingerprint_until(None)):
        with pytest.raises(DataFormatError, match=message) as info:
            read()
        assert "close.day.bin" in str(info.value)


@pytest.mark.parametrize(
    ("payload", "values", "stored"),
    [
        # Qlib reads a file up to the calendar's last day: later values are an append not yet in day.txt.
        (np.array([1, 1, 2, 3, 4], dtype="<f4").tobytes(), [np.nan, 1, 2], (1, 2)),
        # An append cut short inside a value, past the calendar: ignored too.
        (np.array([1, 1, 2], dtype="<f4").tobytes() + b"\x00\x00", [np.nan, 1, 2], (1, 2)),
        # A symbol whose first day is not in the calendar yet: nothing stored so far.
        (np.array([3, 1], dtype="<f4").tobytes(), [np.nan] * 3, None),
        (np.array([5, 1, 2], dtype="<f4").tobytes(), [np.nan] * 3, None),
    ],
)
def test_values_past_the_calendar_are_ignored(tmp_path: Path, payload: bytes, values: list[float],
                                              stored: tuple[int, int] | None) -> None:
    src = QlibBinSource(_mini(tmp_path / "q", payload))
    np.testing.assert_array_equal(src.load(["close"], ["AAA"])["close"]["AAA"].to_numpy(), values)
    first, last = src.stored_ranges(["close"], ["AAA"])["close"]
    assert (int(first[0]), int(last[0])) == stored if stored else first[0] > last[0]
    (tmp_path / "q" / "instruments" / "all.txt").unlink()  # then `all` holds the stored days
    days = src.calendar.days
    want = {"AAA": [(days[stored[0]], days[stored[1]])]} if stored else {}
    assert QlibBinSource(tmp_path / "q").instruments() == want


# -- TableSource -----------------------------------------------------------------------------


def test_sp500_structure(sp500: TableSource) -> None:
    assert isinstance(sp500, Source)
    assert len(sp500.calendar) == 5402 and len(sp500.instruments()) == 504
    assert sp500.markets() == ["all"]
    assert sp500.fields() == ["open", "high", "low", "close", "adj_close", "volume", "dividend", "split"]
    assert sp500.instruments()["VAR"] == [(pd.Timestamp("1999-11-01"), pd.Timestamp("2021-04-16"))]
    assert "BRK.B" in sp500.instruments()
    with pytest.raises(DataNotFoundError, match=r"'sp500'.*use one of all"):
        sp500.instruments("sp500")


def test_sp500_load_reads_only_needed_columns(sp500: TableSource) -> None:
    d = sp500.load(["close", "volume", "nosuch"], ["aapl", "WELL", "MSFT"], "1999-11-01", "2021-12-31")
    assert set(sp500._cache) <= {"close", "volume"}  # noqa: SLF001 - checks laziness
    assert d["close"].loc["1999-11-01", "aapl"] == pytest.approx(77.62, abs=1e-4)
    assert (d["close"].dtypes == np.float32).all() and d["nosuch"].isna().all().all()
    # WELL lacks 12 days inside its own span: NaN there.
    (a, b), = sp500.instruments()["WELL"]
    assert d["close"]["WELL"][a:b].isna().sum() == 12
    tbl = pq.read_table(sp500.path, columns=["date", "ticker", "volume"], filters=[("ticker", "==", "MSFT")])
    ref = tbl.to_pandas().set_index("date")["volume"]
    got = d["volume"]["MSFT"].dropna()
    np.testing.assert_array_equal(got.to_numpy(), ref.to_numpy().astype(np.float32))


def test_table_column_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"Date": ["2020-01-02", "2020-01-03"], "Sym": ["A", "A"], "Close": [1.0, 2.0]}), path)
    with pytest.raises(DataNotFoundError, match=r"no date column 'day'.*set \?date=NAME") as info:
        TableSource(f"table://{path}?date=day")
    assert str(path) in str(info.value)
    with pytest.raises(DataNotFoundError, match=r"no instrument column.*set \?instrument=NAME"):
        TableSource(path, date="Date")
    src = TableSource(path, instrument="Sym")  # Date found by its default name, any case
    assert src.fields() == ["close"] and list(src.instruments()) == ["A"]
    with pytest.raises(DataNotFoundError, match="does not exist"):
        TableSource(tmp_path / "missing.parquet")


def test_table_csv_and_duplicates(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "date": ["2020-01-03", "2020-01-02", "2020-01-02", "2020-01-06"],
        "ticker": ["b", "a", "b", "a"],
        "close": [3.0, 1.0, 2.0, 4.0],
        "name": ["x", "y", "z", "w"],
    })
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    src = open_source(f"table://{path}?instrument=ticker")
    assert isinstance(src, TableSource)
    assert src.fields() == ["close"]  # the text column is not a field
    assert src.instruments() == {
        "A": [(pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-06"))],
        "B": [(pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-03"))],
    }
    close = src.load(["close"], ["B", "A"])["close"]
    np.testing.assert_array_equal(close.to_numpy(), [[2, 1], [3, np.nan], [np.nan, 4]])
    pd.concat([frame, frame.iloc[[0]]]).to_csv(path, index=False)
    with pytest.raises(DataFormatError, match="more than one row for instrument B on 2020-01-03"):
        TableSource(path)
    assert issubclass(DataFormatError, DataError)


def test_table_adjusts_prices_like_qlib_data(tmp_path):
    from qroll.data.table import TableSource

    csv = tmp_path / "prices.csv"
    # A 2-for-1 split on the second day: raw close halves, the adjusted close does not.
    csv.write_text("date,ticker,open,close,volume,adj_close\n"
                   "2020-01-02,A,10,10,100,5\n2020-01-03,A,5,5,200,5\n2020-01-03,B,3,4,50,4\n")
    plain, adjusted = TableSource(f"table://{csv}"), TableSource(f"table://{csv}?adjust=adj_close")
    assert "factor" not in plain.fields() and "factor" in adjusted.fields()
    assert plain.fingerprint() != adjusted.fingerprint()
    got = adjusted.load(["close", "open", "volume", "factor"], ["A", "B"])
    assert got["close"]["A"].tolist() == [5.0, 5.0]  # no jump at the split
    assert got["factor"]["A"].tolist() == [0.5, 1.0]
    assert got["volume"]["A"].tolist() == [200.0, 200.0]  # volume / factor
    assert got["open"]["B"].iloc[1] == 3.0
    with pytest.raises(QrollError, match="no adjust column 'adjusted'"):
        TableSource(f"table://{csv}?adjust=adjusted")
