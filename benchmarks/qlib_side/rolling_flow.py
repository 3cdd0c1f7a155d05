"""Qlib's side of the rolling benchmark: ``RollingGen`` → ``TrainerR`` → ``RecorderCollector``, Qlib 0.9.7.

Runs only in Qlib's own virtual environment (``make oracle`` creates ``.venv-qlib``)::

    .venv-qlib/bin/python benchmarks/qlib_side/rolling_flow.py SPEC.json OUT_DIR

``SPEC.json`` (written by ``benchmarks/bench_rolling.py``) holds ``provider`` (a Qlib data folder),
``task`` (one Qlib task template), ``rolling`` (``step``, ``rtype``, ``trunc_days``) and
``tracking`` (``"file"``: Qlib's default MLflow file store, or ``"sqlite"``). The flow is Qlib's
``examples/model_rolling/task_manager_rolling.py`` with ``TrainerR`` instead of a task pool.

Writes to ``OUT_DIR``: ``windows.json`` (the generated segments), ``pred.parquet`` and
``label.parquet`` (the merged signal and label of ``RollingGroup``) and ``timing.json``
(phase times, the time inside ``lightgbm.train``, the parameters LightGBM received, peak RSS).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

T_PROCESS = time.perf_counter()


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    # MLflow >= 3.13 refuses a file store unless this is set; Qlib 0.9.7's default store is one.
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"

    # Time every LightGBM fit the same way as on qroll's side: wrap lightgbm.train before Qlib
    # imports it (Qlib's LGBModel looks the function up on the module at call time).
    import lightgbm as lgb

    fits: list[dict[str, object]] = []
    original_train = lgb.train

    def timed_train(params, train_set, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        booster = original_train(params, train_set, *args, **kwargs)
        fits.append({
            "seconds": time.perf_counter() - started,
            "params": _jsonable(dict(params)),
            "num_boost_round": kwargs.get("num_boost_round"),
            "valid_names": _jsonable(kwargs.get("valid_names")),
            "rows": train_set.num_data(),
            "features": train_set.num_feature(),
            "best_iteration": booster.best_iteration,
            "trees": booster.num_trees(),
        })
        return booster

    lgb.train = timed_train

    import qlib
    from qlib.constant import REG_CN
    from qlib.model.ens.group import RollingGroup
    from qlib.model.trainer import TrainerR
    from qlib.workflow import R
    from qlib.workflow.task.collect import RecorderCollector
    from qlib.workflow.task.gen import RollingGen, task_generator

    tmp = out / "store"  # the caller's (temporary) folder: removed with it
    tmp.mkdir(exist_ok=True)
    # An absolute file:/// URI: Qlib/MLflow read "file:/tmp/x" as the relative path "tmp/x".
    uri = f"sqlite:///{tmp}/mlflow.db" if spec["tracking"] == "sqlite" else (tmp / "mlruns").as_uri()
    t_init = time.perf_counter()
    qlib.init(
        provider_uri=spec["provider"], region=REG_CN,  # Qlib's default: one loader process per core
        exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                     "kwargs": {"uri": uri, "default_exp_name": "Experiment"}},
    )
    init_seconds = time.perf_counter() - t_init
    experiment = "rolling_bench"
    rolling = spec["rolling"]

    t0 = time.perf_counter()
    tasks = task_generator(
        tasks=[spec["task"]],
        generators=RollingGen(step=rolling["step"], rtype=rolling["rtype"], trunc_days=rolling["trunc_days"]),
    )
    t1 = time.perf_counter()
    trainer = TrainerR(experiment_name=experiment)
    trainer.end_train(trainer.train(tasks))
    t2 = time.perf_counter()

    def rec_key(recorder):  # type: ignore[no-untyped-def]
        task = recorder.load_object("task")
        return task["model"]["class"], task["dataset"]["kwargs"]["segments"]["test"]

    collected = RecorderCollector(
        experiment=R.get_exp(experiment_name=experiment),
        process_list=RollingGroup(),
        rec_key_func=rec_key,
        artifacts_path={"pred": "pred.pkl", "label": "label.pkl"},
    )()
    t3 = time.perf_counter()

    (pred,) = collected["pred"].values()
    (label,) = collected["label"].values()
    pred.to_parquet(out / "pred.parquet")
    label.to_parquet(out / "label.parquet")
    windows = [
        {**{k: [str(d)[:10] if d is not None else None for d in v]
            for k, v in t["dataset"]["kwargs"]["segments"].items()},
         "handler_end": str(t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"])[:10]}
        for t in tasks
    ]
    (out / "windows.json").write_text(json.dumps(windows, indent=2))
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    (out / "timing.json").write_text(json.dumps({
        "init_seconds": init_seconds,
        "generate_seconds": t1 - t0,
        "train_seconds": t2 - t1,
        "collect_seconds": t3 - t2,
        "total_seconds": t3 - t0,
        "process_seconds": time.perf_counter() - T_PROCESS,
        "fit_seconds": sum(float(f["seconds"]) for f in fits),  # type: ignore[arg-type]
        "fits": fits,
        "peak_rss_mib": self_peak,
        "children_peak_rss_mib": child_peak,
        "tracking": uri.split(":")[0],
    }, indent=2))


if __name__ == "__main__":
    main()
