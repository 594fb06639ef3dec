"""DuckDB writes that enforce a strategy: merge (upsert on the key), replace (snapshot), append (new ids only).

A write has two phases. `prepare` stages the spooled NDJSON into typed, de-duplicated Parquet outside the
warehouse (see `staging`). `apply` then runs one transaction on the warehouse: evolve the table's schema,
compare each staged row's content hash with the stored one, write only new and changed rows, apply change
capture, commit the cursors. A failure anywhere rolls back, so the table is either the old one or the new one,
never half. `write` does both, for callers that own the file.

Columns are Stripe's top-level fields, typed as stripe-python declares them (`staging/columns.py`: epoch seconds are
TIMESTAMPTZ, nested objects and lists DuckDB `JSON`, queried with `->>`); a new table has every declared column,
even one no object has set yet. Fields the SDK does not declare are typed from the data. A field that shows up
later adds a column; a field whose type widens (int -> float, or a scalar that turns into an object) widens the
column instead of failing.
Bookkeeping columns: `_loaded_at`, when the row was written; `_state_at`, the Stripe-side time the row's state
is known from (the load's start for list reads, the event's `created` for change capture), which lets the
newest state win whatever order events arrive in; `is_deleted` / `deleted_at` for objects Stripe reports
deleted (rows are kept so the fact is not lost); `_content_hash`, the hash of the object as Stripe sent it,
so a re-load rewrites only what changed (an unchanged row keeps its `_loaded_at`; only its `_state_at` moves).

The strategies are written once, in SQL that DuckDB and PostgreSQL both run, over a `Sink` (`sinks/`): every
function here takes a DuckDB or psycopg connection (or a `Sink`) and the sink says the few things that differ.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence, Union

from ..staging.columns import Column
from .sinks import Sink, as_sink, literal
from ..staging.spool import CONTENT_HASH
from ..staging.stream import StreamedStaging
from ..staging.parquet import EVENT_PRESENT, STAGED_BOOKKEEPING, StagedBatch, key_columns, quote, stage

DEFAULT_SCHEMA = "stripe"
BOOKKEEPING = {
    "_loaded_at": "TIMESTAMPTZ", "_state_at": "BIGINT", "is_deleted": "BOOLEAN", "deleted_at": "TIMESTAMPTZ",
    CONTENT_HASH: "BIGINT",
}
# The columns an empty table starts with, so downstream queries work before the first object arrives.
MINIMAL_COLUMNS = {"id": "VARCHAR", "object": "VARCHAR"}  # every Stripe class declares both


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
    """Rows of a table owned by one partition: `column` in [gte, lt) (if `column`), and each `equals`
    column holding its value (e.g. `stripe_account = 'acct_…'`: one Connect account's rows)."""

    column: Optional[str]
    gte: Optional[int] = None
    lt: Optional[int] = None
    equals: tuple[tuple[str, str], ...] = ()
    # (column, values): only rows whose column holds one of the values, e.g. the customers whose balance
    # transactions were listed again. No values: no rows.
    among: Optional[tuple[str, tuple[str, ...]]] = None

    def condition(self, alias: str = "") -> str:
        # The column is an epoch field, stored as TIMESTAMPTZ (`_evolve` converts tables that kept seconds).
        prefix = alias + "." if alias else ""
        parts = [f"{prefix}{quote(c)} = {literal(v)}" for c, v in self.equals]
        if self.among is not None:
            column, values = self.among
            parts.append(f"{prefix}{quote(column)} IN ({', '.join(literal(v) for v in values)})" if values else "false")
        if self.column:
            col = prefix + quote(self.column)
            parts.append(f"{col} >= to_timestamp({int(self.gte)}) AND {col} < to_timestamp({int(self.lt)})")
        return " AND ".join(parts) or "true"


# A merge key is one column ("id") or several (("stripe_account", "id") for Connect: ids repeat across accounts).
MergeKey = Union[str, Sequence[str]]


def keys_sql(merge_key: MergeKey, alias: str = "") -> str:
    """`a.k1, a.k2`: the key's columns, for SELECT lists, GROUP BY and PARTITION BY."""
    prefix = alias + "." if alias else ""
    return ", ".join(prefix + quote(c) for c in key_columns(merge_key))


def key_tuple(merge_key: MergeKey, alias: str = "") -> str:
    """`a.k` or `(a.k1, a.k2)`: the key as one value, for IN and count(DISTINCT ...)."""
    cols = keys_sql(merge_key, alias)
    return cols if isinstance(merge_key, str) else f"({cols})"


def key_join(merge_key: MergeKey, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote(c)} = {right}.{quote(c)}" for c in key_columns(merge_key))


@dataclass
class WriteResult:
    table: str
    strategy: str
    received: int = 0  # objects in the batch after de-duplication by key
    inserted: int = 0
    updated: int = 0
    deleted: int = 0  # rows removed by a replace
    unchanged: int = 0  # rows already stored exactly as received (merge/replace), ids already present (append)
    rows: int = 0  # rows in the table after the write
    adopted: int = 0  # rows stored without an account that the write gave one (see `Adoption`)
    added_columns: list[str] = field(default_factory=list)
    widened_columns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Adoption:
    """Rows stored with a null `column` take `value`, in the write's transaction, before the batch is compared.

    Connect: a table the single-account location loaded has rows without `stripe_account`. That location reads
    the key's own account, so they are the platform's rows: stamped with the platform's id, the platform's load
    matches them by `(stripe_account, id)` instead of adding a second copy, and no check meets a null account.
    """

    column: str
    value: str


def _widen(current: str, incoming: Optional[str]) -> str:
    if incoming is None or incoming == current:
        return current
    if {current, incoming} <= {"BIGINT", "DOUBLE"}:
        return "DOUBLE"
    if current == "JSON" and incoming in {"BIGINT", "DOUBLE", "BOOLEAN"}:
        return "JSON"
    return "VARCHAR"  # a text column holds anything, JSON included (`->>` works on VARCHAR too)


def table_columns(con, table: TableRef) -> dict[str, str]:
    """The table's columns and types, spelled as DuckDB does (empty if the table does not exist)."""
    return as_sink(con).columns(table)


def _evolve(
    con: Sink, table: TableRef, staged: dict[str, Optional[str]], result: WriteResult,
    declared: Mapping[str, Column] = {},  # noqa: B006 (read only)
    merge_key: MergeKey = "id",
) -> dict[str, str]:
    """Create or widen the table so every staged column fits; return the final column types."""
    # The merge key's columns always: a Connect account's first load that lists nothing (a day without
    # charges) still makes `stripe_account`, which its metadata, checks and the next load read.
    staged = {**{k: None for k in key_columns(merge_key)}, **staged}
    existing = con.columns(table)
    create, alter, columns = _schema_changes(con, table, existing, staged, declared)
    if create is None and not alter:
        _index_key(con, table, columns, merge_key)
        return columns  # the common case: no DDL, no lock
    # Another writer of this table (a partition, an account, a second run) may be changing it right now: wait
    # for it (its transaction's end), then plan again from what it left.
    con.lock_ddl(str(table))
    create, alter, columns = _schema_changes(con, table, con.columns(table), staged, declared)
    if create is not None:
        con.create_table(table, create, key_columns(merge_key))
    for statement, column, change in alter:
        con.execute(statement)
        if change is not None:
            getattr(result, change).append(column)
    if create is None:
        _index_key(con, table, columns, merge_key)
    return columns


def _index_key(con: Sink, table: TableRef, columns: Mapping[str, str], merge_key: MergeKey) -> None:
    """A table written when its merge key was another (line items were keyed by `id` alone; a single
    account's table before Connect adopts it): PostgreSQL's unique index moves to this key, with the rows.
    After the ALTERs: a key column may have just been added (`stripe_account`)."""
    keys = key_columns(merge_key)
    if all(k in columns for k in keys):
        con.index_key(table, keys)


def _schema_changes(
    con: Sink, table: TableRef, existing: dict[str, str], staged: Mapping[str, Optional[str]],
    declared: Mapping[str, Column],
) -> tuple[Optional[dict[str, str]], list[tuple[str, str, Optional[str]]], dict[str, str]]:
    """What `_evolve` must do to the table as it is now: (columns of a table to create, or None; ALTER
    statements with the column and the `WriteResult` list each is reported in; the final column types)."""
    if not existing:
        # Every declared column from the start (in the SDK's order), then the fields Stripe's classes omit.
        columns = {c: col.sql_type for c, col in declared.items()}
        for c, t in staged.items():
            if c not in columns or t != columns[c]:
                columns[c] = t or columns.get(c) or "VARCHAR"
        for c, t in MINIMAL_COLUMNS.items():
            columns.setdefault(c, t)
        columns.update(BOOKKEEPING)
        return columns, [], columns
    existing = dict(existing)
    alter: list[tuple[str, str, Optional[str]]] = []
    for column, dtype in BOOKKEEPING.items():
        if column not in existing:  # tables made by an older version of this package
            alter.append((f"ALTER TABLE {table.sql} ADD COLUMN {quote(column)} {con.type_sql(dtype)}", column, None))
            existing[column] = dtype
    for column, col in declared.items():
        if col.epoch and existing.get(column) == "BIGINT":  # epoch seconds kept by an older version
            alter.append((
                f"ALTER TABLE {table.sql} ALTER COLUMN {quote(column)} TYPE {con.retype(column, 'BIGINT', 'TIMESTAMPTZ')}",
                column, "widened_columns",
            ))
            existing[column] = "TIMESTAMPTZ"
    for column, incoming in staged.items():
        if column not in existing:
            existing[column] = incoming or (declared[column].sql_type if column in declared else "VARCHAR")
            alter.append((f"ALTER TABLE {table.sql} ADD COLUMN {quote(column)} {con.type_sql(existing[column])}",
                          column, "added_columns"))
            continue
        target = _widen(existing[column], incoming)
        if incoming not in (None, existing[column]) and _all_null(con, table, column):
            # Typed from nulls only (e.g. VARCHAR for a field never set yet): take the real type now.
            target = incoming
        if target != existing[column]:
            alter.append((
                f"ALTER TABLE {table.sql} ALTER COLUMN {quote(column)} TYPE {con.retype(column, existing[column], target)}",
                column, "widened_columns",
            ))
            existing[column] = target
    return None, alter, existing


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


@dataclass
class PreparedWrite:
    """A batch staged outside the warehouse (see `staging`): what `apply` needs, and a folder to remove."""

    rows: StagedBatch
    changes: Optional[StagedBatch]
    change_set: Optional[ChangeSet]
    state_at: Optional[int]
    directory: str
    declared: Mapping[str, Column] = field(default_factory=dict)  # the object's columns as Stripe declares them

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def prepare(
    files: Sequence[str],
    merge_key: MergeKey = "id",
    state_at: Optional[int] = None,
    changes: Optional[ChangeSet] = None,
    fields: Optional[Sequence[str]] = None,
    kinds: Optional[Mapping[str, Iterable[str]]] = None,
    directory: Optional[str] = None,
    declared: Optional[Mapping[str, Column]] = None,
    streamed: Optional[StreamedStaging] = None,
) -> PreparedWrite:
    """Stage the spooled objects (and change-capture states) into Parquet in a new folder under
    `directory`, without touching the warehouse. The caller removes the folder (`cleanup`).
    `declared`: the object's columns as Stripe declares them (`columns.declared_columns`). `streamed`: the
    same objects' pieces staged while they were fetched (made with the same key, `state_at` and `declared`),
    finished here instead of staging the files again; if they cannot be used, the files are staged."""
    declared = dict(declared or {})
    folder = streamed.folder if streamed is not None else tempfile.mkdtemp(prefix="stage-", dir=directory)
    try:
        rows = streamed.finish(fields, kinds) if streamed is not None else None
        if rows is None:
            rows = stage(files, folder, merge_key, state_at, fields=fields, kinds=kinds, name="rows", declared=declared)
        staged_changes = None
        if changes is not None and any(changes.files):
            staged_changes = stage(
                changes.files, folder, merge_key, from_events=True, fields=changes.fields,
                kinds=changes.kinds if kinds is not None else None, name="changes", declared=declared,
            )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return PreparedWrite(rows, staged_changes, changes, state_at, folder, declared)


def write(
    con,
    table: TableRef,
    files: Sequence[str],
    strategy: str,
    merge_key: MergeKey = "id",
    scope: Optional[Slice] = None,
    state_at: Optional[int] = None,
    changes: Optional[ChangeSet] = None,
    fields: Optional[Sequence[str]] = None,
    kinds: Optional[Mapping[str, Iterable[str]]] = None,
    stage_dir: Optional[str] = None,
    declared: Optional[Mapping[str, Column]] = None,
) -> WriteResult:
    """Write spooled objects into `table` with `strategy`, then apply `changes`, in one transaction.

    `scope` limits a `replace` to one slice of the table (a partition); without it `replace` swaps the
    whole table. `merge` and `append` never delete. `state_at` is when the objects were read (epoch s).
    `fields` and `kinds` (each field's JSON kinds, as the spool recorded them) spare DuckDB the type probe.
    Equivalent to `prepare` (no warehouse needed) followed by `apply`; callers that share the warehouse
    file with other processes call the two themselves, so the file is locked only while applying.
    `con`: a DuckDB or psycopg connection, or a `Sink`.
    """
    _check_strategy(strategy)
    prepared = prepare(files, merge_key, state_at, changes, fields, kinds, directory=stage_dir, declared=declared)
    try:
        return apply(con, table, prepared, strategy, merge_key, scope)
    finally:
        prepared.cleanup()


def _check_strategy(strategy: str) -> None:
    if strategy not in ("merge", "replace", "append"):
        raise ValueError(f"unknown strategy {strategy!r}; use merge, replace or append")


def apply(
    con,
    table: TableRef,
    prepared: PreparedWrite,
    strategy: str,
    merge_key: MergeKey = "id",
    scope: Optional[Slice] = None,
    adopt: Optional[Adoption] = None,
) -> WriteResult:
    """Apply a prepared batch in one transaction: only new and changed rows are written. `adopt`: rows
    without an account are given one first (`Adoption`), in the same transaction."""
    _check_strategy(strategy)
    sink = as_sink(con)
    return sink.guarded(lambda: _apply_once(sink, table, prepared, strategy, merge_key, scope, adopt))


def _apply_once(con: Sink, table: TableRef, prepared: PreparedWrite, strategy, merge_key, scope,
                adopt: Optional[Adoption] = None) -> WriteResult:
    result = WriteResult(table=str(table), strategy=strategy)
    # Created before the write's transaction, each committed at once, so that first loads of several objects
    # into one new schema do not wait for each other's writes (only the table itself is created in it).
    con.create_schema(table.schema)
    change_set = prepared.change_set
    if change_set is not None and change_set.cursor is not None:
        _create_state_table(con, table.schema)
    with con.transaction():
        rows, changes = prepared.rows, prepared.changes
        columns = _evolve(con, table, rows.types, result, prepared.declared, merge_key)
        if changes is not None:
            columns = _evolve(con, table, changes.types, result, prepared.declared, merge_key)
        if adopt is not None and adopt.column in columns:
            result.adopted = _adopt(con, table, adopt)
        result.received = rows.rows
        if not rows.empty or (strategy == "replace"):
            _apply_rows(con, table, rows, columns, strategy, merge_key, scope, prepared.state_at, result)
        if changes is not None and not changes.empty:
            _apply_changes(con, table, changes, columns, merge_key, result)
        if change_set is not None and change_set.cursor is not None:
            set_cursor(con, table.schema, change_set.state_key, change_set.cursor)
        result.rows = con.execute(f"SELECT count(*) FROM {table.sql}").fetchone()[0]
        for temp in ("_diff", "_changes"):
            con.execute(f"DROP TABLE IF EXISTS {temp}")
    return result


def _adopt(con: Sink, table: TableRef, adopt: Adoption) -> int:
    """Give rows without an account the adopting one; returns how many."""
    column = quote(adopt.column)
    # The unique index is on the merge key already (`_evolve`); NULLs never collide in it.
    return con.changed(f"UPDATE {table.sql} SET {column} = {literal(adopt.value)} WHERE {column} IS NULL")


def _select(con: Sink, staged: StagedBatch, columns: Mapping[str, str], alias: str = "s") -> tuple[list[str], list[str]]:
    """(quoted column names, select expressions) inserting a staged batch's rows with their bookkeeping."""
    names = [c for c in staged.types if c not in BOOKKEEPING]
    values = [con.cast(f"{alias}.{quote(c)}", staged.types[c], columns[c]) for c in names]
    names += ["_loaded_at", *STAGED_BOOKKEEPING]
    values += ["now()", *(f"{alias}.{quote(c)}" for c in STAGED_BOOKKEEPING)]
    return [quote(c) for c in names], values


def _apply_rows(con: Sink, table, rows: StagedBatch, columns, strategy, merge_key, scope, state_at, result: WriteResult) -> None:
    key, content_hash = keys_sql(merge_key), quote(CONTENT_HASH)
    keys = key_columns(merge_key)
    scope = scope if strategy == "replace" else None
    where_scope = f" WHERE {scope.condition()}" if scope else ""
    if rows.empty:  # an empty snapshot: replace empties the table (or the slice)
        if strategy == "replace":
            result.deleted = con.changed(f"DELETE FROM {table.sql}{where_scope}")
        return
    quoted, expressions = _select(con, rows, columns)
    names, values = ", ".join(quoted), ", ".join(expressions)
    if not con.execute(f"SELECT EXISTS (SELECT 1 FROM {table.sql})").fetchone()[0]:
        staged = con.load(rows, "_rows")
        # Nothing to compare with (a first load): insert straight from the staged file.
        con.execute(f"INSERT INTO {table.sql} ({names}) SELECT {values} FROM {staged} s")
        result.inserted = rows.rows
        return
    if strategy == "append":
        staged = con.load(rows, "_rows")
        # Idempotent by key: re-running the same window adds nothing twice.
        result.inserted = con.changed(
            f"INSERT INTO {table.sql} ({names}) SELECT {values} FROM {staged} s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table.sql} t WHERE {key_join(merge_key, 't', 's')})"
        )
        result.unchanged = rows.rows - result.inserted
        return
    # merge and replace compare (key, content hash) pairs only: a row whose hash matches is left alone.
    # A row flagged deleted that is listed again is rewritten (it exists after all). Fields this batch
    # does not carry keep their stored values, as an UPDATE of the other columns would.
    kept = [c for c in columns if c not in rows.types and c not in BOOKKEEPING and c not in keys]
    staged = con.load(rows, "_rows_keys", columns=[*keys, CONTENT_HASH])  # all that the comparison reads
    con.temp_table(
        "_diff",
        f"SELECT {keys_sql(merge_key, 's')}, t._rid{''.join(f', t.{quote(c)}' for c in kept)} "
        f"FROM (SELECT {key}, {content_hash} FROM {staged}) s LEFT JOIN "
        f"(SELECT {con.rowid} AS _rid, {key}, {content_hash}, is_deleted{''.join(f', {quote(c)}' for c in kept)} "
        f"FROM {table.sql}{where_scope}) t ON {key_join(merge_key, 's', 't')} "
        f"WHERE t._rid IS NULL OR t.{content_hash} IS DISTINCT FROM s.{content_hash} OR t.is_deleted",
    )
    if strategy == "replace":  # rows of the table (or slice) that the snapshot no longer has
        result.deleted = con.changed(
            f"DELETE FROM {table.sql} t WHERE {scope.condition('t') + ' AND ' if scope else ''}"
            f"NOT EXISTS (SELECT 1 FROM {staged} s WHERE {key_join(merge_key, 's', 't')})"
        )
    result.updated, result.inserted = con.execute(
        f"SELECT count(DISTINCT {key_tuple(merge_key)}) FILTER (WHERE _rid IS NOT NULL), "
        f"count(*) FILTER (WHERE _rid IS NULL) FROM _diff"
    ).fetchone()
    result.unchanged = rows.rows - result.updated - result.inserted
    if result.updated or result.inserted:
        changed = con.load(rows, "_rows", only=("_diff", keys))
        # Both engines delete and append far more cheaply than they update wide rows in place.
        con.execute(f"DELETE FROM {table.sql} WHERE {con.rowid} IN (SELECT _rid FROM _diff WHERE _rid IS NOT NULL)")
        if kept:
            kept_values = ", ".join(f"{con.any_value(quote(c))} AS {quote(c)}" for c in kept)
            con.execute(
                f"INSERT INTO {table.sql} ({names}, {', '.join(quote(c) for c in kept)}) "
                f"SELECT {values}, {', '.join(f'd.{quote(c)}' for c in kept)} FROM {changed} s "
                f"JOIN (SELECT {key}, {kept_values} FROM _diff GROUP BY {key}) d ON {key_join(merge_key, 's', 'd')}"
            )
        else:
            con.execute(
                f"INSERT INTO {table.sql} ({names}) SELECT {values} FROM {changed} s "
                f"WHERE {key_tuple(merge_key, 's')} IN (SELECT {key} FROM _diff)"
            )
    if state_at is not None and result.unchanged:
        # Unchanged rows are not rewritten, but their state is now known from this read: move `_state_at`
        # (one 8-byte column) so older events cannot override it and stale-row checks see the re-read.
        con.execute(
            f"UPDATE {table.sql} SET _state_at = {int(state_at)} WHERE coalesce(_state_at, -1) < {int(state_at)} "
            f"AND {key_tuple(merge_key)} IN (SELECT {key} FROM {staged})"
        )


def _apply_changes(con: Sink, table, changes: StagedBatch, columns, merge_key, result) -> None:
    """Apply event states where they are at least as new as the row's; flag deletions."""
    key = quote(key_columns(merge_key)[-1])  # a key column: null only where no row matched
    staged = con.load(changes, "_change_rows")
    quoted, expressions = _select(con, changes, columns)
    aliased = ", ".join(f"{v} AS {n}" for n, v in zip(quoted, expressions))
    present = quote(EVENT_PRESENT)
    con.temp_table("_changes", f"SELECT {aliased}, s.{present} FROM {staged} s")
    stage_columns = [c for c in changes.types if c not in BOOKKEEPING] + ["_loaded_at", *STAGED_BOOKKEEPING]
    # At least as new as the row; in the row's own second a stored deletion stands against any other change
    # (a deletion wins its second, as in staging), while a deletion or any change replaces a live row's state.
    newer = (
        "(t._state_at IS NULL OR t._state_at < s._state_at OR (t._state_at = s._state_at "
        "AND (s.is_deleted OR NOT coalesce(t.is_deleted, false))))"
    )
    counts = con.execute(
        f"SELECT count(*) FILTER (WHERE t.{key} IS NOT NULL AND {newer} AND NOT s.is_deleted), "
        f"count(*) FILTER (WHERE s.is_deleted AND (t.{key} IS NULL OR {newer})), "
        f"count(*) FILTER (WHERE t.{key} IS NULL AND NOT s.is_deleted) "
        f"FROM _changes s LEFT JOIN {table.sql} t ON {key_join(merge_key, 's', 't')}"
    ).fetchone()
    result.updated += counts[0]
    result.deleted += counts[1]
    result.inserted += counts[2]
    _merge(con, table, "_changes", merge_key, stage_columns, only_if=newer, keep_absent=True)


def _merge(
    con: Sink, table: TableRef, source: str, merge_key: MergeKey, stage_columns: list[str], only_if: Optional[str] = None,
    keep_absent: bool = False,
) -> None:
    """Upsert `source` into `table` on the key (MERGE: DuckDB and PostgreSQL 15+ both have it); `only_if`
    guards updates (e.g. only newer states); `keep_absent`: a Stripe field missing from a row's
    `_event_fields` keeps the table's value."""
    names = ", ".join(quote(c) for c in stage_columns)

    def value(c: str) -> str:
        if not keep_absent or c in BOOKKEEPING:
            return f"s.{quote(c)}"
        present = f"s.{quote(EVENT_PRESENT)}"
        return f"CASE WHEN {present} IS NULL OR {con.contains(present, c)} THEN s.{quote(c)} ELSE t.{quote(c)} END"

    updates = ", ".join(f"{quote(c)} = {value(c)}" for c in stage_columns if c not in key_columns(merge_key))
    values = ", ".join(f"s.{quote(c)}" for c in stage_columns)
    guard = f" AND {only_if}" if only_if else ""
    con.execute(
        f"MERGE INTO {table.sql} t USING {source} s ON {key_join(merge_key, 't', 's')} "
        f"WHEN MATCHED{guard} THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
    )


STATE_TABLE = "_nilus_state"


def get_cursor(con, schema: str, key: str) -> Optional[int]:
    """A cursor kept in the warehouse next to the data it describes (so the two cannot drift)."""
    sink = as_sink(con)
    if not sink.columns(TableRef(schema, STATE_TABLE)):
        return None
    row = sink.execute(f"SELECT value FROM {quote(schema)}.{STATE_TABLE} WHERE key = {literal(key)}").fetchone()
    return int(row[0]) if row else None


def _create_state_table(sink: Sink, schema: str) -> None:
    """The cursors' table, created if missing (in a transaction of its own: see `Sink.create_schema`)."""
    if sink.columns(TableRef(schema, STATE_TABLE)):
        return
    sink.create_schema(schema)
    with sink.transaction():
        sink.lock_ddl(f"{schema}.{STATE_TABLE}")
        sink.execute(f"CREATE TABLE IF NOT EXISTS {quote(schema)}.{STATE_TABLE} "
                     "(key VARCHAR PRIMARY KEY, value BIGINT, updated_at TIMESTAMPTZ)")


def set_cursor(con, schema: str, key: str, value: int) -> None:
    sink = as_sink(con)
    _create_state_table(sink, schema)
    sink.execute(
        f"INSERT INTO {quote(schema)}.{STATE_TABLE} VALUES ({literal(key)}, {int(value)}, now()) "
        f"ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
    )


def newest_created(con, table: TableRef, column: str = "created", where: Optional[Slice] = None) -> Optional[int]:
    """The cursor for incremental loads, read from the data itself (None if the table is missing or empty).
    `where` limits it to some rows, e.g. one Connect account's."""
    sink = as_sink(con)
    columns = sink.columns(table)
    if column not in columns or (where is not None and any(c not in columns for c, _ in where.equals)):
        return None
    condition = f" WHERE {where.condition()}" if where is not None else ""
    value = sink.execute(f"SELECT max({quote(column)}) FROM {table.sql}{condition}").fetchone()[0]
    if value is None:
        return None
    return int(value.timestamp()) if hasattr(value, "timestamp") else int(value)  # TIMESTAMPTZ, or seconds


def _all_null(con: Sink, table: TableRef, column: str) -> bool:
    return con.execute(f"SELECT count({quote(column)}) = 0 FROM {table.sql}").fetchone()[0]
