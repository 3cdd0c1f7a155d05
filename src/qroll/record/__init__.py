"""Recording in MLflow: experiments, recorders (runs) and the records written into them.

:class:`ExpManager` opens a tracking store (default ``sqlite:///<home>/mlflow.db``) with its own
client; :class:`Experiment` starts, gets and lists :class:`Recorder` objects; records
(:class:`SignalRecord`, :class:`SigAnaRecord`, :class:`PortAnaRecord`) save predictions, their
analysis and their backtest with Qlib's artifact names.
"""

from __future__ import annotations

from qroll.record.experiment import Experiment
from qroll.record.manager import ExpManager
from qroll.record.portfolio import PortAnaRecord
from qroll.record.recorder import DEFAULT_REC_NAME, Recorder
from qroll.record.records import RecordTemp, SigAnaRecord, SignalRecord

__all__ = [
    "DEFAULT_REC_NAME",
    "ExpManager",
    "Experiment",
    "PortAnaRecord",
    "RecordTemp",
    "Recorder",
    "SigAnaRecord",
    "SignalRecord",
]
