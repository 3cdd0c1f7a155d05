"""How far ahead a label looks, so ``trunc_days="auto"`` can keep train and valid clear of the test.

The rule
--------
A label expression looks ahead by the largest number of trading days any of its raw fields is
read past "today". ``Ref(x, -N)`` reads ``x`` N days ahead; nested ``Ref`` offsets add up
(``Ref(Ref($close, -2), 1)`` looks 1 day ahead); every other operator (``Mean``, ``Std``,
arithmetic, ...) only looks back, so it passes the horizon of its arguments through. A label that
looks ``N`` days ahead needs ``trunc_days = N + 1``: the last training label then ends on the day
before the test starts. The expression language has one parser,
:mod:`qroll.data.expression`; the rule is its :func:`~qroll.data.expression.look_ahead`.

>>> label_horizon("Ref($close, -2)/Ref($close, -1) - 1")
2
>>> auto_trunc_days(["Ref($close, -21)/Ref($close, -1) - 1"])
22
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qroll.data.expression import look_ahead
from qroll.data.features import DEFAULT_LABEL
from qroll.errors import ExpressionError, TaskGenError

__all__ = ["DEFAULT_LABELS", "auto_trunc_days", "label_horizon", "task_label"]

# The default label of each feature-set handler, by class name, as in Qlib.
DEFAULT_LABELS: dict[str, list[str]] = {"Alpha158": DEFAULT_LABEL[0], "Alpha360": DEFAULT_LABEL[0]}


def label_horizon(expression: str) -> int:
    """Return how many trading days ahead a Qlib label expression looks (0 for none).

    Raises
    ------
    TaskGenError
        If the expression cannot be parsed (the message carries the parser's reason) or a
        ``Ref`` offset is not an integer.
    """
    try:
        return look_ahead(expression)
    except ExpressionError as exc:
        raise TaskGenError(
            f"cannot tell how far the label expression {expression!r} looks ahead: {exc}; fix the "
            "label, or give trunc_days as a number of trading days"
        ) from exc


def auto_trunc_days(labels: Iterable[str]) -> int:
    """Return the ``trunc_days`` that keeps every label clear of the test: horizon + 1."""
    return max((label_horizon(label) for label in labels), default=0) + 1


def task_label(task: Mapping[str, Any]) -> list[str] | None:
    """Find the label expressions of a task's data handler, or ``None`` if it names none.

    Looks at ``dataset.kwargs.handler.kwargs.label`` (Qlib's ``(exprs, names)`` pair, a list of
    expressions or one string), then ``...kwargs.data_loader.kwargs.config.label``, then the
    default label of a known handler class (``Alpha158``, ``Alpha360``).
    """
    try:
        handler = task["dataset"]["kwargs"]["handler"]
    except (KeyError, TypeError):
        return None
    if not isinstance(handler, Mapping):
        return None
    kwargs = handler.get("kwargs") or {}
    label = kwargs.get("label")
    if label is None:
        loader = kwargs.get("data_loader")
        if isinstance(loader, Mapping):
            label = ((loader.get("kwargs") or {}).get("config") or {}).get("label")
    if label is None:
        cls = handler.get("class")
        name = cls if isinstance(cls, str) else getattr(cls, "__name__", "")
        default = DEFAULT_LABELS.get(name.rsplit(".", 1)[-1])
        return list(default) if default else None
    return _expressions(label)


def _expressions(label: Any) -> list[str]:
    if isinstance(label, str):
        return [label]
    if isinstance(label, (list, tuple)):
        # Qlib's (["expr", ...], ["NAME", ...]) pair: the expressions come first.
        if len(label) == 2 and all(isinstance(x, (list, tuple)) for x in label):
            return [str(x) for x in label[0]]
        if all(isinstance(x, str) for x in label):
            return list(label)
    raise TaskGenError(
        f"cannot read the label {label!r}: give a string, a list of strings, or (exprs, names)"
    )
