"""LGBModel and LinearModel on Alpha158 and Qlib expressions over the synthetic market (real feature cache)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from qroll.data.dataset import DatasetH
from qroll.data.handler import Alpha158, DataHandlerLP
from qroll.models import LGBModel, LinearModel

MARKET = "synthetic://?instruments=100&start=2014-01-01&end=2019-12-31&seed=0"
SEGMENTS = {"train": ("2015-01-01", "2017-12-31"), "valid": ("2018-01-01", "2018-12-31"),
            "test": ("2019-01-01", "2019-12-31")}


def daily_ic(score: pd.Series, label: pd.Series) -> pd.Series:
    """Pearson correlation of score and label on each day."""
    df = pd.DataFrame({"score": score, "label": label}).dropna()
    return df.groupby(level="datetime").apply(lambda day: day["score"].corr(day["label"]))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("QROLL_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def alpha158(home) -> DatasetH:
    handler = Alpha158(instruments="all", start_time="2015-01-01", end_time="2019-12-31", source=MARKET)
    return DatasetH(handler, SEGMENTS)


@pytest.fixture(scope="module")
def fitted(alpha158) -> LGBModel:
    return LGBModel(num_leaves=16, learning_rate=0.1, num_threads=2, seed=0).fit(alpha158)


@pytest.mark.slow
def test_lgb_on_alpha158_finds_the_reversal_signal(alpha158, fitted):
    pred = fitted.predict(alpha158)
    features = alpha158.prepare("test", col_set="feature", data_key="infer")
    assert pred.index.equals(features.index) and pred.name == "score" and pred.notna().all()
    label = alpha158.prepare("test", col_set="label", data_key="raw").iloc[:, 0]
    ic = daily_ic(pred, label)
    assert len(ic) > 200
    # The market's weak reversal gives an IC of a few hundredths, clearly above zero (t > 2).
    assert ic.mean() > 0.01 and ic.mean() / ic.std() * np.sqrt(len(ic)) > 2


@pytest.mark.slow
def test_lgb_on_alpha158_stops_early_records_history_and_pickles(alpha158, fitted):
    booster = fitted.model
    assert booster is not None and 0 < booster.best_iteration < fitted.num_boost_round
    ran = len(fitted.evals_result["valid"]["l2"])
    assert ran == booster.best_iteration + fitted.early_stopping_rounds
    assert len(fitted.evals_result["train"]["l2"]) == ran
    importance = fitted.get_feature_importance()
    assert len(importance) == 158 and {"KMID", "ROC5", "STD60"} <= set(importance.index)
    clone = pickle.loads(pickle.dumps(fitted))
    assert clone.predict(alpha158, "valid").equals(fitted.predict(alpha158, "valid"))


def test_linear_model_on_expressions_sees_the_reversal(home):
    # Returns over the last 1 and 5 days: the market leans against the last five days' shocks.
    loader = {
        "feature": (["$close/Ref($close, 1) - 1", "$close/Ref($close, 5) - 1"], ["RET1", "RET5"]),
        "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"]),
    }
    # 100 instruments over 3.5 years: the reversal's strength drifts (and sometimes flips), so a
    # smaller sample shows it only most of the time (16 seeds of 20 at 30 instruments over 1.5 years).
    market = "synthetic://?instruments=100&start=2016-01-01&end=2019-12-31&seed=2"
    handler = DataHandlerLP(instruments="all", start_time="2016-02-01", end_time="2019-12-31", data_loader=loader,
                            learn_processors=["DropnaLabel", {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}],
                            source=market)
    ds = DatasetH(handler, {"train": ("2016-02-01", "2019-06-30"), "test": ("2019-07-01", "2019-12-31")})
    for estimator, alpha in (("ols", 0.0), ("ridge", 1.0), ("lasso", 1e-4)):
        model = LinearModel(estimator, alpha=alpha, fit_intercept=True).fit(ds)
        assert model.coef_ is not None and model.coef_[1] < 0, estimator
    nnls = LinearModel("nnls").fit(ds)
    assert nnls.coef_ is not None and (nnls.coef_ >= 0).all() and nnls.coef_[1] == 0.0
    pred = LinearModel("ols").fit(ds).predict(ds)
    features = ds.prepare("test", col_set="feature", data_key="infer")
    assert pred.index.equals(features.index)
    assert pred.isna().equals(features.isna().any(axis=1).rename("score"))
