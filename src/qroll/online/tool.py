"""Online tools: which runs are online, and extending their predictions (Qlib's ``OnlineToolR``).

The online state is the run tag ``online_status`` (``online`` / ``offline``; a run without it is
offline), plus the as-of days a run went online and offline (``qroll.online_since``,
``qroll.online_until``). Nothing else holds it, so a tool, a strategy or a manager rebuilt in a new
process sees the same state. Runs are listed and filtered by their tags in the store; no artifact
is downloaded to find them.

Unlike Qlib's ``reset_online_tag``, which tags every run of the experiment offline and then the
new ones online (O(N) calls, and a moment with no run online), qroll tags the new runs online
**first** and then only the runs that were online and are no longer: a reader, or a process
killed in between, never sees fewer online runs than before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from qroll.data.source import Source
from qroll.errors import ConfigTypeError, ConfigValueError, LoadObjectError
from qroll.record import Experiment, ExpManager, Recorder
from qroll.record.tags import OFFLINE, ONLINE, TAG_ONLINE, TAG_ONLINE_SINCE, TAG_ONLINE_UNTIL
from qroll.tasks.shape import format_day

__all__ = ["OnlineTool", "OnlineToolR"]

log = logging.getLogger("qroll.online")


def _recorders(recorder: Recorder | Iterable[Recorder]) -> list[Recorder]:
    recs = [recorder] if isinstance(recorder, Recorder) else list(recorder)
    bad = [r for r in recs if not isinstance(r, Recorder)]
    if bad:
        raise ConfigTypeError(f"expected Recorder objects (runs), got {bad[0]!r}")
    return recs


class OnlineTool:
    """The online state of models: which are online, and bringing their predictions forward.

    Abstract, as Qlib's: :class:`OnlineToolR` keeps the state in MLflow run tags.
    """

    ONLINE_KEY = TAG_ONLINE
    ONLINE_TAG = ONLINE
    OFFLINE_TAG = OFFLINE

    def set_online_tag(self, tag: str, recorder: Any, *args: Any, **kwargs: Any) -> None:
        """Tag ``recorder`` (one or a list) ``tag``: :attr:`ONLINE_TAG` or :attr:`OFFLINE_TAG`."""
        raise NotImplementedError(f"{type(self).__name__} must implement set_online_tag()")

    def get_online_tag(self, recorder: Any, *args: Any, **kwargs: Any) -> str:
        """The online tag of ``recorder``."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_online_tag()")

    def reset_online_tag(self, recorder: Any, *args: Any, **kwargs: Any) -> None:
        """Make ``recorder`` (one or a list) the only online models."""
        raise NotImplementedError(f"{type(self).__name__} must implement reset_online_tag()")

    def online_models(self, *args: Any, **kwargs: Any) -> list[Any]:
        """The online models."""
        raise NotImplementedError(f"{type(self).__name__} must implement online_models()")

    def update_online_pred(self, to_date: Any = None, *args: Any, **kwargs: Any) -> None:
        """Extend every online model's predictions to ``to_date``."""
        raise NotImplementedError(f"{type(self).__name__} must implement update_online_pred()")


class OnlineToolR(OnlineTool):
    """The online state of an experiment's runs, in their tags (Qlib's ``OnlineToolR``).

    Parameters
    ----------
    default_exp_name : str, optional
        The experiment of every call that names none.
    exp_manager : ExpManager, optional
        The tracking store; default the qroll home's (:class:`~qroll.record.ExpManager`).
    source : Source or str, optional
        The data :meth:`update_online_pred` predicts on; default each run's own (its handler's
        ``source``).

    Examples
    --------
    >>> OnlineToolR("rolling").ONLINE_KEY, OnlineToolR.ONLINE_TAG, OnlineToolR.OFFLINE_TAG
    ('online_status', 'online', 'offline')
    """

    def __init__(self, default_exp_name: str | None = None, *, exp_manager: ExpManager | None = None,
                 source: Source | str | None = None) -> None:
        self.default_exp_name = default_exp_name
        self.exp_manager = exp_manager
        self.source = source

    def __repr__(self) -> str:
        return f"OnlineToolR(default_exp_name={self.default_exp_name!r}, exp_manager={self.exp_manager!r})"

    @property
    def manager(self) -> ExpManager:
        """The tracking store (built on first use)."""
        if self.exp_manager is None:
            self.exp_manager = ExpManager()
        return self.exp_manager

    def experiment(self, exp_name: str | None = None) -> Experiment:
        """The experiment ``exp_name`` (default :attr:`default_exp_name`), created when missing.

        Raises
        ------
        ConfigValueError
            If neither names one (Qlib raises ``ValueError``; this is one too).
        """
        name = exp_name or self.default_exp_name
        if not name:
            raise ConfigValueError("OnlineToolR needs an experiment: pass exp_name=... or build it with "
                                   "OnlineToolR(default_exp_name)")
        return self.manager.get_exp(name)

    def set_online_tag(self, tag: str, recorder: Recorder | Iterable[Recorder], exp_name: str | None = None,
                       *, as_of: Any = None, tags: Mapping[str, str] | None = None) -> None:
        """Tag each run ``tag`` (one store call per run, with all its tags at once).

        Parameters
        ----------
        tag : {"online", "offline"}
            The new ``online_status``.
        recorder : Recorder or list of Recorder
            The runs.
        exp_name : str, optional
            Unused (the runs know their store); kept for Qlib's signature.
        as_of : date, optional
            The as-of day of the change: ``qroll.online_since`` (going online) or
            ``qroll.online_until`` (going offline).
        tags : dict, optional
            More tags to set in the same call (a strategy's ``qroll.template``).

        Raises
        ------
        ConfigValueError
            For a tag other than ``"online"`` or ``"offline"``.
        """
        if tag not in (self.ONLINE_TAG, self.OFFLINE_TAG):
            raise ConfigValueError(f"online tag {tag!r} is neither {self.ONLINE_TAG!r} nor "
                                   f"{self.OFFLINE_TAG!r}")
        values = {**(tags or {}), self.ONLINE_KEY: tag}
        if as_of is not None:
            since_or_until = TAG_ONLINE_SINCE if tag == self.ONLINE_TAG else TAG_ONLINE_UNTIL
            values[since_or_until] = format_day(pd.Timestamp(as_of))
        for rec in _recorders(recorder):
            rec.set_tags(**values)

    def get_online_tag(self, recorder: Recorder, exp_name: str | None = None) -> str:
        """The run's ``online_status`` as the store holds it now; a run without it is offline."""
        return recorder.list_tags().get(self.ONLINE_KEY, self.OFFLINE_TAG)

    def reset_online_tag(self, recorder: Recorder | Iterable[Recorder], exp_name: str | None = None,
                         *, as_of: Any = None) -> None:
        """Make ``recorder`` the experiment's only online runs: them online first, then the others off.

        Only runs tagged online are touched (found by tag in the store), not every run.
        """
        recs = _recorders(recorder)
        keep = {r.id for r in recs}
        new = [r for r in recs if r.tags.get(self.ONLINE_KEY) != self.ONLINE_TAG]
        self.set_online_tag(self.ONLINE_TAG, new, as_of=as_of)
        old = [r for r in self.online_models(exp_name) if r.id not in keep]
        self.set_online_tag(self.OFFLINE_TAG, old, as_of=as_of)
        log.info("%d run(s) online, %d set offline", len(recs), len(old))

    def online_models(self, exp_name: str | None = None) -> list[Recorder]:
        """The runs tagged online, newest first, found by their tag in one search (any status)."""
        return self.experiment(exp_name).list_recorders(tags={self.ONLINE_KEY: self.ONLINE_TAG})

    def update_online_pred(self, to_date: Any = None, from_date: Any = None,
                           exp_name: str | None = None) -> None:
        """Extend the predictions of every online run to ``to_date`` (:class:`~qroll.online.PredUpdater`).

        A run without ``pred.pkl`` (a delay trainer's run not fitted yet) is skipped with a log
        line, as in Qlib. ``to_date`` defaults to the data's last day (Qlib's default); the
        :class:`~qroll.online.OnlineManager` always gives its as-of day.
        """
        from qroll.online.update import PredUpdater

        for rec in self.online_models(exp_name):
            try:
                updater = PredUpdater(rec, to_date=to_date, from_date=from_date, source=self.source)
            except LoadObjectError as exc:
                log.warning("run %s is online but cannot be updated: %s", rec.id, exc)
                continue
            updater.update()
