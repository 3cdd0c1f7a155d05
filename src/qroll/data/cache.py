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
:class:`~qroll.errors.FeatureCacheWarning`. In one process the last few entries stay in memory.
Handlers write a new entry in a background thread while they process the frame
(:func:`wait_for_writes` waits for it).
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
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from qroll.errors import ConfigTypeError, FeatureCacheWarning
from qroll.home import qroll_home

__all__ = [
    "CACHE_VERSION",
    "CacheEntry",
    "cache_clear",
    "cache_dir",
    "cache_info",
    "feature_cache_key",
    "load_features",
    "wait_for_writes",
]

CACHE_VERSION = 2  # 2: a rolling std/var over equal values is exactly 0
"""Bumped whenever the stored layout or the feature computation changes meaning."""

MEMORY_ENTRIES = 3
"""How many entries one process keeps in memory (each Alpha158 × 300 instruments is ~0.6 GB)."""

_memory: OrderedDict[str, pd.DataFrame] = OrderedDict()
_memory_lock = threading.Lock()


@dataclass(frozen=True, kw_only=True, slots=True)
class CacheEntry:
    """One feature-cache entry, as :func:`cache_info` lists it."""

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


def cache_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """The feature-cache folder: ``<home>/cache/features`` (see :func:`qroll.home.qroll_home`)."""
    return qroll_home(home) / "cache" / "features"


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


def load_features(
    source: Any,
    instruments: str | Sequence[str],
    feature: tuple[Sequence[str], Sequence[str]],
    label: tuple[Sequence[str], Sequence[str]],
    home: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
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
    home : path, optional
        The qroll home whose ``cache/features`` holds the entries.
    use_cache : bool
        False computes the features and neither reads nor writes the cache.
    background : bool
        Write a new entry in a background thread, so the caller processes the frame meanwhile
        (the handler does). :func:`wait_for_writes` waits for it; so do reading that entry,
        :func:`cache_info`, :func:`cache_clear` and the interpreter's exit. A failed background
        write is a :class:`~qroll.errors.FeatureCacheWarning`, not an error: the frame is
        returned either way.

    Returns
    -------
    DataFrame
        float32, indexed by sorted (``datetime``, ``instrument``), two-level columns. Treat it as
        read-only: it is shared with later calls in this process.
    """
    from qroll.data.features import compute_features

    def compute() -> pd.DataFrame:
        return compute_features(
            source, list(feature[0]), list(feature[1]), list(label[0]), list(label[1]), instruments
        )

    if not use_cache:
        return compute()
    key = feature_cache_key(source, instruments, feature, label)
    with _memory_lock:
        if key in _memory:
            _memory.move_to_end(key)
            return _memory[key]
    folder = cache_dir(home)
    wait_for_writes(key)
    seen = _stamp(folder, key)
    frame = _read_entry(folder, key)
    if frame is None:
        frame = compute()
        if background:
            _write_in_background(folder, key, frame, source, instruments, seen)
        else:
            _write_entry(folder, key, frame, source, instruments, seen)
    with _memory_lock:
        _memory[key] = frame
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return frame


def forget_memory() -> None:
    """Drop the in-memory entries of this process, and the frames processed from them (the files stay)."""
    from qroll.data.processed import forget_processed

    with _memory_lock:
        _memory.clear()
    forget_processed()


# -- background writes ---------------------------------------------------------------------------


_writers: dict[str, threading.Thread] = {}
_write_errors: list[tuple[str, BaseException]] = []


def _write_in_background(folder: Path, key: str, frame: pd.DataFrame, source: Any, instruments: Any,
                         seen: tuple[int, int] | None) -> None:
    def job() -> None:
        try:
            _write_entry(folder, key, frame, source, instruments, seen)
        except Exception as exc:  # reported by wait_for_writes, in the caller's thread
            with _memory_lock:
                _write_errors.append((key, exc))

    # Not a daemon: the interpreter waits for the entry to be complete before it exits.
    thread = threading.Thread(target=job, name=f"qroll-cache-write-{key[:12]}", daemon=False)
    with _memory_lock:
        _writers[key] = thread
    thread.start()


def wait_for_writes(key: str | None = None) -> None:
    """Wait for the background cache writes (of entry ``key``, or all) to finish.

    Warns with :class:`~qroll.errors.FeatureCacheWarning` for each that failed.
    """
    with _memory_lock:
        threads = [t for k, t in _writers.items() if key is None or k == key]
    for thread in threads:
        thread.join()
    with _memory_lock:
        for k, t in list(_writers.items()):
            if not t.is_alive():
                del _writers[k]
        failed = [(k, e) for k, e in _write_errors if key is None or k == key]
        _write_errors[:] = [(k, e) for k, e in _write_errors if not (key is None or k == key)]
    for k, exc in failed:
        warnings.warn(
            f"feature cache entry {k[:12]}… could not be written ({type(exc).__name__}: {exc}); "
            "the features were computed and are used, but the next process computes them again: "
            "check that the qroll home is writable and has space",
            FeatureCacheWarning,
            stacklevel=2,
        )


atexit.register(wait_for_writes)  # runs after the writer threads are joined: reports failures


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


# -- listing and clearing ------------------------------------------------------------------------


def cache_info(home: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """The complete entries of the feature cache under ``home``, oldest first.

    Entries without a readable manifest (a write cut short) are not listed; :func:`cache_clear`
    removes them.
    """
    wait_for_writes()
    folder = cache_dir(home)
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


def cache_clear(home: str | os.PathLike[str] | None = None) -> int:
    """Delete every file of the feature cache under ``home`` (and this process's memory copies).

    Returns
    -------
    int
        The number of entries (manifests) removed.
    """
    wait_for_writes()  # else a write in flight would publish its entry after the clear
    forget_memory()
    folder = cache_dir(home)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and (path.suffix in (".json", DATA_SUFFIX, ".tmp", ".lock")):
            removed += path.suffix == ".json"
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return removed
