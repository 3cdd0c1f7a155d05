"""LGBModel and LinearModel on small in-memory datasets: real LightGBM, scikit-learn and SciPy fits."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import nnls
from sklearn.linear_model import Lasso

from qroll.data.dataset import DatasetH
from qroll.data.handler import DataHandlerLP
from qroll.data.processors import DropnaLabel
from qroll.errors import ModelError, QrollError
from qroll.models import LGBModel, LinearModel, Model, Reweighter

DAYS = pd.bdate_range("2020-01-01", periods=120)
SEGMENTS = {
    "train": (DAYS[0], DAYS[79]),
    "valid": (DAYS[80], DAYS[99]),
    "test": (DAYS[100], DAYS[119]),
}
TRUE_COEF = np.array([1.5, -2.0, 0.5, 0.0, 3.0])
LGB_SMALL = {"num_leaves": 8, "learning_rate": 0.2, "num_threads": 1, "seed": 3, "min_data_in_leaf": 10}


def make_frame(n_inst: int = 20, noise: float = 0.1, seed: int = 0, labels: int = 1) -> pd.DataFrame:
    """Features N(0, 1) in float32 and a label linear in them plus noise, in the handler layout."""
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_product(
        [DAYS, [f"S{i:02d}" for i in range(n_inst)]], names=["datetime", "instrument"]
    )
    x = rng.normal(size=(len(index), len(TRUE_COEF))).astype(np.float32)
    y = x.astype(np.float64) @ TRUE_COEF + noise * rng.normal(size=len(index))
    columns = [("feature", f"F{i}") for i in range(len(TRUE_COEF))]
    columns += [("label", f"LABEL{j}") for j in range(labels)]
    data = np.column_stack([x] + [y + j for j in range(labels)])
    return pd.DataFrame(data, index=index, columns=pd.MultiIndex.from_tuples(columns)).astype(
        {c: np.float32 for c in columns[: len(TRUE_COEF)]}
    )


def make_dataset(frame: pd.DataFrame | None = None, segments: dict | None = None, **handler) -> DatasetH:
    handler = {"learn_processors": [DropnaLabel()], **handler}
    h = DataHandlerLP(data_loader=make_frame() if frame is None else frame, **handler)
    return DatasetH(h, SEGMENTS if segments is None else segments)


def learn_xy(ds: DatasetH, *segments: str) -> tuple[np.ndarray, np.ndarray]:
    df = pd.concat(ds.prepare(list(segments), col_set=["feature", "label"], data_key="learn")).dropna()
    return df["feature"].to_numpy(np.float64), df["label"].to_numpy(np.float64).ravel()


class HalfZero:
    """Weight 0 on the first half of the rows, 1 on the rest."""

    def reweight(self, data: pd.DataFrame) -> np.ndarray:
        w = np.ones(len(data))
        w[: len(data) // 2] = 0.0
        return w


# -- the interface ---------------------------------------------------------------------------


def test_models_are_models_and_reweighter_is_a_runtime_protocol():
    assert isinstance(LGBModel(), Model) and isinstance(LinearModel(), Model)
    assert isinstance(HalfZero(), Reweighter) and not isinstance(object(), Reweighter)
    assert issubclass(ModelError, QrollError)


@pytest.mark.parametrize("model", [LGBModel(), LinearModel()])
def test_predict_before_fit_says_so(model):
    with pytest.raises(ModelError, match="not fitted yet: call fit"):
        model.predict(make_dataset())


# -- LGBModel ------------------------------------------------------------------------------------


def test_lgb_early_stopping_stops_and_records_both_histories():
    # Pure noise labels: the valid loss stops improving after a few trees.
    frame = make_frame(noise=0.0)
    frame[("label", "LABEL0")] = np.random.default_rng(1).normal(size=len(frame))
    model = LGBModel(early_stopping_rounds=5, num_boost_round=300, **LGB_SMALL).fit(make_dataset(frame))
    booster = model.model
    assert booster is not None and 0 < booster.best_iteration < 300
    # LightGBM ran 5 rounds past the best one, and keeps the trees up to the best one.
    assert booster.current_iteration() == booster.best_iteration
    assert set(model.evals_result) == {"train", "valid"}
    for history in model.evals_result.values():
        assert list(history) == ["l2"] and len(history["l2"]) == booster.best_iteration + 5
    valid = model.evals_result["valid"]["l2"]
    assert int(np.argmin(valid)) + 1 == booster.best_iteration
    # The train loss keeps falling while the valid loss has turned.
    assert model.evals_result["train"]["l2"][-1] < model.evals_result["train"]["l2"][0]


def test_lgb_fit_overrides_and_fills_the_callers_evals_result():
    given: dict = {}
    model = LGBModel(**LGB_SMALL).fit(make_dataset(), num_boost_round=7, early_stopping_rounds=0,
                                       evals_result=given, verbose_eval=0)
    assert model.model is not None and model.model.current_iteration() == 7
    assert len(given["valid"]["l2"]) == 7 and model.evals_result == {
        k: {m: list(v) for m, v in d.items()} for k, d in given.items()
    }


def test_lgb_predictions_are_deterministic_named_score_and_indexed_like_the_test_features():
    ds = make_dataset()
    first = LGBModel(num_boost_round=40, **LGB_SMALL).fit(ds)
    pred = first.predict(ds)
    again = LGBModel(num_boost_round=40, **LGB_SMALL).fit(make_dataset()).predict(make_dataset())
    features = ds.prepare("test", col_set="feature", data_key="infer")
    assert pred.name == "score" and pred.dtype == np.float64
    assert pred.index.equals(features.index) and pred.equals(again)
    # It learned the linear signal: the scores track the label closely.
    label = ds.prepare("test", col_set="label", data_key="infer").iloc[:, 0]
    assert np.corrcoef(pred, label)[0, 1] > 0.9
    assert first(ds, "valid").equals(first.predict(ds, "valid"))


def test_lgb_pickles_with_its_booster():
    ds = make_dataset()
    model = LGBModel(num_boost_round=20, **LGB_SMALL).fit(ds)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.predict(ds).equals(model.predict(ds)) and clone.evals_result == model.evals_result


def test_lgb_without_valid_trains_every_round_and_logs_why(caplog):
    ds = make_dataset(segments={k: v for k, v in SEGMENTS.items() if k != "valid"})
    with caplog.at_level(logging.INFO, logger="qroll.models"):
        model = LGBModel(num_boost_round=15, **LGB_SMALL).fit(ds)
    assert model.model is not None and model.model.current_iteration() == 15
    assert set(model.evals_result) == {"train"}
    assert "segment 'valid' is not in the dataset: training 15 rounds without early stopping" in caplog.text


def test_lgb_with_an_empty_valid_segment_trains_without_early_stopping(caplog):
    frame = make_frame()
    valid_days = frame.index.get_level_values("datetime").isin(DAYS[80:100])
    frame.loc[valid_days, ("label", "LABEL0")] = np.nan  # DropnaLabel then empties the valid segment
    with caplog.at_level(logging.INFO, logger="qroll.models"):
        model = LGBModel(num_boost_round=12, early_stopping_rounds=2, **LGB_SMALL).fit(make_dataset(frame))
    assert model.model is not None and model.model.current_iteration() == 12
    assert "segment 'valid' has no rows" in caplog.text


def test_lgb_empty_train_segment_names_its_dates():
    frame = make_frame()
    frame.loc[frame.index.get_level_values("datetime") <= DAYS[79], ("label", "LABEL0")] = np.nan
    with pytest.raises(ModelError, match=r"segment 'train' 2020-01-01 00:00:00\.\.2020-04-21 00:00:00 has no rows"):
        LGBModel(**LGB_SMALL).fit(make_dataset(frame))


def test_lgb_rejects_two_labels_unknown_loss_and_bad_lightgbm_params():
    with pytest.raises(ModelError, match=r"the 'train' label has 2 columns \['LABEL0', 'LABEL1'\]"):
        LGBModel(**LGB_SMALL).fit(make_dataset(make_frame(labels=2)))
    with pytest.raises(ModelError, match=r"loss='huber' is not supported by LGBModel: use one of \['mse', 'binary'\]"):
        LGBModel(loss="huber")
    with pytest.raises(ModelError, match="LightGBM could not train with params"):
        LGBModel(num_leaves=-3, num_boost_round=2).fit(make_dataset())


def test_lgb_binary_loss_records_logloss():
    frame = make_frame()
    frame[("label", "LABEL0")] = (frame[("label", "LABEL0")] > 0).astype(float)
    model = LGBModel(loss="binary", num_boost_round=10, **LGB_SMALL).fit(make_dataset(frame))
    assert list(model.evals_result["valid"]) == ["binary_logloss"]
    pred = model.predict(make_dataset(frame))
    assert pred.between(0, 1).all()


def test_lgb_reweighter_changes_the_fit():
    ds = make_dataset()
    plain = LGBModel(num_boost_round=20, **LGB_SMALL).fit(ds).predict(ds)
    weighted = LGBModel(num_boost_round=20, **LGB_SMALL).fit(ds, reweighter=HalfZero()).predict(ds)
    assert not np.allclose(plain, weighted)


def test_lgb_feature_importance_by_name():
    model = LGBModel(num_boost_round=30, **LGB_SMALL).fit(make_dataset())
    gain = model.get_feature_importance(importance_type="gain")
    assert sorted(gain.index) == [f"F{i}" for i in range(5)] and gain.is_monotonic_decreasing
    assert gain.index[0] == "F4"  # the largest true coefficient
    assert model.feature_importance().sum() > 0


def test_lgb_repr_shows_every_parameter():
    assert repr(LGBModel(loss="binary", early_stopping_rounds=5, max_depth=3, verbosity=1)) == (
        "LGBModel(loss='binary', early_stopping_rounds=5, num_boost_round=1000, max_depth=3, verbosity=1)"
    )


# -- LinearModel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_ols_equals_numpy_lstsq(fit_intercept):
    ds = make_dataset()
    model = LinearModel("ols", fit_intercept=fit_intercept).fit(ds)
    X, y = learn_xy(ds, "train")
    if fit_intercept:
        X = np.c_[X, np.ones(len(X))]
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(model.coef_, coef[: len(TRUE_COEF)], rtol=1e-8, atol=1e-10)
    assert model.intercept_ == (pytest.approx(coef[-1], abs=1e-10) if fit_intercept else 0.0)
    np.testing.assert_allclose(model.coef_, TRUE_COEF, atol=0.02)  # and it found the truth


def test_ridge_equals_its_closed_form():
    ds = make_dataset()
    model = LinearModel("ridge", alpha=50.0).fit(ds)
    X, y = learn_xy(ds, "train")
    expected = np.linalg.solve(X.T @ X + 50.0 * np.eye(X.shape[1]), X.T @ y)
    np.testing.assert_allclose(model.coef_, expected, rtol=1e-8)


def test_lasso_equals_scikit_learn_and_zeroes_small_coefficients():
    ds = make_dataset()
    model = LinearModel("lasso", alpha=0.1).fit(ds)
    X, y = learn_xy(ds, "train")
    expected = Lasso(alpha=0.1, fit_intercept=False).fit(X, y).coef_
    np.testing.assert_allclose(model.coef_, expected, rtol=1e-10)
    assert model.coef_[3] == 0.0


def test_nnls_equals_scipy_and_is_non_negative():
    ds = make_dataset()
    model = LinearModel("nnls").fit(ds)
    X, y = learn_xy(ds, "train")
    np.testing.assert_allclose(model.coef_, nnls(X, y)[0], rtol=1e-10)
    assert (model.coef_ >= 0).all() and model.coef_[1] == 0.0  # the true -2.0 is clipped


def test_weights_enter_ols_and_nnls_as_weighted_least_squares():
    ds = make_dataset(make_frame(noise=2.0))
    X, y = learn_xy(ds, "train")
    keep = slice(len(X) // 2, None)  # HalfZero gives the first half weight 0
    ols = LinearModel("ols").fit(ds, reweighter=HalfZero())
    np.testing.assert_allclose(ols.coef_, np.linalg.lstsq(X[keep], y[keep], rcond=None)[0], rtol=1e-8)
    assert not np.allclose(ols.coef_, LinearModel("ols").fit(ds).coef_, rtol=1e-3)
    nn = LinearModel("nnls", fit_intercept=True).fit(ds, reweighter=HalfZero())
    expected = nnls(np.c_[X[keep], np.ones(len(X) // 2)], y[keep])[0]
    np.testing.assert_allclose(np.r_[nn.coef_, nn.intercept_], expected, rtol=1e-8, atol=1e-12)


def test_linear_drops_rows_with_nan_and_includes_valid_on_request():
    frame = make_frame(noise=1.0)
    frame.iloc[::7, 0] = np.nan
    ds = make_dataset(frame)
    X, y = learn_xy(ds, "train")
    assert len(X) < 80 * 20  # rows were dropped
    np.testing.assert_allclose(LinearModel().fit(ds).coef_, np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-8)
    X2, y2 = learn_xy(ds, "train", "valid")
    both = LinearModel(include_valid=True).fit(ds)
    np.testing.assert_allclose(both.coef_, np.linalg.lstsq(X2, y2, rcond=None)[0], rtol=1e-8)


def test_linear_predict_is_features_times_coef_and_pickles():
    ds = make_dataset()
    model = LinearModel("ridge", alpha=1.0, fit_intercept=True).fit(ds)
    pred = model.predict(ds)
    x = ds.prepare("test", col_set="feature", data_key="infer")
    assert pred.name == "score" and pred.index.equals(x.index)
    np.testing.assert_allclose(pred, x.to_numpy(np.float64) @ model.coef_ + model.intercept_)
    assert pickle.loads(pickle.dumps(model)).predict(ds).equals(pred)


def test_linear_validation_messages():
    with pytest.raises(ModelError, match=r"estimator='svr' is unknown.*\['ols', 'nnls', 'ridge', 'lasso'\]"):
        LinearModel("svr")
    with pytest.raises(ModelError, match="alpha=0.5 applies only to 'ridge' and 'lasso', not 'ols'"):
        LinearModel("ols", alpha=0.5)
    with pytest.raises(ModelError, match="alpha=-1.0 is negative"):
        LinearModel("ridge", alpha=-1.0)
    frame = make_frame()
    frame.iloc[:, 2] = np.nan
    with pytest.raises(ModelError, match="'train' 2020-01-01 00:00:00..2020-04-21 00:00:00 has no row with every"):
        LinearModel().fit(make_dataset(frame))


# -- shared checks -------------------------------------------------------------------------------


class Short:
    def reweight(self, data: pd.DataFrame) -> np.ndarray:
        return np.ones(3)


class Negative:
    def reweight(self, data: pd.DataFrame) -> pd.Series:
        return pd.Series(-1.0, index=data.index)


@pytest.mark.parametrize("model", [LGBModel(num_boost_round=2, **LGB_SMALL), LinearModel()])
def test_unusable_weights_are_refused(model):
    ds = make_dataset()
    with pytest.raises(ModelError, match=r"Short.reweight returned 3 weights for \d+ rows"):
        model.fit(ds, reweighter=Short())
    with pytest.raises(ModelError, match=r"returned \d+ negative or non-finite weights"):
        model.fit(ds, reweighter=Negative())
    with pytest.raises(ModelError, match="has no reweight"):
        model.fit(ds, reweighter=object())


@pytest.mark.parametrize("model", [LGBModel(num_boost_round=5, **LGB_SMALL), LinearModel()])
def test_predict_checks_features_and_returns_empty_for_an_empty_range(model, caplog):
    model.fit(make_dataset())
    other = make_frame().drop(columns=[("feature", "F2")])
    with pytest.raises(ModelError, match=r"fitted on 5 features but segment 'test' .* has 4 \(new: \[\], missing: \['F2'\]"):
        model.predict(make_dataset(other))
    with caplog.at_level(logging.WARNING, logger="qroll.models"):
        empty = model.predict(make_dataset(), slice("2030-01-01", "2030-02-01"))
    assert empty.empty and empty.name == "score" and "has no rows" in caplog.text
