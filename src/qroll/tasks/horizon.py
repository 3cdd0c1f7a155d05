"""How far ahead a label looks, so ``trunc_days="auto"`` can keep train and valid clear of the test.

The rule
--------
A label expression looks ahead by the largest number of trading days any of its raw fields is
read past "today". ``Ref(x, -N)`` reads ``x`` N days ahead; nested ``Ref`` offsets add up
(``Ref(Ref($close, -2), 1)`` looks 1 day ahead); every other operator (``Mean``, ``Std``,
arithmetic, ...) only looks back, so it passes the horizon of its arguments through. A label that
looks ``N`` days ahead needs ``trunc_days = N + 1``: the last training label then ends on the day
before the test starts.

>>> label_horizon("Ref($close, -2)/Ref($close, -1) - 1")
2
>>> auto_trunc_days(["Ref($close, -21)/Ref($close, -1) - 1"])
22
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from typing import Any

from qroll.data.features import DEFAULT_LABEL
from qroll.errors import TaskGenError

__all__ = ["DEFAULT_LABELS", "auto_trunc_days", "label_horizon", "task_label"]

# The default label of each feature-set handler, by class name, as in Qlib.
DEFAULT_LABELS: dict[str, list[str]] = {"Alpha158": DEFAULT_LABEL[0], "Alpha360": DEFAULT_LABEL[0]}

_FIELD = re.compile(r"\$(\w+)")


def label_horizon(expression: str) -> int:
    """Return how many trading days ahead a Qlib label expression looks (0 for none).

    Raises
    ------
    TaskGenError
        If the expression cannot be parsed.
    """
    # Qlib expressions are Python expressions once `$field` becomes a name.
    source = _FIELD.sub(r"_field_\1", expression)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise TaskGenError(f"cannot parse the label expression {expression!r}: {exc.msg}") from exc
    return max(0, _ahead(tree.body, expression))


def _ahead(node: ast.AST, expression: str) -> int:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Ref":
        if len(node.args) != 2:
            raise TaskGenError(f"Ref needs two arguments in the label expression {expression!r}")
        return _ahead(node.args[0], expression) - _int(node.args[1], expression)
    children = [_ahead(child, expression) for child in ast.iter_child_nodes(node)]
    # A field, a constant or a name: read today, ahead by 0.
    return max(children, default=0)


def _int(node: ast.AST, expression: str) -> int:
    try:
        value = ast.literal_eval(node)
    except ValueError as exc:
        raise TaskGenError(f"Ref's offset must be a number in the label expression {expression!r}") from exc
    if not isinstance(value, int):
        raise TaskGenError(f"Ref's offset {value!r} must be an integer in {expression!r}")
    return value


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
