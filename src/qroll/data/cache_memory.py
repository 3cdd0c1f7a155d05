"""Frames a feature cache keeps in memory, within a budget in bytes: :class:`FrameMemory`."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qroll.errors import ConfigTypeError, ConfigValueError

__all__ = ["FrameMemory", "held_bytes"]

Frames = tuple[pd.DataFrame, pd.DataFrame]


def check_budget(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"memory_budget={value!r} must be a whole number of bytes, e.g. 2**30 "
                              "for 1 GiB")
    if value < 0:
        raise ConfigValueError(f"memory_budget={value} must be >= 0 bytes (0 keeps nothing in memory)")
    return value


def _arrays(frame: pd.DataFrame) -> list[Any]:
    """The arrays holding a frame's values and row index (pandas' blocks: no copy)."""
    index = frame.index
    if isinstance(index, pd.MultiIndex):
        rows = list(index.codes)
    else:  # a RangeIndex holds no array (its .values would make one)
        rows = [] if isinstance(index, pd.RangeIndex) else [index.values]
    return [block.values for block in frame._mgr.blocks] + rows


def held_bytes(*frames: pd.DataFrame, shared_with: pd.DataFrame | None = None) -> int:
    """Bytes of the values and row codes of ``frames``, each buffer counted once.

    Arrays that may share memory with ``shared_with`` (views of a cached entry) or with an array
    already counted are not counted again: a window's slice of an entry costs nothing.

    Examples
    --------
    >>> frame = pd.DataFrame({"a": np.zeros(1000, dtype=np.float32)})
    >>> held_bytes(frame) >= 4000, held_bytes(frame.iloc[:500], shared_with=frame) < 4000
    (True, True)
    """
    seen = [a for a in _arrays(shared_with) if isinstance(a, np.ndarray)] if shared_with is not None else []
    total = 0
    for frame in frames:
        for array in _arrays(frame):
            if isinstance(array, np.ndarray):
                if any(np.may_share_memory(array, other) for other in seen):
                    continue
                seen.append(array)
            total += int(getattr(array, "nbytes", 0))
    return total


@dataclass(slots=True)
class _Processed:
    key: Hashable
    infer: pd.DataFrame
    learn: pd.DataFrame
    size: int


@dataclass(slots=True)
class _Held:
    """An entry (or an as-of view) kept in memory, and the one processed pair built from it most
    recently; ``fingerprint`` is the source's when it was loaded, ``last_day`` and ``digest`` the
    entry's (None for a view)."""

    frame: pd.DataFrame
    size: int
    fingerprint: str
    last_day: pd.Timestamp | None = None
    digest: str | None = None
    processed: _Processed | None = None

    @property
    def total(self) -> int:
        return self.size + (self.processed.size if self.processed is not None else 0)


class FrameMemory:
    """The frames kept in memory, least recently used first out, within ``budget`` bytes.

    Each is kept under a key with the source fingerprint it is valid for (an entry also with its
    last day and digest), and with the one processed pair built from it most recently.
    Thread-safe.
    """

    def __init__(self, budget: int) -> None:
        self._budget = check_budget(budget)
        self._lock = threading.Lock()
        self._frames: OrderedDict[str, _Held] = OrderedDict()

    @property
    def budget(self) -> int:
        """Bytes kept at most (setting it evicts what no longer fits)."""
        return self._budget

    @budget.setter
    def budget(self, value: int) -> None:
        budget = check_budget(value)
        with self._lock:
            self._budget = budget
            self._evict()

    @property
    def bytes(self) -> int:
        """Bytes of the frames kept now (values and row codes, each buffer once)."""
        with self._lock:
            return sum(held.total for held in self._frames.values())

    def clear(self) -> None:
        """Drop every frame."""
        with self._lock:
            self._frames.clear()

    def _evict(self) -> None:
        """Drop the least recently used frames until the rest fits the budget (lock held)."""
        total = sum(held.total for held in self._frames.values())
        while self._frames and total > self._budget:
            _, held = self._frames.popitem(last=False)
            total -= held.total

    def remember(self, key: str, frame: pd.DataFrame, fingerprint: str, *,
                 last_day: pd.Timestamp | None = None, digest: str | None = None,
                 shared_with: pd.DataFrame | None = None) -> None:
        """Keep ``frame`` (unless it alone exceeds the budget); arrays it shares with
        ``shared_with`` (a view's look-back columns are its entry's memory) do not count."""
        size = held_bytes(frame, shared_with=shared_with)
        with self._lock:
            old = self._frames.pop(key, None)
            if size <= self._budget:
                if old is not None and old.frame is frame:
                    self._frames[key] = old
                else:
                    self._frames[key] = _Held(frame, size, fingerprint, last_day, digest)
            self._evict()

    def recall(self, key: str, fingerprint: str) -> pd.DataFrame | None:
        """The frame kept under ``key`` for a source of this fingerprint, or None."""
        with self._lock:
            held = self._frames.get(key)
            if held is None or held.fingerprint != fingerprint:
                return None
            self._frames.move_to_end(key)
            return held.frame

    def entry(self, key: str, last_day: pd.Timestamp, digest: Any) -> pd.DataFrame | None:
        """The entry kept under ``key`` if it ends on ``last_day`` with that digest (any fingerprint)."""
        with self._lock:
            held = self._frames.get(key)
        if held is None or held.last_day is None or held.last_day != last_day:
            return None
        return held.frame if held.digest == digest else None

    def processed(self, full: pd.DataFrame, key: Hashable, process: Callable[[], Frames]) -> Frames:
        """The ``(infer, learn)`` frames ``process()`` builds from ``full``, kept with it (see
        :meth:`~qroll.data.cache.FeatureCache.processed`)."""
        with self._lock:
            entry = next((k for k, held in self._frames.items() if held.frame is full), None)
            if entry is not None:
                done = self._frames[entry].processed
                if done is not None and done.key == key:
                    self._frames.move_to_end(entry)
                    return done.infer, done.learn
        infer, learn = process()
        if entry is None:
            return infer, learn  # an entry not kept in memory: no later handler gets this very frame
        size = held_bytes(infer, learn, shared_with=full)
        with self._lock:
            held = self._frames.get(entry)
            if held is not None and held.frame is full and held.size + size <= self._budget:
                held.processed = _Processed(key, infer, learn, size)
                self._frames.move_to_end(entry)
                self._evict()
        return infer, learn
