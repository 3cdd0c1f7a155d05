"""Qlib's side of the backtest benchmark: one ``backtest_daily`` with Qlib 0.9.7, timed.

Runs only in Qlib's own virtual environment (``make .venv-qlib/.installed`` creates ``.venv-qlib``)::

    .venv-qlib/bin/python benchmarks/qlib_side/backtest.py PROVIDER_DIR PRED_PARQUET START END OUT_DIR

The pred (``(datetime, instrument)`` index, column ``score``) is read before the clock starts. Timed,
each on its own clock: the imports of Qlib's backtest modules, ``qlib.init`` and the
``backtest_daily`` call (TopkDropout topk 50, n_drop 5, close deal price, limit thresholds
``$change >= 9.5`` / ``$change <= -9.5``, open cost 0.0005, close cost 0.0015, min cost 5,
benchmark SH000300), which loads the exchange's quotes and the benchmark itself. Writes
``OUT_DIR/report.parquet`` (Qlib's report_normal), ``OUT_DIR/positions.json`` (amount per
instrument per day) and ``OUT_DIR/timing.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from pathlib import Path

EXCHANGE_KWARGS = {"limit_threshold": ("$change >= 9.5", "$change <= -9.5"), "deal_price": "close",
                   "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("provider")
    parser.add_argument("pred")
    parser.add_argument("start")
    parser.add_argument("end")
    parser.add_argument("out")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Qlib's own FutureWarnings would flood the output

    import pandas as pd

    pred = pd.read_parquet(args.pred)

    t0 = time.perf_counter()
    import qlib
    from qlib.constant import REG_CN
    from qlib.contrib.evaluate import backtest_daily
    from qlib.contrib.strategy import TopkDropoutStrategy

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    qlib.init(provider_uri=args.provider, region=REG_CN)  # Qlib's default: one process per core
    t_init = time.perf_counter() - t0

    t0 = time.perf_counter()
    strategy = TopkDropoutStrategy(signal=pred, topk=50, n_drop=5)
    report, positions = backtest_daily(args.start, args.end, strategy, benchmark="SH000300",
                                       exchange_kwargs=dict(EXCHANGE_KWARGS))
    seconds = time.perf_counter() - t0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.to_parquet(out / "report.parquet")
    (out / "positions.json").write_text(json.dumps(
        {f"{day:%Y-%m-%d}": {k: v["amount"] for k, v in p.position.items() if isinstance(v, dict)}
         for day, p in positions.items()}))
    (out / "timing.json").write_text(json.dumps(
        {"seconds": seconds, "init_seconds": t_init, "import_seconds": t_import,
         "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
         "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
         "days": len(report)}, indent=2))


if __name__ == "__main__":
    main()
