"""The feature cache: features computed once per data and feature set, sliced by every window.

An entry holds the raw features and labels of one instrument universe over the source's whole
calendar, in Qlib's handler layout. Its key is the sha256 of the source (URI and fingerprint), the
instruments, the feature and label expressions with their names, and :data:`CACHE_VERSION`; a
window's dates are not in it, so every rolling window of an experiment reads the same entry.

On disk, under ``<home>/cache/features/``::

    <key>.bin       int32 row codes (datetime, then instrument), then the float32 values, column
                    after column
    <key>.json      the manifest: key, shape, column names, index levels, byte size and CRC-32

The data file is written to a temporary name, fsynced and renamed; the manifest follows the
same way, so an entry becomes visible only once both are complete. Processes that computed the
same new entry at once write it once: the writer holds ``.<key>.lock`` (an OS lock, freed if its
holder is killed), and the others skip the write. A manifest whose file is
missing, of another size or checksum, or unreadable is a miss: the entry is rebuilt, with a
:class:`~qroll.errors.FeatureCacheWarning`.

In a process, one :class:`FeatureCache` per folder (:meth:`FeatureCache.at`) holds that folder's
state: the entries kept in memory and the frames processed from them, within one memory budget
in bytes, and the threads writing new entries in the background (:meth:`FeatureCache.wait`).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import threading
import uuid
import warnings
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd

from qroll.errors import CacheError, ConfigTypeError, ConfigValueError, FeatureCacheWarning
from qroll.home import qroll_home

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_MEMORY_BUDGET",
    "CacheEntry",
    "FeatureCache",
    "feature_cache_key",
]

CACHE_VERSION = 2  # 2: a rolling std/var over equal values is exactly 0
"""Bumped whenever the stored layout or the feature computation changes meaning."""

DEFAULT_MEMORY_BUDGET = 5 * 2**29
"""Bytes of frames one :class:`FeatureCache` keeps in memory by default: 2.5 GiB.

An Alpha158 entry of 300 instruments over 13 years (about 951,600 rows of 159 float32 columns and
two int32 row codes, 644 bytes a row) takes 0.61 GB. The default holds three such entries and the
learn frame processed from one of them, which is what this process kept before the budget was in
bytes (three entries, one processed pair).
"""

Frames = tuple[pd.DataFrame, pd.DataFrame]


@dataclass(frozen=True, kw_only=True, slots=True)
class CacheEntry:
    """One feature-cache entry, as :meth:`FeatureCache.info` lists it."""

    key: str
    size: int
    """Bytes of the data file."""
    rows: int
    columns: int
    created: str
    """ISO timestamp (UTC) of when the entry was written."""
    source: str
    instruments: Any
    path: Path


def feature_cache_key(
    source: Any,
    instruments: str | Sequence[str],
    feature: tuple[Sequence[str], Sequence[str]],
    label: tuple[Sequence[str], Sequence[str]],
) -> str:
    """The cache key: sha256 of the source, instruments and expressions (never the dates).

    Examples
    --------
    >>> class S:
    ...     uri = "synthetic://?seed=0"
    ...     def fingerprint(self): return "abc"
    >>> k = feature_cache_key(S(), "all", (["$close"], ["C"]), ([], []))
    >>> len(k), k == feature_cache_key(S(), "all", (["$close"], ["C"]), ([], []))
    (64, True)
    """
    spec = {
        "version": CACHE_VERSION,
        "source": getattr(source, "uri", type(source).__name__),
        "fingerprint": source.fingerprint(),
        "instruments": _instruments_spec(instruments),
        "feature": [list(feature[0]), list(feature[1])],
        "label": [list(label[0]), list(label[1])],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _instruments_spec(instruments: str | Sequence[str]) -> str | list[str]:
    return instruments if isinstance(instruments, str) else [str(s) for s in instruments]


def _check_budget(value: Any) -> int:
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


def _held_bytes(*frames: pd.DataFrame, shared_with: pd.DataFrame | None = None) -> int:
    """Bytes of the values and row codes of ``frames``, each buffer counted once.

    Arrays that may share memory with ``shared_with`` (views of a cached entry) or with an array
    already counted are not counted again: a window's slice of an entry costs nothing.

    Examples
    --------
    >>> frame = pd.DataFrame({"a": np.zeros(1000, dtype=np.float32)})
    >>> _held_bytes(frame) >= 4000, _held_bytes(frame.iloc[:500], shared_with=frame) < 4000
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
    """An entry kept in memory, and the one processed pair built from it most recently."""

    frame: pd.DataFrame
    size: int
    processed: _Processed | None = None

    @property
    def total(self) -> int:
        return self.size + (self.processed.size if self.processed is not None else 0)


def _cache_at(folder: Path) -> FeatureCache:
    return FeatureCache.at_folder(folder)


class FeatureCache:
    """The feature cache of one folder: its entries on disk, in memory, and being written.

    Look a cache up with :meth:`at` (one object per folder and process, shared by every handler
    that uses it); the constructor makes a separate one, e.g. with another budget.

    Parameters
    ----------
    folder : path
        The folder of the entries, ``<home>/cache/features`` for :meth:`at`.
    memory_budget : int, default DEFAULT_MEMORY_BUDGET
        Bytes of frames kept in memory: the entries loaded last, and the frames processed from
        them (:meth:`processed`). The least recently used go first; a frame larger than the whole
        budget is not kept (each use reads it from disk). 0 keeps nothing. Settable.

    Attributes
    ----------
    folder : Path
        The entries' folder, absolute (created by the first write).

    Notes
    -----
    New entries are written by daemon threads when :meth:`load` is asked to (``background=True``,
    as handlers do). :meth:`wait` joins them and raises :class:`~qroll.errors.CacheError` for those
    that failed; so that a finished training is never lost to a cache that could not be written,
    nothing on the training path calls it, and failures nobody waited for are reported as a
    :class:`~qroll.errors.FeatureCacheWarning` when the interpreter exits, after the writes were
    joined (a command-line run leaves its cache complete).
    """

    _registry: ClassVar[dict[Path, FeatureCache]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()
    _live: ClassVar[weakref.WeakSet[FeatureCache]] = weakref.WeakSet()

    def __init__(self, folder: str | os.PathLike[str], memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self._budget = _check_budget(memory_budget)
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, _Held] = OrderedDict()
        self._writers: list[tuple[str, threading.Thread]] = []
        self._errors: list[tuple[str, BaseException]] = []
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
        return (f"FeatureCache({str(self.folder)!r}, memory_budget={self._budget}, "
                f"memory_bytes={self.memory_bytes})")

    # -- memory ---------------------------------------------------------------------------------

    @property
    def memory_budget(self) -> int:
        """Bytes of frames kept in memory at most (setting it evicts what no longer fits)."""
        return self._budget

    @memory_budget.setter
    def memory_budget(self, value: int) -> None:
        budget = _check_budget(value)
        with self._lock:
            self._budget = budget
            self._evict()

    @property
    def memory_bytes(self) -> int:
        """Bytes of the frames kept in memory now (values and row codes, each buffer once)."""
        with self._lock:
            return sum(held.total for held in self._memory.values())

    def forget_memory(self) -> None:
        """Drop the frames kept in memory, entries and processed frames (the files stay)."""
        with self._lock:
            self._memory.clear()

    def _evict(self) -> None:
        """Drop the least recently used frames until the rest fits the budget (lock held)."""
        total = sum(held.total for held in self._memory.values())
        while self._memory and total > self._budget:
            _, held = self._memory.popitem(last=False)
            total -= held.total

    def _remember(self, key: str, frame: pd.DataFrame) -> None:
        size = _held_bytes(frame)
        with self._lock:
            old = self._memory.pop(key, None)
            if size <= self._budget:
                self._memory[key] = old if old is not None and old.frame is frame else _Held(frame, size)
            self._evict()

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

        Parameters
        ----------
        source : Source
            The market data.
        instruments : str or sequence of str
            A market name or a list of symbols.
        feature, label : (expressions, names)
            Qlib expressions and their column names for the ``feature`` and ``label`` groups.
        background : bool
            Write a new entry in a background thread, so the caller processes the frame
            meanwhile (the handler does). :meth:`wait` waits for it; so do reading that entry,
            :meth:`info`, :meth:`clear` and the interpreter's exit.

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
        """
        from qroll.data.features import compute_features

        key = feature_cache_key(source, instruments, feature, label)
        with self._lock:
            held = self._memory.get(key)
            if held is not None:
                self._memory.move_to_end(key)
                return held.frame
        self._join(key)  # a write of this very entry in flight: read the complete entry
        seen = _stamp(self.folder, key)
        frame = _read_entry(self.folder, key)
        if frame is None:
            frame = compute_features(source, list(feature[0]), list(feature[1]), list(label[0]),
                                     list(label[1]), instruments)
            if background:
                self._write_in_background(key, frame, source, instruments, seen)
            else:
                try:
                    _write_entry(self.folder, key, frame, source, instruments, seen)
                except OSError as exc:
                    raise CacheError(_write_failures(self.folder, [(key, exc)])) from exc
        self._remember(key, frame)
        return frame

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
        with self._lock:
            entry = next((k for k, held in self._memory.items() if held.frame is full), None)
            if entry is not None:
                done = self._memory[entry].processed
                if done is not None and done.key == key:
                    self._memory.move_to_end(entry)
                    return done.infer, done.learn
        infer, learn = process()
        if entry is None:
            return infer, learn  # an entry not kept in memory: no later handler gets this very frame
        size = _held_bytes(infer, learn, shared_with=full)
        with self._lock:
            held = self._memory.get(entry)
            if held is not None and held.frame is full and held.size + size <= self._budget:
                held.processed = _Processed(key, infer, learn, size)
                self._memory.move_to_end(entry)
                self._evict()
        return infer, learn

    # -- background writes ----------------------------------------------------------------------

    def _write_in_background(self, key: str, frame: pd.DataFrame, source: Any, instruments: Any,
                             seen: tuple[int, int] | None) -> None:
        def job() -> None:
            try:
                _write_entry(self.folder, key, frame, source, instruments, seen)
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

        Entries without a readable manifest (a write cut short) are not listed; :meth:`clear`
        removes them.
        """
        self._join()
        folder = self.folder
        entries = []
        for manifest_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                manifest = json.loads(manifest_path.read_text())
                data_path = folder / f"{manifest_path.stem}{DATA_SUFFIX}"
                entries.append(
                    CacheEntry(
                        key=manifest["key"],
                        size=data_path.stat().st_size,
                        rows=int(manifest["rows"]),
                        columns=len(manifest["columns"]),
                        created=str(manifest["created"]),
                        source=str(manifest.get("source", "")),
                        instruments=manifest.get("instruments"),
                        path=data_path,
                    )
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(entries, key=lambda e: e.created)

    def clear(self) -> int:
        """Delete every file of the folder's entries, and the frames kept in memory.

        Returns
        -------
        int
            The number of entries (manifests) removed.
        """
        self._join()  # else a write in flight would publish its entry after the clear
        self.forget_memory()
        folder = self.folder
        if not folder.is_dir():
            return 0
        removed = 0
        for path in folder.iterdir():
            if path.is_file() and (path.suffix in (".json", DATA_SUFFIX, ".tmp", ".lock")):
                removed += path.suffix == ".json"
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return removed


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


# -- disk format ---------------------------------------------------------------------------------


DATA_SUFFIX = ".bin"


def _write_entry(folder: Path, key: str, frame: pd.DataFrame, source: Any, instruments: Any,
                 seen: tuple[int, int] | None | bool = True) -> None:
    """Write the entry, unless another process is writing it, or wrote it after the caller saw
    the ``seen`` manifest (:func:`_stamp` when it looked; None: there was none; True: write)."""
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    # One writer per entry across processes: workers that computed the same new entry at once
    # would otherwise each write it, and a reader could pair one's manifest with another's data.
    # The lock is the OS's, so a writer killed mid-write frees it.
    lock = FileLock(folder / f".{key}.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return  # another process is writing this very entry
    try:
        now = _stamp(folder, key)
        if seen is not True and now is not None and now != seen:
            return  # written by another process since this one found it missing or damaged
        for stale in folder.glob(f".{key}.*.tmp"):  # a killed writer's: every writer holds the lock
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        _write_files(folder, key, frame, source, instruments)
    finally:
        # Removed while held: whoever locks the file afterwards (or a new one) finds the entry
        # complete and writes nothing; a killed writer's lock file is simply reused.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock.lock_file)
        lock.release()


def _stamp(folder: Path, key: str) -> tuple[int, int] | None:
    """The identity of the entry's manifest file (each write renames a new one into place)."""
    try:
        st = (folder / f"{key}.json").stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _write_files(folder: Path, key: str, frame: pd.DataFrame, source: Any, instruments: Any) -> None:
    index = frame.index
    if not isinstance(index, pd.MultiIndex):
        raise ConfigTypeError(f"the feature frame must be indexed by (datetime, instrument), not by "
                              f"{type(index).__name__} {list(index.names)}; pass a handler's frame")
    columns = [[str(part) for part in col] for col in cast(Any, frame.columns)]
    # Column-major float32 after the two code arrays: reading is one file read, and each column
    # is then a contiguous slice, which is how pandas stores a block (no copy on the way in).
    # Written column by column straight from the frame's blocks: no copy of the values.
    parts = [
        np.asarray(index.codes[0], dtype=np.int32),
        np.asarray(index.codes[1], dtype=np.int32),
        *_float32_columns(frame),
    ]
    size, crc = _atomic_write(folder / f"{key}{DATA_SUFFIX}", *(cast(Any, part).data for part in parts))
    manifest = {
        "key": key,
        "version": CACHE_VERSION,
        "rows": len(frame),
        "columns": columns,
        "datetime": [d.isoformat() for d in index.levels[0]],
        "instrument": [str(s) for s in index.levels[1]],
        "size": size,
        "crc32": crc,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": getattr(source, "uri", type(source).__name__),
        "instruments": _instruments_spec(instruments),
    }
    _atomic_write(folder / f"{key}.json", json.dumps(manifest, indent=1).encode())


def _float32_columns(frame: pd.DataFrame) -> list[np.ndarray]:
    """The frame's columns in order, each a contiguous float32 array; views where the data allow."""
    values = frame.to_numpy() if len(frame._mgr.blocks) == 1 else None  # single block: a view
    if values is None or values.dtype != np.float32 or not values.flags.f_contiguous:
        values = np.asfortranarray(frame.to_numpy(dtype=np.float32))
    # A column of a column-major array is one contiguous run: its buffer is written as is.
    return [values[:, j] for j in range(values.shape[1])]


_WRITE_CHUNK = 16 << 20
"""Bytes checksummed and written at a time: the checksum reads what is about to be written."""


def _atomic_write(path: Path, *chunks: bytes | memoryview) -> tuple[int, int]:
    """Write ``chunks`` to ``path`` through a temporary file, fsynced; returns (bytes, CRC-32)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    size = crc = 0
    try:
        with open(tmp, "wb", buffering=0) as fh:
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                for at in range(0, len(view), _WRITE_CHUNK):
                    piece = view[at : at + _WRITE_CHUNK]
                    crc = zlib.crc32(piece, crc)
                    written = 0
                    while written < len(piece):  # a raw write may be partial
                        written += cast(int, fh.write(piece[written:]))
                size += len(view)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return size, crc


def _damaged(key: str, why: str) -> None:
    warnings.warn(
        f"feature cache entry {key[:12]}… is damaged ({why}); computing the features again",
        FeatureCacheWarning,
        stacklevel=3,
    )


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _damaged(path.stem, f"manifest unreadable: {exc}")
        return None
    if not isinstance(manifest, dict):
        _damaged(path.stem, "manifest is not a JSON object")
        return None
    return manifest


def _read_entry(folder: Path, key: str) -> pd.DataFrame | None:
    manifest = _read_manifest(folder / f"{key}.json")
    if manifest is None:
        return None
    if manifest.get("key") != key or manifest.get("version") != CACHE_VERSION:
        _damaged(key, "manifest names another key or format version")
        return None
    try:
        raw = np.fromfile(folder / f"{key}{DATA_SUFFIX}", dtype=np.uint8)
    except OSError as exc:
        _damaged(key, f"data file unreadable: {exc}")
        return None
    if len(raw) != manifest.get("size") or zlib.crc32(cast(Any, raw).data) != manifest.get("crc32"):
        _damaged(key, f"data file has {len(raw)} bytes and another checksum than its manifest")
        return None
    try:
        n, columns = int(manifest["rows"]), [tuple(c) for c in manifest["columns"]]
        if raw.nbytes != 8 * n + 4 * n * len(columns):
            raise ValueError(f"{raw.nbytes} bytes cannot hold {n} rows x {len(columns)} columns")
        codes = raw[: 8 * n].view(np.int32)
        values = raw[8 * n :].view(np.float32).reshape(len(columns), n)
        index = pd.MultiIndex(
            levels=[pd.DatetimeIndex(manifest["datetime"]), pd.Index(manifest["instrument"], dtype=object)],
            codes=cast(Any, [codes[:n], codes[n:]]),
            names=["datetime", "instrument"],
            verify_integrity=False,
        )
    except Exception as exc:  # any parse failure means a damaged entry, never a crash
        _damaged(key, f"data file cannot be parsed: {type(exc).__name__}: {exc}")
        return None
    return pd.DataFrame(values.T, index=index, columns=pd.MultiIndex.from_tuples(columns), copy=False)
