"""Online rolling: train what is due as data arrives, keep the latest windows online, extend them.

Qlib's ``qlib.workflow.online`` with its names and signatures (reference ``qlib_online.md``), and
the fixes of its §8: the online state lives in run tags (never a pickle), every call takes an
explicit as-of day, a routine is idempotent, crash-safe and locked per strategy, signals are
recomputed (never appended), the calendar's edge and an empty prediction are no crash, and the
test window's predictions are never rewritten (extensions are stored beside them).

- :class:`OnlineManager` runs strategies day after day (``first_train``, ``routine``,
  ``simulate``, ``get_signals``);
- :class:`RollingStrategy` rolls task templates forward (:class:`OnlineStrategy` is the base of
  strategies of your own);
- :class:`OnlineToolR` reads and moves the ``online_status`` tags;
- :class:`PredUpdater` and :class:`LabelUpdater` extend a run's predictions and labels;
- :func:`next_orders` turns an as-of day's signal into the next trading day's orders
  (:class:`Orders`) with the run config's backtest strategy;
- :mod:`qroll.online.service` rolls a run config online: ``update``, ``simulate`` and
  :func:`online_signal`, what ``qroll update``, ``qroll simulate`` and ``qroll signals`` call.
"""

from qroll.analysis.signal import SignalFigures
from qroll.online.manager import OnlineManager
from qroll.online.orders import Orders, backtest_signal, holdings_at, next_orders
from qroll.online.service import SimulationResult, UpdateResult, online_signal
from qroll.online.signals import OnlinePredCollector
from qroll.online.strategy import OnlineStrategy, RollingStrategy
from qroll.online.tool import OnlineTool, OnlineToolR
from qroll.online.update import DSBasedUpdater, LabelUpdater, PredUpdater, load_online

__all__ = [
    "DSBasedUpdater",
    "LabelUpdater",
    "OnlineManager",
    "OnlinePredCollector",
    "OnlineStrategy",
    "OnlineTool",
    "OnlineToolR",
    "Orders",
    "PredUpdater",
    "RollingStrategy",
    "SignalFigures",
    "SimulationResult",
    "UpdateResult",
    "backtest_signal",
    "holdings_at",
    "load_online",
    "next_orders",
    "online_signal",
]
