"""The feature cache: features computed once per data and feature set, grown by new days, sliced
by every window and cut at any as-of day.

An entry holds the raw features and labels of one instrument universe over the source's whole
calendar, in Qlib's handler layout. Its key is the sha256 of the source's *lineage* (what stays the
same as the data gains days: a Qlib directory's path, a table file's, a synthetic market's
parameters without its end; :meth:`~qroll.data.source.Source.lineage`), the instruments, the
feature and label expressions with their names, and :data:`CACHE_VERSION`; neither a window's
dates nor the data's last day are in it, so every rolling window of an experiment reads the same
entry, on every day the data grows. A source without a lineage is keyed by its
:meth:`~qroll.data.source.Source.fingerprint` instead (a source that gains days is a new entry).

How :meth:`FeatureCache.load` answers, for a source with a lineage:

- the entry's manifest records the source's fingerprint, its last day D and
  ``fingerprint_until(D)``, the digest of its data up to D. The same fingerprint: the entry as is;
- the source has days after D and the same digest up to D (its past unchanged): the entry is
  **extended** by the new days only, with the warm-up their expressions need, appended as a new
  part without rewriting the stored history (:mod:`~qroll.data.cache_growth` says how, and what it
  costs in precision: at most a few float32 units in the last place);
- another digest (the past changed): the entry is computed again, with a
  :class:`~qroll.errors.FeatureCacheWarning` saying so;
- the source ends before D (an older state of the data): an entry of its own, keyed by its
  fingerprint too.

An :class:`~qroll.data.asof.AsOfSource` is served from its source's entry (extended first if
needed): its rows up to the as-of day, the label columns of its last days computed again on the
view (:func:`~qroll.data.cache_growth.as_of_rows`): exactly what computing the view gives.

The files (:mod:`~qroll.data.cache_files`) are written atomically by one process at a time; a
damaged entry is a miss, rebuilt with a :class:`~qroll.errors.FeatureCacheWarning`. In a process,
one :class:`FeatureCache` per folder (:meth:`FeatureCache.at`) holds that folder's state: the
entries kept in memory and the frames processed from them, within one memory budget in bytes,
the threads writing entries in the background (:meth:`FeatureCache.wait`) and the counters of
what it did (:attr:`FeatureCache.counters`).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from qroll.data import cache_files as files
from qroll.data.cache_files import FORMAT_VERSION, CacheEntry, entry_history, instruments_spec
from qroll.data.cache_growth import Columns, as_of_rows, extend
from qroll.data.cache_memory import FrameMemory, Frames
from qroll.errors import CacheError, FeatureCacheWarning
from qroll.home import qroll_home

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_MEMORY_BUDGET",
    "CacheCounters",
    "CacheEntry",
    "FeatureCache",
    "feature_cache_key",
]

log = logging.getLogger("qroll.data")

CACHE_VERSION = FORMAT_VERSION  # 3: keyed by the source's lineage, grown by parts; 2: equal windows' std 0
"""Bumped whenever the stored layout or the feature computation changes meaning."""

DEFAULT_MEMORY_BUDGET = 5 * 2**29
"""Bytes of frames one :class:`FeatureCache` keeps in memory by default: 2.5 GiB.

An Alpha158 entry of 300 instruments over 13 years (about 951,600 rows of 159 float32 columns and
two int32 row codes, 644 bytes a row) takes 0.61 GB. The default holds three such entries and the
learn frame processed from one of them, which is what this process kept before the budget was in
bytes (three entries, one processed pair).
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class CacheCounters:
    """What a :class:`FeatureCache` did in this process (:attr:`FeatureCache.counters`)."""

    hits: int = 0
    """Loads answered from memory or disk, nothing computed."""
    views: int = 0
    """As-of views cut out of an entry (their label columns' last days computed)."""
    extensions: int = 0
    """Entries extended by new days."""
    days_appended: int = 0
    """Trading days the extensions computed (the new days; the redone label days not counted)."""
    full_computes: int = 0
    """Entries computed over the whole calendar (misses, rebuilds, unextendable expressions)."""
    rebuilds: int = 0
    """Of those, entries that existed and could not be used: damaged, or data whose past changed."""
    rows_computed: int = 0
    """Rows (instrument-days) computed, by all of the above."""


def _key(source: Any, instruments: str | Sequence[str], columns: Columns, *, lineage: str | None,
         fingerprint: str, pinned: bool = False) -> str:
    spec: dict[str, Any] = {
        "version": CACHE_VERSION,
        "instruments": instruments_spec(instruments),
        "feature": [list(columns.feature[0]), list(columns.feature[1])],
        "label": [list(columns.label[0]), list(columns.label[1])],
    }
    if lineage is not None:
        spec["lineage"] = lineage
        if pinned:
            spec["fingerprint"] = fingerprint
    else:
        spec["source"] = getattr(source, "uri", type(source).__name__)
        spec["fingerprint"] = fingerprint
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def feature_cache_key(
    source: Any,
    instruments: str | Sequence[str],
    feature: tuple[Sequence[str], Sequence[str]],
    label: tuple[Sequence[str], Sequence[str]],
) -> str:
    """The cache key: sha256 of the source's lineage (else its URI and fingerprint), the instruments
    and the expressions, never the dates.

    Examples
    --------
    >>> class S:
    ...     uri = "synthetic://?seed=0"
    ...     def fingerprint(self): return "abc"
    >>> k = feature_cache_key(S(), "all", (["$close"], ["C"]), ([], []))
    >>> len(k), k == feature_cache_key(S(), "all", (["$close"], ["C"]), ([], []))
    (64, True)
    >>> from qroll.data.synthetic import SyntheticMarket
    >>> early = SyntheticMarket(instruments=3, end="2019-12-31", seed=1)
    >>> later = SyntheticMarket(instruments=3, end="2020-12-31", seed=1)
    >>> cols = (["$close"], ["C"]), ([], [])
    >>> feature_cache_key(early, "all", *cols) == feature_cache_key(later, "all", *cols)  # one lineage
    True
    """
    from qroll.data.source import source_lineage

    lineage = source_lineage(source)
    fingerprint = "" if lineage is not None else str(source.fingerprint())
    return _key(source, instruments, Columns.of(feature, label), lineage=lineage, fingerprint=fingerprint)


def _cache_at(folder: Path) -> FeatureCache:
    return FeatureCache.at_folder(folder)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class FeatureCache:
    """The feature cache of one folder: its entries on disk, in memory, and being written.

    Look a cache up with :meth:`at` (one object per folder and process, shared by every handler
    that uses it); the constructor makes a separate one, e.g. with another budget.

    Parameters
    ----------
    folder : path
        The folder of the entries, ``<home>/cache/features`` for :meth:`at`.
    memory_budget : int, default DEFAULT_MEMORY_BUDGET
        Bytes of frames kept in memory: the entries loaded last, the as-of views cut out of them,
        and the frames processed from them (:meth:`processed`). The least recently used go first;
        a frame larger than the whole budget is not kept (each use reads it from disk). 0 keeps
        nothing. Settable.

    Attributes
    ----------
    folder : Path
        The entries' folder, absolute (created by the first write).

    Notes
    -----
    New entries, and the parts that extend them, are written by daemon threads when :meth:`load`
    is asked to (``background=True``, as handlers do). :meth:`wait` joins them and raises
    :class:`~qroll.errors.CacheError` for those that failed; so that a finished training is never
    lost to a cache that could not be written, nothing on the training path calls it, and failures
    nobody waited for are reported as a :class:`~qroll.errors.FeatureCacheWarning` when the
    interpreter exits, after the writes were joined (a command-line run leaves its cache complete).
    """

    _registry: ClassVar[dict[Path, FeatureCache]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()
    _live: ClassVar[weakref.WeakSet[FeatureCache]] = weakref.WeakSet()

    def __init__(self, folder: str | os.PathLike[str], memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self._memory = FrameMemory(memory_budget)
        self._lock = threading.Lock()
        self._writers: list[tuple[str, threading.Thread]] = []
        self._errors: list[tuple[str, BaseException]] = []
        self._counters = CacheCounters()
        FeatureCache._live.add(self)

    @classmethod
    def at(cls, home: str | os.PathLike[str] | None = None) -> FeatureCache:
        """The process's cache of ``<home>/cache/features``, created on first use.

        Parameters
        ----------
        home : path, optional
            The qroll home (see :func:`qroll.home.qroll_home`: default ``$QROLL_HOME`` or
            ``./qroll_runs``).

        Examples
        --------
        >>> FeatureCache.at("/tmp/qroll") is FeatureCache.at("/tmp/qroll/")
        True
        >>> FeatureCache.at("/tmp/qroll").folder == Path("/tmp/qroll").resolve() / "cache" / "features"
        True
        """
        return cls.at_folder(qroll_home(home).resolve() / "cache" / "features")

    @classmethod
    def at_folder(cls, folder: str | os.PathLike[str]) -> FeatureCache:
        """The process's cache of ``folder`` (as :meth:`at`, given the folder itself)."""
        path = Path(folder).expanduser().resolve()
        with cls._registry_lock:
            cache = cls._registry.get(path)
            if cache is None:
                cache = cls._registry[path] = cls(path)
            return cache

    def __reduce__(self) -> tuple[Any, ...]:
        # A handler holding its cache can be pickled or copied: the other side uses its own
        # process's cache of the same folder (memory and threads are not data).
        return _cache_at, (self.folder,)

    def __repr__(self) -> str:
        return (f"FeatureCache({str(self.folder)!r}, memory_budget={self.memory_budget}, "
                f"memory_bytes={self.memory_bytes})")

    # -- counters -------------------------------------------------------------------------------

    @property
    def counters(self) -> CacheCounters:
        """What this cache did in this process since it was made (or :meth:`reset_counters`).

        Examples
        --------
        >>> FeatureCache("/tmp/qroll-counters").counters.extensions
        0
        """
        with self._lock:
            return self._counters

    def reset_counters(self) -> None:
        """Set every counter back to 0."""
        with self._lock:
            self._counters = CacheCounters()

    def _count(self, **added: int) -> None:
        with self._lock:
            c = self._counters
            self._counters = replace(c, **{name: getattr(c, name) + n for name, n in added.items()})

    # -- memory ---------------------------------------------------------------------------------

    @property
    def memory_budget(self) -> int:
        """Bytes of frames kept in memory at most (setting it evicts what no longer fits)."""
        return self._memory.budget

    @memory_budget.setter
    def memory_budget(self, value: int) -> None:
        self._memory.budget = value

    @property
    def memory_bytes(self) -> int:
        """Bytes of the frames kept in memory now (values and row codes, each buffer once)."""
        return self._memory.bytes

    def forget_memory(self) -> None:
        """Drop the frames kept in memory, entries and processed frames (the files stay)."""
        self._memory.clear()

    # -- loading --------------------------------------------------------------------------------

    def load(
        self,
        source: Any,
        instruments: str | Sequence[str],
        feature: tuple[Sequence[str], Sequence[str]],
        label: tuple[Sequence[str], Sequence[str]],
        *,
        background: bool = False,
    ) -> pd.DataFrame:
        """Raw features and labels over the source's whole calendar, from the cache or computed.

        What is read, extended or computed is in the module docstring; :attr:`counters` counts it.

        Parameters
        ----------
        source : Source
            The market data. An :class:`~qroll.data.asof.AsOfSource` is served from its source's
            entry (extended by new days first if needed).
        instruments : str or sequence of str
            A market name or a list of symbols.
        feature, label : (expressions, names)
            Qlib expressions and their column names for the ``feature`` and ``label`` groups.
        background : bool
            Write a new entry (or the part extending one) in a background thread, so the caller
            processes the frame meanwhile (the handler does). :meth:`wait` waits for it; so do
            reading that entry, :meth:`info`, :meth:`clear` and the interpreter's exit.

        Returns
        -------
        DataFrame
            float32, indexed by sorted (``datetime``, ``instrument``), two-level columns. Treat it
            as read-only: it is shared with later calls in this process.

        Raises
        ------
        CacheError
            A new entry could not be written (without ``background``; a background write's
            failure is :meth:`wait`'s to raise).

        Warns
        -----
        FeatureCacheWarning
            An entry is damaged, or the data's past changed since it was computed: it is computed
            again.
        """
        return self._frame_of(source, instruments, Columns.of(feature, label), background)[0]

    def _frame_of(self, source: Any, instruments: str | Sequence[str], columns: Columns,
                  background: bool) -> tuple[pd.DataFrame, str, str]:
        """The frame of ``source``, its key in memory and the fingerprint it is valid for."""
        from qroll.data.asof import AsOfSource

        if isinstance(source, AsOfSource):
            return self._view(source, instruments, columns, background)
        for _ in range(3):
            try:
                return self._entry(source, instruments, columns, background)
            except files.EntryChanged:
                continue  # another process replaced the entry while this one read it: look again
        return self._entry(source, instruments, columns, background)

    def _entry(self, source: Any, instruments: str | Sequence[str], columns: Columns,
               background: bool) -> tuple[pd.DataFrame, str, str]:
        from qroll.data.source import source_fingerprint_until, source_lineage

        fingerprint = str(source.fingerprint())
        lineage = source_lineage(source)
        key = _key(source, instruments, columns, lineage=lineage, fingerprint=fingerprint)
        frame = self._memory.recall(key, fingerprint)
        if frame is not None:
            self._count(hits=1)
            return frame, key, fingerprint
        self._join(key)  # a write of this very entry in flight: read the complete entry
        if lineage is None:
            frame = self._fixed(source, key, instruments, columns, fingerprint, None, background)
            return frame, key, fingerprint
        days = source.calendar.days
        seen = files.stamp(self.folder, key)
        manifest = files.read_manifest(self.folder, key)
        if manifest is None:
            frame = self._compute(source, key, instruments, columns, fingerprint, lineage, seen, background,
                                  rebuilt=seen is not None)
            return frame, key, fingerprint
        if len(days) == 0 or manifest.last_day > days[-1]:
            # The source ends before the entry: an older state of the data, with an entry of its own.
            pinned = _key(source, instruments, columns, lineage=lineage, fingerprint=fingerprint, pinned=True)
            frame = self._memory.recall(pinned, fingerprint)
            if frame is not None:
                self._count(hits=1)
                return frame, pinned, fingerprint
            self._join(pinned)
            frame = self._fixed(source, pinned, instruments, columns, fingerprint, lineage, background)
            return frame, pinned, fingerprint
        data = manifest.data
        if data.get("fingerprint") != fingerprint or manifest.last_day != days[-1]:
            digest = source_fingerprint_until(source, manifest.last_day)
            if digest != data.get("digest"):
                warnings.warn(
                    f"feature cache entry {key[:12]}… was computed from {getattr(source, 'uri', source)!r} "
                    f"as it stood on {manifest.last_day.date()}, and the data up to that day has changed "
                    "since (a value, a stored range, a membership or a day): computing the features again",
                    FeatureCacheWarning,
                    stacklevel=4,
                )
                frame = self._compute(source, key, instruments, columns, fingerprint, lineage, manifest.stamp,
                                      background, rebuilt=True, history=data.get("history"))
                return frame, key, fingerprint
            if manifest.last_day != days[-1]:
                frame = self._extend(source, key, manifest, instruments, columns, fingerprint, background)
                return frame, key, fingerprint
            # The same data under another fingerprint (its files touched, say): remember it, so
            # that the next load need not digest the data (a folder it cannot write to costs that).
            with contextlib.suppress(OSError):
                files.update_manifest(self.folder, key, manifest, {"fingerprint": fingerprint})
        frame = self._memory.entry(key, manifest.last_day, manifest.data.get("digest"))
        if frame is None:
            got = files.read_entry(self.folder, key, manifest=manifest)
            if got is None:  # damaged (warned)
                frame = self._compute(source, key, instruments, columns, fingerprint, lineage, manifest.stamp,
                                      background, rebuilt=True, history=data.get("history"))
                return frame, key, fingerprint
            frame = got[0].frame()
        self._count(hits=1)
        self._memory.remember(key, frame, fingerprint, last_day=manifest.last_day, digest=data.get("digest"))
        return frame, key, fingerprint

    def _fixed(self, source: Any, key: str, instruments: str | Sequence[str], columns: Columns,
               fingerprint: str, lineage: str | None, background: bool) -> pd.DataFrame:
        """An entry keyed by the source's fingerprint: read, or computed and written."""
        seen = files.stamp(self.folder, key)
        got = files.read_entry(self.folder, key)
        if got is None:
            # No manifest is a plain miss; one that could not be read was warned about.
            return self._compute(source, key, instruments, columns, fingerprint, lineage, seen, background,
                                 rebuilt=seen is not None)
        frame = got[0].frame()
        self._count(hits=1)
        self._memory.remember(key, frame, fingerprint)
        return frame

    def _compute(self, source: Any, key: str, instruments: str | Sequence[str], columns: Columns,
                 fingerprint: str, lineage: str | None, seen: tuple[int, int] | None, background: bool, *,
                 rebuilt: bool, history: Any = None) -> pd.DataFrame:
        """Compute the entry over the whole calendar and write it (replacing the one seen)."""
        from qroll.data.features import compute_features
        from qroll.data.source import source_fingerprint_until

        frame = compute_features(source, columns.feature[0], columns.feature[1], columns.label[0],
                                 columns.label[1], instruments)
        self._count(full_computes=1, rebuilds=int(rebuilt), rows_computed=len(frame))
        last = source.calendar.days[-1]
        digest = source_fingerprint_until(source, last) if lineage is not None else None
        past = entry_history(history)
        record = {**past, "computed": past["computed"] + 1}
        meta = self._meta(source, key, instruments, columns, fingerprint, lineage, last, digest, record)
        self._write(key, lambda: files.write_entry(self.folder, key, frame, meta, seen), background)
        self._memory.remember(key, frame, fingerprint, last_day=last, digest=digest)
        return frame

    def _extend(self, source: Any, key: str, manifest: files.Manifest, instruments: str | Sequence[str],
                columns: Columns, fingerprint: str, background: bool) -> pd.DataFrame:
        """Extend the entry of ``manifest`` by the source's days after its last (see the module docstring)."""
        from qroll.data.source import source_fingerprint_until, source_lineage

        lineage = source_lineage(source)
        history = manifest.data.get("history")
        if not columns.bounded:
            log.info("feature cache entry %s… reads %s, whose memory is unbounded: computing it again over "
                     "the whole calendar instead of extending it by the new days", key[:12],
                     ", ".join(columns.unbounded))
            return self._compute(source, key, instruments, columns, fingerprint, lineage, manifest.stamp,
                                 background, rebuilt=False, history=history)

        def load_old(spare: int) -> files.Rows | None:
            got = files.read_entry(self.folder, key, manifest=manifest, spare_rows=spare)
            return None if got is None else got[0]

        held = self._memory.entry(key, manifest.last_day, manifest.data.get("digest"))
        grown = extend(source, columns, instruments, held, load_old, manifest.last_day)
        if grown is None:  # damaged (warned), or rows that do not match the data: compute it all
            return self._compute(source, key, instruments, columns, fingerprint, lineage, manifest.stamp,
                                 background, rebuilt=True, history=history)
        part, first_day, rows = grown
        days = source.calendar.days
        added = len(days) - int(days.searchsorted(manifest.last_day, "right"))
        self._count(extensions=1, days_appended=added, rows_computed=len(part))
        frame = rows.frame()
        last = days[-1]
        digest = source_fingerprint_until(source, last)
        past = entry_history(history)
        record = {**past, "extensions": past["extensions"] + 1,
                  "days_appended": past["days_appended"] + added}
        meta = self._meta(source, key, instruments, columns, fingerprint, lineage, last, digest, record)
        meta.pop("created")  # the entry's, kept
        self._write(key, lambda: files.append_part(self.folder, key, part, first_day, frame, meta, manifest),
                    background)
        self._memory.remember(key, frame, fingerprint, last_day=last, digest=digest)
        return frame

    def _view(self, view: Any, instruments: str | Sequence[str], columns: Columns,
              background: bool) -> tuple[pd.DataFrame, str, str]:
        """An as-of view, cut out of its source's entry."""
        full, key, fingerprint = self._frame_of(view.source, instruments, columns, background)
        view_key = f"{key}@{view.as_of.date()}"
        frame = self._memory.recall(view_key, fingerprint)
        if frame is not None:
            self._count(hits=1)
            return frame, view_key, fingerprint
        got = as_of_rows(full, view, columns, instruments)
        if got is None:  # not expected of an entry of the view's source; computing is always right
            from qroll.data.features import compute_features

            log.warning("feature cache entry %s… does not cover the view %r as expected: computing the view",
                        key[:12], view)
            frame = compute_features(view, columns.feature[0], columns.feature[1], columns.label[0],
                                     columns.label[1], instruments)
            self._count(full_computes=1, rows_computed=len(frame))
        else:
            frame, computed = got
            self._count(views=1, rows_computed=computed)
        self._memory.remember(view_key, frame, fingerprint, shared_with=full)
        return frame, view_key, fingerprint

    def _meta(self, source: Any, key: str, instruments: str | Sequence[str], columns: Columns,
              fingerprint: str, lineage: str | None, last: pd.Timestamp, digest: str | None,
              history: dict[str, int]) -> dict[str, Any]:
        names = [("feature", n) for n in columns.feature[1]] + [("label", n) for n in columns.label[1]]
        return {
            "key": key,
            "version": CACHE_VERSION,
            "columns": [list(c) for c in names],
            "source": getattr(source, "uri", type(source).__name__),
            "lineage": lineage,
            "instruments": instruments_spec(instruments),
            "fingerprint": fingerprint,
            "last_day": last.date().isoformat(),
            "digest": digest,
            "history": history,
            "created": _now(),
            "updated": _now(),
        }

    def processed(self, full: pd.DataFrame, key: Hashable, process: Callable[[], Frames]) -> Frames:
        """The ``(infer, learn)`` frames ``process()`` builds from the entry ``full``, built once.

        Each window of a rolling experiment builds its own handler over the same entry, with the
        same start and processors and a later end. When every processor is day-local (a day's
        output depends only on that day's rows), processing ``[start, last cached day]`` once and
        slicing each window's days out of it gives every window the frames processing its own
        range would, value for value, as views: the later windows neither process nor copy.

        Parameters
        ----------
        full : DataFrame
            An entry :meth:`load` returned. While it is the one this cache keeps, the frames
            processed from it are kept too, within the memory budget (the latest pair per entry).
        key : hashable
            Everything else the frames depend on: the start, the processors and their arguments,
            the process type.
        process : callable
            Builds the frames on a miss. Two threads missing at once both build; the result is
            the same.
        """
        return self._memory.processed(full, key, process)

    # -- background writes ----------------------------------------------------------------------

    def _write(self, key: str, write: Callable[[], Any], background: bool) -> None:
        """Run ``write`` (an entry's files) now, or in a background thread :meth:`wait` joins."""
        if not background:
            try:
                write()
            except OSError as exc:
                raise CacheError(_write_failures(self.folder, [(key, exc)])) from exc
            return

        def job() -> None:
            try:
                write()
            except Exception as exc:  # raised by wait(), in the caller's thread
                with self._lock:
                    self._errors.append((key, exc))

        # A daemon, so that a stuck write cannot keep the interpreter alive; the exit hook below
        # joins it first, so a finished process leaves its entries complete.
        thread = threading.Thread(target=job, name=f"qroll-cache-write-{key[:12]}", daemon=True)
        with self._lock:
            self._writers.append((key, thread))
        thread.start()

    @property
    def writers(self) -> tuple[threading.Thread, ...]:
        """The background writer threads not yet joined (daemons; :meth:`wait` joins them)."""
        with self._lock:
            return tuple(t for _, t in self._writers)

    def _join(self, key: str | None = None) -> None:
        """Wait for the background writes (of entry ``key``, or all); failures stay for :meth:`wait`."""
        with self._lock:
            threads = [t for k, t in self._writers if key is None or k == key]
        for thread in threads:
            thread.join()
        with self._lock:
            self._writers = [(k, t) for k, t in self._writers if t.is_alive()]

    def wait(self, key: str | None = None) -> None:
        """Wait for the background writes (of entry ``key``, or all) to finish.

        Raises
        ------
        CacheError
            For the writes that failed since the last call (each reported once), naming the
            entries and why; the features were computed and used, but a later process computes
            them again. Chained to the first write's exception.
        """
        self._join(key)
        with self._lock:
            failed = [(k, e) for k, e in self._errors if key is None or k == key]
            self._errors = [(k, e) for k, e in self._errors if not (key is None or k == key)]
        if failed:
            raise CacheError(_write_failures(self.folder, failed)) from failed[0][1]


    # -- listing and clearing -------------------------------------------------------------------

    def info(self) -> list[CacheEntry]:
        """The complete entries of the folder, oldest first (background writes are waited for).

        Entries without a readable manifest (a write cut short) or of an older format are not
        listed; :meth:`clear` removes them.
        """
        self._join()
        return files.list_entries(self.folder)

    def clear(self) -> int:
        """Delete every file of the folder's entries, and the frames kept in memory.

        Returns
        -------
        int
            The number of entries (manifests) removed.
        """
        self._join()  # else a write in flight would publish its entry after the clear
        self.forget_memory()
        return files.remove_entries(self.folder)


def _write_failures(folder: Path, failed: list[tuple[str, BaseException]]) -> str:
    which = "; ".join(f"{k[:12]}… ({type(e).__name__}: {e})" for k, e in failed)
    noun = "entry" if len(failed) == 1 else "entries"
    return (f"feature cache {folder}: {len(failed)} {noun} could not be written: {which}; the features "
            "were computed and used, but a later process computes them again: check that the folder "
            "is writable and has space (or give another --home)")


def _finish_writes_at_exit() -> None:
    """Join every cache's writers before the interpreter ends; warn about failures nobody saw."""
    for cache in list(FeatureCache._live):
        try:
            cache.wait()
        except CacheError as exc:
            warnings.warn(str(exc), FeatureCacheWarning, stacklevel=1)


# Runs before daemon threads are stopped: the writes in flight finish.
atexit.register(_finish_writes_at_exit)


