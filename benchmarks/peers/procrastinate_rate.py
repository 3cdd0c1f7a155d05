"""Procrastinate's claim+finish rate for no-op jobs, on a throwaway PostgreSQL database.

    .venv-procrastinate/bin/python benchmarks/peers/procrastinate_rate.py --pg-url URL --jobs 3000 --workers 4

Runs in its own venv (``python3 -m venv .venv-procrastinate && .venv-procrastinate/bin/pip install
'procrastinate==3.*'``): Procrastinate is a peer to measure against, never a qroll dependency.
Creates the database ``<name>_procrastinate`` next to the one in ``--pg-url``, applies
Procrastinate's schema, defers ``--jobs`` no-op jobs in one batch, then starts ``--workers``
processes, each a Procrastinate worker with concurrency 1 that exits when the queue is empty
(``wait=False``). Prints one JSON line: ``{"jobs": N, "workers": W, "seconds": s, "rate": jobs/s}``.
The database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from urllib.parse import urlsplit, urlunsplit

import procrastinate
import psycopg


def _app(url: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=url))

    @app.task(name="noop", queue="bench")
    def noop(i: int) -> None:
        return None

    return app


def _worker(url: str, ready: mp.Barrier) -> None:  # type: ignore[valid-type]
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop", queue="bench")
    def noop(i: int) -> None:
        return None

    with app.open():
        ready.wait()
        app.run_worker(queues=["bench"], wait=False, concurrency=1, listen_notify=False,
                       install_signal_handlers=False, delete_jobs="never")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg-url", required=True)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    parts = urlsplit(args.pg_url)
    dbname = parts.path.lstrip("/") + "_procrastinate"
    url = urlunsplit(parts._replace(path="/" + dbname))
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        app = _app(url)
        with app.open():
            app.schema_manager.apply_schema()
            deferrer = app.tasks["noop"]
            deferrer.batch_defer(*({"i": i} for i in range(args.jobs)))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")  # same courtesy as qroll gets: statistics after a big insert
        ctx = mp.get_context("spawn")
        ready = ctx.Barrier(args.workers + 1)
        procs = [ctx.Process(target=_worker, args=(url, ready)) for _ in range(args.workers)]
        for p in procs:
            p.start()
        ready.wait()
        start = time.perf_counter()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'").fetchone()
        done = int(row[0]) if row else 0
        if done != args.jobs:
            raise SystemExit(f"procrastinate finished {done} of {args.jobs} jobs")
        print(json.dumps({"jobs": done, "workers": args.workers, "seconds": elapsed,
                          "rate": done / elapsed}))
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
