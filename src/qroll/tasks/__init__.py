"""Task generation: roll task templates over the trading calendar."""

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
