"""Collecting: read results back from recorders, group them and merge rolling windows."""

from qroll.collect.collector import Collector, MergeCollector, RecorderCollector, rolling_key
from qroll.collect.ensemble import AverageEnsemble, Ensemble, RollingEnsemble, SingleKeyEnsemble
from qroll.collect.group import Group, RollingGroup
from qroll.collect.merged import evaluate_merged, merged_runs

__all__ = [
    "AverageEnsemble",
    "Collector",
    "Ensemble",
    "Group",
    "MergeCollector",
    "RecorderCollector",
    "RollingEnsemble",
    "RollingGroup",
    "SingleKeyEnsemble",
    "evaluate_merged",
    "merged_runs",
    "rolling_key",
]
