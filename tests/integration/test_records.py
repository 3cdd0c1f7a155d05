"""SignalRecord / SigAnaRecord on a real DatasetH and a real MLflow SQLite store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qroll.data.dataset import DatasetH
from qroll.data.handler import DataHandlerLP
from qroll.errors import LoadObjectError, RecordError, RecordSkippedWarning
from qroll.record import Experiment, ExpManager, RecordTemp, SigAnaRecord, SignalRecord

SOURCE = "synthetic://?instruments=20&start=2019-01-01&end=2019-12-31&seed=1"


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> ExpManager:
    return ExpManager(home=tmp_path_factory.mktemp("qroll_home"))


@pytest.fixture
def exp(manager: ExpManager) -> Experiment:
    return manager.get_exp(f"records-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def dataset() -> DatasetH:
    handler = DataHandlerLP(
        instruments="all", start_time="2019-01-01", end_time="2019-12-31", source=SOURCE, cache=False,
        data_loader={
            "feature": (["$close/Ref($close, 1) - 1", "Mean($close, 5)/$close"], ["RET1", "MA5"]),
            "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"]),
        },
    )
    return DatasetH(handler, {"train": ("2019-01-01", "2019-08-31"), "test": ("2019-09-01", "2019-12-31")})


class Peeking:
    """A 'model' that peeks at the test label and blurs it with seeded noise: a known, strong IC."""

    def __init__(self, as_frame: bool = False) -> None:
        self.as_frame = as_frame

    def predict(self, dataset: DatasetH) -> Any:
        label = dataset.prepare("test", col_set="label", data_key="raw")["LABEL0"]
        noise = np.random.default_rng(0).normal(scale=2 * float(label.std()), size=len(label))
        score = (label + noise).fillna(0.0)
        return score.to_frame("my_score") if self.as_frame else score


def _direct_ic(pred: pd.Series, label: pd.Series) -> tuple[pd.Series, pd.Series]:
    both = pd.DataFrame({"p": pred, "l": label}).dropna()
    days = both.index.get_level_values("datetime")
    ic = {d: np.corrcoef(g["p"], g["l"])[0, 1] for d, g in both.groupby(days)}
    ric = {d: np.corrcoef(g["p"].rank(), g["l"].rank())[0, 1] for d, g in both.groupby(days)}
    return pd.Series(ic), pd.Series(ric)


def test_signal_then_analysis(exp: Experiment, dataset: DatasetH) -> None:
    with exp.start_recorder("window") as rec:
        pred = SignalRecord(model=Peeking(), dataset=dataset, recorder=rec).generate()
        metrics = SigAnaRecord(rec).generate()
    assert list(pred.columns) == ["score"]
    assert rec.list_artifacts() == ["label.pkl", "pred.pkl", "sig_analysis/ic.pkl", "sig_analysis/ric.pkl"]
    label = rec.load_object("label.pkl")
    pd.testing.assert_frame_equal(label, dataset.prepare("test", col_set="label", data_key="raw"))
    pd.testing.assert_frame_equal(rec.load_object("pred.pkl"), pred)

    want_ic, want_ric = _direct_ic(pred["score"], label["LABEL0"])
    ic = rec.load_object("sig_analysis/ic.pkl")
    ric = rec.load_object("sig_analysis/ric.pkl")
    np.testing.assert_allclose(ic.dropna().to_numpy(), want_ic.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(ric.dropna().to_numpy(), want_ric.to_numpy(), rtol=1e-9)
    assert metrics["IC"] == pytest.approx(want_ic.mean(), rel=1e-9)
    assert metrics["ICIR"] == pytest.approx(want_ic.mean() / want_ic.std(), rel=1e-9)
    assert metrics["Rank IC"] == pytest.approx(want_ric.mean(), rel=1e-9)
    assert metrics["Rank ICIR"] == pytest.approx(want_ric.mean() / want_ric.std(), rel=1e-9)
    # Label plus noise of twice its spread: a correlation near 1/sqrt(5), far from 0.
    assert 0.3 < metrics["IC"] < 0.6 and 0.3 < metrics["Rank IC"] < 0.6
    stored = exp.get_recorder(rec.id).list_metrics()
    assert stored == pytest.approx(metrics) and rec.status == "FINISHED"


def test_long_short_metrics_and_frame_predictions(exp: Experiment, dataset: DatasetH) -> None:
    with exp.start_recorder() as rec:
        pred = SignalRecord(Peeking(as_frame=True), dataset, recorder=rec).generate()
        metrics = SigAnaRecord(rec, ana_long_short=True, ann_scaler=12).generate()
    assert list(pred.columns) == ["my_score"]  # a frame is saved as the model returned it
    assert set(metrics) == {
        "IC", "ICIR", "Rank IC", "Rank ICIR", "Long-Short Ann Return", "Long-Short Ann Sharpe",
        "Long-Avg Ann Return", "Long-Avg Ann Sharpe",
    }
    long_short = rec.load_object("sig_analysis/long_short_r.pkl")
    assert metrics["Long-Short Ann Return"] == pytest.approx(long_short.mean() * 12)
    assert metrics["Long-Short Ann Sharpe"] == pytest.approx(long_short.mean() / long_short.std() * 12**0.5)
    assert "sig_analysis/long_avg_r.pkl" in rec.list_artifacts()


def test_skip_existing_returns_the_stored_metrics(exp: Experiment, dataset: DatasetH) -> None:
    with exp.start_recorder() as rec:
        SignalRecord(Peeking(), dataset, recorder=rec).generate()
        first = SigAnaRecord(rec).generate()
        SigAnaRecord(rec).check(include_self=True)
        stored_ic = rec.load_object("sig_analysis/ic.pkl")
        # New predictions (the old ones negated) under the same run: a record that recomputed would
        # report the opposite IC, so equal metrics prove the analysis was skipped.
        rec.save_objects(**{"pred.pkl": -rec.load_object("pred.pkl")})
        again = SigAnaRecord(rec, skip_existing=True).generate()
        pd.testing.assert_series_equal(rec.load_object("sig_analysis/ic.pkl"), stored_ic)
        redone = SigAnaRecord(rec).generate()  # the control: without skip_existing it does recompute
    assert again == pytest.approx(first)
    assert first["IC"] > 0.1 and first["Rank IC"] > 0.1  # Peeking's strong signal, so the sign shows
    assert (redone["IC"], redone["Rank IC"]) == pytest.approx((-first["IC"], -first["Rank IC"]))


def test_missing_model_or_dataset_says_what_to_pass(exp: Experiment, dataset: DatasetH) -> None:
    with exp.start_recorder() as rec:
        with pytest.raises(RecordError, match="no model and no dataset.*model=<MODEL>, dataset=<DATASET>"):
            SignalRecord(recorder=rec).generate()
        with pytest.raises(RecordError, match="no dataset: pass dataset=<DATASET>"):
            SignalRecord(model=Peeking(), recorder=rec).generate()
    with pytest.raises(RecordError, match="has no recorder"):
        SignalRecord(Peeking(), dataset).generate()


def test_analysis_without_predictions_is_an_error(exp: Experiment) -> None:
    with exp.start_recorder() as rec:
        with pytest.raises(RecordError, match="no pred.pkl .*SignalRecord before SigAnaRecord"):
            SigAnaRecord(rec).generate()
        with pytest.raises(LoadObjectError, match=r"lacks \['pred.pkl', 'label.pkl'\]"):
            SigAnaRecord(rec).check()


def test_empty_or_missing_label_warns_and_skips(exp: Experiment, dataset: DatasetH) -> None:
    class PlainDataset:  # not a DatasetH: no label.pkl is written, as in Qlib
        def __init__(self, inner: DatasetH) -> None:
            self.inner = inner

        def prepare(self, *args: Any, **kwargs: Any) -> Any:
            return self.inner.prepare(*args, **kwargs)

    with exp.start_recorder() as rec:
        SignalRecord(Peeking(), PlainDataset(dataset), recorder=rec).generate()
        assert rec.list_artifacts() == ["pred.pkl"]
        with pytest.warns(RecordSkippedWarning, match="label is missing or empty"):
            assert SigAnaRecord(rec).generate() == {}
        with pytest.warns(RecordSkippedWarning):
            assert SigAnaRecord(rec).generate(label=pd.DataFrame()) == {}
    assert rec.list_artifacts() == ["pred.pkl"] and rec.list_metrics() == {}


def test_record_template_paths_and_parent_loading(exp: Experiment) -> None:
    class Child(RecordTemp):
        artifact_path = "child"
        depend_cls = SignalRecord

    assert Child.get_path("x.pkl") == "child/x.pkl" and Child.get_path() == "child"
    assert SignalRecord.get_path("pred.pkl") == "pred.pkl"
    with exp.start_recorder() as rec:
        rec.save_objects(**{"pred.pkl": "parent's"})
        Child(rec).save(**{"pred.pkl": "child's", "own.pkl": 1})
        assert Child(rec).load("pred.pkl") == "child's"  # the record's own artifact first
        assert Child(rec).load("own.pkl") == 1
        rec.save_objects(**{"label.pkl": "parent label"})
        assert Child(rec).load("label.pkl") == "parent label"
        with pytest.raises(LoadObjectError, match=r"none of \['child/nothing.pkl', 'nothing.pkl'\]"):
            Child(rec).load("nothing.pkl")
        with pytest.raises(LoadObjectError):
            Child(rec).load("label.pkl", parents=False)
    with pytest.raises(NotImplementedError):
        RecordTemp(rec).generate()


def test_default_home_is_not_touched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Records never open a store of their own: everything goes through the recorder passed in.
    monkeypatch.chdir(tmp_path)
    assert SigAnaRecord(None).list() == ["ic.pkl", "ric.pkl"]
    assert not (tmp_path / "qroll_runs").exists()
