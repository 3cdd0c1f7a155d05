"""Alpha158 + LABEL0 against Qlib's numbers (reference/alpha158.md §1, §4, §5.2, §7) on real files.

The source here is a minimal private reader of Qlib's ``.bin`` layout (§6), so these checks do not
depend on :mod:`qroll.data.qlib_bin`; one test also runs through ``open_source``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qroll.calendar import TradingCalendar
from qroll.data.features import DEFAULT_LABEL, alpha158_config, alpha360_config, compute_features
from qroll.data.source import open_source
from qroll.errors import MissingFieldWarning
from tests.conftest import shared_dataset


class _BinReader:
    """Just enough of the Source protocol over a Qlib data folder."""

    def __init__(self, root: Path, drop_fields: Sequence[str] = ()) -> None:
        self.root = root
        self.uri = f"qlib://{root}"
        days = [d for d in (root / "calendars" / "day.txt").read_text().split() if d]
        self._days = pd.DatetimeIndex(pd.to_datetime(days))
        self._drop = set(drop_fields)

    @property
    def calendar(self) -> TradingCalendar:
        return TradingCalendar(self._days)

    def instruments(self, market: str = "all") -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
        spans: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
        for line in (self.root / "instruments" / f"{market}.txt").read_text().splitlines():
            if line.strip():
                sym, a, b = line.split("\t")[:3]
                spans.setdefault(sym.upper(), []).append((pd.Timestamp(a), pd.Timestamp(b)))
        return spans

    def fields(self) -> list[str]:
        names = {p.name.split(".")[0] for p in (self.root / "features").glob("*/*.day.bin")}
        return sorted(names - self._drop)

    def load(self, fields: Sequence[str], instruments: Sequence[str], start: Any = None,
             end: Any = None) -> dict[str, pd.DataFrame]:
        a = 0 if start is None else int(self._days.searchsorted(pd.Timestamp(start)))
        b = len(self._days) if end is None else int(self._days.searchsorted(pd.Timestamp(end), "right"))
        out = {}
        for field in fields:
            values = np.full((b - a, len(instruments)), np.nan, dtype=np.float32)
            for k, sym in enumerate(instruments):
                path = self.root / "features" / sym.lower() / f"{field}.day.bin"
                if field in self._drop or not path.exists():
                    continue
                raw = np.fromfile(path, dtype="<f4")
                first = int(raw[0])
                lo, hi = max(a, first), min(b, first + len(raw) - 1)
                if hi > lo:
                    values[lo - a : hi - a, k] = raw[1 + lo - first : 1 + hi - first]
            out[field] = pd.DataFrame(values, index=self._days[a:b], columns=list(instruments))
        return out


@pytest.fixture(scope="module")
def synth() -> _BinReader:
    return _BinReader(shared_dataset("qlib_synth300", "calendars/day.txt"))


@pytest.fixture(scope="module")
def edge() -> _BinReader:
    return _BinReader(shared_dataset("qlib_edge", "calendars/day.txt"))


EDGE = [f"TST00{i}" for i in range(1, 9)]

# §7: Alpha158(instruments=["SH600000", "SH600001"]) raw values from Qlib 0.9.7, shortest float32 strings.
REF_COLUMNS = ["KMID2", "VWAP0", "ROC5", "STD20", "BETA20", "RSQR60", "RESI10", "QTLU20", "RANK10", "IMXD60",
               "CORR20", "CORD30", "SUMP5", "WVMA60", "VSUMD10", "LABEL0"]
REFERENCE = {
    ("SH600000", "2011-10-07"): "0.30222443 0.9991612 NaN 0.048464905 -0.023967326 0.6113986 0.0056714634 1.0768414 0.4 -0.033333335 -0.6959418 -0.42416385 0.2935977 0.9882147 0.603339 -0.00796634",
    ("SH600000", "2015-06-15"): "-0.15331969 1.0030288 1.087133 0.057424475 0.0062125847 0.12014275 -0.037997264 1.1065425 0.1 0.21666667 0.008651127 -0.039638 0.24731287 1.0344788 0.049831785 -0.047772765",
    ("SH600000", "2020-12-29"): "0.336286 0.9971917 1.0792679 0.0293763 -0.0003249278 0.6560605 -0.020176305 1.0725944 0.1 0.78333336 0.10796547 0.35650018 0.08922303 0.95434123 -0.024344027 -0.037313044",
    ("SH600001", "2011-10-07"): "0.08515815 0.9945257 1.0562769 0.041784648 -0.0061407066 0.8884065 -0.029093264 1.1277415 0.1 -0.98333335 0.19813982 0.138425 0.26993108 1.2884676 -0.0030619712 -0.011670411",
    ("SH600001", "2015-06-15"): "-0.42766207 1.0054419 1.0801822 0.039699364 -0.0020642292 0.723535 0.0079617435 1.1068997 0.1 -0.98333335 -0.06910644 -0.29455957 0.0 1.0402429 0.18085612 -0.019821644",
    ("SH600001", "2020-12-29"): "-0.064846836 1.0019661 1.0187649 0.029166693 -0.00328406 0.2660482 -0.0034893039 1.0486262 0.2 0.73333335 0.33211303 0.2943789 0.3804574 1.1809442 -0.10428319 0.006051779",
}


def _alpha158(source: Any, instruments: Any, **kw: Any) -> pd.DataFrame:
    exprs, names = alpha158_config()
    return compute_features(source, exprs, names, *DEFAULT_LABEL, instruments=instruments, **kw)


def _check_reference(frame: pd.DataFrame) -> None:
    flat = frame.droplevel(0, axis=1)
    for (inst, day), text in REFERENCE.items():
        want = np.array([np.float32(v) for v in text.split()], dtype=np.float32)
        got = flat.loc[(pd.Timestamp(day), inst), REF_COLUMNS].to_numpy(dtype=np.float32)
        # Bit for bit: float32 equality, NaN where Qlib has NaN.
        np.testing.assert_array_equal(got, want, err_msg=f"{inst} {day}")


def test_reference_values_bit_identical(synth: _BinReader) -> None:
    frame = _alpha158(synth, ["SH600000", "SH600001"])
    assert frame.dtypes.eq(np.float32).all()
    assert list(frame.columns.get_level_values(1)) == alpha158_config()[1] + ["LABEL0"]
    _check_reference(frame)


def test_reference_values_through_open_source() -> None:
    root = shared_dataset("qlib_synth300", "calendars/day.txt")
    _check_reference(_alpha158(open_source(f"qlib://{root}"), ["SH600000", "SH600001"]))


def test_handler_rows_and_nan_labels_2014_2016(synth: _BinReader) -> None:
    # §5.2: 231,520 raw rows; 20 NaN labels (the last two stored days of the 10 instruments that end).
    frame = _alpha158(synth, "synth300", start="2014-01-01", end="2016-12-31")
    assert len(frame) == 231_520
    assert int(frame[("label", "LABEL0")].isna().sum()) == 20
    assert frame.index.names == ["datetime", "instrument"]
    assert frame.index.is_monotonic_increasing
    assert frame.index.get_level_values(0).min() == pd.Timestamp("2014-01-01")


@pytest.mark.slow
def test_full_synth_every_stored_day_and_speed(synth: _BinReader) -> None:
    # A list of codes: no span filter, one row per stored instrument-day (945,706, §0).
    t0 = time.perf_counter()
    frame = _alpha158(synth, sorted(synth.instruments("all")))
    elapsed = time.perf_counter() - t0
    assert len(frame) == 945_706
    assert frame.shape[1] == 159
    assert elapsed < 60, f"Alpha158 on 300 x 3,393 days took {elapsed:.1f}s"


def test_edge_early_rows_after_listing(edge: _BinReader) -> None:
    # §4: TST004's first rows have 75, 15, then 5 NaN feature columns.
    features = _alpha158(edge, EDGE)["feature"].xs("TST004", level="instrument")
    assert len(features) == 50
    assert [int(features.iloc[i].isna().sum()) for i in range(4)] == [75, 15, 5, 5]
    first = features.iloc[0]
    assert first["MA5"] == 1.0 and first["CNTP5"] == 0.0
    assert first["IMAX60"] == np.float32(1 / 60)


def test_edge_semantics(edge: _BinReader) -> None:
    frame = _alpha158(edge, EDGE)
    feats, label = frame["feature"], frame[("label", "LABEL0")]
    assert feats.xs("TST008", level="instrument")["VWAP0"].isna().all()  # no vwap file
    tst002 = feats.xs("TST002", level="instrument")
    # A window of equal values has std exactly 0 (issue 11; pandas 1.5-2.x's rule). Qlib 0.9.7 on
    # pandas 3.1 keeps a round-off residue here (WVMA10 ~ 5.81e8, reference §3.9.2) that depends on
    # where its series starts; qroll does not.
    wvma10 = tst002["WVMA10"]
    assert (wvma10.loc["2008-06-03":"2008-08-25"] == 0).all() and (wvma10 == 0).sum() == 60
    assert wvma10.max() < 10
    assert (tst002["RSV5"] == 0).any()  # max == min: 0/1e-12
    assert np.isposinf(feats.xs("TST003", level="instrument")["KMID"]).sum() == 1  # open == 0
    for inst in EDGE:  # the label looks two stored rows ahead
        tail = label.xs(inst, level="instrument").tail(3)
        assert tail.isna().tolist() == [False, True, True]


def test_edge_membership_spans(edge: _BinReader) -> None:
    everything = _alpha158(edge, EDGE)
    market = _alpha158(edge, "edge")
    tst001 = market.xs("TST001", level="instrument").index
    assert len(tst001) == 331
    assert not ((tst001 > pd.Timestamp("2008-07-29")) & (tst001 < pd.Timestamp("2008-11-04"))).any()
    # Values inside the spans are computed with all stored history (§3.1 step 6).
    pd.testing.assert_frame_equal(market, everything.loc[market.index])


def test_missing_field_warns_once_and_gives_nan(edge: _BinReader) -> None:
    no_vwap = _BinReader(edge.root, drop_fields=["vwap"])
    with pytest.warns(MissingFieldWarning, match=r"\$vwap") as record:
        frame = _alpha158(no_vwap, EDGE)
    assert len(record) == 1
    assert frame[("feature", "VWAP0")].isna().all()
    assert frame[("feature", "KMID")].notna().any()


def test_alpha360_blocks(edge: _BinReader) -> None:
    exprs, names = alpha360_config()
    frame = compute_features(edge, exprs, names, instruments=["TST006"])["feature"]
    close0 = frame["CLOSE0"].dropna()
    assert (close0 == 1.0).all()
    assert frame["CLOSE59"].iloc[:59].isna().all() and frame["CLOSE59"].iloc[59:].notna().any()


def test_each_expression_loads_from_its_own_extended_start(synth: _BinReader) -> None:
    # §3.1: Qlib loads E over [s - lft(E), e + rgt(E)]; Ref(x, 0) is the first loaded value, so it
    # must not see the 59 extra days that Mean($close, 60) needs.
    frame = compute_features(synth, ["Ref($close, 0)", "Mean($close, 60)"], ["R0", "MA"],
                             instruments=["SH600001"], start="2015-01-05", end="2015-01-09")
    close = synth.load(["close"], ["SH600001"], "2014-01-01", "2015-01-09")["close"]["SH600001"]
    assert (frame[("feature", "R0")] == close.loc["2015-01-05"]).all()
    assert frame[("feature", "MA")].iloc[-1] == np.float32(close.iloc[-60:].astype(np.float64).mean())
