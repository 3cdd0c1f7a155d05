"""The feature cache as the data grows: full computation vs extension by one day, as-of views.

Alpha158 + LABEL0 of the synthetic market (300 instruments, 2008–2020, seed 0) in Qlib's layout:
the market up to its second-to-last day is dumped and computed into a fresh cache; one day is then
appended (``append_qlib_bin``, as Qlib's collectors do) and a *fresh process* loads the entry again,
which extends it by that day. Each phase runs in its own process, timed inside it (wall seconds),
so neither imports nor a warm memory cache count. Then, in one process: an as-of view served from
the entry against computing the view.

Run ``.venv/bin/python benchmarks/bench_cache_growth.py [--out results/cache_growth.json]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARKET = "synthetic://?instruments=300&start=2008-01-01&end=2020-12-31&seed=0"


def phase_load(directory: str, cache: str) -> dict[str, Any]:
    """In this process: load the entry of the directory through the cache, timed by step."""
    import qroll.data.cache_files as files
    import qroll.data.cache_growth as growth
    import qroll.data.features as features
    from qroll.data.cache import FeatureCache
    from qroll.data.features import DEFAULT_LABEL, alpha158_config
    from qroll.data.qlib_bin import QlibBinSource

    steps: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                steps[name] = steps.get(name, 0.0) + time.perf_counter() - t0

        return wrapper

    features.compute_features = timed("compute_features", features.compute_features)
    growth._compute = timed("compute (extension part)", growth._compute)
    files.read_entry = timed("read the stored parts", files.read_entry)
    files.write_entry = timed("write the entry", files.write_entry)
    files.append_part = timed("write the new part", files.append_part)
    store = FeatureCache(cache)
    source = QlibBinSource(directory)
    started = time.perf_counter()
    frame = store.load(source, "all", alpha158_config(), DEFAULT_LABEL)  # writes in the foreground
    seconds = time.perf_counter() - started
    c = store.counters
    return {"seconds": round(seconds, 3), "rows": len(frame),
            "steps": {k: round(v, 3) for k, v in steps.items()},
            "counters": {"full_computes": c.full_computes, "extensions": c.extensions,
                         "days_appended": c.days_appended, "rows_computed": c.rows_computed}}


def phase_view(directory: str, cache: str) -> dict[str, Any]:
    """In this process: the entry read once, then as-of views served from it and computed."""
    from qroll.data.asof import AsOfSource
    from qroll.data.cache import FeatureCache
    from qroll.data.features import DEFAULT_LABEL, alpha158_config, compute_features
    from qroll.data.qlib_bin import QlibBinSource

    store = FeatureCache(cache)
    source = QlibBinSource(directory)
    config = alpha158_config()
    t0 = time.perf_counter()
    store.load(source, "all", config, DEFAULT_LABEL)
    read = time.perf_counter() - t0
    days = source.calendar.days
    served, computed = [], []
    for day in (days[-250], days[-3]):
        view = AsOfSource(source, day)
        t0 = time.perf_counter()
        store.load(view, "all", config, DEFAULT_LABEL)
        served.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        compute_features(view, *config, *DEFAULT_LABEL)
        computed.append(time.perf_counter() - t0)
    return {"entry_read_seconds": round(read, 3), "view_served_seconds": [round(s, 3) for s in served],
            "view_computed_seconds": [round(s, 3) for s in computed]}


def _child(phase: str, directory: Path, cache: Path) -> dict[str, Any]:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.bench_cache_growth import "
            f"phase_{phase}; print(json.dumps(phase_{phase}({str(directory)!r}, {str(cache)!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    from qroll.data.qlib_append import append_qlib_bin
    from qroll.data.qlib_bin import dump_qlib_bin
    from qroll.data.source import open_source

    market = open_source(MARKET)
    days = market.calendar.days
    results: dict[str, Any] = {"market": MARKET, "features": "Alpha158 + LABEL0"}
    with tempfile.TemporaryDirectory() as tmp:
        directory, cache = Path(tmp) / "qlib", Path(tmp) / "cache"
        dump_qlib_bin(market, directory, end=days[-2])
        results["full_compute"] = _child("load", directory, cache)
        append_qlib_bin(market, directory, end=days[-1])
        results["extension_by_one_day"] = _child("load", directory, cache)
        results["unchanged_reload"] = _child("load", directory, cache)
        results["as_of_views"] = _child("view", directory, cache)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
