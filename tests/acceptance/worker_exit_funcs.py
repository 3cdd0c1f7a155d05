"""Train functions for ``qroll worker`` subprocesses in the exit-status tests.

Importable by name (``worker_exit_funcs:fail``) with this folder on ``PYTHONPATH``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qroll.errors import TaskDeferredError


def fail(task: Mapping[str, Any], experiment_name: str, **kwargs: Any) -> Any:
    """Every task fails, as on a broken store."""
    raise RuntimeError(f"task {task['n']} cannot be trained")


def defer(task: Mapping[str, Any], experiment_name: str, **kwargs: Any) -> Any:
    """A service the task needs is down: give it back unrun."""
    raise TaskDeferredError(f"the service task {task['n']} needs is down")
