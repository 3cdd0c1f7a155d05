"""Claim+commit throughput of no-op tasks on the task pool, leases and fencing on, against peers.

    python benchmarks/bench_pool.py [--tasks 3000] [--workers 1 4] [--pg-url URL] [--out PATH]

One run measures, for each worker count: qroll on SQLite (WAL); qroll on PostgreSQL, durable
(the default) and with the ``async_claims=1`` opt-in (claims do not wait for the WAL flush,
results do); a bare ``FOR UPDATE SKIP LOCKED`` loop on the same server (claim, then mark done: two
durable statements, no leases, no fencing, no JSON); and Procrastinate 3 (its own venv,
``.venv-procrastinate``, through ``benchmarks/peers/procrastinate_rate.py``; skipped with a note
when that venv is missing). PostgreSQL runs use a throwaway database ``<name>_qroll_bench`` next to
``--pg-url``'s, dropped afterwards. Each worker is a process with its own connection; the rate is
tasks / wall time from the moment all workers are ready. Prints a table with ratios and writes
``benchmarks/results/pool.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from qroll.pool import TaskManager

ROOT = Path(__file__).resolve().parent
PEER_PY = ROOT.parent / ".venv-procrastinate" / "bin" / "python"
BARE_CLAIM = ("UPDATE bare_jobs SET status = 'running' WHERE id = (SELECT id FROM bare_jobs "
              "WHERE status = 'waiting' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id")


def _qroll_worker(url: str, pool: str, ready: Any, out: Any) -> None:
    with TaskManager(pool, url) as tm:
        ready.wait()
        n = 0
        task = tm.fetch_task()
        while task is not None:  # as run_task does: the result and the next claim in one commit
            task = tm.commit_and_fetch(task, None)
            n += 1
    out.put(n)


def _bare_worker(url: str, ready: Any, out: Any) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        ready.wait()
        n = 0
        while (row := conn.execute(BARE_CLAIM).fetchone()) is not None:
            conn.execute("UPDATE bare_jobs SET status = 'done' WHERE id = %s", (row[0],))
            n += 1
    out.put(n)


def _race(n_workers: int, target: Callable[..., None], *args: object) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Barrier(n_workers + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, ready, out)) for _ in range(n_workers)]
    for p in procs:
        p.start()
    ready.wait()
    start = time.perf_counter()
    done = sum(out.get() for _ in procs)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    return done, elapsed


def bench_qroll(url: str, n_tasks: int, n_workers: int) -> float:
    pool = f"bench-{uuid.uuid4().hex[:8]}"
    with TaskManager(pool, url) as tm:
        tm.create_task([{"i": i} for i in range(n_tasks)])
    done, elapsed = _race(n_workers, _qroll_worker, url, pool)
    with TaskManager(pool, url) as tm:
        stat = tm.task_stat()
        tm.remove(all=True)
    assert done == n_tasks and stat == {"done": n_tasks}, (done, stat)
    return n_tasks / elapsed


def bench_bare(url: str, n_tasks: int, n_workers: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bare_jobs")
        conn.execute("CREATE TABLE bare_jobs (id BIGSERIAL PRIMARY KEY, status TEXT NOT NULL)")
        conn.execute("CREATE INDEX ON bare_jobs (id) WHERE status = 'waiting'")
        conn.execute("INSERT INTO bare_jobs (status) SELECT 'waiting' FROM generate_series(1, %s)",
                     (n_tasks,))
        conn.execute("ANALYZE bare_jobs")
    done, elapsed = _race(n_workers, _bare_worker, url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE bare_jobs")
    assert done == n_tasks, done
    return n_tasks / elapsed


def bench_procrastinate(url: str, n_tasks: int, n_workers: int) -> float | None:
    if not PEER_PY.exists():
        print(f"(Procrastinate skipped: {PEER_PY} is missing; see benchmarks/README.md)", file=sys.stderr)
        return None
    proc = subprocess.run(
        [str(PEER_PY), str(ROOT / "peers" / "procrastinate_rate.py"), "--pg-url", url,
         "--jobs", str(n_tasks), "--workers", str(n_workers)],
        capture_output=True, text=True, timeout=600, check=True)
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["rate"])


def _sibling_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--out", default=str(ROOT / "results" / "pool.json"))
    args = parser.parse_args()
    dbname = urlsplit(args.pg_url).path.lstrip("/") + "_qroll_bench"
    pg_url = _sibling_db(args.pg_url, dbname)
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        admin.execute(f'CREATE DATABASE "{dbname}"')
        server = str(admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        sync = str(admin.execute("SHOW synchronous_commit").fetchone()[0])  # type: ignore[index]
    sqlite_url = f"sqlite:///{tempfile.mkdtemp(prefix='qroll-bench-')}/pool.db"
    runs: dict[str, Callable[[int], float | None]] = {
        "qroll sqlite": lambda w: bench_qroll(sqlite_url, args.tasks, w),
        "qroll postgresql": lambda w: bench_qroll(pg_url, args.tasks, w),
        "qroll postgresql async_claims": lambda w: bench_qroll(pg_url + "?async_claims=1", args.tasks, w),
        "bare SKIP LOCKED postgresql": lambda w: bench_bare(pg_url, args.tasks, w),
        "procrastinate postgresql": lambda w: bench_procrastinate(pg_url, args.tasks, w),
    }
    rates: dict[str, dict[int, float | None]] = {name: {} for name in runs}
    try:
        for workers in args.workers:  # interleaved, so that a noisy minute hits every system alike
            for name, run in runs.items():
                rates[name][workers] = run(workers)
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    print(f"{'system':<32}" + "".join(f"{f'{w} worker(s)':>14}" for w in args.workers) + "  (tasks/s)")
    for name, by_w in rates.items():
        print(f"{name:<32}" + "".join(f"{by_w[w] or float('nan'):>14.0f}" for w in args.workers))
    ratios: dict[str, dict[int, float | None]] = {}
    for name in ("qroll postgresql", "qroll postgresql async_claims"):
        for peer in ("procrastinate postgresql", "bare SKIP LOCKED postgresql"):
            key = f"{name} / {peer.split()[0]}"
            ratios[key] = {w: ratio(rates[name][w], rates[peer][w]) for w in args.workers}
            print(f"{key:<48}" + "".join(f"{v if v is not None else float('nan'):>10.2f}"
                                           for v in ratios[key].values()))
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "postgresql": server, "synchronous_commit": sync},
        "tasks": args.tasks,
        "rates_per_s": {k: {str(w): v for w, v in by_w.items()} for k, by_w in rates.items()},
        "ratios": {k: {str(w): v for w, v in by_w.items()} for k, by_w in ratios.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
