"""Qlib's side of the Alpha158 benchmark: compute Alpha158 + LABEL0 with Qlib 0.9.7 and time it.

Runs only in Qlib's own virtual environment (``make oracle`` creates ``.venv-qlib``)::

    .venv-qlib/bin/python benchmarks/qlib_side/alpha158_features.py PROVIDER_DIR MARKET START END OUT_DIR \
        [--instruments SYM,SYM,...] [--handler]

Writes ``OUT_DIR/features.parquet`` (index datetime, instrument; one column per feature, LABEL0 last)
and ``OUT_DIR/timing.json`` (seconds and peak RSS). With ``--handler`` it times Qlib's whole
``Alpha158`` data handler (what a rolling window rebuilds) instead of a bare ``D.features`` call.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("provider")
    parser.add_argument("market")
    parser.add_argument("start")
    parser.add_argument("end")
    parser.add_argument("out")
    parser.add_argument("--instruments", default="")
    parser.add_argument("--handler", action="store_true")
    args = parser.parse_args()

    import qlib
    from qlib.constant import REG_CN

    t0 = time.perf_counter()
    qlib.init(provider_uri=args.provider, region=REG_CN)  # Qlib's default: one process per core
    from qlib.contrib.data.handler import Alpha158
    from qlib.contrib.data.loader import Alpha158DL
    from qlib.data import D

    t_init = time.perf_counter() - t0
    instruments = args.instruments.split(",") if args.instruments else D.instruments(args.market)
    t1 = time.perf_counter()
    if args.handler:
        handler = Alpha158(instruments=instruments, start_time=args.start, end_time=args.end,
                           fit_start_time=args.start, fit_end_time=args.end)
        df = handler.fetch(col_set="__all", data_key=handler.DK_R)
        if df.columns.nlevels > 1:
            df.columns = df.columns.get_level_values(-1)
    else:
        fields, names = Alpha158DL.get_feature_config()
        fields = list(fields) + ["Ref($close, -2)/Ref($close, -1) - 1"]
        names = list(names) + ["LABEL0"]
        df = D.features(instruments, fields, start_time=args.start, end_time=args.end)
        df.columns = names
        df = df.swaplevel().sort_index()
    seconds = time.perf_counter() - t1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "features.parquet")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    (out / "timing.json").write_text(json.dumps(
        {"seconds": seconds, "init_seconds": t_init, "peak_rss_mib": peak_mib,
         "worker_peak_rss_mib": worker_mib, "rows": len(df),
         "columns": df.shape[1], "mode": "handler" if args.handler else "D.features"}, indent=2))


if __name__ == "__main__":
    main()
