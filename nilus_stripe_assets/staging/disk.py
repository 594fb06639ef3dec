"""The spool folder's disk: room checked before a load starts, and leftovers of dead runs swept.

Every spool folder holds `.owner.lock`, which the process writing the spool keeps `flock`ed for as long as the
spool exists. The kernel drops that lock when the process ends, however it ends (killed, crashed, OOM), so a
folder whose lock can be taken belongs to no live run and is removed; a folder whose lock is held is never
touched. The lock file is locked before it gets its name, so a sweeper never sees a new spool unlocked.
Folders from versions without the lock file are removed once nothing in them changed for a day.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from ..source.config import ConfigError

LOCK_NAME = ".owner.lock"
MIN_FREE_ENV = "NILUS_SPOOL_MIN_FREE_MB"
SPOOL_DIR_ENV = "NILUS_SPOOL_DIR"
DEFAULT_MIN_FREE_MB = 256
# Peak temporary disk per object, measured (benchmarks/scale.py): compressed spool, staged Parquet, spill.
BYTES_PER_OBJECT = 400
UNLOCKED_MAX_AGE_SECONDS = 86400

_held: dict[str, int] = {}  # spool folder -> the open, locked descriptor of its lock file
_held_lock = threading.Lock()
_swept: set[str] = set()


class SpoolSpaceError(Exception):
    """The spool folder's disk cannot hold the load."""

    says_what_to_do = True  # names the folder and the fix: shown whole, however long the folder's path


def min_free_bytes() -> int:
    """$NILUS_SPOOL_MIN_FREE_MB in bytes (default 256 MB). Raises ConfigError unless it is a number >= 0."""
    text = os.environ.get(MIN_FREE_ENV, "").strip()
    if not text:
        return DEFAULT_MIN_FREE_MB * 1024 * 1024
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not 0 <= megabytes < float("inf"):
        raise ConfigError(
            f"{MIN_FREE_ENV}={text[:20]!r} is not a number of megabytes >= 0; set e.g. {MIN_FREE_ENV}=256, or unset "
            f"it for the default ({DEFAULT_MIN_FREE_MB})."
        )
    return int(megabytes * 1024 * 1024)


def spool_root() -> Optional[str]:
    """$NILUS_SPOOL_DIR (None: the system's temp folder). Raises ConfigError unless it is a writable folder."""
    text = os.environ.get(SPOOL_DIR_ENV, "").strip()
    if not text:
        return None
    folder = Path(text).expanduser()
    fix = f"create it, or point {SPOOL_DIR_ENV} at an existing folder on a disk with room (or unset it for {tempfile.gettempdir()})"
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"The spool folder {folder} ({SPOOL_DIR_ENV}) {what}; {fix}.")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise ConfigError(
            f"The spool folder {folder} ({SPOOL_DIR_ENV}) cannot be written ({exc.strerror or type(exc).__name__}); {fix}."
        ) from None
    return str(folder)


def check_free(root: str, expected_objects: Optional[int] = None) -> None:
    """Raise `SpoolSpaceError` unless `root` has room for the load (estimated from `expected_objects` when
    known, else the floor `NILUS_SPOOL_MIN_FREE_MB`)."""
    need = max(min_free_bytes(), (expected_objects or 0) * BYTES_PER_OBJECT)
    free = shutil.disk_usage(root).free
    if free < need:
        basis = f"{expected_objects:,} objects x ~{BYTES_PER_OBJECT} B" if expected_objects else f"the floor {MIN_FREE_ENV}"
        raise SpoolSpaceError(
            f"The spool folder {root} has {free / 2**20:,.0f} MB free; this load needs about {need / 2**20:,.0f} MB "
            f"({basis}). Free space there, or point NILUS_SPOOL_DIR at a larger disk."
        )


def claim(folder: Path) -> None:
    """Mark `folder` as owned by this process until `release` (or the process's end)."""
    temp = folder / f".owner.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(temp, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, str(os.getpid()).encode())
    os.replace(temp, folder / LOCK_NAME)  # named only once locked
    with _held_lock:
        _held[str(folder)] = fd


def release(folder: str) -> None:
    with _held_lock:
        fd = _held.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


def remove(folder: str) -> None:
    """Delete a spool folder this process owns, then let go of its lock."""
    shutil.rmtree(folder, ignore_errors=True)
    release(folder)


def sweep(root: Optional[str] = None, prefix: str = "stripe-") -> list[str]:
    """Remove spool folders under `root` whose owner is gone; returns what was removed. Once per root and
    process (later spools of the same run find nothing new to sweep)."""
    root = root or tempfile.gettempdir()
    with _held_lock:
        if root in _swept:
            return []
        _swept.add(root)
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False)):
            continue
        if str(entry.path) in _held:
            continue
        if _abandoned(Path(entry.path)):
            removed.append(entry.path)
    return removed


def _abandoned(folder: Path) -> bool:
    lock = folder / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        # No lock file: a spool of an older version, or one being created right now. Only old ones go.
        if time.time() - _newest_mtime(folder) > UNLOCKED_MAX_AGE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)
            return True
        return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False  # a live run holds it
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)
    return True


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
            except OSError:
                pass
    return newest
