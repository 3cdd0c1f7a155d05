"""qroll: rolling (walk-forward) model management for quantitative research.

Generate walk-forward train/valid/test tasks over a trading calendar, train them, record every
run in MLflow and collect the per-window predictions into one continuous signal. Names follow
Qlib's rolling subsystem, so a Qlib user finds what they expect.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from qroll.calendar import TimeAdjuster, TradingCalendar
from qroll.errors import (
    CalendarError,
    ClassNotFoundError,
    ConfigError,
    ConfigFileError,
    LabelLeakWarning,
    OutOfCalendarError,
    QrollError,
    TaskGenError,
)
from qroll.tasks import (
    MultiHorizonGenBase,
    RollingGen,
    TaskGen,
    handler_mod,
    task_generator,
    trunc_segments,
)

try:
    __version__ = version("qroll")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "CalendarError",
    "ClassNotFoundError",
    "ConfigError",
    "ConfigFileError",
    "LabelLeakWarning",
    "MultiHorizonGenBase",
    "OutOfCalendarError",
    "QrollError",
    "RollingGen",
    "TaskGen",
    "TaskGenError",
    "TimeAdjuster",
    "TradingCalendar",
    "__version__",
    "handler_mod",
    "task_generator",
    "trunc_segments",
]
