"""``LinearModel``: least squares, ridge, lasso or non-negative least squares (Qlib's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qroll.errors import ModelError
from qroll.models.base import (
    SCORE,
    Model,
    Reweighter,
    empty_prediction,
    infer_features,
    label_vector,
    logger,
    sample_weights,
    segment_text,
)

if TYPE_CHECKING:
    from qroll.data.dataset import DatasetH

__all__ = ["LinearModel"]


class LinearModel(Model):
    r"""A linear model of the features, fitted by one of four estimators (Qlib's ``LinearModel``).

    ========  ======================================================
    ``ols``   :math:`\min_w \|y - Xw\|_2^2`
    ``nnls``  :math:`\min_w \|y - Xw\|_2^2` subject to :math:`w \ge 0`
    ``ridge`` :math:`\min_w \|y - Xw\|_2^2 + \alpha \|w\|_2^2`
    ``lasso`` :math:`\min_w \frac{1}{2n}\|y - Xw\|_2^2 + \alpha \|w\|_1` (scikit-learn's scaling)
    ========  ======================================================

    Parameters
    ----------
    estimator : {"ols", "nnls", "ridge", "lasso"}
        The estimator.
    alpha : float
        The ridge or lasso penalty; must be 0 for ``ols`` and ``nnls``.
    fit_intercept : bool
        Fit an intercept (for ``nnls`` it is constrained to be >= 0 too, as in Qlib).
    include_valid : bool
        Fit on the ``valid`` segment as well as ``train``.

    Attributes
    ----------
    coef_ : numpy.ndarray or None
        One coefficient per feature (``None`` before :meth:`fit`).
    intercept_ : float
        The intercept; 0.0 without ``fit_intercept``.
    feature_names : list of str or None
        The feature columns the model was fitted on, in order.

    Raises
    ------
    ModelError
        If ``estimator`` is unknown or ``alpha`` is not usable with it.

    Notes
    -----
    Rows with a NaN feature or label are dropped before fitting, as in Qlib. The fit runs in
    float64 (Qlib passes float32 features on, so its coefficients differ in the 6th digit).
    ``nnls`` accepts a reweighter (it solves the problem scaled by the square roots of the
    weights); Qlib's raises ``NotImplementedError``.

    Examples
    --------
    >>> LinearModel("ridge", alpha=1.0)
    LinearModel(estimator='ridge', alpha=1.0, fit_intercept=False, include_valid=False)
    """

    OLS, NNLS, RIDGE, LASSO = "ols", "nnls", "ridge", "lasso"
    ESTIMATORS = (OLS, NNLS, RIDGE, LASSO)

    def __init__(
        self,
        estimator: str = "ols",
        alpha: float = 0.0,
        fit_intercept: bool = False,
        include_valid: bool = False,
    ) -> None:
        if estimator not in self.ESTIMATORS:
            raise ModelError(
                f"estimator={estimator!r} is unknown to LinearModel: use one of {list(self.ESTIMATORS)}"
            )
        if alpha < 0:
            raise ModelError(f"alpha={alpha!r} is negative: the penalty must be >= 0")
        if alpha != 0 and estimator not in (self.RIDGE, self.LASSO):
            raise ModelError(
                f"alpha={alpha!r} applies only to 'ridge' and 'lasso', not {estimator!r}: "
                "set alpha=0 or pick one of those"
            )
        self.estimator = estimator
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.include_valid = include_valid
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.feature_names: list[str] | None = None

    def __repr__(self) -> str:
        return (
            f"LinearModel(estimator={self.estimator!r}, alpha={self.alpha!r}, "
            f"fit_intercept={self.fit_intercept!r}, include_valid={self.include_valid!r})"
        )

    def _learn_frame(self, dataset: DatasetH) -> pd.DataFrame:
        if "train" not in dataset.segments:
            raise ModelError(
                f"LinearModel needs a 'train' segment, but the dataset has {list(dataset.segments)}"
            )
        names = ["train"]
        if self.include_valid:
            if "valid" in dataset.segments:
                names.append("valid")
            else:
                logger.info("include_valid=True, but the dataset has no 'valid' segment: fitting on train")
        frames = dataset.prepare(names, col_set=["feature", "label"], data_key="learn")
        assert isinstance(frames, list)
        df = pd.concat(frames) if len(frames) > 1 else frames[0]
        df = df.dropna()
        if df.empty:
            spans = " and ".join(segment_text(dataset, n) for n in names)
            raise ModelError(
                f"segment {spans} has no row with every feature and the label present: check the "
                "segment dates, or fill NaN features (Fillna) before a LinearModel"
            )
        return df

    def fit(self, dataset: DatasetH, reweighter: Reweighter | None = None) -> LinearModel:
        """Fit on ``train`` (and ``valid`` with ``include_valid``), rows with NaN dropped.

        Parameters
        ----------
        dataset : DatasetH
            Read with ``col_set=["feature", "label"]``, ``data_key="learn"``; one label column.
        reweighter : Reweighter, optional
            Sample weights for the rows left after dropping NaN.

        Returns
        -------
        LinearModel
            ``self``, fitted.

        Raises
        ------
        ModelError
            If no complete row is left, the label has more than one column, or the weights are
            unusable.
        """
        df = self._learn_frame(dataset)
        weights = sample_weights(reweighter, df)
        x = df["feature"]
        X = x.to_numpy(dtype=np.float64)
        y = label_vector(df["label"], "train").astype(np.float64)
        if self.estimator == self.NNLS:
            coef, intercept = self._fit_nnls(X, y, weights)
        else:
            coef, intercept = self._fit_sklearn(X, y, weights)
        self.coef_, self.intercept_ = coef, intercept
        self.feature_names = [str(c) for c in x.columns]
        logger.info("LinearModel(%s) fitted on %d rows x %d features", self.estimator, *X.shape)
        return self

    def _fit_sklearn(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, float]:
        # scikit-learn takes ~0.7 s to import: only when a linear model trains.
        from sklearn.linear_model import Lasso, LinearRegression, Ridge

        model: Any
        if self.estimator == self.OLS:
            model = LinearRegression(fit_intercept=self.fit_intercept, copy_X=False)
        else:
            kind = Ridge if self.estimator == self.RIDGE else Lasso
            model = kind(alpha=self.alpha, fit_intercept=self.fit_intercept, copy_X=False)
        # X is a fresh float64 copy, so copy_X=False cannot touch the handler's cached frame.
        model.fit(X, y, sample_weight=w)
        return np.asarray(model.coef_, dtype=float), float(model.intercept_)

    def _fit_nnls(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, float]:
        from scipy.optimize import nnls

        if self.fit_intercept:
            X = np.c_[X, np.ones(len(X))]
        if w is not None:
            # Weighted least squares is least squares on rows scaled by sqrt(weight).
            root = np.sqrt(w)
            X, y = X * root[:, None], y * root
        coef = nnls(X, y)[0]
        if self.fit_intercept:
            return coef[:-1], float(coef[-1])
        return coef, 0.0

    def predict(self, dataset: DatasetH, segment: str | slice = "test") -> pd.Series:
        """``features @ coef_ + intercept_`` for every row of ``segment`` (``data_key="infer"``).

        Parameters
        ----------
        dataset : DatasetH
            The data; its features must be those the model was fitted on.
        segment : str or slice
            A segment name or a ``slice(start, end)`` of dates.

        Returns
        -------
        pandas.Series
            Named ``"score"``, indexed like the segment's feature frame; NaN where a feature is NaN.

        Raises
        ------
        ModelError
            If the model is not fitted, or the features differ from those it was fitted on.
        """
        if self.coef_ is None:
            raise ModelError("LinearModel is not fitted yet: call fit(dataset) before predict")
        x = infer_features(dataset, segment, "LinearModel", self.feature_names)
        if x.empty:
            return empty_prediction(x.index, dataset, segment)
        values = x.to_numpy(dtype=np.float64) @ self.coef_ + self.intercept_
        return pd.Series(values, index=x.index, name=SCORE)
