"""A tiny Qlib binary data directory for the backtest unit tests (written by hand, float32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DAYS = pd.bdate_range("2020-01-01", periods=10)


def write_qlib_dir(root: Path, fields: dict[str, dict[str, list[float]]],
                   spans: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write ``fields[field][symbol]`` (one value per day of :data:`DAYS`) in Qlib's layout.

    ``spans`` gives each symbol's ``all.txt`` span as day positions (default: every day).
    """
    (root / "calendars").mkdir(parents=True)
    (root / "instruments").mkdir()
    (root / "calendars" / "day.txt").write_text("".join(f"{d:%Y-%m-%d}\n" for d in DAYS))
    symbols = sorted({s for per in fields.values() for s in per})
    spans = spans or {}
    lines = []
    for sym in symbols:
        a, b = spans.get(sym, (0, len(DAYS) - 1))
        lines.append(f"{sym}\t{DAYS[a]:%Y-%m-%d}\t{DAYS[b]:%Y-%m-%d}\n")
    (root / "instruments" / "all.txt").write_text("".join(lines))
    for field, per in fields.items():
        for sym, values in per.items():
            folder = root / "features" / sym.lower()
            folder.mkdir(parents=True, exist_ok=True)
            np.concatenate([[0.0], values]).astype("<f4").tofile(folder / f"{field}.day.bin")
    return root


def flat(value: float) -> list[float]:
    """The same value every day."""
    return [value] * len(DAYS)
