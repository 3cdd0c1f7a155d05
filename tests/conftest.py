"""Shared fixtures: the synthetic business-day calendars of Qlib's reference runs, task factories."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qroll import TradingCalendar

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Qlib's reference runs (shared/reference/qlib_rolling.md) used this calendar.
BDAYS = pd.bdate_range("2005-01-04", "2020-09-25")
FUTURE = pd.bdate_range("2020-09-28", "2021-12-31")


@pytest.fixture(scope="session")
def cal() -> TradingCalendar:
    """Mon–Fri 2005-01-04..2020-09-25, no future days."""
    return TradingCalendar(BDAYS)


@pytest.fixture(scope="session")
def cal_future() -> TradingCalendar:
    """The same days plus future business days to 2021-12-31."""
    return TradingCalendar(BDAYS, future=FUTURE)


GBDT_TASK: dict[str, Any] = {
    "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt", "kwargs": {"loss": "mse"}},
    "dataset": {
        "class": "DatasetH",
        "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {
                "class": "Alpha158",
                "module_path": "qlib.contrib.data.handler",
                "kwargs": {
                    "start_time": "2008-01-01",
                    "end_time": "2020-08-01",
                    "fit_start_time": "<dataset.kwargs.segments.train.0>",
                    "fit_end_time": "<dataset.kwargs.segments.train.1>",
                    "instruments": "csi300",
                },
            },
            "segments": {
                "train": ("2008-01-01", "2014-12-31"),
                "valid": ("2015-01-01", "2016-12-31"),
                "test": ("2017-01-01", "2020-08-01"),
            },
        },
    },
}


@pytest.fixture
def make_task():
    """Build Qlib's CSI300_GBDT_TASK shape with overrides: segments, handler kwargs, model."""

    def factory(segments: dict[str, Any] | None = None, handler: dict[str, Any] | None = None,
                model: str | None = None) -> dict[str, Any]:
        task = copy.deepcopy(GBDT_TASK)
        if segments is not None:
            task["dataset"]["kwargs"]["segments"] = segments
        if handler is not None:
            task["dataset"]["kwargs"]["handler"]["kwargs"].update(handler)
        if model is not None:
            task["model"]["class"] = model
        return task

    return factory


def shared_dataset(name: str, marker: str) -> Path:
    """The path of a dataset in ../shared/data, or skip the test naming the expected file."""
    path = SHARED_DATA / name
    if not (path / marker).exists():
        pytest.skip(f"shared data set {name!r} not found: expected {path / marker}")
    return path


def stored_rows(source: Any, start: str, end: str) -> tuple[int, int]:
    """Rows a handler over all of ``source``'s instruments has in ``start..end``, and how many of them
    have a NaN label, for the usual label ``Ref($close, -2)/Ref($close, -1) - 1``.

    Derived from the source's raw closes with pandas alone (no qroll expression, handler or cache):
    one row per instrument and trading day of its listed spans; the label looks two stored days
    ahead, past the end of the range where the data goes on, and is NaN at a span's last two days
    or next to a missing close.
    """
    spans = source.instruments("all")
    close = source.load(["close"], list(spans))["close"]
    rows = nan_labels = 0
    for inst, inst_spans in spans.items():
        for first, last in inst_spans:
            series = close.loc[first:last, inst]
            label = (series.shift(-2) / series.shift(-1) - 1).loc[pd.Timestamp(start):pd.Timestamp(end)]
            rows += len(label)
            nan_labels += int(label.isna().sum())
    return rows, nan_labels
