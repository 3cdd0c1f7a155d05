"""``LGBModel``: gradient-boosted trees by LightGBM, with early stopping on the valid segment (Qlib's)."""

from __future__ import annotations

import time
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
    import lightgbm as lgb

    from qroll.data.dataset import DatasetH

__all__ = ["LGBModel"]

LOSSES = ("mse", "binary")


def _log_evaluation(period: int) -> Any:
    """LightGBM's ``log_evaluation``, but to the ``qroll.models`` logger instead of stdout."""

    def callback(env: Any) -> None:
        if period > 0 and env.evaluation_result_list and (env.iteration + 1) % period == 0:
            scores = "\t".join(f"{r[0]}'s {r[1]}: {r[2]:g}" for r in env.evaluation_result_list)
            logger.info("[%d]\t%s", env.iteration + 1, scores)

    callback.order = 10  # type: ignore[attr-defined]  # LightGBM sorts callbacks by this attribute
    return callback


class LGBModel(Model):
    """LightGBM regression or classification, trained as Qlib's ``LGBModel``.

    Parameters
    ----------
    loss : {"mse", "binary"}
        LightGBM's objective.
    early_stopping_rounds : int
        Stop when the valid score has not improved for this many boosting rounds; 0 trains all
        ``num_boost_round`` rounds.
    num_boost_round : int
        The most boosting rounds (trees).
    **kwargs
        LightGBM parameters (``learning_rate``, ``num_leaves``, ``max_depth``, ``colsample_bytree``,
        ``subsample``, ``lambda_l1``, ``lambda_l2``, ``num_threads``, ``seed``, ...); ``verbosity``
        is -1 unless given.

    Attributes
    ----------
    model : lightgbm.Booster or None
        The trained booster (``None`` before :meth:`fit`); it pickles with the model.
    evals_result : dict
        The metric history of the last fit: ``{"train": {"l2": [...]}, "valid": {"l2": [...]}}``,
        one value per boosting round.
    feature_names : list of str or None
        The feature columns the model was fitted on, in order.

    Raises
    ------
    ModelError
        If ``loss`` is not one of ``"mse"``, ``"binary"``.

    Examples
    --------
    >>> LGBModel(num_leaves=16, learning_rate=0.1)
    LGBModel(loss='mse', early_stopping_rounds=50, num_boost_round=1000, learning_rate=0.1, num_leaves=16)
    """

    def __init__(
        self, loss: str = "mse", early_stopping_rounds: int = 50, num_boost_round: int = 1000, **kwargs: Any
    ) -> None:
        if loss not in LOSSES:
            raise ModelError(f"loss={loss!r} is not supported by LGBModel: use one of {list(LOSSES)}")
        self.loss = loss
        self.params: dict[str, Any] = {"objective": loss, "verbosity": -1, **kwargs}
        self.early_stopping_rounds = early_stopping_rounds
        self.num_boost_round = num_boost_round
        self.model: lgb.Booster | None = None
        self.evals_result: dict[str, dict[str, list[float]]] = {}
        self.feature_names: list[str] | None = None

    def __repr__(self) -> str:
        extra = "".join(
            f", {k}={v!r}" for k, v in sorted(self.params.items()) if k not in ("objective", "verbosity")
        )
        if self.params.get("verbosity") != -1:
            extra += f", verbosity={self.params.get('verbosity')!r}"
        return (
            f"LGBModel(loss={self.loss!r}, early_stopping_rounds={self.early_stopping_rounds!r}, "
            f"num_boost_round={self.num_boost_round!r}{extra})"
        )

    def _learn_set(
        self, dataset: DatasetH, segment: str, reweighter: Reweighter | None
    ) -> tuple[lgb.Dataset, list[str]] | None:
        """The LightGBM dataset of ``segment`` and its feature names, or None when it has no rows."""
        import lightgbm as lgb  # ~0.9 s to import: paid only when a model trains
        df = dataset.prepare(segment, col_set=["feature", "label"], data_key="learn")
        assert isinstance(df, pd.DataFrame)
        if df.empty:
            return None
        x, y = df["feature"], label_vector(df["label"], segment)
        weight = sample_weights(reweighter, df)
        return lgb.Dataset(x.to_numpy(), label=y, weight=weight, free_raw_data=True), [
            str(c) for c in x.columns
        ]

    def fit(
        self,
        dataset: DatasetH,
        num_boost_round: int | None = None,
        early_stopping_rounds: int | None = None,
        verbose_eval: int = 20,
        evals_result: dict[str, Any] | None = None,
        reweighter: Reweighter | None = None,
        **kwargs: Any,
    ) -> LGBModel:
        """Train on the ``train`` segment, stopping early on ``valid`` when the dataset has one.

        Parameters
        ----------
        dataset : DatasetH
            Read with ``col_set=["feature", "label"]``, ``data_key="learn"``; one label column.
        num_boost_round, early_stopping_rounds : int, optional
            Override the constructor's values for this fit.
        verbose_eval : int
            Log the train and valid scores every this many rounds (0: never) to ``qroll.models``.
        evals_result : dict, optional
            Filled with the metric history, as in Qlib; :attr:`evals_result` holds it either way.
        reweighter : Reweighter, optional
            Sample weights for the train and valid rows.
        **kwargs
            Passed to ``lightgbm.train`` (``feval``, ``init_model``, ...).

        Returns
        -------
        LGBModel
            ``self``, fitted.

        Raises
        ------
        ModelError
            If the dataset has no ``train`` segment or it has no rows, the label has more than one
            column, a reweighter's weights are unusable, or LightGBM rejects a parameter.

        Notes
        -----
        Without a ``valid`` segment, or when it has no rows, the model trains all rounds without
        early stopping and logs so (Qlib fails on an empty valid segment).
        """
        import lightgbm as lgb

        if "train" not in dataset.segments:
            raise ModelError(
                f"LGBModel needs a 'train' segment, but the dataset has {list(dataset.segments)}"
            )
        train = self._learn_set(dataset, "train", reweighter)
        if train is None:
            raise ModelError(
                f"segment {segment_text(dataset, 'train')} has no rows to learn from: check the "
                "segment dates against the handler's data (labels may all be NaN)"
            )
        sets, names = [train[0]], ["train"]
        valid = self._learn_set(dataset, "valid", reweighter) if "valid" in dataset.segments else None
        if valid is not None:
            if valid[1] != train[1]:
                raise ModelError("the 'valid' features differ from the 'train' features: use one handler")
            sets.append(valid[0])
            names.append("valid")
        rounds = self.num_boost_round if num_boost_round is None else num_boost_round
        stop = self.early_stopping_rounds if early_stopping_rounds is None else early_stopping_rounds
        history: dict[str, Any] = {} if evals_result is None else evals_result
        callbacks = [_log_evaluation(int(verbose_eval)), lgb.record_evaluation(history)]
        if valid is None:
            why = "has no rows" if "valid" in dataset.segments else "is not in the dataset"
            logger.info(
                "segment 'valid' %s: training %d rounds without early stopping", why, rounds
            )
        elif stop and stop > 0:
            # verbose=False: LightGBM would print; the outcome is logged below instead.
            callbacks.append(lgb.early_stopping(stop, verbose=False))
        started = time.perf_counter()
        try:
            booster = lgb.train(
                self.params,
                sets[0],
                num_boost_round=rounds,
                valid_sets=sets,
                valid_names=names,
                callbacks=callbacks,
                **kwargs,
            )
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"LightGBM could not train with params {self.params!r}: {exc}") from exc
        self.model = booster
        self.feature_names = train[1]
        self.evals_result = {
            name: {metric: [float(v) for v in values] for metric, values in metrics.items()}
            for name, metrics in history.items()
        }
        ran = max((len(v) for m in self.evals_result.values() for v in m.values()), default=rounds)
        logger.info(
            "LGBModel trained %d rounds (best iteration %d) on %d rows x %d features in %.1f s",
            ran,
            booster.best_iteration,
            sets[0].num_data(),
            len(train[1]),
            time.perf_counter() - started,
        )
        return self

    def _booster(self) -> lgb.Booster:
        if self.model is None:
            raise ModelError("LGBModel is not fitted yet: call fit(dataset) before predict")
        return self.model

    def predict(self, dataset: DatasetH, segment: str | slice = "test") -> pd.Series:
        """The score of every row of ``segment`` (``data_key="infer"``), from the best iteration.

        Parameters
        ----------
        dataset : DatasetH
            The data; its features must be those the model was fitted on.
        segment : str or slice
            A segment name or a ``slice(start, end)`` of dates.

        Returns
        -------
        pandas.Series
            Float scores named ``"score"``, indexed like the segment's feature frame; empty (and
            logged) when the segment has no rows.

        Raises
        ------
        ModelError
            If the model is not fitted, or the features differ from those it was fitted on.
        """
        booster = self._booster()
        x = infer_features(dataset, segment, "LGBModel", self.feature_names)
        if x.empty:
            return empty_prediction(x.index, dataset, segment)
        values = np.asarray(booster.predict(x.to_numpy()), dtype=float)
        return pd.Series(values, index=x.index, name=SCORE)

    def get_feature_importance(self, *args: Any, **kwargs: Any) -> pd.Series:
        """Feature importance by name, largest first (Qlib's ``LightGBMFInt``).

        Parameters
        ----------
        *args, **kwargs
            Passed to ``lightgbm.Booster.feature_importance``: ``importance_type="split"`` (the
            number of splits on the feature, default) or ``"gain"`` (the total loss reduction).

        Returns
        -------
        pandas.Series
            Indexed by the feature names the model was fitted on.
        """
        booster = self._booster()
        return pd.Series(
            booster.feature_importance(*args, **kwargs), index=self.feature_names, dtype=float
        ).sort_values(ascending=False)

    feature_importance = get_feature_importance
