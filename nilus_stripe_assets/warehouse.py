"""DuckDB writes that enforce a strategy: merge (upsert on the key), replace (snapshot), append (new ids only).

Every write is one transaction: stage the spooled NDJSON, evolve the table's schema, apply the strategy,
commit. A failure anywhere rolls back, so the table is either the old one or the new one, never half.

Columns are Stripe's top-level fields. Scalars get SQL types from the data (`json_type`), nested objects and
lists stay DuckDB `JSON` (query them with `->>`). A field that shows up later adds a column; a field whose
type widens (int -> float, or a scalar that turns into an object) widens the column instead of failing.
Bookkeeping columns: `_loaded_at`; `_state_at`, the Stripe-side time the row's state is known from (the
load's start for list reads, the event's `created` for change capture), which lets the newest state win
whatever order events arrive in; and `is_deleted` / `deleted_at` for objects Stripe reports deleted (rows are
kept so the fact is not lost).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

import duckdb

DEFAULT_SCHEMA = "stripe"
BOOKKEEPING = {"_loaded_at": "TIMESTAMPTZ", "_state_at": "BIGINT", "is_deleted": "BOOLEAN", "deleted_at": "TIMESTAMPTZ"}
# Fields the change-capture spool adds to each object; used for staging, never stored as columns.
EVENT_CREATED, EVENT_TYPE = "_event_created", "_event_type"
_EVENT_FIELDS = (EVENT_CREATED, EVENT_TYPE)
# The columns an empty table starts with, so downstream queries work before the first object arrives.
MINIMAL_COLUMNS = {"id": "VARCHAR", "object": "VARCHAR"}  # every Stripe class declares both

# "HUGE": an integer beyond BIGINT (the probe tells it apart from other UBIGINTs); stored as DOUBLE.
_NUMERIC = {"BIGINT", "UBIGINT", "DOUBLE", "HUGE"}


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class TableRef:
    schema: str
    name: str

    @classmethod
    def parse(cls, dest_table: str, default_schema: str = DEFAULT_SCHEMA) -> "TableRef":
        parts = dest_table.split(".")
        if len(parts) == 1:
            return cls(default_schema, parts[0])
        if len(parts) == 2 and all(parts):
            return cls(parts[0], parts[1])
        raise ValueError(f"dest_table {dest_table!r} must be 'table' or 'schema.table'")

    @property
    def sql(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Slice:
    """Rows of a table owned by one partition: `column` in [gte, lt)."""

    column: str
    gte: int
    lt: int

    def condition(self, alias: str = "") -> str:
        col = (alias + "." if alias else "") + quote(self.column)
        return f"{col} >= {int(self.gte)} AND {col} < {int(self.lt)}"


@dataclass
class WriteResult:
    table: str
    strategy: str
    received: int = 0  # objects in the batch after de-duplication by key
    inserted: int = 0
    updated: int = 0
    deleted: int = 0  # rows removed by a replace
    unchanged: int = 0  # append: ids already present
    rows: int = 0  # rows in the table after the write
    added_columns: list[str] = field(default_factory=list)
    widened_columns: list[str] = field(default_factory=list)


def _sql_type(json_types: Sequence[str]) -> Optional[str]:
    kinds = {t for t in json_types if t and t != "NULL"}
    if not kinds:
        return None  # only nulls seen: decided by the table, or VARCHAR for a new column
    if kinds <= {"BIGINT", "UBIGINT"}:  # json_type calls every positive integer UBIGINT
        return "BIGINT"
    if kinds <= _NUMERIC:
        return "DOUBLE"
    if kinds == {"BOOLEAN"}:
        return "BOOLEAN"
    if kinds == {"VARCHAR"}:
        return "VARCHAR"
    return "JSON"


def _widen(current: str, incoming: Optional[str]) -> str:
    if incoming is None or incoming == current:
        return current
    if {current, incoming} <= {"BIGINT", "DOUBLE"}:
        return "DOUBLE"
    if current == "JSON" and incoming in {"BIGINT", "DOUBLE", "BOOLEAN"}:
        return "JSON"
    return "VARCHAR"  # a text column holds anything, JSON included (`->>` works on VARCHAR too)


def _convert(column: str, target: str) -> str:
    """Expression turning a JSON staging column into `target`; JSON null becomes SQL NULL."""
    col = quote(column)
    if target == "JSON":
        return f"CASE WHEN json_type({col}) = 'NULL' THEN NULL ELSE {col} END"
    if target == "VARCHAR":
        # Strings unwrap to their text; objects, lists and numbers keep their JSON text.
        return f"CASE WHEN json_type({col}) = 'VARCHAR' THEN {col}->>'$' WHEN json_type({col}) = 'NULL' THEN NULL ELSE CAST({col} AS VARCHAR) END"
    return f"TRY_CAST({col} AS {target})"


def table_columns(con: duckdb.DuckDBPyConnection, table: TableRef) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [table.schema, table.name],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


_JSON_KINDS = ("NULL", "BOOLEAN", "BIGINT", "UBIGINT", "DOUBLE", "VARCHAR", "OBJECT", "ARRAY", "HUGE")


def _sql_strings(values: Sequence[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _stage(con: duckdb.DuckDBPyConnection, files: Sequence[str], fields: Optional[Sequence[str]] = None) -> dict[str, Optional[str]]:
    """View `_stage_raw` over the NDJSON files (top-level fields as JSON); return each column's SQL type.

    A view, not a table: DuckDB streams the files twice (type probe, then the typed copy) instead of holding
    an all-JSON copy of the batch in memory. The probe ORs one bit per JSON kind rather than collecting values.
    """
    con.execute("DROP VIEW IF EXISTS _stage_raw")
    if fields is None:
        # Objects of one type share a few shapes: distinct key lists are few, and cheap to collect.
        shapes = con.execute("SELECT DISTINCT json_keys(json) FROM read_ndjson_objects(?)", [list(files)]).fetchall()
        fields = list(dict.fromkeys(key for (keys,) in shapes for key in keys))
    if not fields:
        return {}
    spec = "{" + ", ".join("'" + f.replace("'", "''") + "': 'JSON'" for f in fields) + "}"
    con.execute(
        f"CREATE TEMP VIEW _stage_raw AS SELECT * FROM read_json({_sql_strings(files)}, "
        f"format='newline_delimited', columns={spec})"
    )
    kind_bits = " ".join(f"WHEN '{k}' THEN {1 << i}" for i, k in enumerate(_JSON_KINDS))
    huge = 1 << _JSON_KINDS.index("HUGE")

    def probe(f: str) -> str:
        c = quote(f)
        return (
            f"bit_or(CASE WHEN json_type({c}) = 'UBIGINT' AND TRY_CAST({c} AS BIGINT) IS NULL THEN {huge} "
            f"ELSE CASE json_type({c}) {kind_bits} ELSE 0 END END)"
        )

    probes = ", ".join(probe(f) for f in fields)
    masks = con.execute(f"SELECT {probes} FROM _stage_raw").fetchone()
    return {
        f: _sql_type([k for i, k in enumerate(_JSON_KINDS) if (mask or 0) & (1 << i)])
        for f, mask in zip(fields, masks)
    }


def _evolve(con, table: TableRef, staged: dict[str, Optional[str]], result: WriteResult) -> dict[str, str]:
    """Create or widen the table so every staged column fits; return the final column types."""
    existing = table_columns(con, table)
    if not existing:
        columns = {c: (t or "VARCHAR") for c, t in staged.items()} or dict(MINIMAL_COLUMNS)
        for c, t in MINIMAL_COLUMNS.items():
            columns.setdefault(c, t)
        columns.update(BOOKKEEPING)
        ddl = ", ".join(f"{quote(c)} {t}" for c, t in columns.items())
        con.execute(f"CREATE TABLE {table.sql} ({ddl})")
        return columns
    for column, dtype in BOOKKEEPING.items():
        if column not in existing:  # tables made by an older version of this package
            con.execute(f"ALTER TABLE {table.sql} ADD COLUMN {quote(column)} {dtype}")
            existing[column] = dtype
    for column, incoming in staged.items():
        if column not in existing:
            existing[column] = incoming or "VARCHAR"
            con.execute(f"ALTER TABLE {table.sql} ADD COLUMN {quote(column)} {existing[column]}")
            result.added_columns.append(column)
            continue
        target = _widen(existing[column], incoming)
        if incoming not in (None, existing[column]) and _all_null(con, table, column):
            # Typed from nulls only (e.g. VARCHAR for a field never set yet): take the real type now.
            target = incoming
        if target != existing[column]:
            con.execute(f"ALTER TABLE {table.sql} ALTER COLUMN {quote(column)} TYPE {target}")
            existing[column] = target
            result.widened_columns.append(column)
    return existing


@dataclass(frozen=True)
class ChangeSet:
    """Objects' newest states from Stripe events, applied after a load in the same transaction.

    Each spooled object carries `_event_created` and `_event_type`; a `*.deleted` type flags the row.
    """

    files: Sequence[str]
    state_key: str  # where the events cursor is kept, see `set_cursor`
    cursor: Optional[int]  # the new events cursor, committed with the rows
    fields: Optional[Sequence[str]] = None  # top-level field names, when the spool recorded them
    kinds: Optional[Mapping[str, Iterable[str]]] = None  # each field's JSON kinds, when the spool recorded them


# DuckDB's defaults (80 % of RAM, every core) let one write take a gigabyte; a cap makes it spill to disk
# instead, so memory stays flat however large the batch (measured in benchmarks/: 200k charges at 1.16x
# the memory of 20k). Overridable for big machines.
MEMORY_LIMIT_ENV, THREADS_ENV = "NILUS_DUCKDB_MEMORY_LIMIT", "NILUS_DUCKDB_THREADS"


DEFAULT_MEMORY_LIMIT_MB = 96


def _limit_memory(con, megabytes: Optional[int] = None) -> None:
    limit = f"{megabytes}MB" if megabytes else os.environ.get(MEMORY_LIMIT_ENV, f"{DEFAULT_MEMORY_LIMIT_MB}MB")
    con.execute(f"SET memory_limit = '{limit}'")
    con.execute(f"SET threads = {int(os.environ.get(THREADS_ENV, '1'))}")
    con.execute("SET preserve_insertion_order = false")  # tables have no order; keeping it costs memory


def _all_null(con, table: TableRef, column: str) -> bool:
    return con.execute(f"SELECT count({quote(column)}) = 0 FROM {table.sql}").fetchone()[0]


def write(
    con: duckdb.DuckDBPyConnection,
    table: TableRef,
    files: Sequence[str],
    strategy: str,
    merge_key: str = "id",
    scope: Optional[Slice] = None,
    state_at: Optional[int] = None,
    changes: Optional[ChangeSet] = None,
    fields: Optional[Sequence[str]] = None,
    kinds: Optional[Mapping[str, Iterable[str]]] = None,
) -> WriteResult:
    """Write spooled objects into `table` with `strategy`, then apply `changes`, in one transaction.

    `scope` limits a `replace` to one slice of the table (a partition); without it `replace` swaps the
    whole table. `merge` and `append` never delete. `state_at` is when the objects were read (epoch s).
    `fields` and `kinds` (each field's JSON kinds, as the spool recorded them) spare DuckDB the type probe.
    """
    if strategy not in ("merge", "replace", "append"):
        raise ValueError(f"unknown strategy {strategy!r}; use merge, replace or append")
    _limit_memory(con)
    attempt = lambda typed: _write_once(  # noqa: E731
        con, table, files, strategy, merge_key, scope, state_at, changes, fields, typed
    )
    typed = kinds is not None
    try:
        return attempt(dict(kinds) if typed else None)
    except duckdb.OutOfMemoryException:
        # The transaction rolled back; a tight cap must never fail a load, so try once with more room.
        _limit_memory(con, DEFAULT_MEMORY_LIMIT_MB * 8)
        return attempt(dict(kinds) if typed else None)
    except (duckdb.InvalidInputException, duckdb.ConversionException):
        if not typed:
            raise
        # A value the recorded kinds did not foresee (e.g. an integer beyond 64 bits): let DuckDB probe.
        return attempt(None)


def _write_once(con, table, files, strategy, merge_key, scope, state_at, changes, fields, kinds) -> WriteResult:
    result = WriteResult(table=str(table), strategy=strategy)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}")
        files = [f for f in files if f]
        if not (kinds is not None and files and _insert_into_empty(con, table, files, merge_key, state_at, result, fields, kinds)):
            _stage_batch(con, table, files, merge_key, state_at, result, fields=fields, kinds=kinds)
            result.received = con.execute("SELECT count(*) FROM _stage").fetchone()[0]
            _apply(con, table, strategy, merge_key, scope, result)
        if changes is not None:
            change_files = [f for f in changes.files if f]
            if change_files:
                change_kinds = changes.kinds if kinds is not None and changes.kinds is not None else None
                _stage_batch(
                    con, table, change_files, merge_key, None, result, from_events=True, fields=changes.fields,
                    kinds=change_kinds,
                )
                _apply_changes(con, table, merge_key, result)
            if changes.cursor is not None:
                set_cursor(con, table.schema, changes.state_key, changes.cursor)
        result.rows = con.execute(f"SELECT count(*) FROM {table.sql}").fetchone()[0]
        con.execute("DROP TABLE IF EXISTS _stage")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return result


def _typed_view(con, files: Sequence[str], staged: Mapping[str, Optional[str]], columns: Mapping[str, str]) -> None:
    """View `_stage_raw` reading the files straight into the table's column types: one pass, no casts."""
    read_as = {c: (columns.get(c) if c not in BOOKKEEPING and c not in _EVENT_FIELDS else None) or "JSON" for c in staged}
    spec = "{" + ", ".join("'" + c.replace("'", "''") + "': '" + t + "'" for c, t in read_as.items()) + "}"
    con.execute("DROP VIEW IF EXISTS _stage_raw")
    con.execute(
        f"CREATE TEMP VIEW _stage_raw AS SELECT * FROM read_json({_sql_strings(files)}, "
        f"format='newline_delimited', columns={spec})"
    )


def _kinds_to_types(fields, kinds) -> dict[str, Optional[str]]:
    names = list(fields) if fields is not None else list(kinds)
    known = set(names)
    names += [k for k in kinds if k not in known]
    return {f: _sql_type(list(kinds.get(f, ()))) for f in names}


def _bookkeeping(state_at) -> str:
    stamp = "NULL" if state_at is None else str(int(state_at))
    return f"CAST({stamp} AS BIGINT) AS _state_at, false AS is_deleted, CAST(NULL AS TIMESTAMPTZ) AS deleted_at"


def _insert_into_empty(con, table: TableRef, files, merge_key: str, state_at, result: WriteResult, fields, kinds) -> bool:
    """First load into an empty table: read the files straight into it, with no staging copy. Returns False
    (and leaves the table empty) if the table has rows or the batch repeats a key; the caller then stages."""
    existing = table_columns(con, table)
    if existing and con.execute(f"SELECT EXISTS (SELECT 1 FROM {table.sql})").fetchone()[0]:
        return False
    staged = _kinds_to_types(fields, kinds)
    for c in _EVENT_FIELDS:
        staged.pop(c, None)
    if merge_key not in staged:
        raise ValueError(f"objects have no {merge_key!r} field to merge on")
    columns = _evolve(con, table, staged, result)
    _typed_view(con, files, staged, columns)
    names = [c for c in staged if c not in BOOKKEEPING]
    con.execute(
        f"INSERT INTO {table.sql} ({', '.join(quote(c) for c in names)}, _loaded_at, _state_at, is_deleted, deleted_at) "
        f"SELECT {', '.join(quote(c) for c in names)}, now(), {_bookkeeping(state_at)} FROM _stage_raw"
    )
    con.execute("DROP VIEW _stage_raw")
    key = quote(merge_key)
    rows, distinct = con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table.sql}").fetchone()
    if rows != distinct:  # a key twice in one batch: the staged path keeps one row per key
        con.execute(f"DELETE FROM {table.sql}")
        return False
    result.received = result.inserted = rows
    return True


def _stage_batch(
    con, table: TableRef, files, merge_key: str, state_at, result: WriteResult, from_events=False, fields=None, kinds=None
) -> None:
    """Fill temp table `_stage` with typed, de-duplicated rows ready to go into `table`."""
    typed = kinds is not None and bool(files)
    if typed:
        staged = _kinds_to_types(fields, kinds)
    else:
        staged = _stage(con, files, fields) if files else {}
    event_columns = {c: staged.pop(c) for c in _EVENT_FIELDS if c in staged}
    columns = _evolve(con, table, staged, result)
    if not staged:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _stage AS SELECT * FROM {table.sql} LIMIT 0")
        return
    if merge_key not in staged:
        raise ValueError(f"objects have no {merge_key!r} field to merge on")
    if from_events and len(event_columns) != len(_EVENT_FIELDS):
        raise ValueError("change-capture objects must carry _event_created and _event_type")
    if typed:
        _typed_view(con, files, {**staged, **event_columns}, columns)
        selected = ", ".join(quote(c) for c in staged if c not in BOOKKEEPING)
    else:
        selected = ", ".join(f"{_convert(c, columns[c])} AS {quote(c)}" for c in staged if c not in BOOKKEEPING)
    if from_events:
        created = f"CAST({quote(EVENT_CREATED)} AS BIGINT)"
        deleted = f"({quote(EVENT_TYPE)}->>'$') LIKE '%.deleted'"
        bookkeeping = (
            f"{created} AS _state_at, {deleted} AS is_deleted, "
            f"CASE WHEN {deleted} THEN to_timestamp({created}) END AS deleted_at"
        )
        newest_first = f"ORDER BY {created} DESC"
    else:
        bookkeeping = _bookkeeping(state_at)
        newest_first = ""
    # De-duplicate by key inside the batch (the newest state wins): MERGE and INSERT disagree on duplicates.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _stage AS SELECT {selected}, now() AS _loaded_at, {bookkeeping} "
        f"FROM _stage_raw QUALIFY row_number() OVER (PARTITION BY {quote(merge_key)} {newest_first}) = 1"
    )
    con.execute("DROP VIEW _stage_raw")


def _apply_changes(con, table: TableRef, merge_key: str, result: WriteResult) -> None:
    """Apply event states where they are at least as new as the row's; flag deletions."""
    key = quote(merge_key)
    stage_columns = [row[0] for row in con.execute("DESCRIBE _stage").fetchall()]
    newer = "(t._state_at IS NULL OR t._state_at <= s._state_at)"
    counts = con.execute(
        f"SELECT count(*) FILTER (WHERE t.{key} IS NOT NULL AND {newer} AND NOT s.is_deleted), "
        f"count(*) FILTER (WHERE s.is_deleted AND (t.{key} IS NULL OR {newer})), "
        f"count(*) FILTER (WHERE t.{key} IS NULL AND NOT s.is_deleted) "
        f"FROM _stage s LEFT JOIN {table.sql} t ON s.{key} = t.{key}"
    ).fetchone()
    result.updated += counts[0]
    result.deleted += counts[1]
    result.inserted += counts[2]
    _merge_stage(con, table, merge_key, stage_columns, only_if=newer)


def _merge_stage(con, table: TableRef, merge_key: str, stage_columns: list[str], only_if: Optional[str] = None) -> None:
    """Upsert `_stage` into `table` on the key; `only_if` guards updates (e.g. only newer states)."""
    key = quote(merge_key)
    names = ", ".join(quote(c) for c in stage_columns)
    updates = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in stage_columns if c != merge_key)
    values = ", ".join(f"s.{quote(c)}" for c in stage_columns)
    guard = f" AND {only_if}" if only_if else ""
    if not con.execute(f"SELECT EXISTS (SELECT 1 FROM {table.sql})").fetchone()[0]:
        # Nothing to match (a first load): a plain insert needs no hash join over the whole batch.
        con.execute(f"INSERT INTO {table.sql} ({names}) SELECT {names} FROM _stage")
        return
    con.execute(
        f"MERGE INTO {table.sql} t USING _stage s ON t.{key} = s.{key} "
        f"WHEN MATCHED{guard} THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
    )


STATE_TABLE = "_nilus_state"


def get_cursor(con: duckdb.DuckDBPyConnection, schema: str, key: str) -> Optional[int]:
    """A cursor kept in the warehouse next to the data it describes (so the two cannot drift)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, STATE_TABLE]
    ).fetchone()[0]
    if not exists:
        return None
    row = con.execute(f"SELECT value FROM {quote(schema)}.{STATE_TABLE} WHERE key = ?", [key]).fetchone()
    return int(row[0]) if row else None


def set_cursor(con: duckdb.DuckDBPyConnection, schema: str, key: str, value: int) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {quote(schema)}.{STATE_TABLE} (key VARCHAR PRIMARY KEY, value BIGINT, updated_at TIMESTAMPTZ)")
    con.execute(
        f"INSERT INTO {quote(schema)}.{STATE_TABLE} VALUES (?, ?, now()) "
        f"ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        [key, int(value)],
    )


def _apply(con, table: TableRef, strategy: str, merge_key: str, scope: Optional[Slice], result: WriteResult) -> None:
    key = quote(merge_key)
    stage_columns = [row[0] for row in con.execute("DESCRIBE _stage").fetchall()]
    names = ", ".join(quote(c) for c in stage_columns)
    matched = f"SELECT count(*) FROM _stage s JOIN {table.sql} t ON s.{key} = t.{key}"
    if strategy == "replace":
        where = f" WHERE {scope.condition()}" if scope else ""
        before = con.execute(f"SELECT count(*) FROM {table.sql}{where}").fetchone()[0]
        kept = con.execute(matched + (f" WHERE {scope.condition('t')}" if scope else "")).fetchone()[0]
        con.execute(f"DELETE FROM {table.sql}{where}")
        con.execute(f"INSERT INTO {table.sql} ({names}) SELECT {names} FROM _stage")
        result.deleted = before - kept
        result.updated = kept
        result.inserted = result.received - kept
    elif strategy == "append":
        # Idempotent by key: re-running the same window adds nothing twice.
        result.unchanged = con.execute(matched).fetchone()[0]
        con.execute(
            f"INSERT INTO {table.sql} ({names}) SELECT {names} FROM _stage s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table.sql} t WHERE t.{key} = s.{key})"
        )
        result.inserted = result.received - result.unchanged
    else:  # merge
        result.updated = con.execute(matched).fetchone()[0]
        _merge_stage(con, table, merge_key, stage_columns)
        result.inserted = result.received - result.updated


def newest_created(con: duckdb.DuckDBPyConnection, table: TableRef, column: str = "created") -> Optional[int]:
    """The cursor for incremental loads, read from the data itself (None if the table is missing or empty)."""
    if column not in table_columns(con, table):
        return None
    value = con.execute(f"SELECT max({quote(column)}) FROM {table.sql}").fetchone()[0]
    return int(value) if value is not None else None
