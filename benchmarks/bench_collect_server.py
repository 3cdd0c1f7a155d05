"""Collecting 200 runs through a local MLflow tracking server, against the same runs in a local store.

Run from the repository root (``make bench-collect-server``)::

    .venv/bin/python benchmarks/bench_collect_server.py [--runs 200] [--rows 6000] [--repeat 3]

1. A ``mlflow server`` on a free loopback port (SQLite backend, ``--artifacts-destination`` in a
   temporary folder, artifacts proxied: runs get ``mlflow-artifacts:/`` URIs) and a local SQLite
   store with a local artifact folder each receive ``--runs`` runs, each holding one ``pred.pkl``
   (a score per (day, instrument): ``--rows`` rows, ~20 days × 300 instruments by default).
2. ``RecorderCollector`` (8 threads) collects every run's ``pred.pkl`` from each, keyed by a tag:
   through the server every artifact is downloaded over HTTP; from the local store it is read in
   place. Best of ``--repeat``, with a fresh ``ExpManager`` each time (no warm client).

Results print as a table and are written to ``benchmarks/results/collect_server.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's server helper: start, wait, stop

from mlflow_server import MlflowServer  # noqa: E402

from qroll.collect.collector import RecorderCollector  # noqa: E402
from qroll.record import ExpManager  # noqa: E402


def fill(manager: ExpManager, runs: int, rows: int) -> float:
    """Record ``runs`` runs with one ``pred.pkl`` each; seconds taken."""
    exp = manager.get_exp("collect_bench")
    days = pd.bdate_range("2020-01-01", periods=max(rows // 300, 1))
    index = pd.MultiIndex.from_product([days, [f"SH{600000 + i}" for i in range(300)]],
                                       names=["datetime", "instrument"])[:rows]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(runs):
        with exp.start_recorder(f"run-{i}", tags={"bench.key": str(i)}) as rec:
            pred = pd.DataFrame({"score": rng.standard_normal(len(index))}, index=index)
            rec.save_objects(**{"pred.pkl": pred})
    return time.perf_counter() - t0


def collect(uri: str, runs: int, repeat: int) -> tuple[float, int]:
    """Best seconds of ``repeat`` collections of every run's pred.pkl, and the rows read."""
    best, total = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        manager = ExpManager(uri)
        out = RecorderCollector(manager.get_exp("collect_bench", create=False),
                                rec_key_func=lambda r: r.tags["bench.key"], threads=8)()
        best = min(best, time.perf_counter() - t0)
        assert len(out["pred"]) == runs, len(out["pred"])
        total = sum(len(df) for df in out["pred"].values())
    return best, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rows", type=int, default=6000, help="rows of each pred.pkl")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qroll-bench-") as tmp:
        root = Path(tmp)
        local_uri = f"sqlite:///{root / 'local' / 'mlflow.db'}"
        (root / "local").mkdir()
        local_fill = fill(ExpManager(local_uri), args.runs, args.rows)
        server = MlflowServer(f"sqlite:///{root / 'server.db'}", root / "destination", root / "server.log")
        server.start()
        try:
            server_fill = fill(ExpManager(server.url), args.runs, args.rows)
            server_s, rows = collect(server.url, args.runs, args.repeat)
        finally:
            server.stop()
        local_s, local_rows = collect(local_uri, args.runs, args.repeat)
    assert rows == local_rows
    result = {
        "runs": args.runs, "rows_per_artifact": args.rows, "threads": 8, "repeat": args.repeat,
        "server_collect_s": round(server_s, 3), "local_collect_s": round(local_s, 3),
        "ratio_server_to_local": round(server_s / local_s, 2),
        "server_ms_per_run": round(1000 * server_s / args.runs, 2),
        "server_record_s": round(server_fill, 2), "local_record_s": round(local_fill, 2),
    }
    print(f"{'store':<28}{'record (s)':>12}{'collect (s)':>13}{'ms/run':>9}")
    for name, filled, took in (("tracking server (http)", server_fill, server_s),
                               ("local SQLite store", local_fill, local_s)):
        print(f"{name:<28}{filled:>12.2f}{took:>13.3f}{1000 * took / args.runs:>9.2f}")
    print(f"collecting through the server takes {result['ratio_server_to_local']}x the local time")
    out = ROOT / "benchmarks" / "results" / "collect_server.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
