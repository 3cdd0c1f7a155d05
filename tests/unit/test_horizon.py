"""The label-horizon rule behind trunc_days="auto"."""

from __future__ import annotations

import pytest

from qroll import TaskGenError
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
