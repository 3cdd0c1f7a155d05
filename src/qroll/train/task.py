"""Train one task into one MLflow run: ``task_train``, and its two halves for delay trainers.

A task is Qlib's dict ``{"model": CFG, "dataset": CFG, "record": [CFG | "Name", ...]}``.
Placeholders (``<dataset.kwargs.segments.train.0>``, ``<MODEL>``, ``<DATASET>``) are filled **in a
copy, before** the objects they configure are built; the caller's dict is never modified.

The run's qroll home (its manager's, :attr:`ExpManager.home <qroll.record.ExpManager.home>`) is
where a qroll handler built from the task keeps its feature cache: the handler is built from a
copy of its config with ``home`` set, so the task, its hash and its stored artifacts stay as given.
An as-of day reaches the handler the same way: trained "as of" a day, the handler reads an
:class:`~qroll.data.asof.AsOfSource` that ends on it (nothing after it is visible: the window's
predictions end on it), and the task as recorded is unchanged.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from qroll.config import accepts_keyword, fill_placeholder, init_instance_by_config, resolve_class
from qroll.data.dataset import DatasetH
from qroll.data.handler import DataHandlerLP
from qroll.errors import ConfigError, TaskConfigError
from qroll.home import data_uri
from qroll.models.base import Model
from qroll.record import ExpManager, Recorder
from qroll.record.tags import run_name, task_tags
from qroll.tasks import shape

__all__ = ["begin_task_train", "check_task", "end_task_train", "flatten_task", "task_train"]

log = logging.getLogger("qroll.train")
RECORD_MODULE = "qroll.record.records"


def flatten_task(task: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted-path parameters of a task, as Qlib logs them (``model.class``, ``dataset.kwargs....``).

    >>> flatten_task({"model": {"class": "LGBModel", "kwargs": {"loss": "mse"}}})
    {'model.class': 'LGBModel', 'model.kwargs.loss': 'mse'}
    """
    out: dict[str, str] = {}
    for key, value in task.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_task(value, f"{path}."))
        else:
            out[path] = str(value)
    return out


def _log_task_info(rec: Recorder, task: Mapping[str, Any]) -> None:
    rec.log_params(**flatten_task(task))
    # `task` keeps Qlib's artifact name (a pickle, exact types); task.json is readable anywhere.
    rec.save_objects(task=copy.deepcopy(dict(task)))
    rec.save_json("task.json", task)


def _handler_settings(task: Mapping[str, Any], home: str | os.PathLike[str],
                      data: str | None = None, as_of: Any = None) -> Mapping[str, Any]:
    """``task`` with its qroll handler given ``home`` (and ``data`` as its default source).

    Only a handler config (``{"class": ..., "kwargs": ...}``) naming a
    :class:`~qroll.data.handler.DataHandlerLP` that takes ``home`` is changed, and a ``home`` or
    ``source`` it already has wins. With ``as_of``, the handler's source (its own, else ``data``,
    else the default) is seen as of that day (:class:`~qroll.data.asof.AsOfSource`). The dicts on
    the way to the handler's kwargs are copied, so ``task`` itself is left as it is (and nothing
    else of it is copied).

    Examples
    --------
    >>> task = {"dataset": {"kwargs": {"handler": {"class": "Alpha158", "kwargs": {}}}}}
    >>> _handler_settings(task, "/tmp/h")["dataset"]["kwargs"]["handler"]["kwargs"]
    {'home': '/tmp/h'}
    >>> task["dataset"]["kwargs"]["handler"]["kwargs"]
    {}
    """
    handler = shape.handler_config(task)
    cls = resolve_class(handler) if isinstance(handler, Mapping) else None
    given = handler.get("kwargs") if isinstance(handler, Mapping) else None
    ours = isinstance(cls, type) and issubclass(cls, DataHandlerLP) and accepts_keyword(cls, "home")
    if not isinstance(handler, Mapping) or not ours or not (given is None or isinstance(given, Mapping)):
        # A path or an object (built elsewhere, with its own settings), another handler, or malformed
        # kwargs (which building the handler reports).
        if as_of is not None:
            log.warning("the task's handler %r is not a qroll handler config: it is trained on its data as "
                        "it is, not as of %s", handler, pd.Timestamp(as_of).date())
        return task
    kwargs = {**(given or {})}
    kwargs.setdefault("home", os.fspath(home))
    if data is not None:
        kwargs.setdefault("source", data)
    if as_of is not None:
        from qroll.data.asof import AsOfSource
        from qroll.data.uri import DEFAULT_SOURCE

        kwargs["source"] = AsOfSource(kwargs.get("source") or data_uri() or DEFAULT_SOURCE, as_of)
    dataset = task["dataset"]
    handler = {**handler, "kwargs": kwargs}
    return {**task, "dataset": {**dataset, "kwargs": {**dataset["kwargs"], "handler": handler}}}


def _exe_task(rec: Recorder, task: Mapping[str, Any], home: str | os.PathLike[str],
              data: str | None = None, as_of: Any = None) -> None:
    # Config placeholders (<dataset.kwargs.segments.train.0>) first, so the handler is built with
    # real dates; <MODEL>/<DATASET> stay until those objects exist.
    filled = fill_placeholder(task, {})
    model = init_instance_by_config(filled["model"], accept_types=Model)
    built = _handler_settings(filled, home, data, as_of)
    dataset = init_instance_by_config(built["dataset"], accept_types=DatasetH)
    reweighter = filled.get("reweighter")
    if isinstance(reweighter, (Mapping, str)):
        reweighter = init_instance_by_config(reweighter)
    started = time.perf_counter()
    model.fit(dataset, reweighter=reweighter)
    # The report's per-window table shows both; the UI's chart view compares them across windows.
    fitted: dict[str, float] = {"fit_seconds": time.perf_counter() - started}
    best = getattr(getattr(model, "model", None), "best_iteration", None)
    if isinstance(best, int) and best > 0:  # LightGBM's, when early stopping chose one
        fitted["best_iteration"] = float(best)
    rec.log_metrics(step=None, **fitted)
    for split, curves in (getattr(model, "evals_result", None) or {}).items():
        for metric, values in curves.items():
            rec.log_metric_history(f"{metric}.{split}", list(values))
    rec.save_objects(**{"params.pkl": model})
    rec.save_objects(dataset=filled["dataset"])  # the config only, as Qlib saves it: no data
    records = filled.get("record") or []
    for record in [records] if isinstance(records, (Mapping, str)) else records:
        cfg = fill_placeholder(record, {"<MODEL>": model, "<DATASET>": dataset})
        init_instance_by_config(
            cfg, default_module=RECORD_MODULE, try_kwargs={"model": model, "dataset": dataset}, recorder=rec
        ).generate()


def _check(task: Any) -> None:
    if not isinstance(task, Mapping) or "model" not in task or "dataset" not in task:
        shown = repr(task)[:80]
        raise TaskConfigError(f"a task must be a dict with 'model' and 'dataset', got {shown}")


def check_task(task: Mapping[str, Any]) -> None:
    """Check a task before anything is trained or recorded.

    The task must have ``model`` and ``dataset``; every class it names (model, dataset, handler,
    records) must be found, the model must be a :class:`~qroll.models.base.Model`, a record
    that predicts (``SignalRecord``) must not be given ``model: null`` or ``dataset: null``, and a
    ``PortAnaRecord``'s config must be one it runs (strategy, executor, backtest keys).

    Raises
    ------
    ConfigError, ClassNotFoundError, TaskConfigError
        Naming the class or key at fault.
    """
    from qroll.record.portfolio import PortAnaRecord
    from qroll.record.records import SignalRecord

    _check(task)
    model_cls = resolve_class(task["model"])
    if isinstance(model_cls, type) and not issubclass(model_cls, Model):
        raise ConfigError(
            f"model class {model_cls.__module__}.{model_cls.__qualname__} is not a qroll Model: "
            "use LGBModel, LinearModel or a subclass of qroll.models.Model"
        )
    resolve_class(task["dataset"])
    dataset = task["dataset"]
    handler = dataset.get("kwargs", {}).get("handler") if isinstance(dataset, Mapping) else None
    if isinstance(handler, Mapping):
        resolve_class(handler)
    records = task.get("record") or []
    for record in [records] if isinstance(records, (Mapping, str)) else records:
        record_cls = resolve_class(record, default_module=RECORD_MODULE)
        kwargs = (record.get("kwargs") or {}) if isinstance(record, Mapping) else {}
        if isinstance(record_cls, type) and issubclass(record_cls, PortAnaRecord):
            record_cls(**kwargs)  # its constructor checks the config; no run is needed for that
        if isinstance(record_cls, type) and issubclass(record_cls, SignalRecord):
            for key in ("model", "dataset"):
                if key in kwargs and kwargs[key] is None:
                    raise TaskConfigError(
                        f"record {record_cls.__name__} needs a {key}, but its kwargs give {key}: null; "
                        f"remove it or write {key}: <{key.upper()}>"
                    )


def task_train(
    task_config: Mapping[str, Any],
    experiment_name: str,
    recorder_name: str | None = None,
    exp_manager: ExpManager | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    data: str | None = None,
    as_of: Any = None,
) -> Recorder:
    """Build the task's model and dataset, fit, run its records; return the FINISHED run.

    The run is tagged with the task's hash, model class and test segment (see
    :mod:`qroll.record.tags`), plus ``tags``, from its start, and holds the artifacts ``task``,
    ``task.json``, ``params.pkl``, ``dataset`` and whatever the records write (``pred.pkl``,
    ``label.pkl``, ``sig_analysis/...``). If anything fails, the run ends FAILED and the exception
    propagates.

    The run is named ``recorder_name``, or else after the task (``LGBModel test
    2019-01-01..2019-03-29``, see :func:`~qroll.record.tags.run_name`) rather than Qlib's
    ``mlflow_recorder``, so the MLflow UI tells the windows apart.

    ``home`` (default: the manager's) is where the task's qroll handler keeps its feature cache,
    and ``data`` the source of a handler that names none (default ``$QROLL_DATA`` or the
    synthetic market). ``as_of`` (a date) trains the task on the data as it stood on that day
    (:class:`~qroll.data.asof.AsOfSource`): an online window trained on day d sees nothing after
    d, and its test predictions end on d. None of the three changes the task as recorded, nor its
    hash.
    """
    check_task(task_config)
    manager = exp_manager or ExpManager(home=home)
    exp = manager.get_exp(experiment_name)
    name = recorder_name or run_name(task_config)
    with exp.start_recorder(name, tags={**task_tags(task_config), **(tags or {})}) as rec:
        _log_task_info(rec, task_config)
        _exe_task(rec, task_config, home if home is not None else manager.home, data, as_of)
    return rec


def begin_task_train(
    task_config: Mapping[str, Any],
    experiment_name: str,
    recorder_name: str | None = None,
    exp_manager: ExpManager | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
) -> Recorder:
    """Phase 1 of a delay trainer: record the task only (a FINISHED run holding ``task``).

    The run is named as by :func:`task_train`; ``home`` is the default store's when no
    ``exp_manager`` is given.
    """
    _check(task_config)
    exp = (exp_manager or ExpManager(home=home)).get_exp(experiment_name)
    name = recorder_name or run_name(task_config)
    with exp.start_recorder(name, tags={**task_tags(task_config), **(tags or {})}) as rec:
        _log_task_info(rec, task_config)
    return rec


def end_task_train(rec: Recorder, experiment_name: str, exp_manager: ExpManager | None = None, *,
                   home: str | os.PathLike[str] | None = None, data: str | None = None,
                   as_of: Any = None) -> Recorder:
    """Phase 2: fit the task recorded by :func:`begin_task_train`, in the same run.

    ``home``, ``data`` and ``as_of`` as for :func:`task_train`.

    Raises
    ------
    RecordError
        If the run does not exist in the experiment (Qlib silently starts a new one).
    """
    manager = exp_manager or ExpManager(home=home)
    exp = manager.get_exp(experiment_name)
    current = exp.get_recorder(rec.id)
    with current.resume():
        task = current.load_object("task")
        _exe_task(current, task, home if home is not None else manager.home, data, as_of)
    current.refresh()
    return current
