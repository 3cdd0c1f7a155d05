"""What evaluating the merged signals adds to the demo: the backtests and the report, against training.

Run from the repository root (``make bench-demo-evaluation``)::

    .venv/bin/python benchmarks/bench_demo_evaluation.py [--config src/qroll/examples/synthetic_rolling.yaml]

In a fresh temporary home (no store, no feature cache), the demo config's experiment is run as
``qroll run`` runs it, each stage timed:

1. ``train``: every window trained (features computed on first use, as in a first ``qroll demo``);
2. ``evaluate, no backtest``: each model's windows merged into a run with its IC only
   (``backtest: null``);
3. ``evaluate, with backtest``: the same with the config's portfolio backtest (``PortAnaRecord``
   and the per-window metrics); the difference between 3 and 2 is what the backtests cost;
4. ``report``: the HTML page and its figures.

The target (issue 10): the merged-signal backtests add at most 3 % to ``qroll run``'s wall time on
the demo. Results print as a table and go to ``benchmarks/results/demo_evaluation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config",
                        default=str(ROOT / "src" / "qroll" / "examples" / "synthetic_rolling.yaml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qroll-bench-eval-") as tmp:
        os.environ["QROLL_HOME"] = tmp  # before qroll is imported: the feature cache lives there
        from qroll.collect.merged import evaluate_merged
        from qroll.experiment import RollingExperiment
        from qroll.report import write_report
        from qroll.run_config import RunConfig

        cfg = RunConfig.from_file(args.config)
        cfg = replace(cfg, tracking=f"sqlite:///{tmp}/mlflow.db")
        run = RollingExperiment(cfg)
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        tasks = run.check()
        run.train(tasks=tasks)
        seconds["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluate_merged(run.experiment, None, source=cfg.data)
        seconds["evaluate, no backtest"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluated = run.evaluate()
        seconds["evaluate, with backtest"] = time.perf_counter() - t0
        # Another backtest config than step 2's: every model is evaluated again.
        assert all(e.computed for e in evaluated)
        t0 = time.perf_counter()
        write_report(run.experiment, Path(tmp) / "report")
        seconds["report"] = time.perf_counter() - t0
    backtests = seconds["evaluate, with backtest"] - seconds["evaluate, no backtest"]
    run_time = seconds["train"] + seconds["evaluate, with backtest"] + seconds["report"]
    result = {
        "config": os.path.relpath(args.config, ROOT),
        "windows": len(tasks),
        "cpus": os.cpu_count(),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "backtests_seconds": round(backtests, 3),
        "backtests_share_of_run": round(backtests / run_time, 4),
        "evaluation_share_of_run": round(seconds["evaluate, with backtest"] / run_time, 4),
        "report_share_of_run": round(seconds["report"] / run_time, 4),
        "target_backtests_share": 0.03,
    }
    print(f"{'stage':<26}{'seconds':>10}")
    for stage, value in seconds.items():
        print(f"{stage:<26}{value:>10.2f}")
    print(f"the backtests add {backtests:.2f} s = {result['backtests_share_of_run']:.1%} of the run "
          f"({run_time:.1f} s; target <= 3 %); the report {result['report_share_of_run']:.1%}")
    out = ROOT / "benchmarks" / "results" / "demo_evaluation.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
