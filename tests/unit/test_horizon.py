"""The label-horizon rule behind trunc_days="auto"."""

from __future__ import annotations

import ast
import re

import pytest

from qroll import TaskGenError
from qroll.data.expression import extent, look_ahead
from qroll.data.features import alpha158_config, alpha360_config
from qroll.tasks.horizon import auto_trunc_days, label_horizon, task_label


@pytest.mark.parametrize(
    ("expression", "horizon"),
    [
        ("Ref($close, -2)/Ref($close, -1) - 1", 2),
        ("Ref($close, -5) / $close - 1", 5),
        ("Ref($close,-21)/Ref($close,-1)-1", 21),
        ("Ref(Ref($close, -2), 1)", 1),
        ("Ref(Ref($close, -2), -3)", 5),
        ("Mean(Ref($close, -10), 5) / $close", 10),
        ("$close / Ref($close, 1) - 1", 0),  # looks only back
        ("Ref($vwap, -2)/Ref($vwap, -1) - 1", 2),
    ],
)
def test_label_horizon(expression, horizon):
    assert label_horizon(expression) == horizon


def test_auto_trunc_days_is_horizon_plus_one():
    assert auto_trunc_days(["Ref($close, -2)/Ref($close, -1) - 1", "Ref($close, -5)/$close - 1"]) == 6
    assert auto_trunc_days(["$close"]) == 1


@pytest.mark.parametrize(("expression", "match"), [("Ref($close, -2", "cannot parse"), ("Ref($close, $open)", "must be a number"),
                                                   ("Ref($close)", "Ref needs two arguments"), ("Ref($close, -1.5)", "integer")])
def test_label_horizon_errors(expression, match):
    with pytest.raises(TaskGenError, match=match):
        label_horizon(expression)


def test_task_label_reads_every_place_a_label_can_be():
    def task(handler):
        return {"dataset": {"kwargs": {"handler": handler}}}

    assert task_label(task({"class": "Alpha158", "kwargs": {}})) == ["Ref($close, -2)/Ref($close, -1) - 1"]
    assert task_label(task({"class": "Alpha360", "module_path": "qlib.contrib.data.handler"})) is not None
    assert task_label(task({"class": "X", "kwargs": {"label": (["Ref($close, -3)"], ["L"])}})) == ["Ref($close, -3)"]
    assert task_label(task({"class": "X", "kwargs": {"label": "Ref($close, -3)"}})) == ["Ref($close, -3)"]
    loader = {"class": "QlibDataLoader", "kwargs": {"config": {"label": (["Ref($close, -4)"], ["L"])}}}
    assert task_label(task({"class": "DataHandlerLP", "kwargs": {"data_loader": loader}})) == ["Ref($close, -4)"]
    assert task_label(task({"class": "X", "kwargs": {}})) is None
    assert task_label(task("file://handler.pkl")) is None
    with pytest.raises(TaskGenError, match="cannot read the label 5"):
        task_label(task({"class": "X", "kwargs": {"label": 5}}))


def _former_ast_horizon(expression: str) -> int:
    """The look-ahead as tasks/horizon.py computed it before it asked the expression parser: Python's
    ``ast`` over the expression with ``$field`` turned into a name (kept here as an independent oracle)."""

    def ahead(node: ast.AST) -> int:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Ref":
            return ahead(node.args[0]) - int(ast.literal_eval(node.args[1]))
        return max((ahead(child) for child in ast.iter_child_nodes(node)), default=0)

    return max(0, ahead(ast.parse(re.sub(r"\$(\w+)", r"_field_\1", expression), mode="eval").body))


LABELS = [
    "Ref($close, -2)/Ref($close, -1) - 1", "Ref($vwap, -21)/Ref($vwap, -1) - 1", "Ref(Ref($close, -2), 1)",
    "Ref(Ref($close, 2), -3)", "Ref(Ref($close, -2), -3) / Ref($close, 4)", "Mean(Ref($close, -10), 5) / $close",
    "If(Ref($close, -3) > $close, 1, 0)", "Corr(Ref($close, -2), Ref($volume, -4), 10)", "-Ref($close, -2)",
    "Quantile(Ref($close, -5), 10, 0.8) - Ref($close, 1)", "Ref($close, 0)", "Ref($close, -1) * 2 + 1e-12",
    "Rank(Ref($close, -7), 20) | (Ref($close, -1) >= $open)",
]


def _nested_ref(expression: str) -> bool:
    return re.search(r"Ref\((?:[^()]|\([^()]*\))*Ref\(", expression) is not None


def test_the_two_former_parsers_agree():
    # Every feature of Alpha158 and Alpha360 (all look only back) and labels that look ahead.
    features = alpha158_config()[0] + alpha360_config()[0]
    for expression in features + LABELS:
        horizon = label_horizon(expression)
        assert horizon == _former_ast_horizon(expression), expression
        assert horizon == look_ahead(expression), expression
        # Qlib's loading reach (extent's right side) widens at every Ref, so it can only be larger,
        # and it is the same when no Ref sits inside another.
        reach = extent(expression)[1]
        assert horizon == reach if not _nested_ref(expression) else horizon <= reach, expression
    assert {label_horizon(e) for e in features} == {0}
    assert [label_horizon(e) for e in LABELS] == [2, 21, 1, 1, 5, 10, 3, 4, 2, 5, 0, 1, 7]
