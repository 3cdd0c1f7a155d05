"""Every error qroll raises on purpose, in one tree.

Catch :class:`QrollError` to handle them all. Each message repeats the values at fault and says
what to do; the command line prints it as one line and exits with status 2.

Every bad argument raises a :class:`ConfigError`. Where Python or an older qroll raised another
class for it, the error derives from that class too (:class:`ConfigValueError` is a
``ValueError``, :class:`PoolConfigError` a :class:`PoolError`, ...), so code catching the old
class still catches it.

::

    QrollError
    ├── ConfigError            a configuration value, file or argument that qroll cannot use
    │   ├── ConfigFileError    a YAML file that is missing, unreadable or malformed
    │   ├── ClassNotFoundError a ``class``/``module_path`` pair that names nothing importable
    │   ├── NotSerializableError a task value with no stable JSON form (a model object, NaN, ...)
    │   ├── ConfigValueError   an argument out of range (also a ``ValueError``)
    │   ├── ConfigTypeError    an argument of the wrong kind, an unknown keyword (also a ``TypeError``)
    │   ├── TaskConfigError    a task that is not a dict with ``model`` and ``dataset``, or whose
    │   │                      records lack what they need (also a ``RecordError``)
    │   └── PoolConfigError    a pool setting or call the pool refuses: ``lease_seconds``,
    │                          ``max_attempts``, an empty ``remove()`` (also a ``PoolError``)
    ├── CalendarError          a date or index that falls outside the trading calendar
    │   └── OutOfCalendarError a segment shifted wholly past the end of the calendar
    ├── TaskGenError           a task template that cannot be rolled (step, rtype, segments)
    ├── RecordError            an MLflow experiment, run or artifact that cannot be used
    │   ├── TaskConfigError    (drawn under ConfigError: a malformed task)
    │   ├── TrackingError      a tracking URI that is unreachable, invalid or refused
    │   │   └── StoreSchemaError a store whose MLflow schema is half-built, out of date or newer
    │   ├── ExperimentNotFoundError an experiment name that the store does not hold
    │   └── LoadObjectError    a run artifact that is missing or cannot be read back
    ├── ModelError             a model that cannot be fitted or used (no data, not fitted, bad loss)
    ├── CollectError           recorders whose results cannot be collected or grouped
    ├── TrainingError          tasks that failed to train (carries the failures and the other runs)
    ├── PoolError              the task pool cannot be used as asked
    │   ├── PoolConfigError    (drawn under ConfigError: a bad pool setting or call)
    │   ├── PoolConnectionError a pool URL that is unreachable, malformed or of an unknown scheme
    │   ├── PoolSchemaError    a pool database written by a schema version this qroll cannot use
    │   ├── PoolQueryError     a pool query on an unknown field or with an unknown operator
    │   ├── LeaseLostError     a commit, return or heartbeat by a worker that lost the task's lease
    │   ├── PoolTimeoutError   ``wait()`` ran out of time with tasks still waiting or running
    │   ├── TaskDeferredError  a task function gives its task back: a service it needs is down
    │   └── RayClusterError    a Ray address that is unreachable or not a Ray cluster
    └── DataError              market data that cannot be read (a source, a file, a column)
        ├── DataNotFoundError  a data directory, file, market or column that does not exist
        ├── DataFormatError    a data file whose content is malformed (a bad .bin, a duplicate row)
        ├── ExpressionError    a feature expression that cannot be parsed or evaluated
        ├── ProcessorError     a processor that cannot run (missing column group or fit range)
        ├── SegmentError       a dataset segment outside its handler's time range
        └── CacheError         feature-cache entries that could not be written (disk full, no rights)

    LabelLeakWarning (a UserWarning)  train or valid labels reach into the test window
    MissingFieldWarning (a UserWarning)  an expression reads a field the source lacks: NaN features
    FeatureCacheWarning (a UserWarning)  a damaged feature-cache entry was ignored and rebuilt
    RecordSkippedWarning (a UserWarning)  a record found no data to work on and wrote nothing
"""

from __future__ import annotations

__all__ = [
    "LeaseLostError",
    "PoolConnectionError",
    "PoolError",
    "PoolQueryError",
    "PoolSchemaError",
    "PoolTimeoutError",
    "TaskDeferredError",
    "RayClusterError",
    "ExperimentNotFoundError",
    "LoadObjectError",
    "RecordError",
    "RecordSkippedWarning",
    "TrackingError",
    "StoreSchemaError",
    "ModelError",
    "CalendarError",
    "ClassNotFoundError",
    "CollectError",
    "ConfigError",
    "ConfigFileError",
    "ConfigTypeError",
    "ConfigValueError",
    "PoolConfigError",
    "TaskConfigError",
    "CacheError",
    "DataError",
    "DataFormatError",
    "DataNotFoundError",
    "ExpressionError",
    "FeatureCacheWarning",
    "NotSerializableError",
    "OutOfCalendarError",
    "ProcessorError",
    "QrollError",
    "LabelLeakWarning",
    "MissingFieldWarning",
    "SegmentError",
    "TaskGenError",
    "TrainingError",
]


class QrollError(Exception):
    """qroll could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        # The class docstring's first line is the default message, so every error reads well
        # even when raised bare.
        default = (type(self).__doc__ or "").strip().splitlines()
        super().__init__(message or (default[0] if default else type(self).__name__))


class ConfigError(QrollError):
    """The configuration is invalid."""


class ConfigFileError(ConfigError):
    """The configuration file cannot be read."""


class ClassNotFoundError(ConfigError):
    """The configured class cannot be found."""


class NotSerializableError(ConfigError):
    """The task holds a value that cannot be written as canonical JSON."""


class ConfigValueError(ConfigError, ValueError):
    """An argument is out of range; the message names it and the values it may take."""


class ConfigTypeError(ConfigError, TypeError):
    """An argument is of the wrong kind, or a keyword is unknown."""


class CalendarError(QrollError):
    """The date is outside the trading calendar."""


class OutOfCalendarError(CalendarError):
    """The segment lies past the end of the trading calendar."""


class TaskGenError(QrollError):
    """The task template cannot be rolled."""


class LabelLeakWarning(UserWarning):
    """A segment's labels look into the test window: set ``trunc_days``."""


class DataError(QrollError):
    """The market data cannot be read."""


class DataNotFoundError(DataError):
    """The data directory, file, market or column does not exist."""


class DataFormatError(DataError):
    """The data file is malformed."""


class ExpressionError(DataError):
    """The feature expression cannot be parsed or evaluated."""


class ProcessorError(DataError):
    """The data processor cannot run on this data."""


class SegmentError(DataError):
    """The dataset segment lies outside the data handler's time range."""


class CacheError(DataError):
    """Feature-cache entries could not be written."""


class MissingFieldWarning(UserWarning):
    """An expression reads a field the data source does not have; its values are NaN."""


class FeatureCacheWarning(UserWarning):
    """A feature-cache entry could not be used as it stands (damaged, or its source's past changed),
    or a background write failed; the features are computed again."""


class CollectError(QrollError):
    """The results cannot be collected."""


class ModelError(QrollError):
    """The model cannot be fitted or used as asked."""


class TrainingError(QrollError):
    """Some tasks failed to train."""

    def __init__(self, message: str | None = None, *, failures: list[tuple[int, str]] | None = None,
                 recorders: list | None = None, total: int | None = None) -> None:
        self.failures = list(failures or [])
        self.recorders = list(recorders or [])
        if message is None and self.failures:
            first_index, first_error = self.failures[0]
            message = (f"{len(self.failures)} of {total or len(self.recorders)} tasks failed "
                       f"(first: task {first_index}: {first_error}); their runs are FAILED in MLflow")
        super().__init__(message)


class RecordError(QrollError):
    """The MLflow experiment, run or artifact cannot be used."""


class TaskConfigError(ConfigError, RecordError):
    """The task cannot be trained: it needs ``model`` and ``dataset``, and its records what they use.

    Also a :class:`RecordError`, which malformed tasks raised before.
    """


class TrackingError(RecordError):
    """The MLflow tracking store cannot be reached: check the tracking URI."""


class StoreSchemaError(TrackingError):
    """The tracking store's MLflow schema is half-built, older or newer than this MLflow's.

    qroll never migrates a store silently: the message says what was found and what to run
    (``qroll store upgrade``) or remove.
    """


class ExperimentNotFoundError(RecordError):
    """The MLflow experiment does not exist."""


class LoadObjectError(RecordError):
    """The run artifact is missing or cannot be loaded."""


class RecordSkippedWarning(UserWarning):
    """A record found no data to work on (an empty or missing label) and wrote nothing."""


class PoolError(QrollError):
    """The task pool cannot be used as asked."""


class PoolConfigError(ConfigError, PoolError):
    """The pool setting or call is one the task pool refuses (e.g. ``lease_seconds`` <= 0).

    Also a :class:`PoolError`, which these raised before.
    """


class PoolConnectionError(PoolError):
    """The task pool database cannot be reached: check the pool URL."""


class PoolSchemaError(PoolError):
    """The task pool database has a schema version this qroll cannot use."""


class PoolQueryError(PoolError):
    """The task pool query uses an unknown field or operator."""


class LeaseLostError(PoolError):
    """The worker no longer holds the task's lease; another worker may be running it."""


class PoolTimeoutError(PoolError):
    """Waiting for the task pool timed out with tasks still waiting or running."""


class TaskDeferredError(PoolError):
    """The task was given back to the pool unrun: a service it needs is unavailable.

    A task function raises it when it cannot run the task for a reason that is not the task's
    (the tracking store stayed unreachable, say). :func:`qroll.pool.run_task` then returns the
    task to the pool without using one of its attempts, and stops: the worker cannot do better
    with the next task.
    """


class RayClusterError(PoolError):
    """The Ray cluster for pool workers cannot be reached, or the address is not a Ray cluster."""
