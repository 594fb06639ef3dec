"""Opening the warehouse file: wait for its single-writer lock, within a bound, then say who holds it.

DuckDB lets one process at a time open a database file read-write. A second one does not wait: it gets
`IOException: Could not set lock on file "…": Conflicting lock is held in /usr/bin/python3 (PID 123) …` at
once. Writes here are short (a batch is staged outside the warehouse first), so a second writer simply waits
its turn: it retries with a growing pause (up to 1 s) for as long as `wait_seconds` allows, and then fails
with one line that names the holding process.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import duckdb

from ..source.config import ConfigError


LOCK_WAIT_ENV = "NILUS_DUCKDB_LOCK_WAIT_SECONDS"
DEFAULT_LOCK_WAIT_SECONDS = 1800.0  # a 10M-row first load applies in minutes; a stuck holder is another matter


class WarehouseLocked(Exception):
    """The warehouse file stayed locked by another process for longer than the wait allows."""


def lock_wait_seconds(configured: Optional[float] = None) -> float:
    """The configured wait, else $NILUS_DUCKDB_LOCK_WAIT_SECONDS, else 1800. Raises ConfigError for a value
    that is not a number of seconds >= 0."""
    if configured is not None:
        return float(configured)
    text = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not text:
        return DEFAULT_LOCK_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigError(
            f"{LOCK_WAIT_ENV}={text[:20]!r} is not a number of seconds; set e.g. {LOCK_WAIT_ENV}=600, or unset it "
            f"to wait up to {DEFAULT_LOCK_WAIT_SECONDS:g} s."
        )
    return seconds


def check_database_path(database: str, setting: str) -> None:
    """Raise ConfigError unless the DuckDB file `database` can be created or written: not a folder, not under
    a regular file, on a writable filesystem. Creates its missing folders (DuckDB creates only the file)."""
    path = Path(database)
    fix = f"point {setting} at a file in a writable folder, e.g. data/warehouse.duckdb"
    if path.is_dir():
        raise ConfigError(f"The warehouse path {path} ({setting}) is a folder, not a DuckDB file; {fix}.")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"The warehouse path {path} ({setting}) is under {blocking}, which is a file, not a folder; {fix}.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with open(path, "ab"):  # opened for writing, nothing written: read-only files and filesystems fail here
                pass
        else:
            probe = tempfile.NamedTemporaryFile(dir=path.parent, prefix=".nilus-write-check-")
            probe.close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"The warehouse path {path} ({setting}) cannot be written ({reason}); {fix}.") from None


def _is_lock_conflict(exc: BaseException) -> bool:
    return "lock" in str(exc).lower()


def holder(message: str) -> str:
    """'PID 123 (dagster asset materialize …)' from DuckDB's lock error, as far as this machine can tell."""
    match = re.search(r"PID (\d+)", message)
    if not match:
        return "another process"
    pid = int(match.group(1))
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return f"PID {pid}"
    if not args:
        return f"PID {pid}"
    # One short line, whatever the args: file names without their folders.
    command = " ".join(" ".join(os.path.basename(a) if "/" in a else a for a in args[:5]).split())
    if len(command) > 60:
        command = command[:59] + "…"
    from ..source.errors import scrub  # here: errors.py loads stripe-python, which opening the file does not need

    return f"PID {pid} ({scrub(command)})"


def connect(
    database: str,
    config: Optional[dict] = None,
    wait_seconds: Optional[float] = None,
    on_wait: Optional[Callable[[str], None]] = None,
) -> duckdb.DuckDBPyConnection:
    """A read-write connection to `database`, waiting up to `wait_seconds` (default: $NILUS_DUCKDB_LOCK_WAIT_SECONDS,
    else 1800 s) while another process holds the file. `on_wait` hears once that the wait started."""
    bound = lock_wait_seconds(wait_seconds)
    if database and not database.startswith(":memory:") and "://" not in database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its folder
    started = time.monotonic()
    pause = 0.05
    told = False
    while True:
        try:
            return duckdb.connect(database, read_only=False, config=config or {})
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise
            waited = time.monotonic() - started
            if waited >= bound:
                # The essentials first: callers may clip a long line (the file's path goes last).
                raise WarehouseLocked(
                    f"Waited {waited:.0f} s for the warehouse's write lock, held by {holder(str(exc))}; let it finish "
                    f"and re-run, or wait longer with {LOCK_WAIT_ENV} (now {bound:g}). File: {database}"
                ) from None
            if not told and on_wait is not None:
                on_wait(f"The warehouse {database} is locked by {holder(str(exc))}; waiting up to {bound:g} s for it.")
                told = True
            time.sleep(min(pause * random.uniform(0.8, 1.2), max(0.0, bound - waited)))
            pause = min(pause * 1.5, 1.0)
