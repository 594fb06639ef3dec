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
import time
from typing import Callable, Optional

import duckdb


LOCK_WAIT_ENV = "NILUS_DUCKDB_LOCK_WAIT_SECONDS"
DEFAULT_LOCK_WAIT_SECONDS = 1800.0  # a 10M-row first load applies in minutes; a stuck holder is another matter


class WarehouseLocked(Exception):
    """The warehouse file stayed locked by another process for longer than the wait allows."""


def lock_wait_seconds(configured: Optional[float] = None) -> float:
    if configured is not None:
        return float(configured)
    text = os.environ.get(LOCK_WAIT_ENV)
    if not text:
        return DEFAULT_LOCK_WAIT_SECONDS
    try:
        return float(text)
    except ValueError:
        raise WarehouseLocked(f"{LOCK_WAIT_ENV}={text!r} is not a number of seconds; set e.g. {LOCK_WAIT_ENV}=600") from None


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
