"""qroll: rolling (walk-forward) model management for quantitative research.

Generate walk-forward train/valid/test tasks over a trading calendar, train them, record every
run in MLflow and collect the per-window predictions into one continuous signal. Names follow
Qlib's rolling subsystem, so a Qlib user finds what they expect.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from qroll.calendar import TimeAdjuster, TradingCalendar
from qroll.config import fill_placeholder, init_instance_by_config, load_config, task_hash
from qroll.data import (
    Alpha158,
    Alpha360,
    CSRankNorm,
    CSZScoreNorm,
    DataHandlerLP,
    DatasetH,
    DropnaFeature,
    DropnaLabel,
    Fillna,
    FilterCol,
    MinMaxNorm,
    ProcessInf,
    QlibBinSource,
    RobustZScoreNorm,
    SyntheticMarket,
    TableSource,
    ZScoreNorm,
    open_source,
)
from qroll.errors import (
    CalendarError,
    ClassNotFoundError,
    ConfigError,
    ConfigFileError,
    DataError,
    DataFormatError,
    DataNotFoundError,
    ExpressionError,
    FeatureCacheWarning,
    LabelLeakWarning,
    MissingFieldWarning,
    NotSerializableError,
    OutOfCalendarError,
    ProcessorError,
    QrollError,
    SegmentError,
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
    "Alpha158",
    "Alpha360",
    "CSRankNorm",
    "CSZScoreNorm",
    "CalendarError",
    "ClassNotFoundError",
    "ConfigError",
    "ConfigFileError",
    "DataError",
    "DataFormatError",
    "DataHandlerLP",
    "DataNotFoundError",
    "DatasetH",
    "DropnaFeature",
    "DropnaLabel",
    "ExpressionError",
    "FeatureCacheWarning",
    "Fillna",
    "FilterCol",
    "LabelLeakWarning",
    "MinMaxNorm",
    "MissingFieldWarning",
    "MultiHorizonGenBase",
    "NotSerializableError",
    "OutOfCalendarError",
    "ProcessInf",
    "ProcessorError",
    "QlibBinSource",
    "QrollError",
    "RobustZScoreNorm",
    "RollingGen",
    "SegmentError",
    "SyntheticMarket",
    "TableSource",
    "TaskGen",
    "TaskGenError",
    "TimeAdjuster",
    "TradingCalendar",
    "ZScoreNorm",
    "__version__",
    "fill_placeholder",
    "handler_mod",
    "init_instance_by_config",
    "load_config",
    "open_source",
    "task_generator",
    "task_hash",
    "trunc_segments",
]
