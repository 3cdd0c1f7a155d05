"""A task function for pool workers running as Ray tasks: each run records where and when it ran.

Importable by name (``ray_task_funcs:record_where``) with this folder on the ``PYTHONPATH`` of
the Ray nodes (their workers inherit the environment of ``ray start``).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from qroll.record import ExpManager, Recorder
from qroll.record.tags import task_tags

TAG_NODE, TAG_PROC = "test.ray_node_id", "test.process"  # the Ray node id; hostname:pid
TAG_START, TAG_END = "test.start", "test.end"  # time.time() around the task's sleep, seconds


def record_where(task: Mapping[str, Any], experiment_name: str, recorder_name: str | None = None,
                 exp_manager: ExpManager | None = None, tags: Mapping[str, str] | None = None) -> Recorder:
    """One MLflow run holding the task's number, its Ray node and process, and when it ran.

    The run is FINISHED after ``task["sleep"]`` seconds; ``tags`` (the pool lease's) are set at
    the start, as ``task_train`` does. A task with ``"fail": true`` raises instead.
    """
    import ray

    if task.get("fail"):
        raise RuntimeError(f"task {task['n']} fails on purpose")

    where = {TAG_NODE: ray.get_runtime_context().get_node_id(),
             TAG_PROC: f"{socket.gethostname()}:{os.getpid()}"}
    exp = (exp_manager or ExpManager()).get_exp(experiment_name)
    with exp.start_recorder(recorder_name, tags={**task_tags(task), **(tags or {}), **where}) as rec:
        rec.log_params(n=task["n"])
        start = time.time()
        time.sleep(float(task.get("sleep", 0.2)))
        rec.set_tags(**{TAG_START: repr(start), TAG_END: repr(time.time())})
    return rec
