"""Task generation: roll task templates over the trading calendar.

:mod:`qroll.tasks.shape` is where a task's parts are (segments, test key, model, handler) and how
its days and segments are written; every other module asks it.
"""

from qroll.tasks.gen import (
    MultiHorizonGenBase,
    RollingGen,
    TaskGen,
    handler_mod,
    task_generator,
    trunc_segments,
)

__all__ = [
    "MultiHorizonGenBase",
    "RollingGen",
    "TaskGen",
    "handler_mod",
    "task_generator",
    "trunc_segments",
]
