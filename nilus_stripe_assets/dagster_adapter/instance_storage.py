"""Dagster's SQLite instance storage, created by one process at a time.

The first process to open a new `DAGSTER_HOME` creates its SQLite databases (runs, the event index,
schedules) and stamps each with its schema revision. Dagster does that without a lock between processes, so
runs started at once on a fresh home (a CI fanning out `dg launch`) race: one fails with `table
alembic_version already exists`, or the revision is stamped twice and every later command fails with
`Version table 'alembic_version' has more than one head present` (dagster-io/dagster#27390) until the
storage is deleted. This storage is Dagster's own (`DagsterSqliteStorage`, same files, same settings), opened
under an exclusive `flock` on a file in its folder: the first process creates the databases, the others wait
for it (milliseconds) and find them made. The repository's `dagster.yaml` and the demo's instance use it:

    storage:
      custom:
        module: nilus_stripe_assets.dagster_adapter.instance_storage
        class: SqliteStorageCreatedOnce
        config:
          base_dir: .dagster_home/storage

A home configured otherwise is made ready once, before fanning out, with `dagster instance migrate`.
"""

from __future__ import annotations

import fcntl
import os

from dagster._core.storage.sqlite_storage import DagsterSqliteStorage

LOCK_FILE = ".created-once.lock"


class SqliteStorageCreatedOnce(DagsterSqliteStorage):
    def __init__(self, base_dir: str, inst_data=None):
        os.makedirs(base_dir, exist_ok=True)
        with open(os.path.join(base_dir, LOCK_FILE), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
            super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "SqliteStorageCreatedOnce":
        # Dagster's own builds the base class by name; this one must rebuild itself in other processes.
        return cls(inst_data=inst_data, **config_value)
