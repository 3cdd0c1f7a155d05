"""Task functions for pool workers started as ``qroll worker`` subprocesses in acceptance tests.

Importable by name (``pool_task_funcs:record_run``) with this folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from qroll.record import ExpManager, Recorder
from qroll.record.tags import task_tags


def record_run(task: Mapping[str, Any], experiment_name: str, recorder_name: str | None = None,
               exp_manager: ExpManager | None = None, tags: Mapping[str, str] | None = None) -> Recorder:
    """A short real task: one MLflow run holding the task's number, FINISHED after ``task["sleep"]`` s.

    ``tags`` (the pool lease's, from the worker) are set at the start, as ``task_train`` does.
    """
    exp = (exp_manager or ExpManager()).get_exp(experiment_name)
    with exp.start_recorder(recorder_name, tags={**task_tags(task), **(tags or {})}) as rec:
        rec.log_params(n=task["n"])
        time.sleep(float(task.get("sleep", 0.2)))
    return rec
