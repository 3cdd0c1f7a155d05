"""The feature cache's files: an entry is a manifest and the parts it lists, written atomically.

Under ``<home>/cache/features/``::

    <key>.json        the manifest: key, format version, column names, the source it was computed
                      from (URI, lineage, fingerprint, last day and the digest of its data up to
                      that day), and the parts, in day order
    <key>.bin         the first part (``<key>.<n>.bin`` for the parts written later)
    .<key>.lock       held while one process writes the entry

A part holds consecutive trading days of the entry: int32 row codes (datetime, then instrument,
into the part's own levels, listed in the manifest), then the float32 values, column after
column, so that reading a part is one file read straight into the frame's block. A part may
start before the previous one ends: its rows replace the previous part's rows from its first day
on (an extension redoes the last days, whose labels were not known yet). Parts are never changed
once written; the entry grows by a new part and a new manifest, and is now and then compacted
into fewer parts (:func:`append_part`).

Every file is written to a temporary name, fsynced and renamed; the manifest is renamed last, so
an entry (or its new part) becomes visible only once complete. One process writes an entry at a
time (it holds ``.<key>.lock``, an OS lock freed if its holder is killed); another that finds the
lock taken, or the manifest changed since it read it, writes nothing. A reader that finds a part
gone or different checks whether the manifest changed meanwhile (a writer compacted the entry)
and reads the new one; otherwise the entry is damaged: a :class:`~qroll.errors.FeatureCacheWarning`
and a miss.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from qroll.errors import ConfigTypeError, FeatureCacheWarning

__all__ = ["DATA_SUFFIX", "FORMAT_VERSION", "MAX_PARTS", "CacheEntry", "EntryChanged", "Manifest", "Rows",
           "append_part", "entry_history", "list_entries", "read_entry", "read_manifest", "remove_entries",
           "stamp", "update_manifest", "write_entry"]

FORMAT_VERSION = 3
"""The manifest's ``version``: the feature cache's :data:`~qroll.data.cache.CACHE_VERSION`."""

DATA_SUFFIX = ".bin"

MAX_PARTS = 8
"""Parts an entry holds at most: an append beyond merges the parts after the first into one."""

COMPACT_SHARE = 4
"""When the merged later parts hold more than 1/4 of the first part's rows, all parts become one."""

_READ_TRIES = 3  # manifests re-read when a writer replaced the entry while it was being read


@dataclass(frozen=True, kw_only=True, slots=True)
class Manifest:
    """An entry's manifest, as read (``data`` is the JSON object; ``stamp`` the file's identity)."""

    key: str
    data: dict[str, Any]
    stamp: tuple[int, int]

    @property
    def parts(self) -> list[dict[str, Any]]:
        """The parts, in day order: ``file``, ``rows``, ``size``, ``crc32``, ``datetime``, ``instrument``."""
        return list(self.data["parts"])

    @property
    def last_day(self) -> pd.Timestamp:
        """The source's last data day the entry covers."""
        return pd.Timestamp(self.data["last_day"])


def _damaged(key: str, why: str) -> None:
    warnings.warn(
        f"feature cache entry {key[:12]}… is damaged ({why}); computing the features again",
        FeatureCacheWarning,
        stacklevel=4,
    )


def stamp(folder: Path, key: str) -> tuple[int, int] | None:
    """The identity of the entry's manifest file (each write renames a new one into place)."""
    try:
        st = (folder / f"{key}.json").stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def read_manifest(folder: Path, key: str, *, warn: bool = True) -> Manifest | None:
    """The entry's manifest; None when there is none, or (with a warning) when it is unusable."""
    path = folder / f"{key}.json"
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read()
        data = json.loads(raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if warn:
            _damaged(key, f"manifest unreadable: {exc}")
        return None
    why = None
    if not isinstance(data, dict):
        why = "manifest is not a JSON object"
    elif data.get("key") != key or data.get("version") != FORMAT_VERSION:
        why = "manifest names another key or format version"
    elif not isinstance(data.get("parts"), list) or not data["parts"] or "last_day" not in data:
        why = "manifest lists no part"
    if why is not None:
        if warn:
            _damaged(key, why)
        return None
    return Manifest(key=key, data=data, stamp=(st.st_ino, st.st_mtime_ns))


@dataclass(slots=True)
class Rows:
    """An entry's rows in memory, as arrays: the values column after column, the row codes.

    ``block`` may hold more rows than ``rows`` (room for an extension); :meth:`frame` shows the
    first ``rows``.
    """

    block: np.ndarray
    """float32, (columns, capacity): each column's values contiguous."""
    codes0: np.ndarray
    """int32 (capacity,): each row's position in ``dates``."""
    codes1: np.ndarray
    """int32 (capacity,): each row's position in ``symbols``."""
    dates: pd.DatetimeIndex
    symbols: list[str]
    columns: list[tuple[str, str]]
    rows: int

    @classmethod
    def empty(cls, columns: list[tuple[str, str]], dates: pd.DatetimeIndex, symbols: list[str],
              capacity: int) -> Rows:
        """Room for ``capacity`` rows (nothing written yet: ``rows`` is 0)."""
        return cls(block=np.empty((len(columns), capacity), dtype=np.float32),
                   codes0=np.empty(capacity, dtype=np.int32), codes1=np.empty(capacity, dtype=np.int32),
                   dates=dates, symbols=symbols, columns=columns, rows=0)

    def frame(self) -> pd.DataFrame:
        """The rows as the cache's frame: float32, (``datetime``, ``instrument``), no copy of the values."""
        n = self.rows
        index = pd.MultiIndex(
            levels=cast(Any, [self.dates, pd.Index(self.symbols, dtype=object)]),
            codes=cast(Any, [self.codes0[:n], self.codes1[:n]]),
            names=["datetime", "instrument"],
            verify_integrity=False,
        )
        return pd.DataFrame(self.block[:, :n].T, index=index, columns=pd.MultiIndex.from_tuples(self.columns),
                            copy=False)


class _Gone(Exception):
    """A part is missing or differs from its manifest (a writer may have replaced the entry)."""


class EntryChanged(Exception):
    """The entry was replaced by another process while it was read from a given manifest."""


def read_entry(folder: Path, key: str, *, manifest: Manifest | None = None,
               spare_rows: int = 0) -> tuple[Rows, Manifest] | None:
    """The entry's rows (its parts joined) and manifest; None on a miss, with a warning if damaged.

    Each part is read straight into one block (a later part's rows replacing an earlier part's
    from its first day on). ``spare_rows`` leaves room after the rows for an extension.

    Parameters
    ----------
    manifest : Manifest, optional
        Read the parts this manifest lists (one the caller checked): if another process replaced
        the entry meanwhile, :class:`EntryChanged` is raised. By default the current manifest is
        read, and read again if it is replaced during the read.
    """
    for _ in range(_READ_TRIES):
        current = manifest if manifest is not None else read_manifest(folder, key)
        if current is None:
            return None
        try:
            return _assemble(folder, current, spare_rows), current
        except _Gone as exc:
            if stamp(folder, key) != current.stamp:
                if manifest is not None:
                    raise EntryChanged(key) from exc
                continue  # a writer replaced the entry meanwhile: read the new manifest
            _damaged(key, str(exc))
            return None
        except Exception as exc:  # any parse failure means a damaged entry, never a crash
            _damaged(key, f"data file cannot be parsed: {type(exc).__name__}: {exc}")
            return None
    return None


def _assemble(folder: Path, manifest: Manifest, spare_rows: int) -> Rows:
    data, parts = manifest.data, manifest.parts
    columns = [(str(c[0]), str(c[1])) for c in data["columns"]]
    levels = [pd.DatetimeIndex(p["datetime"]) for p in parts]
    # Where each part's days begin in the entry's datetime level; a later part's first day cuts
    # the earlier part's rows from that day on.
    starts = [0]
    for k in range(1, len(parts)):
        prev = levels[k - 1]
        at = int(prev.searchsorted(levels[k][0]))
        if at == 0 or (at < len(prev) and prev[at] != levels[k][0]):
            raise ValueError(f"part {k} starts on {levels[k][0].date()}, not within part {k - 1}'s days")
        starts.append(starts[-1] + at)
    dates = pd.DatetimeIndex(np.concatenate([lv[: starts[k + 1] - starts[k]].values for k, lv in
                                             enumerate(levels[:-1])] + [levels[-1].values]))
    symbols = sorted(set().union(*(p["instrument"] for p in parts)))
    total = int(data["rows"])
    out = Rows.empty(columns, dates, symbols, total + spare_rows)
    at = 0
    for k, part in enumerate(parts):
        n = int(part["rows"])
        if at + n > total:  # a part also writes the rows the next one replaces: they must fit
            raise _Gone(f"part {part['file']} has {n} rows past the entry's {total}")
        mine0, mine1 = _read_part(folder / part["file"], part, n, out.block, at)
        kept = n if k == len(parts) - 1 else int(np.searchsorted(mine0, starts[k + 1] - starts[k], "left"))
        out.codes0[at : at + kept] = mine0[:kept] + starts[k]
        remap = np.searchsorted(symbols, part["instrument"]).astype(np.int32)
        out.codes1[at : at + kept] = remap[mine1[:kept]]
        at += kept
    if at != total:
        raise _Gone(f"the parts hold {at} rows, the manifest {total}")
    out.rows = total
    return out


def _read_part(path: Path, part: dict[str, Any], n: int, block: np.ndarray,
               at: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a part's codes, and its values into ``block[:, at:at + n]``; check size and CRC-32."""
    n_cols = block.shape[0]
    want = 8 * n + 4 * n * n_cols
    codes = np.empty(2 * n, dtype=np.int32)
    try:
        with open(path, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size != part.get("size") or size != want:
                raise _Gone(f"data file {path.name} has {size} bytes, its manifest says {part.get('size')} "
                            f"and {n} rows x {n_cols} columns need {want}")
            crc = _read_into(fh, memoryview(cast(Any, codes)).cast("B"), 0)
            for j in range(n_cols):
                crc = _read_into(fh, memoryview(cast(Any, block[j, at : at + n])).cast("B"), crc)
    except FileNotFoundError:
        raise _Gone(f"data file {path.name} is missing") from None
    if crc != part.get("crc32"):
        raise _Gone(f"data file {path.name} has another checksum than its manifest")
    return codes[:n], codes[n:]


def _read_into(fh: Any, view: memoryview, crc: int) -> int:
    done = 0
    while done < len(view):
        got = fh.readinto(view[done:])
        if not got:
            raise _Gone(f"data file {os.path.basename(fh.name)} ends early")
        done += got
    return zlib.crc32(view, crc)


# -- writing -------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _part_name(key: str, number: int) -> str:
    return f"{key}{DATA_SUFFIX}" if number == 0 else f"{key}.{number}{DATA_SUFFIX}"


def write_entry(folder: Path, key: str, frame: pd.DataFrame, meta: dict[str, Any],
                seen: tuple[int, int] | None | bool = True) -> bool:
    """Write ``frame`` as the whole entry (one part), replacing any other; True if written.

    Nothing is written when another process holds the entry's lock, or when the manifest is no
    longer the one the caller saw (``seen``: :func:`stamp` when it looked, None when there was none,
    True to write whatever is there).
    """

    def write(current: Manifest | None) -> dict[str, Any]:
        number = int(current.data.get("next_part", 1)) if current is not None else 0
        first = frame.index.levels[0][0] if isinstance(frame.index, pd.MultiIndex) else None
        part = _write_part(folder, _part_name(key, number), frame, first)
        return {**meta, "parts": [part], "rows": len(frame), "next_part": number + 1, "created": _now()}

    return _locked_write(folder, key, seen, write)


def append_part(folder: Path, key: str, part_frame: pd.DataFrame, first_day: pd.Timestamp,
                whole: pd.DataFrame, meta: dict[str, Any], base: Manifest) -> bool:
    """Add ``part_frame`` (the entry's days from ``first_day`` on) to the entry of manifest ``base``.

    ``whole`` is the entry's frame with the part joined (what :func:`read_entry` will give): an
    entry already holding :data:`MAX_PARTS` parts is compacted from it, the later parts merged
    into one (or, once they hold over 1/:data:`COMPACT_SHARE` of the first part's rows, every part
    into one). The stored parts are never changed. True if written; nothing is written if another
    process holds the lock or the manifest is no longer ``base``.
    """

    def write(current: Manifest | None) -> dict[str, Any] | None:
        if current is None:
            return None  # the manifest became unreadable since it was read: nothing to add to
        parts = current.parts
        number = int(current.data.get("next_part", len(parts)))
        if len(parts) < MAX_PARTS:
            parts = [*parts, _write_part(folder, _part_name(key, number), part_frame, first_day)]
        else:
            second = pd.Timestamp(parts[1]["datetime"][0])
            index = cast(pd.MultiIndex, whole.index)
            cut = int(index.levels[0].searchsorted(second))
            first_rows = int(np.searchsorted(np.asarray(index.codes[0]), cut, "left"))
            if (len(whole) - first_rows) * COMPACT_SHARE > first_rows:
                parts = [_write_part(folder, _part_name(key, number), whole, index.levels[0][0])]
            else:
                later = whole.iloc[first_rows:]
                parts = [parts[0], _write_part(folder, _part_name(key, number), later, second)]
        return {**current.data, **meta, "parts": parts, "rows": len(whole), "next_part": number + 1}

    return _locked_write(folder, key, base.stamp, write)


def update_manifest(folder: Path, key: str, base: Manifest, updates: dict[str, Any]) -> bool:
    """Rewrite the manifest ``base`` with ``updates`` (its parts unchanged); True if written."""
    return _locked_write(folder, key, base.stamp,
                         lambda current: None if current is None else {**current.data, **updates})


def _locked_write(folder: Path, key: str, seen: tuple[int, int] | None | bool,
                  write: Callable[[Manifest | None], dict[str, Any] | None]) -> bool:
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    # One writer per entry across processes: workers that computed the same entry at once would
    # otherwise each write it. The lock is the OS's, so a writer killed mid-write frees it.
    lock = FileLock(folder / f".{key}.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False  # another process is writing this very entry
    try:
        now = stamp(folder, key)
        if seen is not True and now != seen:
            return False  # written by another process since this one looked
        for stale in folder.glob(f".{key}*.tmp"):  # a killed writer's: every writer holds the lock
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        current = read_manifest(folder, key, warn=False) if now is not None else None
        data = write(current)
        if data is None:
            return False
        _atomic_write(folder / f"{key}.json", json.dumps(data, indent=1).encode())
        listed = {part["file"] for part in data["parts"]}
        # Parts no manifest lists any more (replaced, compacted, or left by a killed writer); a
        # reader still holding the old manifest reads the new one instead.
        for path in [folder / f"{key}{DATA_SUFFIX}", *folder.glob(f"{key}.*{DATA_SUFFIX}")]:
            if path.name not in listed and path.is_file():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return True
    finally:
        # Removed while held: whoever locks the file afterwards (or a new one) finds the entry
        # complete and writes nothing; a killed writer's lock file is simply reused.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock.lock_file)
        lock.release()


def _write_part(folder: Path, name: str, frame: pd.DataFrame, first_day: Any) -> dict[str, Any]:
    """Write a part holding ``frame``'s rows, its days from ``first_day`` on; its manifest record."""
    index = frame.index
    if not isinstance(index, pd.MultiIndex):
        raise ConfigTypeError(f"the feature frame must be indexed by (datetime, instrument), not by "
                              f"{type(index).__name__} {list(index.names)}; pass a handler's frame")
    dates = index.levels[0]
    # The part's own datetime level: every calendar day from its first on (rows or not), as the
    # entry's level holds every calendar day.
    first = int(dates.searchsorted(pd.Timestamp(first_day)))
    codes0 = np.asarray(index.codes[0], dtype=np.int32)
    if len(codes0) and int(codes0[0]) < first:
        raise ValueError(f"a part from {pd.Timestamp(first_day).date()} holds rows of earlier days")
    parts: list[Any] = [codes0 - first if first else codes0, np.asarray(index.codes[1], dtype=np.int32),
                        *_float32_columns(frame)]
    size, crc = _atomic_write(folder / name, *(cast(Any, p).data for p in parts))
    return {
        "file": name,
        "rows": len(frame),
        "size": size,
        "crc32": crc,
        "datetime": [d.isoformat() for d in dates[first:]],
        "instrument": [str(s) for s in index.levels[1]],
    }


def _float32_columns(frame: pd.DataFrame) -> list[np.ndarray]:
    """The frame's columns in order, each a contiguous float32 array; views where the data allow."""
    values = frame.to_numpy() if len(frame._mgr.blocks) == 1 else None  # single block: a view
    if values is None or values.dtype != np.float32 or (len(values) > 1 and values.strides[0] != 4):
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


def instruments_spec(instruments: str | Sequence[str]) -> str | list[str]:
    """The instruments as a manifest and a key record them: a market name or a list of symbols."""
    return instruments if isinstance(instruments, str) else [str(s) for s in instruments]


# -- listing ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class CacheEntry:
    """One feature-cache entry, as :meth:`FeatureCache.info` lists it."""

    key: str
    size: int
    """Bytes of the data files (all parts)."""
    rows: int
    columns: int
    created: str
    """ISO timestamp (UTC) of when the entry was first written (computed over the whole calendar)."""
    source: str
    instruments: Any
    path: Path
    """The first part's data file."""
    parts: int = 1
    """Data files: the first, and one per extension not yet compacted."""
    last_day: str = ""
    """The source's last day the entry covers (``YYYY-MM-DD``)."""
    computed: int = 1
    """Times the entry was computed over the whole calendar (rebuilds included), by any process."""
    extensions: int = 0
    """Times it was extended by new days since, by any process."""
    days_appended: int = 0
    """Trading days those extensions added."""


def list_entries(folder: Path) -> list[CacheEntry]:
    """The complete entries of ``folder``, oldest first (see :meth:`~qroll.data.cache.FeatureCache.info`)."""
    entries = []
    for manifest_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            manifest = json.loads(manifest_path.read_text())
            parts = manifest["parts"]
            done = entry_history(manifest.get("history"))
            entries.append(
                CacheEntry(
                    key=manifest["key"],
                    size=sum((folder / p["file"]).stat().st_size for p in parts),
                    rows=int(manifest["rows"]),
                    columns=len(manifest["columns"]),
                    created=str(manifest["created"]),
                    source=str(manifest.get("source", "")),
                    instruments=manifest.get("instruments"),
                    path=folder / parts[0]["file"],
                    parts=len(parts),
                    last_day=str(manifest.get("last_day", "")),
                    computed=done["computed"],
                    extensions=done["extensions"],
                    days_appended=done["days_appended"],
                )
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    return sorted(entries, key=lambda e: e.created)


def remove_entries(folder: Path) -> int:
    """Delete every entry file of ``folder`` (manifests, parts, temporary and lock files); how many
    entries (manifests) there were."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and (path.suffix in (".json", DATA_SUFFIX, ".tmp", ".lock")):
            removed += path.suffix == ".json"
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return removed


def entry_history(value: Any) -> dict[str, int]:
    """An entry's history as its manifest records it (what computed and grew it, in any process)."""
    known = {"computed": 0, "extensions": 0, "days_appended": 0}
    if isinstance(value, dict):
        known.update({k: int(v) for k, v in value.items() if k in known and isinstance(v, int)})
    return known
