"""qroll: rolling (walk-forward) model management for quantitative research.

Generate walk-forward train/valid/test tasks over a trading calendar, train them, record every
run in MLflow and collect the per-window predictions into one continuous signal. Names follow
Qlib's rolling subsystem, so a Qlib user finds what they expect.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from qroll.calendar import TimeAdjuster, TradingCalendar
from qroll.config import fill_placeholder, init_instance_by_config, load_config, task_hash
from qroll.errors import (
    CalendarError,
    ClassNotFoundError,
    ConfigError,
    ConfigFileError,
    LabelLeakWarning,
    NotSerializableError,
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
    __version__ = _version("qroll")
except _PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "CalendarError",
    "ClassNotFoundError",
    "ConfigError",
    "ConfigFileError",
    "LabelLeakWarning",
    "MultiHorizonGenBase",
    "NotSerializableError",
    "OutOfCalendarError",
    "QrollError",
    "RollingGen",
    "TaskGen",
    "TaskGenError",
    "TimeAdjuster",
    "TradingCalendar",
    "__version__",
    "fill_placeholder",
    "handler_mod",
    "init_instance_by_config",
    "load_config",
    "task_generator",
    "task_hash",
    "trunc_segments",
]
