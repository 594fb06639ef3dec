"""PostgreSQL as a `Sink` (psycopg 3): the same strategies as the DuckDB file, for warehouses shared by machines.

A staged batch (typed, hashed, de-duplicated Parquet: `staging/parquet.py`) reaches PostgreSQL by COPY, the bulk
path: DuckDB turns the Parquet file into CSV next to it (no Python per row) and psycopg streams that file
into a temporary table, which the strategies then compare with the table by (key, content hash), so
unchanged rows are not rewritten. Nested objects and lists are `jsonb` (`billing_details->'address'->>'city'`),
epoch fields `timestamptz`. Tables get a unique index on the merge key: merges of a few rows into a large
table look rows up instead of scanning it.

The connection must be in autocommit mode: each write opens its own transaction (`transaction`), so a
table is either the old one or the new one, never half.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Callable, Mapping, Optional, Sequence, TypeVar

import psycopg

from ...staging.parquet import StagedBatch, quote
from .base import literal

T = TypeVar("T")
# DuckDB-spelled types (the writer's vocabulary) in PostgreSQL, and back from information_schema.
_TO_PG = {"DOUBLE": "double precision", "JSON": "jsonb", "VARCHAR": "text", "VARCHAR[]": "jsonb",
          "UBIGINT": "numeric", "HUGEINT": "numeric", "FLOAT": "real",
          '"NULL"': "text"}  # "NULL": DuckDB's type for a column of an empty DataFrame
_FROM_PG = {"character varying": "VARCHAR", "text": "VARCHAR", "bigint": "BIGINT", "double precision": "DOUBLE",
            "boolean": "BOOLEAN", "jsonb": "JSON", "json": "JSON", "timestamp with time zone": "TIMESTAMPTZ",
            "date": "DATE", "integer": "INTEGER", "real": "FLOAT", "numeric": "DOUBLE",
            "timestamp without time zone": "TIMESTAMP"}
_COPY_CHUNK = 1 << 20


def _key_index_name(table, key: Sequence[str]) -> str:
    return f"{table.name}__{'_'.join(key)}__key"[:63]


class PostgresSink:
    kind = "postgresql"
    rowid = "ctid"

    def __init__(self, con: psycopg.Connection):
        self.con = con

    def execute(self, sql: str):
        return self.con.execute(sql)  # no parameters: psycopg sends the text as is ('%' included)

    def changed(self, sql: str) -> int:
        return self.con.execute(sql).rowcount

    @contextmanager
    def transaction(self):
        with self.con.transaction():
            yield

    def guarded(self, apply: Callable[[], T]) -> T:
        return apply()

    # DDL under concurrency: `CREATE SCHEMA/TABLE IF NOT EXISTS` is not safe in PostgreSQL. Two sessions that
    # both find a name free both insert it into the catalog; the later one waits for the first to commit and
    # then fails with a unique violation (`pg_namespace_nspname_index`, `pg_type_typname_nsp_index`). That is
    # every first load into a new database with one process per object. So DDL on a name first takes an
    # advisory lock on it, held to the end of the transaction, and then looks again.
    def lock_ddl(self, name: str) -> None:
        self.con.execute(f"SELECT pg_advisory_xact_lock(hashtextextended({literal('nilus ddl ' + name)}, 0))")

    def create_schema(self, schema: str) -> None:
        if self.con.execute(f"SELECT 1 FROM pg_namespace WHERE nspname = {literal(schema)}").fetchone():
            return  # every write but the first: no lock taken
        with self.transaction():
            self.lock_ddl(f"schema {schema}")
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")

    def columns(self, table) -> dict[str, str]:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = {literal(table.schema)} AND table_name = {literal(table.name)} ORDER BY ordinal_position"
        ).fetchall()
        return {name: _FROM_PG.get(dtype, dtype.upper()) for name, dtype in rows}

    def type_sql(self, sql_type: str) -> str:
        return _TO_PG.get(sql_type, sql_type)

    def create_table(self, table, columns: Mapping[str, str], key: Sequence[str]) -> None:
        ddl = ", ".join(f"{quote(c)} {self.type_sql(t)}" for c, t in columns.items())
        self.con.execute(f"CREATE TABLE {table.sql} ({ddl})")
        self._create_key_index(table, key)

    def _create_key_index(self, table, key: Sequence[str]) -> None:
        index = quote(_key_index_name(table, key))
        self.con.execute(f"CREATE UNIQUE INDEX {index} ON {table.sql} ({', '.join(quote(c) for c in key)})")

    def _key_indexes(self, table) -> set[str]:
        """The table's unique indexes on a merge key (named by `_key_index_name`)."""
        names = self.con.execute(
            f"SELECT indexname FROM pg_indexes WHERE schemaname = {literal(table.schema)} "
            f"AND tablename = {literal(table.name)}"
        ).fetchall()
        return {n for (n,) in names if n.startswith(f"{table.name}__"[:63]) and n.endswith("__key")}

    def index_key(self, table, key: Sequence[str]) -> None:
        wanted = _key_index_name(table, key)
        if self._key_indexes(table) in ({wanted}, set()):
            # Every write but the first after a change of key: one catalog read, no lock. A table without the
            # package's index (dropped on purpose, or made elsewhere) is left as it is.
            return
        self.lock_ddl(str(table))  # another writer may be re-indexing this table: wait, then look again
        found = self._key_indexes(table)
        if wanted not in found:
            self._create_key_index(table, key)
        for other in found - {wanted}:  # e.g. `id` alone, where two accounts may hold one id
            self.con.execute(f"DROP INDEX {quote(table.schema)}.{quote(other)}")

    def retype(self, column: str, current: str, target: str) -> str:
        col = quote(column)
        if target == "JSON":
            using = f"to_jsonb({col})"
        elif current == "JSON" and target == "VARCHAR":
            using = f"CASE WHEN jsonb_typeof({col}) = 'string' THEN {col} #>> '{{}}' ELSE {col}::text END"
        elif current == "BIGINT" and target == "TIMESTAMPTZ":
            using = f"to_timestamp({col})"
        else:
            using = f"{col}::{self.type_sql(target)}"
        return f"{self.type_sql(target)} USING {using}"

    def load(self, staged: StagedBatch, name: str, columns: Optional[Sequence[str]] = None,
             only: Optional[tuple[str, Sequence[str]]] = None) -> str:
        """COPY the staged Parquet file (its `columns`, or all; with `only` = (temp table, key columns), only
        the rows whose key that table holds) into temporary table `name`, dropped at commit."""
        import duckdb

        source = duckdb.connect()
        try:
            parquet = staged.relation
            described = source.execute(f"DESCRIBE SELECT * FROM {parquet}").fetchall()
            types = {row[0]: row[1] for row in described if columns is None or row[0] in columns}
            # Lists (the change-capture's field names) travel as JSON arrays; everything else as DuckDB prints it.
            select = ", ".join(f"to_json(s.{quote(c)})" if t.endswith("[]") else f"s.{quote(c)}" for c, t in types.items())
            rows = f"{parquet} s"
            if only is not None:
                rows += self._keys_in(source, *only)
            fd, csv_path = tempfile.mkstemp(suffix=".csv", dir=os.path.dirname(staged.paths[0]))
            os.close(fd)
            source.execute(f"COPY (SELECT {select} FROM {rows}) TO {literal(csv_path)} (FORMAT csv, HEADER false)")
        finally:
            source.close()
        try:
            self.con.execute(f"DROP TABLE IF EXISTS {name}")
            # JSON stays text here: parsing into jsonb is the costliest part of COPY, and only the rows
            # that are new or changed need it (`cast`); unchanged rows are compared by their hash alone.
            ddl = ", ".join(f"{quote(c)} {'text' if t == 'JSON' else self.type_sql(t)}" for c, t in types.items())
            self.con.execute(f"CREATE TEMP TABLE {name} ({ddl}) ON COMMIT DROP")
            # CSV: an unquoted empty field is NULL, DuckDB quotes empty strings ("").
            with self.con.cursor() as cur, cur.copy(f"COPY {name} FROM STDIN (FORMAT csv)") as copy:
                with open(csv_path, "rb") as f:
                    while chunk := f.read(_COPY_CHUNK):
                        copy.write(chunk)
        finally:
            os.remove(csv_path)
        return name

    def _keys_in(self, source, table: str, key: Sequence[str]) -> str:
        """A semi join of the staged rows with the keys of PostgreSQL temp table `table` (e.g. the changed rows)."""
        import pyarrow as pa

        keys = self.con.execute(f"SELECT DISTINCT {', '.join(quote(c) for c in key)} FROM {table}").fetchall()
        source.register("_keys", pa.table({c: [row[i] for row in keys] for i, c in enumerate(key)}))
        return f" SEMI JOIN _keys USING ({', '.join(quote(c) for c in key)})"

    def temp_table(self, name: str, select: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")
        self.con.execute(f"CREATE TEMP TABLE {name} ON COMMIT DROP AS {select}")

    def cast(self, expr: str, staged: Optional[str], target: str) -> str:
        # A staged JSON column is JSON text (see `load`).
        if staged == "JSON" and target == "JSON":
            return f"{expr}::jsonb"
        if staged == "JSON" and target == "VARCHAR":
            return f"CASE WHEN jsonb_typeof({expr}::jsonb) = 'string' THEN {expr}::jsonb #>> '{{}}' ELSE {expr} END"
        if staged == target:
            return expr
        if target == "JSON":
            return f"to_jsonb({expr})"
        if target == "TIMESTAMPTZ" and staged in ("BIGINT", "DOUBLE"):
            return f"to_timestamp({expr})"
        return f"CAST({expr} AS {self.type_sql(target)})"

    def contains(self, array: str, text: str) -> str:
        return f"jsonb_exists({array}, {literal(text)})"  # the function behind jsonb's `?` operator

    def any_value(self, expr: str) -> str:
        return f"(array_agg({expr}))[1]"

    def epoch(self, expr: str) -> str:
        return f"extract(epoch FROM {expr})::bigint"

    def json_text(self, expr: str, path: Sequence[str]) -> str:
        return f"({expr} #>> {literal('{' + ','.join(path) + '}')})"

    def json_elements(self, expr: str, path: Sequence[str], alias: str) -> str:
        inner = f"({expr} #> {literal('{' + ','.join(path) + '}')})"
        return f"jsonb_array_elements(CASE WHEN jsonb_typeof({inner}) = 'array' THEN {inner} END) AS {alias}(item)"

    def frame(self, sql: str):
        import pandas as pd

        with self.con.cursor() as cur:
            cur.execute(sql)
            names = [d.name for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=names)

    def store_frame(self, table, frame) -> None:
        import duckdb

        from ...staging.parquet import StagedBatch as Staged

        with tempfile.TemporaryDirectory(prefix="frame-") as folder:
            path = os.path.join(folder, "frame.parquet")
            local = duckdb.connect()
            try:
                local.register("_frame", frame)
                local.execute(f"COPY (SELECT * FROM _frame) TO {literal(path)} (FORMAT parquet)")
                types = {row[0]: row[1] for row in local.execute("DESCRIBE SELECT * FROM _frame").fetchall()}
            finally:
                local.close()
            self.create_schema(table.schema)
            with self.transaction():
                self.lock_ddl(str(table))
                self.con.execute(f"DROP TABLE IF EXISTS {table.sql}")
                ddl = ", ".join(f"{quote(c)} {self.type_sql(t)}" for c, t in types.items())
                self.con.execute(f"CREATE TABLE {table.sql} ({ddl})")
                staged = self.load(Staged((path,), dict(types), len(frame)), "_frame")
                self.con.execute(f"INSERT INTO {table.sql} SELECT * FROM {staged}")

    def close(self) -> None:
        self.con.close()


class WarehouseUnavailable(Exception):
    """The PostgreSQL warehouse's address is wrong or its server cannot be reached (one line, no password)."""


def connect(url: str, source: str = "NILUS_WAREHOUSE_URL") -> psycopg.Connection:
    """An autocommit connection to the warehouse at `url`; `WarehouseUnavailable` with one line otherwise.
    `source` names where the address came from, for the message."""
    from psycopg.conninfo import conninfo_to_dict

    from ...source.config import describe_url

    shown = describe_url(url)

    def reason(exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
        return text.replace(url, "…")  # libpq may quote the address, password included

    try:
        conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise WarehouseUnavailable(
            f"The warehouse address in {source} cannot be parsed ({reason(exc)}); "
            f"write it as postgresql://user@host:5432/db."
        ) from None
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise WarehouseUnavailable(
            f"Could not connect to the PostgreSQL warehouse at {shown} ({reason(exc)}); start the server or "
            f"fix {source}."
        ) from None
