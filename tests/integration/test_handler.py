"""DataHandlerLP, Alpha158/Alpha360 and DatasetH on a real (synthetic) source and a real cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qroll.data.cache import DEFAULT_MEMORY_BUDGET, FeatureCache
from qroll.data.dataset import DatasetH
from qroll.data.features import DEFAULT_LABEL, alpha158_config, compute_features
from qroll.data.handler import Alpha158, Alpha360, DataHandlerLP
from qroll.data.processors import CSZScoreNorm, DropnaLabel, Fillna, ProcessInf, ZScoreNorm
from qroll.data.source import open_source
from qroll.errors import ClassNotFoundError, ConfigError, ConfigTypeError, ProcessorError, SegmentError
from tests.conftest import shared_dataset, stored_rows

URI = "synthetic://?instruments=12&start=2014-01-01&end=2016-12-30&seed=7"
SEGMENTS = {"train": ("2014-03-01", "2015-06-30"), "valid": ("2015-07-01", "2015-12-31"),
            "test": ("2016-01-01", "2016-06-30")}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("QROLL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def source():
    return open_source(URI)


def a158(source, **kwargs):
    kwargs = {"instruments": "all", "start_time": "2014-03-01", "end_time": "2016-06-30", "source": source,
              **kwargs}
    return Alpha158(**kwargs)


def test_alpha158_layout_and_default_processors(source):
    h = a158(source)
    raw = h.fetch(col_set="__raw", data_key="raw")
    assert raw.columns[0] == ("feature", "KMID") and raw.columns[-1] == ("label", "LABEL0")
    assert raw.shape[1] == 159 and set(raw.dtypes) == {np.dtype("float32")}
    assert raw.index.names == ["datetime", "instrument"] and raw.index.is_monotonic_increasing
    assert h.fetch(col_set="__raw", data_key="infer") is raw  # infer_processors=[]: infer is raw
    learn = h.fetch(col_set="__raw", data_key="learn")
    expected = CSZScoreNorm(fields_group="label")(DropnaLabel()(raw))
    assert learn.equals(expected) and len(learn) == len(raw) - raw[("label", "LABEL0")].isna().sum()
    assert learn["feature"].equals(raw.loc[learn.index, "feature"])


def test_handler_slice_equals_a_direct_computation_of_its_range(source):
    h = a158(source, start_time="2015-02-01", end_time="2015-09-30")
    exprs, names = alpha158_config()
    direct = compute_features(source, exprs, names, *DEFAULT_LABEL, "all", "2015-02-01", "2015-09-30")
    got = h.fetch(col_set="__raw", data_key="raw")
    assert got.index.equals(direct.index)
    assert np.array_equal(got.to_numpy(), direct.to_numpy(), equal_nan=True)


def test_fetch_selectors_and_col_sets(source):
    h = a158(source)
    assert h.fetch(col_set="__all").columns.tolist()[-1] == "LABEL0"
    assert h.fetch(col_set="feature").shape[1] == 158 and h.fetch(col_set="label").columns.tolist() == ["LABEL0"]
    both = h.fetch(col_set=["feature", "label"])
    assert both.columns.nlevels == 2 and both.shape[1] == 159
    part = h.fetch(slice("2015-01-03", "2015-01-09"))  # a Saturday start; both ends inclusive
    days = part.index.get_level_values("datetime").unique()
    assert days[0] == pd.Timestamp("2015-01-05") and days[-1] == pd.Timestamp("2015-01-09")
    one = h.fetch(pd.Timestamp("2015-01-06"))
    assert one.index.nlevels == 2 and len(one) == (part.index.get_level_values(0) == "2015-01-06").sum()
    with pytest.raises(ConfigError, match="'labels'"):
        h.fetch(col_set="labels")
    with pytest.raises(ConfigError, match="'trained'"):
        h.fetch(data_key="trained")


def test_alpha360_without_fit_range_names_the_processor(source):
    h = Alpha360(instruments="all", start_time="2014-03-01", end_time="2016-06-30", source=source)
    with pytest.raises(ProcessorError, match="ZScoreNorm needs a fit range"):
        h.fetch()


def zscore_expected(raw: pd.DataFrame, start, end) -> pd.DataFrame:
    base = ProcessInf()(raw)
    proc = ZScoreNorm(start, end)
    proc.fit(base)
    return Fillna()(proc(base))


def test_each_dataset_fits_on_its_own_train_segment(source):
    """qroll's fix: a handler without fit range fits on the dataset's train segment (per window)."""
    windows = [("2014-03-01", "2015-02-27"), ("2014-09-01", "2015-08-31")]
    infers = []
    for train in windows:
        h = Alpha360(instruments="all", start_time="2014-03-01", end_time="2016-06-30", source=source)
        ds = DatasetH(h, {**SEGMENTS, "train": train})
        infer = ds.prepare("test", col_set="__raw")
        raw = h.fetch(col_set="__raw", data_key="raw")
        expected = zscore_expected(raw, *train).loc["2016-01-01":"2016-06-30"]
        assert np.array_equal(infer.to_numpy(), expected.to_numpy(), equal_nan=True)
        infers.append(infer)
    assert not np.array_equal(infers[0].to_numpy(), infers[1].to_numpy())


def test_explicit_fit_range_wins_over_the_train_segment(source):
    fit = ("2014-03-01", "2014-12-31")
    h = Alpha360(instruments="all", start_time="2014-03-01", end_time="2016-06-30", source=source,
                 fit_start_time=fit[0], fit_end_time=fit[1])
    ds = DatasetH(h, SEGMENTS)
    got = ds.prepare("valid", col_set="__raw")
    expected = zscore_expected(h.fetch(col_set="__raw", data_key="raw"), *fit).loc["2015-07-01":"2015-12-31"]
    assert np.array_equal(got.to_numpy(), expected.to_numpy(), equal_nan=True)


def test_process_type_append_versus_independent(source):
    kw = {"instruments": "all", "start_time": "2014-03-01", "end_time": "2016-06-30", "source": source,
          "fit_start_time": "2014-03-01", "fit_end_time": "2015-06-30"}
    append = Alpha360(**kw)
    independent = Alpha360(**kw, process_type="independent")
    raw = append.fetch(data_key="raw")
    nan_labels = int(raw["LABEL0"].isna().sum())
    assert (len(raw), nan_labels) == stored_rows(source, "2014-03-01", "2016-06-30")
    assert nan_labels > 0  # else append and independent would not differ below
    # append: Fillna already set the NaN labels to 0, so DropnaLabel keeps every row (Qlib §5.2)
    assert len(append.fetch(data_key="learn")) == len(raw)
    learn_i = independent.fetch(data_key="learn", col_set="__raw")
    assert len(learn_i) == len(raw) - nan_labels
    raw_full = append.fetch(data_key="raw", col_set="__raw")
    assert learn_i["feature"].equals(raw_full.loc[learn_i.index, "feature"])  # no infer processors ran


def test_dataset_from_config_prepare_list_and_data_keys(source):
    ds = DatasetH({"class": "Alpha158", "kwargs": {"instruments": "all", "start_time": "2014-03-01",
                                                   "end_time": "2016-06-30", "source": source}}, SEGMENTS)
    train, valid = ds.prepare(["train", "valid"], col_set=["feature", "label"], data_key="learn")
    assert train.index.get_level_values(0).max() <= pd.Timestamp("2015-06-30") < valid.index.get_level_values(0).min()
    raw_label = ds.prepare("test", col_set="label", data_key="raw")
    assert raw_label.columns.tolist() == ["LABEL0"] and abs(raw_label["LABEL0"].mean()) < 0.05
    one_day = ds.prepare(slice("2016-01-04", "2016-01-04"))
    assert len(one_day) == stored_rows(source, "2016-01-04", "2016-01-04")[0] == 9  # 3 of 12 list after 2016
    assert set(one_day.index.get_level_values("datetime")) == {pd.Timestamp("2016-01-04")}
    with pytest.raises(ConfigError, match=r"\['tests'\].*'train', 'valid', 'test'"):
        ds.prepare("tests")


def test_segment_outside_the_handler_range_is_refused(source):
    h = a158(source, end_time="2015-12-31")
    with pytest.raises(SegmentError, match="segment 'test' 2016-01-01..2016-06-30.*2015-12-31"):
        DatasetH(h, SEGMENTS)
    # ends on a weekend align to trading days: a segment ending Sunday fits a handler ending Friday
    DatasetH(a158(source, end_time="2016-06-24"), {"train": ("2015-01-01", "2016-06-26")})


def test_bad_processor_configs(source):
    with pytest.raises(ClassNotFoundError, match="'ZScoreNormm'.*did you mean 'ZScoreNorm'"):
        a158(source, infer_processors=[{"class": "ZScoreNormm"}])
    with pytest.raises(ConfigError, match="DropnaLabel cannot be an infer processor"):
        a158(source, infer_processors=["DropnaLabel"])
    h = a158(source, learn_processors=[{"class": "CSZScoreNorm", "kwargs": {"fields_group": "labels"}}])
    with pytest.raises(ProcessorError, match="fields_group='labels'"):
        h.fetch(data_key="learn")


def test_qlib_module_paths_and_instances_are_accepted(source):
    shared = ZScoreNorm(fields_group="feature")
    h = a158(source, fit_start_time="2014-03-01", fit_end_time="2014-12-31", infer_processors=[
        {"class": "ProcessInf", "module_path": "qlib.data.dataset.processor"}, shared,
        {"class": "Fillna", "module_path": "qlib.data.dataset.processor", "kwargs": {"fields_group": "feature"}},
    ])
    infer = h.fetch(slice("2014-03-01", "2014-12-31"), col_set="feature")
    assert abs(float(np.nanmean(infer.to_numpy()))) < 0.05
    assert shared.fit_start_time is None and shared.cols is None  # the caller's instance is untouched


def test_source_defaults_to_qroll_data(monkeypatch, source):
    monkeypatch.setenv("QROLL_DATA", URI)
    h = Alpha158(instruments="all", start_time="2016-01-01", end_time="2016-03-31")
    assert h.source.uri == URI
    explicit = Alpha158(instruments="all", start_time="2016-01-01", end_time="2016-03-31", source=source)
    got = h.fetch()
    assert len(got) == stored_rows(source, "2016-01-01", "2016-03-31")[0]
    assert got.equals(explicit.fetch())


def test_dataframe_data_loader(source):
    frame = a158(source).fetch(col_set="__raw", data_key="raw")
    h = DataHandlerLP(data_loader=frame, start_time="2015-01-01", end_time="2015-03-31",
                      learn_processors=["DropnaLabel"])
    assert h.fetch(data_key="learn").index.get_level_values(0).min() >= pd.Timestamp("2015-01-01")


@pytest.mark.slow
def test_alpha158_on_qlib_synth300_matches_the_reference_counts():
    """alpha158.md §5.3.2: Alpha158 meta and prepare() summary on synth300, 2014–2016."""
    path = shared_dataset("qlib_synth300", "calendars/day.txt")
    h = Alpha158(instruments="synth300", start_time="2014-01-01", end_time="2016-12-31", source=f"qlib://{path}")
    raw = h.fetch(data_key="raw", col_set="__raw")
    assert len(raw) == 231520 and int(raw[("label", "LABEL0")].isna().sum()) == 20
    assert len(h.fetch(data_key="learn")) == 231500
    ds = DatasetH(h, {"train": ("2014-01-01", "2015-06-30"), "valid": ("2015-07-01", "2015-12-31"),
                      "test": ("2016-01-01", "2016-12-31")})
    train = ds.prepare("train")
    assert train.shape[1] == 159 and train.columns[:1].tolist() == ["KMID"]
    assert len(ds.prepare("train", col_set=["feature", "label"], data_key="learn")) == 116377
    test = ds.prepare("test", col_set="feature")
    days = test.index.get_level_values(0)
    assert (days.min(), days.max(), test.shape[1]) == (pd.Timestamp("2016-01-01"), pd.Timestamp("2016-12-30"), 158)


def test_date_slices_are_views_equal_to_loc(source):
    from qroll.data.handler import fetch_df_by_index

    full = a158(source).fetch(col_set="__raw", data_key="raw")
    for sel in [slice("2015-01-03", "2015-03-31"), slice(None, pd.Timestamp("2014-06-30")),
                slice("2016-01-04", None), slice("2015-06", "2015-07")]:
        got = fetch_df_by_index(full, sel)
        assert got.equals(full.loc[(sel, slice(None)), :]), sel
    assert np.shares_memory(fetch_df_by_index(full, slice("2015-01-05", "2015-01-09")).to_numpy(), full.to_numpy())
    with pytest.raises(pd.errors.UnsortedIndexError):  # unsorted rows: pandas' (and Qlib's) behaviour
        fetch_df_by_index(full.sample(frac=1.0, random_state=0), slice("2015-01-01", "2015-01-31"))


def test_windows_share_day_local_processing_and_get_the_same_frames(source, home):
    FeatureCache.at(home).forget_memory()
    procs = [{"class": "ProcessInf"}, {"class": "CSRankNorm", "kwargs": {"fields_group": "feature"}}]
    windows = [a158(source, end_time=end, infer_processors=procs) for end in
               ("2015-12-31", "2016-06-30", None)]
    learn = [h.fetch(col_set="__raw", data_key="learn") for h in windows]
    infer = [h.fetch(col_set="__raw", data_key="infer") for h in windows]
    # Each window's frames are those of processing its own range, value for value...
    for h, got_learn, got_infer in zip(windows, learn, infer, strict=True):
        raw = h.fetch(col_set="__raw", data_key="raw")
        own_infer = h._process(raw, *h._chains(None, None))[0]
        own_learn = CSZScoreNorm(fields_group="label")(DropnaLabel()(own_infer))
        assert got_infer.index.equals(raw.index)
        assert np.array_equal(got_infer.to_numpy(), own_infer.to_numpy(), equal_nan=True)
        assert got_learn.index.equals(own_learn.index)
        assert np.array_equal(got_learn.to_numpy(), own_learn.to_numpy(), equal_nan=True)
    # ...and the later windows' frames are views of the first window's processing, not copies.
    assert learn[-1].index[-1][0] > learn[0].index[-1][0]
    for later in learn[1:]:
        assert np.shares_memory(later["label"].to_numpy(), learn[0]["label"].to_numpy())


def test_fit_range_processors_are_not_shared_between_windows(source, home):
    FeatureCache.at(home).forget_memory()
    procs = [{"class": "ZScoreNorm", "kwargs": {"fit_start_time": "2014-03-01", "fit_end_time": "2014-12-31"}}]
    a, b = (a158(source, end_time=end, infer_processors=procs) for end in ("2015-12-31", "2016-06-30"))
    la, lb = (h.fetch(col_set="__raw", data_key="learn") for h in (a, b))
    assert not np.shares_memory(la["label"].to_numpy(), lb["label"].to_numpy())
    common = la.index
    assert np.array_equal(la.to_numpy(), lb.loc[common].to_numpy(), equal_nan=True)


def test_the_cache_budget_holds_the_processed_frames_and_forgetting_drops_them(source, home):
    cache = FeatureCache.at(home)
    cache.forget_memory()
    h = a158(source)
    assert h.cache is cache
    raw = h.fetch(data_key="raw", col_set="__raw")
    entry = cache.memory_bytes
    assert entry >= raw.to_numpy().nbytes  # the whole calendar's entry, of which raw is a slice
    learn = h.fetch(data_key="learn", col_set="__raw")
    # The learn frame (NaN labels dropped, labels normalised) is a new frame, counted once more.
    assert entry + learn.to_numpy().nbytes <= cache.memory_bytes
    # Another window over the same entry reuses the processed frames: nothing more is held.
    held = cache.memory_bytes
    a158(source, end_time="2016-03-31").fetch(data_key="learn")
    assert cache.memory_bytes == held
    cache.forget_memory()
    assert cache.memory_bytes == 0
    cache.memory_budget = entry  # room for the entry only: its processed frames are not kept
    try:
        a158(source).fetch(data_key="learn")
        assert cache.memory_bytes == entry
    finally:
        cache.memory_budget = DEFAULT_MEMORY_BUDGET


def test_cache_off_processes_each_handler_alone(source, home):
    cache = FeatureCache.at(home)
    cache.forget_memory()
    h = a158(source, cache=False)
    assert h.cache is None
    h.fetch(data_key="learn")
    assert cache.memory_bytes == 0 and not cache.folder.exists()
    with pytest.raises(ConfigTypeError, match="cache='yes' must be True, False or a FeatureCache"):
        a158(source, cache="yes")


def test_an_explicit_cache_or_home_wins_over_qroll_home(source, tmp_path):
    mine = FeatureCache(tmp_path / "mine")
    assert a158(source, cache=mine).cache is mine
    assert a158(source, home=tmp_path / "elsewhere").cache is FeatureCache.at(tmp_path / "elsewhere")
    a158(source, cache=mine).fetch()
    mine.wait()
    assert len(mine.info()) == 1 and not (tmp_path / "home" / "cache").exists()
