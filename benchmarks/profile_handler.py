"""Phase timings and memory of qroll's Alpha158 handler: first time (empty cache) and cached.

Run from the repository root::

    .venv/bin/python benchmarks/profile_handler.py [--direct] [--cprofile]

The synthetic market (300 instruments, 2008-2020, seed 0) is dumped in Qlib's layout to a
temporary folder (``--direct`` reads the ``synthetic://`` URI instead). Each build runs in a fresh
process, so its peak RSS (``ru_maxrss``) is its own: first with an empty feature cache, then with
the cache the first build wrote. Each prints the wall time of its phases (the feature computation,
the cache write or read, the raw slice, every processor, the fetch), the RSS after each and the
peak. ``--cprofile`` also prints the 25 costliest functions of each build.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SYNTH = "synthetic://?instruments=300&start=2008-01-01&end=2020-12-31&seed=0"


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(source: str, home: str, profile: bool) -> dict[str, Any]:
    """In this process: build Alpha158 over 2008-2020 and fetch the learn data, timing each phase."""
    os.environ["QROLL_HOME"] = home
    import qroll.data.cache_files as cache_files
    import qroll.data.features as features
    from qroll import Alpha158
    from qroll.data.handler import DataHandlerLP

    phases: list[tuple[str, float, float]] = []

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            phases.append((name, time.perf_counter() - t0, _rss_mib()))
            return out

        return wrapper

    features.compute_features = timed("compute_features", features.compute_features)
    cache_files.write_entry = timed("cache write", cache_files.write_entry)
    cache_files.read_entry = timed("cache read", cache_files.read_entry)
    original_run = DataHandlerLP._run

    def run(df: Any, chain: list[Any]) -> Any:
        for proc in chain:
            df = timed(f"  {type(proc).__name__}", lambda d, p=proc: original_run(d, [p]))(df)
        return df

    DataHandlerLP._run = staticmethod(run)  # type: ignore[method-assign]

    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    handler = Alpha158(instruments="all", start_time="2008-01-01", end_time="2020-12-31", source=source)
    handler.setup_data()
    phases.append(("setup_data (total)", time.perf_counter() - t0, _rss_mib()))
    t1 = time.perf_counter()
    handler.process_data()
    phases.append(("process_data (total)", time.perf_counter() - t1, _rss_mib()))
    t2 = time.perf_counter()
    learn = handler.fetch(data_key="learn")
    phases.append(("fetch learn", time.perf_counter() - t2, _rss_mib()))
    total = time.perf_counter() - t0
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return {"seconds": total, "peak_rss_mib": _peak_mib(), "rows": len(learn), "phases": phases}


def in_subprocess(source: str, home: str, profile: bool) -> dict[str, Any]:
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); from profile_handler import child; "
        f"print(json.dumps(child({source!r}, {home!r}, {profile!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    if profile:
        print(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(name: str, result: dict[str, Any]) -> None:
    print(f"\n{name}: {result['seconds']:.2f} s, peak RSS {result['peak_rss_mib']:,.0f} MiB, "
          f"{result['rows']:,} learn rows")
    for phase, seconds, rss in result["phases"]:
        print(f"  {phase:<28} {seconds:7.3f} s   RSS after {rss:7,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direct", action="store_true", help="read synthetic:// without a Qlib dump")
    parser.add_argument("--cprofile", action="store_true", help="print cProfile's costliest functions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qroll-profile-") as tmp_name:
        tmp = Path(tmp_name)
        source = SYNTH
        if not args.direct:
            from qroll.data.qlib_bin import dump_qlib_bin
            from qroll.data.source import open_source

            dump_qlib_bin(open_source(SYNTH), tmp / "synth_qlib")
            source = f"qlib://{tmp / 'synth_qlib'}"
        home = str(tmp / "home")
        report("first time (empty cache)", in_subprocess(source, home, args.cprofile))
        report("cached", in_subprocess(source, home, args.cprofile))


if __name__ == "__main__":
    main()
