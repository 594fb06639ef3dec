"""The DuckDB file as a `Sink` (the default warehouse).

Staged Parquet is read in place (`read_parquet`), so applying a batch copies nothing first; the whole
write runs under the staging's memory cap and retries once with more room if DuckDB runs out of memory.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Mapping, Optional, Sequence, TypeVar

import duckdb

from ...staging.parquet import DEFAULT_MEMORY_LIMIT_MB, StagedBatch, json_to_varchar, limit_resources, quote
from .base import literal

T = TypeVar("T")
_TYPE_NAMES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}  # information_schema spells it out


class DuckDBSink:
    kind = "duckdb"
    rowid = "rowid"

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def execute(self, sql: str):
        return self.con.execute(sql)

    def changed(self, sql: str) -> int:
        row = self.con.execute(sql).fetchone()  # DuckDB answers a DML statement with its row count
        return int(row[0]) if row else 0

    @contextmanager
    def transaction(self):
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # Schema changes cannot race here: other processes wait for the file's lock (`warehouse/lock.py`) and a
    # run applies its writes one at a time (`engine/run.py`).
    def create_schema(self, schema: str) -> None:
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")

    def lock_ddl(self, name: str) -> None:
        pass

    def guarded(self, apply: Callable[[], T]) -> T:
        limit_resources(self.con)
        try:
            return apply()
        except duckdb.OutOfMemoryException:
            # The transaction rolled back; a tight cap must never fail a load, so try once with more room.
            limit_resources(self.con, DEFAULT_MEMORY_LIMIT_MB * 8)
            return apply()

    def columns(self, table) -> dict[str, str]:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = {literal(table.schema)} AND table_name = {literal(table.name)} ORDER BY ordinal_position"
        ).fetchall()
        return {name: _TYPE_NAMES.get(dtype, dtype) for name, dtype in rows}

    def type_sql(self, sql_type: str) -> str:
        return sql_type

    def create_table(self, table, columns: Mapping[str, str], key: Sequence[str]) -> None:
        # No key index: DuckDB's ART indexes slow bulk appends, and its joins hash the key anyway.
        ddl = ", ".join(f"{quote(c)} {t}" for c, t in columns.items())
        self.con.execute(f"CREATE TABLE {table.sql} ({ddl})")

    def index_key(self, table, key: Sequence[str]) -> None:
        pass  # no key index (see create_table)

    def retype(self, column: str, current: str, target: str) -> str:
        if target == "TIMESTAMPTZ" and current == "BIGINT":  # epoch seconds kept by an older version
            return f"TIMESTAMPTZ USING to_timestamp({quote(column)})"
        return target

    def load(self, staged: StagedBatch, name: str, columns=None, only=None) -> str:
        # Read in place: DuckDB reads only the columns a statement names, and joins filter the rows.
        return staged.relation

    def temp_table(self, name: str, select: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select}")

    def cast(self, expr: str, staged: Optional[str], target: str) -> str:
        if staged == target:
            return expr
        if staged == "JSON" and target == "VARCHAR":
            return json_to_varchar(expr)
        if target == "TIMESTAMPTZ" and staged in ("BIGINT", "DOUBLE"):  # epoch seconds
            return f"to_timestamp({expr})"
        return f"CAST({expr} AS {target})"

    def contains(self, array: str, text: str) -> str:
        return f"list_contains({array}, {literal(text)})"

    def any_value(self, expr: str) -> str:
        return f"any_value({expr})"

    def epoch(self, expr: str) -> str:
        return f"epoch({expr})"

    def json_text(self, expr: str, path: Sequence[str]) -> str:
        return f"{expr}->>{literal('$.' + '.'.join(path))}"

    def json_elements(self, expr: str, path: Sequence[str], alias: str) -> str:
        return f"unnest(json_extract({expr}, {literal('$.' + '.'.join(path) + '[*]')})) AS {alias}(item)"

    def frame(self, sql: str):
        return self.con.execute(sql).df()

    def store_frame(self, table, frame) -> None:
        self.create_schema(table.schema)
        with self.transaction():
            self.con.register("_frame", frame)
            try:
                self.con.execute(f"CREATE OR REPLACE TABLE {table.sql} AS SELECT * FROM _frame")
            finally:
                self.con.unregister("_frame")

    def close(self) -> None:
        self.con.close()
