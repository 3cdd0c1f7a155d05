"""A tiny real experiment for the report tests: window runs trained and merged runs evaluated for real.

Two models (a ridge ``LinearModel`` and a small ``LGBModel``) are rolled quarterly over the first
three quarters of 2019 on a synthetic market of 60 instruments and trained into a real SQLite
MLflow store. Each model's merged run is then written by :func:`qroll.collect.merged.evaluate_merged`,
as ``qroll run`` does: ``pred.pkl``, ``label.pkl``, ``sig_analysis/`` and, unless
``backtest=False``, Qlib's ``portfolio_analysis/`` (``TopkDropoutStrategy`` topk 10, n_drop 2,
against the market's equal-weighted mean return).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qroll import ExpManager, RollingGen, TrainerR, task_generator
from qroll.collect.merged import backtest_config, evaluate_merged
from qroll.data.source import open_source
from qroll.record import Experiment

__all__ = ["DATA", "make_report_experiment"]

DATA = "synthetic://?instruments=60&start=2017-01-02&end=2019-12-31&seed=7"
HANDLER = {"class": "DataHandlerLP", "kwargs": {
    "instruments": "all", "start_time": "2017-01-02", "end_time": "2019-12-31", "source": DATA,
    "data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {
        "feature": (["$close/Ref($close, 5) - 1", "$close/Ref($close, 20) - 1",
                     "$volume/Mean($volume, 20)", "Std($close/Ref($close, 1), 10)"],
                    ["RET5", "RET20", "VOL20", "STD10"]),
        "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])}}},
    "learn_processors": ["DropnaLabel"], "infer_processors": [{"class": "Fillna", "kwargs": {}}]}}
SEGMENTS = {"train": ("2017-03-01", "2018-06-29"), "valid": ("2018-07-02", "2018-12-28"),
            "test": ("2019-01-01", "2019-09-30")}
RECORDS = ["SignalRecord", "SigAnaRecord"]
MODELS = [
    {"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 1.0}},
    {"class": "LGBModel", "kwargs": {"loss": "mse", "num_leaves": 8, "learning_rate": 0.1, "num_threads": 2,
                                     "num_boost_round": 30, "early_stopping_rounds": 5, "seed": 0}},
]
STRATEGY = {"class": "TopkDropoutStrategy", "kwargs": {"topk": 10, "n_drop": 2}}


def _templates() -> list[dict[str, Any]]:
    dataset = {"class": "DatasetH", "kwargs": {"handler": HANDLER, "segments": SEGMENTS}}
    return [{"model": model, "dataset": dataset, "record": RECORDS} for model in MODELS]


def make_report_experiment(
    tmp_path: Path, *, name: str = "report", merged: bool = True, backtest: bool = True,
    windows_from: Experiment | None = None,
) -> Experiment:
    """Train (or copy) the window runs into experiment ``name`` and write a merged run per model.

    Parameters
    ----------
    tmp_path : Path
        The folder of the SQLite store (``mlflow.db``) and its artifacts.
    name : str, default "report"
        The experiment.
    merged : bool, default True
        Write the merged runs; False leaves the experiment as an old qroll left it.
    backtest : bool, default True
        Give the merged runs a portfolio backtest (as the run config's ``backtest: null`` does not).
    windows_from : Experiment, optional
        Copy this experiment's window runs (tags, params, metrics, pred/label/task artifacts)
        instead of training again: a degraded variant costs a second, not a training.

    Returns
    -------
    Experiment
    """
    manager = ExpManager(f"sqlite:///{tmp_path}/mlflow.db")
    exp = manager.get_exp(name)
    if windows_from is None:
        gen = RollingGen(step="Q", rtype=RollingGen.ROLL_SD, calendar=open_source(DATA).calendar, trunc_days=3)
        TrainerR(experiment_name=name, exp_manager=manager).train(task_generator(_templates(), gen))
    else:
        for src in windows_from.list_recorders(status={"FINISHED"}):
            if "qroll.kind" in src.tags:
                continue
            with exp.start_recorder(src.name, tags=src.tags) as rec:
                rec.log_params(**src.params)
                rec.log_metrics(**src.metrics)
                rec.save_objects(**{art: src.load_object(art) for art in ("pred.pkl", "label.pkl", "task")})
    if merged:
        evaluate_merged(exp, backtest_config({"strategy": STRATEGY}) if backtest else None, source=DATA)
    return exp
