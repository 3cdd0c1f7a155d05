"""Stored ranges on the shared Qlib data: suspensions at the query end (cn_csi300), qlib_edge unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from backtest_examples import run_qlib

from qroll.data.features import DEFAULT_LABEL, alpha158_config, compute_features
from qroll.data.qlib_bin import QlibBinSource
from tests.conftest import shared_dataset
from tests.unit.test_stored_ranges import NoRanges

VSUMP5 = "Sum(Greater($volume-Ref($volume, 1), 0), 5)/(Sum(Abs($volume-Ref($volume, 1)), 5)+1e-12)"
QLIB_VSUMP5 = """
from qlib.data import D
qlib.init(provider_uri=inp["data"], region="cn", kernels=1)
s = D.features([inp["instrument"]], [inp["expr"]], start_time=inp["start"], end_time=inp["end"]).iloc[:, 0]
s = s.droplevel("instrument")
with open(inp["out"], "w") as fh:
    json.dump({"days": [f"{d:%Y-%m-%d}" for d in s.index], "values": [float(v) for v in s]}, fh)
"""
EDGE = [f"TST00{i}" for i in range(1, 9)]


@pytest.fixture(scope="module")
def csi300() -> QlibBinSource:
    return QlibBinSource(shared_dataset("cn_csi300", "calendars/day.txt"))


@pytest.fixture(scope="module")
def edge() -> QlibBinSource:
    return QlibBinSource(shared_dataset("qlib_edge", "calendars/day.txt"))


def vsump5_from_file(root: Path, instrument: str) -> pd.Series:
    """VSUMP5 of one instrument computed from its ``volume.day.bin`` with numpy and pandas alone.

    The file is Qlib's layout (little-endian float32; the first value is the calendar index of the
    first stored day). Qlib's semantics: ``Ref`` shifts over stored days, ``Greater`` is
    ``np.maximum`` (NaN stays NaN), ``Sum`` is a 5-day rolling sum that skips NaN (min_periods 1).
    """
    days = pd.DatetimeIndex((root / "calendars" / "day.txt").read_text().split())
    raw = np.fromfile(root / "features" / instrument.lower() / "volume.day.bin", dtype="<f4")
    start = int(raw[0])
    volume = pd.Series(raw[1:], index=days[start:start + len(raw) - 1])
    move = volume - volume.shift(1)
    up = np.maximum(move, 0).rolling(5, min_periods=1).sum()
    return (up / (move.abs().rolling(5, min_periods=1).sum() + 1e-12)).astype(np.float32)


def vsump5_by_qroll(source: QlibBinSource) -> pd.Series:
    frame = compute_features(source, [VSUMP5], ["VSUMP5"], None, None, ["SH600058"], "2025-12-20", "2025-12-31")
    return frame[("feature", "VSUMP5")].droplevel("instrument")


def test_suspension_at_the_query_end_matches_qlib(csi300: QlibBinSource) -> None:
    # SH600058's volume is stored but NaN from 2025-12-30 on; there Qlib's VSUMP5 window skips the
    # NaN day (0.8456934 on 2025-12-30, what Qlib 0.9.7 gives: see the oracle test below).
    volume = csi300.load(["volume"], ["SH600058"], "2025-12-26", "2025-12-31")["volume"]["SH600058"]
    assert volume.loc["2025-12-30":].isna().all() and volume.loc[:"2025-12-29"].notna().all()
    first, last = csi300.stored_ranges(["volume"], ["SH600058"])["volume"]
    days = csi300.calendar.days
    assert last[0] == len(days) - 1 > int(days.searchsorted(pd.Timestamp("2025-12-30")))
    got = vsump5_by_qroll(csi300)
    assert got.index[-2:].tolist() == [pd.Timestamp("2025-12-30"), pd.Timestamp("2025-12-31")]
    want = vsump5_from_file(csi300.root, "SH600058").loc[got.index]
    pd.testing.assert_series_equal(got, want, check_exact=True, check_names=False, check_freq=False,
                                   check_index_type=False)
    assert got.notna().all()
    # The non-NaN approximation (a source without stored_ranges) loses both rows.
    approx = compute_features(NoRanges(csi300), [VSUMP5], ["VSUMP5"], None, None, ["SH600058"],
                              "2025-12-20", "2025-12-31")
    assert approx.index.get_level_values(0).max() == pd.Timestamp("2025-12-29")


@pytest.mark.oracle
def test_suspension_at_the_query_end_is_qlibs_own_answer(csi300: QlibBinSource, tmp_path: Path) -> None:
    # Qlib 0.9.7 itself, in its own venv, on the same files: the same 8 float32 values, bit for bit.
    answer = run_qlib(QLIB_VSUMP5, {"data": str(csi300.root), "expr": VSUMP5, "instrument": "SH600058",
                                    "start": "2025-12-20", "end": "2025-12-31"}, tmp_path)
    want = pd.Series(np.array(answer["values"], dtype=np.float32), index=pd.DatetimeIndex(answer["days"]))
    got = vsump5_by_qroll(csi300)
    assert want.loc["2025-12-30"] == np.float32(0.8456934)
    pd.testing.assert_series_equal(got, want, check_exact=True, check_names=False, check_freq=False,
                                   check_index_type=False)


def test_edge_ranges_from_headers(edge: QlibBinSource) -> None:
    r = edge.stored_ranges(["close", "vwap"], EDGE)
    close, vwap = edge.load(["close", "vwap"], EDGE).values()
    k7, k8 = EDGE.index("TST007"), EDGE.index("TST008")
    assert r["vwap"][1][k7] < r["close"][1][k7]  # TST007's vwap is stored over fewer days
    assert r["vwap"][0][k8] > r["vwap"][1][k8]  # TST008 has no vwap file
    days = edge.calendar.days
    for j, sym in enumerate(EDGE):
        # Every value lies inside its stored range.
        for name, frame in (("close", close), ("vwap", vwap)):
            valid = frame[sym].dropna().index
            if len(valid):
                assert days[r[name][0][j]] <= valid[0] and valid[-1] <= days[r[name][1][j]]
    clipped = edge.stored_ranges(["close"], EDGE, days[10], days[20])["close"]
    assert clipped[0].min() >= 10 and clipped[1].max() <= 20


def test_edge_alpha158_unchanged_by_stored_ranges(edge: QlibBinSource) -> None:
    # qlib_edge's data begins and ends with values, so the stored ranges and the non-NaN
    # approximation must give the same frames bit for bit (TST001's gaps and suspension, TST007's
    # shorter vwap, TST008's missing vwap included).
    exprs, names = alpha158_config()
    for instruments in (EDGE, "edge"):
        exact = compute_features(edge, exprs, names, *DEFAULT_LABEL, instruments=instruments)
        approx = compute_features(NoRanges(edge), exprs, names, *DEFAULT_LABEL, instruments=instruments)
        pd.testing.assert_frame_equal(exact, approx, check_exact=True)
    market = compute_features(edge, exprs, names, *DEFAULT_LABEL, instruments="edge")
    assert len(market.xs("TST001", level="instrument")) == 331
    tst007 = exact.xs("TST007", level="instrument")
    vwap_last = edge.load(["vwap"], ["TST007"])["vwap"]["TST007"].last_valid_index()
    assert tst007.index[-1] > vwap_last  # rows run on with the other fields
    assert tst007[("feature", "VWAP0")].loc[vwap_last:].iloc[1:].isna().all()


def test_window_over_a_shorter_field_is_nan_past_its_range(edge: QlibBinSource) -> None:
    # Qlib aligns Mean($vwap, 5) (TST007's vwap range) with $close on the union: NaN past the vwap.
    frame = compute_features(edge, ["Mean($vwap, 5)/$close", "Mean($vwap, 5)"], ["A", "B"],
                             instruments=["TST007"])["feature"].droplevel("instrument")
    vwap = edge.load(["vwap"], ["TST007"])["vwap"]["TST007"]
    first, last = vwap.first_valid_index(), vwap.last_valid_index()
    assert frame["A"].loc[first:last].notna().all() and frame["A"].loc[:first].iloc[:-1].isna().all()
    # The raw 5-day mean would still see the vwap's last values on the next 4 days.
    assert len(frame.loc[last:]) > 5
    assert frame["A"].loc[last:].iloc[1:].isna().all() and frame["B"].loc[last:].iloc[1:].isna().all()
