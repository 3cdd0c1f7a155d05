"""Alpha158 speed and fidelity: qroll against Qlib 0.9.7, side by side in one run.

Run from the repository root (``make bench-alpha158``; needs ``.venv-qlib``, see ``make oracle``)::

    .venv/bin/python benchmarks/bench_alpha158.py [--skip-csi300]

1. **Speed** on the synthetic market (300 instruments, 2008-2020, seed 0), written in Qlib's
   layout so both read the same files: Qlib's ``Alpha158`` handler (what each rolling window
   rebuilds in Qlib), qroll's ``Alpha158`` handler in a fresh process with an empty cache (first
   time), and again in a fresh process with the cache filled. Each runs in its own process, so
   peak memory (``ru_maxrss``) is its own.
2. **Fidelity**: every Alpha158 feature and LABEL0 of qroll against Qlib, value by value, on that
   synthetic market and on ``../shared/data/cn_csi300`` (real A-shares; 40 instruments drawn with
   a fixed seed, 2011-2025).

Results print as a table and are written to ``benchmarks/results/alpha158.json``.
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

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
QLIB_PYTHON = ROOT / ".venv-qlib" / "bin" / "python"
QLIB_SIDE = ROOT / "benchmarks" / "qlib_side" / "alpha158_features.py"
CSI300 = ROOT.parent / "shared" / "data" / "cn_csi300"
SYNTH = "synthetic://?instruments=300&start=2008-01-01&end=2020-12-31&seed=0"


def qroll_handler_run(source: str, home: str) -> dict[str, float]:
    """In this process: build qroll's Alpha158 handler over the whole range, as one window would."""
    os.environ["QROLL_HOME"] = home
    from qroll import Alpha158

    t0 = time.perf_counter()
    handler = Alpha158(instruments="all", start_time="2008-01-01", end_time="2020-12-31", source=source)
    learn = handler.fetch(data_key="learn")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rows": len(learn)}


def in_subprocess(source: str, home: str) -> dict[str, float]:
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); "
        "from bench_alpha158 import qroll_handler_run; "
        f"print(json.dumps(qroll_handler_run({source!r}, {home!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def qlib_run(
    provider: Path, market: str, start: str, end: str, out: Path,
    instruments: list[str] | None = None, handler: bool = False,
) -> dict[str, float]:
    cmd = [str(QLIB_PYTHON), str(QLIB_SIDE), str(provider), market, start, end, str(out)]
    if instruments:
        cmd += ["--instruments", ",".join(instruments)]
    if handler:
        cmd.append("--handler")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads((out / "timing.json").read_text())


def compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, float]:
    """Value-by-value comparison on the rows both have; relative difference |a-b| / max(|a|, |b|)."""
    theirs = theirs[list(ours.columns)]
    common = ours.index.intersection(theirs.index)
    a = ours.loc[common].to_numpy(np.float64)
    b = theirs.loc[common].to_numpy(np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    both = ~nan_a & ~nan_b & np.isfinite(a) & np.isfinite(b)
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1), 0.0)
    return {
        "rows_qroll": len(ours), "rows_qlib": len(theirs), "rows_compared": len(common),
        "values_compared": int(both.sum()), "nan_mismatches": int((nan_a != nan_b).sum()),
        "max_abs_diff": float(diff[both].max(initial=0.0)), "max_rel_diff": float(rel[both].max(initial=0.0)),
        "bit_identical_share": float((a[both] == b[both]).mean()) if both.any() else 1.0,
    }


def qroll_features(provider: Path, instruments: str | list[str], start: str, end: str) -> pd.DataFrame:
    from qroll.data.features import DEFAULT_LABEL, alpha158_config, compute_features
    from qroll.data.qlib_bin import QlibBinSource

    exprs, names = alpha158_config()
    df = compute_features(QlibBinSource(provider), exprs, names, DEFAULT_LABEL[0], DEFAULT_LABEL[1],
                          instruments, start, end)
    df.columns = df.columns.get_level_values(-1)
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-csi300", action="store_true")
    args = parser.parse_args()
    if not QLIB_PYTHON.exists():
        sys.exit(f"Qlib's venv is missing: run `make oracle` first (expected {QLIB_PYTHON})")
    from qroll.data.qlib_bin import dump_qlib_bin
    from qroll.data.source import open_source

    results: dict[str, object] = {"machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="qroll-bench-") as tmp_name:
        tmp = Path(tmp_name)
        provider = tmp / "synth_qlib"
        dump_qlib_bin(open_source(SYNTH), provider)
        source = f"qlib://{provider}"

        qlib_t = qlib_run(provider, "all", "2008-01-01", "2020-12-31", tmp / "qlib_synth", handler=True)
        first = in_subprocess(source, str(tmp / "home"))
        cached = in_subprocess(source, str(tmp / "home"))
        results["speed"] = {"qlib_handler": qlib_t, "qroll_first": first, "qroll_cached": cached,
                            "ratio_qlib_over_qroll_first": qlib_t["seconds"] / first["seconds"],
                            "ratio_qlib_over_qroll_cached": qlib_t["seconds"] / cached["seconds"]}

        theirs = pd.read_parquet(tmp / "qlib_synth" / "features.parquet")
        ours = qroll_features(provider, "all", "2008-01-01", "2020-12-31")
        results["fidelity_synthetic"] = compare(ours, theirs)

        if not args.skip_csi300 and (CSI300 / "calendars" / "day.txt").exists():
            rng = np.random.default_rng(0)
            symbols = sorted(open_source(f"qlib://{CSI300}").instruments("csi300"))
            sample = sorted(rng.choice(symbols, size=40, replace=False).tolist())
            qlib_run(CSI300, "csi300", "2011-01-01", "2025-12-31", tmp / "qlib_csi", instruments=sample)
            theirs = pd.read_parquet(tmp / "qlib_csi" / "features.parquet")
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # cn_csi300 has no $vwap: VWAP0 is NaN on both sides
                ours = qroll_features(CSI300, sample, "2011-01-01", "2025-12-31")
            results["fidelity_csi300"] = {"instruments": sample, **compare(ours, theirs)}

    out = ROOT / "benchmarks" / "results" / "alpha158.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    s = results["speed"]
    print(f"Alpha158 + label, 300 instruments x 2008-2020, {results['machine']}")
    rows = (("Qlib 0.9.7 Alpha158 handler", s["qlib_handler"]), ("qroll, first time", s["qroll_first"]),
            ("qroll, from the cache", s["qroll_cached"]))
    for name, r in rows:
        print(f"  {name:<30} {r['seconds']:7.2f} s   peak RSS {r['peak_rss_mib']:7.0f} MiB")
    print(f"  Qlib / qroll: {s['ratio_qlib_over_qroll_first']:.1f}x (first), "
          f"{s['ratio_qlib_over_qroll_cached']:.1f}x (cached)")
    for key in ("fidelity_synthetic", "fidelity_csi300"):
        if key in results:
            f = results[key]
            print(f"  {key}: {f['values_compared']:,} values, max rel diff {f['max_rel_diff']:.3g}, "
                  f"max abs diff {f['max_abs_diff']:.3g}, NaN mismatches {f['nan_mismatches']}, "
                  f"bit-identical {100 * f['bit_identical_share']:.4f} %")


if __name__ == "__main__":
    main()
