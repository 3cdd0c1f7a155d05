"""The model interface every trainer calls: ``fit(dataset)`` then ``predict(dataset, segment)``.

Models follow Qlib's ``qlib.model.base.Model``: they read their data from a
:class:`~qroll.data.dataset.DatasetH` (``data_key="learn"`` to fit, ``"infer"`` to predict) and are
pickled whole by the trainer, so everything learned lives in public attributes.
"""

from __future__ import annotations

import abc
import logging
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from qroll.errors import ModelError

if TYPE_CHECKING:
    from qroll.data.dataset import DatasetH

__all__ = ["Model", "Reweighter", "SCORE", "logger"]

logger = logging.getLogger("qroll.models")

SCORE = "score"
"""The name of every prediction Series (Qlib's ``pred.pkl`` column)."""


@runtime_checkable
class Reweighter(Protocol):
    """A hook that gives each training row a sample weight (Qlib's ``Reweighter``).

    ``reweight`` receives the learn frame (two-level columns ``("feature", ...)`` and
    ``("label", ...)``) and returns one non-negative weight per row: an array in row order, or a
    Series indexed like the frame.

    Examples
    --------
    >>> class RecentFirst:
    ...     def reweight(self, data):
    ...         days = data.index.get_level_values("datetime")
    ...         return (days >= days[len(days) // 2]).astype(float) + 1.0
    >>> isinstance(RecentFirst(), Reweighter)
    True
    """

    def reweight(self, data: pd.DataFrame) -> Any:
        """One weight per row of ``data``."""
        ...


class Model(abc.ABC):
    """A learnable model: fit on a dataset, predict a segment of it.

    Subclasses keep what they learn in public attributes (the trainer pickles the model) and
    return predictions as a float Series named ``"score"`` indexed by ``(datetime, instrument)``.

    Notes
    -----
    A model of your own subclasses this in any importable module and is named in a task as
    ``{"class": "MyModel", "module_path": "mypkg.models", "kwargs": {...}}``. It reads its rows
    with :meth:`DatasetH.prepare <qroll.data.DatasetH.prepare>`: ``["train", "valid"]`` with
    ``col_set=["feature", "label"]`` and ``data_key="learn"`` in :meth:`fit`, the segment with
    ``col_set="feature"`` and ``data_key="infer"`` in :meth:`predict`. It must pickle (the
    trainer stores it as the run's ``params.pkl``). A built-in model is added to ``QROLL_CLASSES``
    too (see ARCHITECTURE.md).

    Examples
    --------
    >>> import pandas as pd
    >>> class MeanModel(Model):
    ...     def fit(self, dataset, *, reweighter=None):
    ...         train = dataset.prepare("train", col_set="label", data_key="learn")
    ...         self.mean = float(train.to_numpy().mean())
    ...     def predict(self, dataset, segment="test"):
    ...         index = dataset.prepare(segment, col_set="feature", data_key="infer").index
    ...         return pd.Series(self.mean, index=index, name="score")
    >>> from qroll.data import Alpha158, DatasetH
    >>> handler = Alpha158(instruments="all", start_time="2020-03-02", end_time="2020-03-31", cache=False,
    ...                    source="synthetic://?instruments=3&start=2020-01-01&end=2020-06-30&seed=0")
    >>> ds = DatasetH(handler, {"train": ("2020-03-02", "2020-03-20"), "test": ("2020-03-23", "2020-03-31")})
    >>> model = MeanModel()
    >>> model.fit(ds)
    >>> pred = model.predict(ds)
    >>> len(pred), pred.nunique()  # 7 trading days x 3 instruments, one value
    (21, 1)
    """

    @abc.abstractmethod
    def fit(self, dataset: DatasetH, *, reweighter: Reweighter | None = None) -> Any:
        """Learn from ``dataset`` (its ``train`` segment, and ``valid`` where the model uses one).

        Callers pass ``reweighter`` by keyword: models may take more positional parameters (as
        :meth:`LGBModel.fit <qroll.models.LGBModel.fit>` does, in Qlib's order).

        Parameters
        ----------
        dataset : DatasetH
            The data, read with ``data_key="learn"``.
        reweighter : Reweighter, optional
            Gives each training row a sample weight.
        """

    @abc.abstractmethod
    def predict(self, dataset: DatasetH, segment: str | slice = "test") -> pd.Series:
        """The model's score for every row of ``segment``.

        Parameters
        ----------
        dataset : DatasetH
            The data, read with ``data_key="infer"``.
        segment : str or slice
            A segment name of ``dataset`` or a ``slice(start, end)`` of dates.

        Returns
        -------
        pandas.Series
            Named ``"score"``, indexed like the segment's feature frame.
        """

    def __call__(self, dataset: DatasetH, segment: str | slice = "test") -> pd.Series:
        """Same as :meth:`predict` (Qlib models are callable)."""
        return self.predict(dataset, segment)


def segment_text(dataset: DatasetH, segment: str | slice) -> str:
    """``'train' 2015-01-01..2017-12-31`` for messages, from a segment name or a date slice."""
    if isinstance(segment, slice):
        return f"{segment.start}..{segment.stop}"
    span = dataset.segments.get(segment)
    return f"{segment!r} {span.start}..{span.stop}" if span is not None else repr(segment)


def sample_weights(reweighter: Reweighter | None, data: pd.DataFrame) -> np.ndarray | None:
    """The reweighter's weights for ``data`` as a float array in row order, checked.

    Raises
    ------
    ModelError
        If the reweighter has no ``reweight`` method, or its weights do not give one finite,
        non-negative number per row.
    """
    if reweighter is None:
        return None
    if not isinstance(reweighter, Reweighter):
        raise ModelError(
            f"reweighter {reweighter!r} has no reweight(data) method: give an object with one, or None"
        )
    weights = reweighter.reweight(data)
    if isinstance(weights, pd.DataFrame) and weights.shape[1] == 1:
        weights = weights.iloc[:, 0]
    if isinstance(weights, pd.Series) and not weights.index.equals(data.index):
        missing = int((~data.index.isin(weights.index)).sum())
        if missing:
            raise ModelError(
                f"{type(reweighter).__name__}.reweight returned a Series missing {missing} of the "
                f"{len(data)} rows: index it like the data, or return an array in row order"
            )
        weights = weights.reindex(data.index)
    values = np.asarray(weights, dtype=float).reshape(-1)
    if len(values) != len(data):
        raise ModelError(
            f"{type(reweighter).__name__}.reweight returned {len(values)} weights for {len(data)} rows: "
            "return one weight per row"
        )
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        raise ModelError(
            f"{type(reweighter).__name__}.reweight returned {int(bad.sum())} negative or non-finite "
            f"weights (e.g. {values[bad][0]!r}): weights must be finite and >= 0"
        )
    return values


def label_vector(label: pd.DataFrame | pd.Series, segment: str) -> np.ndarray:
    """The single label column as a 1-D array; more than one column is a ModelError (as in Qlib)."""
    values = np.asarray(label.to_numpy())
    width = values.shape[1] if values.ndim == 2 else 1
    if width != 1:
        names = list(label.columns) if isinstance(label, pd.DataFrame) else []
        raise ModelError(
            f"the {segment!r} label has {width} columns {names}: these models "
            "learn one label; keep one label expression in the handler"
        )
    return values.reshape(-1)


def empty_prediction(index: pd.Index, dataset: DatasetH, segment: str | slice) -> pd.Series:
    """An empty score Series, logged: Qlib returns one when the segment has no rows."""
    logger.warning("segment %s has no rows: the prediction is empty", segment_text(dataset, segment))
    return pd.Series(np.empty(0), index=index, name=SCORE, dtype=float)


def infer_features(
    dataset: DatasetH, segment: str | slice, model: str, feature_names: list[str] | None
) -> pd.DataFrame:
    """The ``infer`` feature frame of ``segment``, checked against the columns the model was fitted on.

    Raises
    ------
    ModelError
        If the model is not fitted (``feature_names`` is None) or the columns differ.
    """
    if feature_names is None:
        raise ModelError(f"{model} is not fitted yet: call fit(dataset) before predict")
    frame = dataset.prepare(segment, col_set="feature", data_key="infer")
    assert isinstance(frame, pd.DataFrame)
    columns = [str(c) for c in frame.columns]
    if columns != feature_names:
        extra = [c for c in columns if c not in feature_names][:5]
        lacking = [c for c in feature_names if c not in columns][:5]
        raise ModelError(
            f"{model} was fitted on {len(feature_names)} features but segment "
            f"{segment_text(dataset, segment)} has {len(columns)} (new: {extra}, missing: {lacking}"
            f"{', or in another order' if not (extra or lacking) else ''}): predict with the "
            "handler the model was fitted with"
        )
    return frame
