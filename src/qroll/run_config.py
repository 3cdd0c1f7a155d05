"""The run config: one YAML file describing a whole rolling experiment (DESIGN §9).

Every key but ``tasks`` is optional::

    experiment: csi300_rolling          # MLflow experiment name
    data: qlib:///path/to/cn_data        # source URI; default synthetic market (or $QROLL_DATA)
    calendar: data                       # "data" (the source's days), an exchange name, a day.txt
    tracking: sqlite:///qroll_runs/mlflow.db
    pool: null                           # a pool URL => TrainerRM; null => TrainerR
    workers: 1                           # with a pool: 0 trains nothing here, waits for workers
    rolling: {step: 40, rtype: expanding, trunc_days: auto}
    benchmark: SH000300                  # an instrument; default: the market's equal-weighted mean
    backtest: {strategy: ..., backtest: ...}  # Qlib's port_analysis_config; null: no backtest
    tasks: [...]                         # Qlib-shaped task templates

``backtest`` is Qlib's ``port_analysis_config`` without the signal (see
:mod:`qroll.collect.merged`); each model's merged signal is backtested with it after training. A
``PortAnaRecord`` in the templates' records is taken off the windows and its config becomes the
``backtest``, as Qlib's rolling (``qlib.contrib.rolling``) runs it on the merged signal only.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qroll.calendar import TimeAdjuster, as_time_adjuster
from qroll.collect.merged import backtest_config
from qroll.config import load_config
from qroll.data.source import open_source
from qroll.data.uri import DEFAULT_SOURCE
from qroll.errors import ConfigError
from qroll.home import data_uri
from qroll.tasks.gen import RollingGen, task_generator

__all__ = ["RunConfig"]

ROLLING_DEFAULTS: dict[str, Any] = {"step": 40, "rtype": RollingGen.ROLL_EX, "trunc_days": "auto"}
ROLLING_KEYS = ("step", "rtype", "trunc_days", "test_key", "train_key")


@dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    """A validated run config. Build it with :meth:`from_file` or :meth:`from_dict`.

    Notes
    -----
    The keys are the YAML file's (DESIGN §9): ``tasks`` (Qlib-shaped templates), ``experiment``,
    ``data``, ``calendar``, ``tracking``, ``pool``, ``workers``, ``rolling``, ``benchmark``,
    ``backtest``. :meth:`from_dict` checks them as :meth:`from_file` does, so a scheduler or a
    notebook builds a run from a dict with the same errors a YAML file gets; hand it to
    :class:`~qroll.experiment.RollingExperiment`.

    Examples
    --------
    >>> config = RunConfig.from_dict({"tasks": [{
    ...     "model": {"class": "LinearModel"},
    ...     "dataset": {"class": "DatasetH", "kwargs": {
    ...         "handler": {"class": "Alpha158", "kwargs": {"instruments": "all",
    ...                     "start_time": "2019-01-01", "end_time": "2020-12-31"}},
    ...         "segments": {"train": ["2019-01-01", "2019-12-31"], "valid": ["2020-01-01", "2020-03-31"],
    ...                      "test": ["2020-04-01", "2020-12-31"]}}}}],
    ...     "data": "synthetic://?instruments=5&start=2019-01-01&end=2020-12-31&seed=0",
    ...     "rolling": {"step": 60}})
    >>> len(config.generate_tasks())  # 2020-04-01..12-31 (196 trading days) in windows of 60
    4
    """

    tasks: list[dict[str, Any]]
    experiment: str = "qroll"
    data: str = DEFAULT_SOURCE
    calendar: Any = "data"
    tracking: str | None = None
    pool: str | None = None
    workers: int = 1
    rolling: dict[str, Any] = field(default_factory=lambda: dict(ROLLING_DEFAULTS))
    benchmark: str | None = None
    backtest: dict[str, Any] | None = field(default_factory=lambda: backtest_config())
    origin: str = "<dict>"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> RunConfig:
        """Read and validate a run config YAML file.

        Raises
        ------
        ConfigFileError
            If the file cannot be read or parsed.
        ConfigError
            If a key is unknown or a value has the wrong shape; the message names the file.
        """
        return cls.from_dict(load_config(path), origin=os.fspath(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], origin: str = "<dict>") -> RunConfig:
        """Validate a run config given as a mapping (see the module docstring for the keys)."""
        known = [f for f in cls.__dataclass_fields__ if f != "origin"]
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
                raise ConfigError(f"{origin}: unknown key {key!r}{hint}")
        tasks = raw.get("tasks")
        if isinstance(tasks, Mapping):
            tasks = [tasks]
        if not isinstance(tasks, list) or not tasks:
            raise ConfigError(f"{origin}: 'tasks' must be a non-empty list of task templates")
        for n, task in enumerate(tasks):
            if not isinstance(task, Mapping) or "model" not in task or "dataset" not in task:
                raise ConfigError(
                    f"{origin}: tasks[{n}] must be a mapping with 'model' and 'dataset' (and "
                    f"optionally 'record'), got {_short(task)}"
                )
        rolling = raw.get("rolling") or {}
        if not isinstance(rolling, Mapping):
            raise ConfigError(f"{origin}: 'rolling' must be a mapping, got {_short(rolling)}")
        for key in rolling:
            if key not in ROLLING_KEYS:
                raise ConfigError(f"{origin}: unknown rolling key {key!r}; known: {', '.join(ROLLING_KEYS)}")
        workers = raw.get("workers", 1)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"{origin}: workers={workers!r} must be a whole number >= 0")
        if workers == 0 and not raw.get("pool"):
            raise ConfigError(f"{origin}: workers=0 (train nothing here, wait for `qroll worker`s) needs a "
                              "pool: set 'pool' to a pool URL or pass --pool")
        # The environment's default is read here, once: the run passes its data down from now on.
        data = raw.get("data") or data_uri() or DEFAULT_SOURCE
        benchmark = raw.get("benchmark")
        if benchmark is not None and not isinstance(benchmark, str):
            raise ConfigError(f"{origin}: benchmark={benchmark!r} must be an instrument code of the data "
                              "(e.g. SH000300); leave it out for the market's equal-weighted mean")
        tasks, lifted = _lift_port_ana([dict(t) for t in tasks], origin)
        if lifted is not None and "backtest" in raw:
            raise ConfigError(f"{origin}: both 'backtest' and a PortAnaRecord in the tasks' records say "
                              "how to backtest the merged signal; keep one")
        chosen = lifted if lifted is not None else raw.get("backtest", "default")
        backtest = backtest_config(chosen, benchmark, where=f"{origin}: backtest")
        return cls(
            tasks=tasks,
            experiment=str(raw.get("experiment") or "qroll"),
            data=str(data),
            calendar=raw.get("calendar") or "data",
            tracking=raw.get("tracking"),
            pool=raw.get("pool"),
            workers=workers,
            rolling={**ROLLING_DEFAULTS, **rolling},
            benchmark=benchmark,
            backtest=backtest,
            origin=origin,
        )

    def time_adjuster(self) -> TimeAdjuster:
        """The calendar the tasks roll over: the data's days, or the configured calendar."""
        if self.calendar == "data":
            return TimeAdjuster(open_source(self.data).calendar)
        return as_time_adjuster(self.calendar)

    def rolling_gen(self) -> RollingGen:
        """The :class:`RollingGen` the ``rolling`` section describes."""
        return RollingGen(**self.rolling, calendar=self.time_adjuster())

    def generate_tasks(self) -> list[dict[str, Any]]:
        """Roll every template: all windows of the first template, then the next."""
        return task_generator(self.tasks, self.rolling_gen())


def _lift_port_ana(tasks: list[dict[str, Any]], origin: str) -> tuple[list[dict[str, Any]], Any]:
    """Take ``PortAnaRecord`` off the templates' records; return them and its config (or None).

    A window's test segment is a quarter while a Qlib config's backtest spans years: the
    portfolio is judged on the merged signal, once, as Qlib's rolling does.
    """
    configs: list[Any] = []
    out = []
    for task in tasks:
        records = task.get("record")
        listed = [records] if isinstance(records, (Mapping, str)) else list(records or [])
        kept = [r for r in listed if _record_name(r) != "PortAnaRecord"]
        for record in listed:
            if _record_name(record) == "PortAnaRecord":
                kwargs = (record.get("kwargs") or {}) if isinstance(record, Mapping) else {}
                configs.append(kwargs.get("config"))
        if len(kept) != len(listed):
            task = {**task, "record": kept}
        out.append(task)
    if not configs:
        return out, None
    if any(c != configs[0] for c in configs):
        raise ConfigError(f"{origin}: the tasks' PortAnaRecords differ; the merged signals are backtested "
                          "with one config: give it as 'backtest' and remove the PortAnaRecords")
    # PortAnaRecord's config=None is Qlib's default block, which names its benchmark.
    config = configs[0] if configs[0] is not None else {"backtest": {"benchmark": "SH000300"}}
    return out, config


def _record_name(record: Any) -> str:
    name = record.get("class", "") if isinstance(record, Mapping) else record
    return str(name).rsplit(".", 1)[-1]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
