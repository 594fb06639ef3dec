"""Concurrent first loads into PostgreSQL all succeed (issue 21, item 1).

`CREATE SCHEMA/TABLE IF NOT EXISTS` is not safe under concurrency in PostgreSQL: two sessions that both find
a name free both insert it into the catalog, and the later one fails with a unique violation
(`pg_namespace_nspname_index`, `pg_type_typname_nsp_index`) once the first commits; two that add the same
column, with `DuplicateColumn`. Each round starts five processes at the same instant, each doing a step's first
load through the engine's write path (tests/first_load_worker.py): two pairs write one table each (as the
partitions or accounts of one object do) and one a table of its own, every one of them creating the request
budget's table, the schema, its table with its unique index and `stripe._nilus_state` if missing. Rounds on an
empty database, then on one whose schema exists (the tables race), then on existing tables that every process
widens with the same new columns. All processes must succeed, with exact rows.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
TABLES = ["charge", "charge", "customer", "customer", "refund"]  # one process each
ROWS = 300
NEW_FIELDS = ["note", "region"]


def _worker(url: str, table: str, worker: int, rows: int, go_file: Path, fields: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.first_load_worker", url, table, str(worker), str(rows), str(go_file),
         ",".join(fields)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    outcomes = []
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        outcomes.append((proc.returncode, err.strip()))
    return outcomes


@pytest.mark.parametrize("start", ["empty", "empty", "empty", "schema exists", "tables exist"])
def test_concurrent_first_loads_all_succeed(postgres, tmp_path, start):
    url = postgres.create_database(f"first_load_{uuid.uuid4().hex[:10]}")
    fields: list[str] = []
    if start == "schema exists":
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CREATE SCHEMA stripe")
    if start == "tables exist":
        go = tmp_path / "go-setup"
        go.touch()
        for table in sorted(set(TABLES)):  # one load each, one after the other: tables without NEW_FIELDS
            assert _finish([_worker(url, table, 99, 0, go, [])]) == [(0, "")]
        fields = NEW_FIELDS

    go = tmp_path / "go"
    procs = [_worker(url, table, worker, ROWS, go, fields) for worker, table in enumerate(TABLES)]
    deadline = time.monotonic() + 120
    while sum(1 for _ in tmp_path.glob("go.ready*")) < len(procs) and time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            break  # one failed before the start: reported below
        time.sleep(0.02)
    go.touch()  # all at once
    outcomes = _finish(procs)
    failures = [f"{table} #{worker}: {err}" for worker, (table, (code, err)) in enumerate(zip(TABLES, outcomes))
                if code != 0]
    assert not failures, "\n".join(failures)

    with psycopg.connect(url) as con:
        for table in set(TABLES):
            rows = con.execute(f"SELECT count(*), count(DISTINCT id) FROM stripe.{table}").fetchone()
            assert rows == (ROWS * TABLES.count(table),) * 2, table
            columns = {row[0] for row in con.execute(
                f"SELECT column_name FROM information_schema.columns WHERE table_schema = 'stripe' AND table_name = '{table}'")}
            assert set(fields) <= columns
        cursors = dict(con.execute("SELECT key, value FROM stripe._nilus_state").fetchall())
        assert set(cursors) == {f"events_cursor:stripe.{t}" for t in TABLES}
        assert con.execute("SELECT count(*) FROM nilus_request_budget").fetchone()[0] == 1 + len(set(TABLES))
        indexes = {row[0] for row in con.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'stripe'")}
        assert {f"{t}__id__key" for t in TABLES} <= indexes
