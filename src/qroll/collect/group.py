"""Groups: re-key a collected ``{key: value}`` dict into groups, then reduce each group."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from qroll.collect.ensemble import Ensemble, RollingEnsemble
from qroll.errors import CollectError

__all__ = ["Group", "RollingGroup"]


class Group:
    """Split ``{key: value}`` into groups with ``group_func`` and reduce each with ``ens``.

    Unlike Qlib, a subclass that overrides :meth:`group` or :meth:`reduce` is honoured.

    Parameters
    ----------
    group_func : callable, optional
        ``group_func(ungrouped_dict) -> {group_key: {key: value}}``.
    ens : Ensemble or callable, optional
        Reduces one group's ``{key: value}`` to one value.
    """

    def __init__(
        self, group_func: Callable[..., Any] | None = None, ens: Ensemble | Callable[..., Any] | None = None
    ):
        self._group_func = group_func
        self._ens = ens

    def __repr__(self) -> str:
        return f"{type(self).__name__}(group_func={self._group_func!r}, ens={self._ens!r})"

    def group(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        """Return ``{group_key: {key: value}}``."""
        if self._group_func is None:
            raise CollectError(f"{type(self).__name__} has no group_func: pass one or override group()")
        return self._group_func(*args, **kwargs)

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        """Reduce one group to one value."""
        if self._ens is None:
            raise CollectError(f"{type(self).__name__} has no ens: pass an Ensemble or override reduce()")
        return self._ens(*args, **kwargs)

    def __call__(
        self, ungrouped_dict: Mapping[Any, Any], n_jobs: int = 1, verbose: int = 0, *args: Any, **kwargs: Any
    ) -> dict[Any, Any]:
        """Group, then reduce each group (in ``n_jobs`` threads when > 1), keeping group order."""
        grouped = self.group(ungrouped_dict, *args, **kwargs)
        if n_jobs == 1 or len(grouped) <= 1:
            return {key: self.reduce(value) for key, value in grouped.items()}
        with ThreadPoolExecutor(max(1, n_jobs)) as pool:
            futures = {key: pool.submit(self.reduce, value) for key, value in grouped.items()}
            return {key: future.result() for key, future in futures.items()}


class RollingGroup(Group):
    """Split off the rolling key, the last element of each tuple key, and merge the windows.

    ``{(model, test_segment): pred}`` becomes ``{(model,): merged_pred}``.

    Parameters
    ----------
    ens : Ensemble, default RollingEnsemble()
        How one group's windows are merged.
    """

    def __init__(self, ens: Ensemble | Callable[..., Any] | None = None):
        super().__init__(ens=ens if ens is not None else RollingEnsemble())

    def group(self, rolling_dict: Mapping[Any, Any], *args: Any, **kwargs: Any) -> dict[Any, Any]:
        grouped: dict[Any, dict[Any, Any]] = {}
        for key, value in rolling_dict.items():
            if not isinstance(key, tuple) or not key:
                raise CollectError(
                    f"RollingGroup needs tuple keys whose last element is the rolling key, got {key!r}: "
                    "use rec_key_func returning e.g. (model_class, test_segment)"
                )
            grouped.setdefault(key[:-1], {})[key[-1]] = value
        return grouped
