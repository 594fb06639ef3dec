"""The engine's settings from the environment, checked when a run starts, before its first request.

A wrong value used to surface only where it is used: `NILUS_DUCKDB_THREADS=abc` after the whole fetch (200k
charges read, then `ValueError: invalid literal for int()`), `NILUS_SPOOL_MIN_FREE_MB=-5` never. Each
module that reads a variable parses it (and says what is wrong, in one line, as a `ConfigError`); this
asks them all at once. The resources check their own settings (`StripeResource`: STRIPE_API_BASE,
NILUS_BUDGET_URL; `WarehouseResource`: NILUS_WAREHOUSE_URL, NILUS_DUCKDB_PATH, NILUS_DUCKDB_LOCK_WAIT_SECONDS);
the code locations check theirs when definitions load (NILUS_PARTITIONS_START, NILUS_STRIPE_ACCOUNTS).
"""

from __future__ import annotations

from typing import Optional

from ..staging import disk
from ..staging.parquet import duckdb_memory_limit, duckdb_threads


def check_environment() -> Optional[str]:
    """Raise `ConfigError` for the first wrong engine setting; return the spool folder (None: system temp)."""
    root = disk.spool_root()  # NILUS_SPOOL_DIR
    disk.min_free_bytes()  # NILUS_SPOOL_MIN_FREE_MB
    duckdb_threads()  # NILUS_DUCKDB_THREADS
    duckdb_memory_limit()  # NILUS_DUCKDB_MEMORY_LIMIT
    return root
