"""Models that a task's ``model`` config names: fit on a dataset, predict a segment (Qlib's interface).

================  ==========================================================================
:class:`LGBModel`     LightGBM trees, early stopping on the ``valid`` segment
:class:`LinearModel`  OLS, ridge, lasso or non-negative least squares
================  ==========================================================================

Both log to the ``qroll.models`` logger and pickle whole (the trainer saves them as ``params.pkl``).
"""

from __future__ import annotations

from qroll.models.base import Model, Reweighter
from qroll.models.gbdt import LGBModel
from qroll.models.linear import LinearModel

__all__ = ["LGBModel", "LinearModel", "Model", "Reweighter"]
