"""Processed frames shared by the handlers of a rolling experiment, within one process.

Each window of a rolling experiment builds its own handler over the same cached features, with
the same start, the same processors and a later end (``handler_mod`` moves only the end). When no
processor needs a fit range and every one is day-local
(:func:`~qroll.data.processors.is_day_local`: a day's output depends only on that day's rows, as
for ``DropnaLabel`` and ``CSZScoreNorm``), processing ``[start, last cached day]`` once and slicing
each window's ``[start, end]`` out of it gives every window the same frames, value for value, as
processing its own range would. The slices are views: the later windows neither process nor copy.
In the 5-window Alpha158 benchmark this saves DropnaLabel's copy and the label's CSZScoreNorm of
about a million rows in each later window (benchmarks/README.md).

The entry lives as long as the cached raw frame it was processed from is the one handlers get
(the identity of that frame is part of the key), and at most :data:`MEMORY_ENTRIES` are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import pandas as pd

__all__ = ["MEMORY_ENTRIES", "forget_processed", "processed_once"]

MEMORY_ENTRIES = 1
"""How many processed (infer, learn) pairs one process keeps: one experiment's handlers share one."""

_memory: OrderedDict[Hashable, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]] = OrderedDict()
_lock = threading.Lock()

Frames = tuple[pd.DataFrame, pd.DataFrame]


def processed_once(full: pd.DataFrame, key: Hashable, process: Callable[[], Frames]) -> Frames:
    """The ``(infer, learn)`` frames ``process()`` builds from ``full``, built once per ``key``.

    Parameters
    ----------
    full : DataFrame
        The cached raw frame the frames come from; held by the entry, so that its identity (part
        of the key) stays valid.
    key : hashable
        Everything else the result depends on: the start, the processors and their arguments, the
        process type.
    process : callable
        Builds the frames on a miss. Two threads missing at once both build; the result is the same.
    """
    mem_key = (id(full), key)
    with _lock:
        hit = _memory.get(mem_key)
        if hit is not None and hit[0] is full:
            _memory.move_to_end(mem_key)
            return hit[1], hit[2]
    infer, learn = process()
    with _lock:
        _memory[mem_key] = (full, infer, learn)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return infer, learn


def forget_processed() -> None:
    """Drop the shared processed frames of this process."""
    with _lock:
        _memory.clear()
