"""Recording speed on a fresh MLflow SQLite store (DESIGN §5 targets).

Run from the repository root::

    .venv/bin/python benchmarks/bench_recorder.py [--runs 1000] [--logged 200]

1. **Logging a run**: start a recorder, log 5 params and 5 metrics, save one small pickled
   artifact, end it FINISHED. Target: ~20 ms per run.
2. **Listing**: ``list_recorders()`` over ``--runs`` tagged runs (every run with its tags, params
   and metrics, newest first), then reading every run's tags (no further store call), and a
   listing filtered by tag and status in the store. Target: < 1 s for 1,000 runs.

Results print as a table and are written to ``benchmarks/results/recorder.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from qroll.record import ExpManager

ROOT = Path(__file__).resolve().parents[1]


def _log_one(exp, i: int) -> float:
    start = time.perf_counter()
    tags = {"qroll.task_hash": f"h{i}", "train_status": "begin_task_train"}
    with exp.start_recorder(f"run-{i}", tags=tags) as rec:
        rec.log_params(step=40, rtype="expanding", model="LGBModel", loss="mse", window=i)
        rec.log_metrics(IC=0.05, ICIR=0.4, **{"Rank IC": 0.06, "Rank ICIR": 0.5, "l2": 0.98})
        rec.save_objects(**{"pred.pkl": list(range(100))})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs to list")
    parser.add_argument("--logged", type=int, default=200, help="runs to time the logging of")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="qroll-bench-") as home:
        t0 = time.perf_counter()
        manager = ExpManager(home=home)
        open_s = time.perf_counter() - t0

        exp = manager.get_exp("bench-log")
        _log_one(exp, -1)  # warm-up: first-use imports and caches
        per_run = [_log_one(exp, i) for i in range(args.logged)]

        listing = manager.get_exp("bench-list")
        t0 = time.perf_counter()
        for i in range(args.runs):
            # The same content a trained rolling window carries, minus the artifacts.
            rec = listing.start_recorder(f"w{i}", tags={"qroll.task_hash": f"h{i}", "parity": str(i % 2)})
            rec.log_params(step=40, window=i)
            rec.log_metrics(IC=0.05, ICIR=0.4)
            rec.end("FINISHED" if i % 10 else "FAILED")
        fill_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        recs = listing.list_recorders()
        list_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        hashes = {rec.tags["qroll.task_hash"] for rec in recs}
        tags_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        filtered = listing.list_recorders(status={"FINISHED"}, tags={"parity": "0"})
        filter_s = time.perf_counter() - t0
        assert len(recs) == args.runs and len(hashes) == args.runs
        assert len(filtered) == sum(1 for i in range(args.runs) if i % 2 == 0 and i % 10)

    results = {
        "open_new_store_s": round(open_s, 3),
        "log_run_ms_median": round(statistics.median(per_run) * 1000, 2),
        "log_run_ms_mean": round(statistics.fmean(per_run) * 1000, 2),
        "log_run_ms_p90": round(sorted(per_run)[int(0.9 * len(per_run))] * 1000, 2),
        "runs_listed": args.runs,
        "fill_runs_s": round(fill_s, 2),
        "list_all_s": round(list_s, 3),
        "read_all_tags_s": round(tags_s, 4),
        "list_filtered_s": round(filter_s, 3),
        "filtered_count": len(filtered),
    }
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    out = ROOT / "benchmarks" / "results" / "recorder.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
