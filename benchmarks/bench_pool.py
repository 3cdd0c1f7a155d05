"""Claim+commit throughput of no-op tasks on the task pool, leases and fencing on.

    python benchmarks/bench_pool.py [--tasks 4000] [--workers 1 4] [--pg-url URL] [--sqlite-dir DIR]

Each worker is a separate process with its own TaskManager, looping fetch_task → commit_task_res
until the pool is empty (each claim also requeues expired leases). The rate is tasks / wall time
from the moment all workers are ready. (Procrastinate's rate on the same server: to be added.)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
import uuid

from qroll.pool import TaskManager


def _worker(url: str, pool: str, ready: mp.Barrier, out: mp.Queue) -> None:  # type: ignore[valid-type]
    with TaskManager(pool, url) as tm:
        ready.wait()
        n = 0
        while (task := tm.fetch_task()) is not None:
            tm.commit_task_res(task, None)
            n += 1
    out.put(n)


def bench(url: str, n_tasks: int, n_workers: int) -> float:
    pool = f"bench-{uuid.uuid4().hex[:8]}"
    with TaskManager(pool, url) as tm:
        tm.create_task([{"i": i} for i in range(n_tasks)])
    ctx = mp.get_context("spawn")
    ready, out = ctx.Barrier(n_workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, pool, ready, out)) for _ in range(n_workers)]
    for p in procs:
        p.start()
    ready.wait()
    start = time.perf_counter()
    done = sum(out.get() for _ in procs)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    with TaskManager(pool, url) as tm:
        stat = tm.task_stat()
        tm.remove(all=True)
    assert done == n_tasks and stat == {"done": n_tasks}, (done, stat)
    return n_tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sqlite-dir", default=None)
    args = parser.parse_args()
    sqlite_dir = args.sqlite_dir or tempfile.mkdtemp(prefix="qroll-bench-")
    for name, url in [("sqlite", f"sqlite:///{sqlite_dir}/pool.db"), ("postgresql", args.pg_url)]:
        for workers in args.workers:
            rate = bench(url, args.tasks, workers)
            print(f"{name:<11} workers={workers}  {rate:8.0f} tasks/s  (claim+commit, {args.tasks} tasks)")


if __name__ == "__main__":
    main()
