"""PostgreSQL writes with the same contract as `warehouse.write` (DuckDB): merge, replace, append, schema
evolution, change capture and cursors, all in one transaction.

A write COPYs the spooled NDJSON lines into a temporary table (psycopg's `cursor.copy`, the bulk path: no
row-by-row inserts), reads them into the table's column types with `json_populate_record` in one pass, and
upserts on the merge key with `INSERT … ON CONFLICT` against a unique index. Nested objects and lists are `jsonb`
(`billing_details->'address'->>'city'`). Types follow the same rules as the DuckDB warehouse: integers are
`bigint` and widen to `double precision`, strings are `text`, objects/lists/mixed fields are `jsonb`, a
field that shows up later adds a column, and a column typed from nulls only takes the real type when
values arrive. The caller passes a psycopg connection in autocommit mode: each write is its own
transaction, so the table is either the old one or the new one, never half.
"""

from __future__ import annotations

from typing import BinaryIO, Iterable, Mapping, Optional, Sequence

import psycopg
import zstandard
from psycopg import sql

from ..warehouse import ChangeSet, Slice, TableRef, WriteResult

BOOKKEEPING = {"_loaded_at": "timestamp with time zone", "_state_at": "bigint", "is_deleted": "boolean",
               "deleted_at": "timestamp with time zone"}
EVENT_CREATED, EVENT_TYPE = "_event_created", "_event_type"
MINIMAL_COLUMNS = {"id": "text", "object": "text", "created": "bigint"}
STATE_TABLE = "_nilus_state"
BIGINT, DOUBLE, BOOLEAN, TEXT, JSONB = "bigint", "double precision", "boolean", "text", "jsonb"
_NUMERIC = {"BIGINT", "UBIGINT", "DOUBLE", "HUGE"}
_COPY_CHUNK = 1 << 20

# A JSON value's kind, with the names the spool records (DuckDB's json_type): integers beyond bigint are HUGE.
_KIND_SQL = """CASE jsonb_typeof(e.value)
    WHEN 'number' THEN CASE WHEN e.value::text !~ '^-?[0-9]+$' THEN 'DOUBLE'
        WHEN e.value::text::numeric BETWEEN -9223372036854775808 AND 9223372036854775807 THEN 'BIGINT'
        ELSE 'HUGE' END
    WHEN 'string' THEN 'VARCHAR' WHEN 'boolean' THEN 'BOOLEAN' WHEN 'object' THEN 'OBJECT'
    WHEN 'array' THEN 'ARRAY' ELSE 'NULL' END"""


def pg_type(kinds: Iterable[str]) -> Optional[str]:
    """The column type for a field whose values had these JSON kinds (None: only nulls seen)."""
    found = {k for k in kinds if k and k != "NULL"}
    if not found:
        return None
    if found <= {"BIGINT", "UBIGINT"}:
        return BIGINT
    if found <= _NUMERIC:
        return DOUBLE
    if found == {"BOOLEAN"}:
        return BOOLEAN
    if found == {"VARCHAR"}:
        return TEXT
    return JSONB


def widen(current: str, incoming: Optional[str]) -> str:
    if incoming is None or incoming == current:
        return current
    if {current, incoming} <= {BIGINT, DOUBLE}:
        return DOUBLE
    if current == JSONB and incoming in {BIGINT, DOUBLE, BOOLEAN}:
        return JSONB
    return TEXT  # text holds anything, JSON text included


def _table(table: TableRef) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def table_columns(con: psycopg.Connection, table: TableRef) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", [table.schema, table.name]).fetchall()
    return {name: dtype for name, dtype in rows}


def _open_spool_file(path: str) -> BinaryIO:
    """The NDJSON bytes of one spool file (the spool writes zstd-compressed `.ndjson.zst`)."""
    raw = open(path, "rb")
    if path.endswith(".zst"):
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
    return raw


def _copy_files(con: psycopg.Connection, files: Sequence[str]) -> None:
    """COPY the NDJSON lines into `_stage_raw(doc text)`, streamed in 1 MB chunks.

    COPY's text format treats backslash as an escape; JSON has no raw tabs or newlines inside a line, so
    doubling every backslash is the whole escaping. The lines stay text: building `jsonb` for every object
    cost more than the whole typed read (`json_populate_record`) that follows.
    """
    con.execute("DROP TABLE IF EXISTS _stage_raw")
    con.execute("CREATE TEMP TABLE _stage_raw (doc text) ON COMMIT DROP")
    with con.cursor() as cur, cur.copy("COPY _stage_raw (doc) FROM STDIN") as copy:
        for path in files:
            with _open_spool_file(path) as f:
                while chunk := f.read(_COPY_CHUNK):
                    copy.write(chunk.replace(b"\\", b"\\\\"))


def _probe(con: psycopg.Connection, fields: Optional[Sequence[str]]) -> dict[str, Optional[str]]:
    rows = con.execute(
        f"SELECT e.key, array_agg(DISTINCT {_KIND_SQL}) FROM _stage_raw, jsonb_each(_stage_raw.doc::jsonb) e GROUP BY e.key"
    ).fetchall()
    probed = {key: pg_type(kinds) for key, kinds in rows}
    order = [f for f in (fields or ()) if f in probed] + sorted(k for k in probed if k not in set(fields or ()))
    return {f: probed[f] for f in order}


def _evolve(con, table: TableRef, staged: dict[str, Optional[str]], merge_key: str, result: WriteResult) -> dict[str, str]:
    """Create or widen the table so every staged column fits; return the final column types."""
    existing = table_columns(con, table)
    if not existing:
        columns = {c: (t or TEXT) for c, t in staged.items()}
        for c, t in MINIMAL_COLUMNS.items():
            columns.setdefault(c, t)
        columns.update(BOOKKEEPING)
        ddl = sql.SQL(", ").join(sql.SQL("{} {}").format(_ident(c), sql.SQL(t)) for c, t in columns.items())
        con.execute(sql.SQL("CREATE TABLE {} ({})").format(_table(table), ddl))
        # The merge key's unique index is what INSERT … ON CONFLICT upserts on.
        index = f"{table.name}__{merge_key}__key"[:63]
        con.execute(sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(_ident(index), _table(table), _ident(merge_key)))
        return columns
    for column, incoming in staged.items():
        if column not in existing:
            existing[column] = incoming or TEXT
            con.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                _table(table), _ident(column), sql.SQL(existing[column])))
            result.added_columns.append(column)
            continue
        current = existing[column]
        target = widen(current, incoming)
        if incoming not in (None, current) and _all_null(con, table, column):
            target = incoming  # typed from nulls only (e.g. text for a field never set yet): take the real type
        if target != current:
            con.execute(sql.SQL("ALTER TABLE {t} ALTER COLUMN {c} TYPE {ty} USING {conv}").format(
                t=_table(table), c=_ident(column), ty=sql.SQL(target), conv=_retype(column, current, target)))
            existing[column] = target
            result.widened_columns.append(column)
    return existing


def _retype(column: str, current: str, target: str) -> sql.Composable:
    col = _ident(column)
    if target == JSONB:
        return sql.SQL("to_jsonb({})").format(col)
    if current == JSONB and target == TEXT:
        return sql.SQL("CASE WHEN jsonb_typeof({c}) = 'string' THEN {c} #>> '{{}}' ELSE {c}::text END").format(c=col)
    return sql.SQL("{}::{}").format(col, sql.SQL(target))


def _all_null(con, table: TableRef, column: str) -> bool:
    return con.execute(sql.SQL("SELECT count({}) = 0 FROM {}").format(_ident(column), _table(table))).fetchone()[0]


def _stage(con, table: TableRef, files, merge_key: str, state_at, result: WriteResult, fields, kinds,
           from_events: bool = False) -> list[str]:
    """Fill temp table `_stage` with typed rows, one per key (the newest event's state for change capture);
    return its columns."""
    _copy_files(con, files)
    if kinds is not None:
        staged = {f: pg_type(kinds.get(f, ())) for f in (list(fields) if fields is not None else list(kinds))}
    else:
        staged = _probe(con, fields)
    events = [staged.pop(c, None) for c in (EVENT_CREATED, EVENT_TYPE)]
    if staged and merge_key not in staged:
        raise ValueError(f"objects have no {merge_key!r} field to merge on")
    columns = _evolve(con, table, staged, merge_key, result)
    names = [c for c in staged if c not in BOOKKEEPING]
    con.execute("DROP TABLE IF EXISTS _stage")
    if not names:
        con.execute(sql.SQL("CREATE TEMP TABLE _stage ON COMMIT DROP AS SELECT * FROM {} LIMIT 0").format(_table(table)))
        return list(columns)
    if from_events:
        if len([e for e in events if e is not None]) != 2:
            raise ValueError("change-capture objects must carry _event_created and _event_type")
        created, deleted = f"(doc::json->>'{EVENT_CREATED}')::bigint", f"(doc::json->>'{EVENT_TYPE}') LIKE '%.deleted'"
        bookkeeping = (f"{created} AS _state_at, {deleted} AS is_deleted, "
                       f"CASE WHEN {deleted} THEN to_timestamp({created}) END AS deleted_at")
    else:
        stamp = "NULL" if state_at is None else str(int(state_at))
        bookkeeping = f"{stamp}::bigint AS _state_at, false AS is_deleted, NULL::timestamptz AS deleted_at"
    # json_populate_record reads every field into the table's own column type in one pass (strings unwrap
    # into text, objects into jsonb or their JSON text, JSON null into NULL), as _from_doc would one by one.
    selected = sql.SQL(", ").join(sql.SQL("r.{}").format(_ident(c)) for c in names)
    con.execute(sql.SQL(
        "CREATE TEMP TABLE _stage ON COMMIT DROP AS SELECT {selected}, now() AS _loaded_at, {bookkeeping} "
        "FROM _stage_raw, json_populate_record(NULL::{t}, _stage_raw.doc::json) AS r"
    ).format(selected=selected, bookkeeping=sql.SQL(bookkeeping), t=_table(table)))
    con.execute("DROP TABLE _stage_raw")
    key = _ident(merge_key)
    if con.execute(sql.SQL("SELECT count(*) > count(DISTINCT {}) FROM _stage").format(key)).fetchone()[0]:
        # A key twice in one batch (ON CONFLICT may touch a row once): keep the newest state, any one of equals.
        con.execute(sql.SQL(
            "DELETE FROM _stage a USING _stage b WHERE a.{k} = b.{k} "
            "AND (coalesce(a._state_at, 0), a.ctid) < (coalesce(b._state_at, 0), b.ctid)").format(k=key))
    return names + list(BOOKKEEPING)


def _upsert(con, table: TableRef, merge_key: str, names: list[str], only_if: Optional[str] = None) -> tuple[int, int]:
    """INSERT … ON CONFLICT DO UPDATE from `_stage`; returns (inserted, updated)."""
    cols = sql.SQL(", ").join(map(_ident, names))
    updates = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=_ident(c)) for c in names if c != merge_key)
    guard = sql.SQL(" WHERE " + only_if) if only_if else sql.SQL("")
    return con.execute(sql.SQL(
        "WITH up AS (INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM _stage ON CONFLICT ({key}) DO UPDATE SET "
        "{updates}{guard} RETURNING (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
    ).format(t=_table(table), cols=cols, key=_ident(merge_key), updates=updates, guard=guard)).fetchone()


def _scope(scope: Optional[Slice], alias: str = "") -> sql.Composable:
    if scope is None:
        return sql.SQL("true")
    col = sql.SQL("{}.{}").format(_ident(alias), _ident(scope.column)) if alias else _ident(scope.column)
    return sql.SQL("{c} >= {lo} AND {c} < {hi}").format(c=col, lo=sql.Literal(int(scope.gte)), hi=sql.Literal(int(scope.lt)))


def _apply(con, table: TableRef, strategy: str, merge_key: str, scope: Optional[Slice], names: list[str],
           result: WriteResult) -> None:
    result.received = con.execute("SELECT count(*) FROM _stage").fetchone()[0]
    key = _ident(merge_key)
    if strategy == "replace":
        before = con.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(_table(table), _scope(scope))).fetchone()[0]
        kept = con.execute(sql.SQL("SELECT count(*) FROM _stage s JOIN {t} t ON s.{k} = t.{k} WHERE {w}").format(
            t=_table(table), k=key, w=_scope(scope, "t"))).fetchone()[0]
        con.execute(sql.SQL("DELETE FROM {} WHERE {}").format(_table(table), _scope(scope)))
        _upsert(con, table, merge_key, names)  # a key outside the slice moves into it, never twice
        result.deleted, result.updated, result.inserted = before - kept, kept, result.received - kept
    elif strategy == "append":
        cols = sql.SQL(", ").join(map(_ident, names))
        cur = con.execute(sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM _stage ON CONFLICT ({k}) DO NOTHING").format(
            t=_table(table), cols=cols, k=key))
        result.inserted = cur.rowcount
        result.unchanged = result.received - result.inserted
    else:  # merge
        result.inserted, result.updated = _upsert(con, table, merge_key, names)


def _apply_changes(con, table: TableRef, merge_key: str, names: list[str], result: WriteResult) -> None:
    """Apply event states where they are at least as new as the row's; flag deletions."""
    newer = "(t._state_at IS NULL OR t._state_at <= s._state_at)"
    counts = con.execute(sql.SQL(
        "SELECT count(*) FILTER (WHERE t.{k} IS NOT NULL AND " + newer + " AND NOT s.is_deleted), "
        "count(*) FILTER (WHERE s.is_deleted AND (t.{k} IS NULL OR " + newer + ")), "
        "count(*) FILTER (WHERE t.{k} IS NULL AND NOT s.is_deleted) FROM _stage s LEFT JOIN {t} t ON s.{k} = t.{k}"
    ).format(k=_ident(merge_key), t=_table(table))).fetchone()
    result.updated += counts[0]
    result.deleted += counts[1]
    result.inserted += counts[2]
    _upsert(con, table, merge_key, names, only_if="t._state_at IS NULL OR t._state_at <= EXCLUDED._state_at")


def write(
    con: psycopg.Connection,
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
    """Write spooled objects into `table` with `strategy`, then apply `changes`, in one transaction
    (the arguments mean what they mean for `warehouse.write`)."""
    if strategy not in ("merge", "replace", "append"):
        raise ValueError(f"unknown strategy {strategy!r}; use merge, replace or append")
    try:
        return _write_once(con, table, files, strategy, merge_key, scope, state_at, changes, fields, kinds)
    except (psycopg.errors.NumericValueOutOfRange, psycopg.errors.InvalidTextRepresentation):
        if kinds is None:
            raise
        # A value the recorded kinds did not foresee (an integer beyond 64 bits): type the batch in SQL.
        return _write_once(con, table, files, strategy, merge_key, scope, state_at, changes, fields, None)


def _write_once(con, table, files, strategy, merge_key, scope, state_at, changes, fields, kinds) -> WriteResult:
    result = WriteResult(table=str(table), strategy=strategy)
    with con.transaction():
        con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(_ident(table.schema)))
        names = _stage(con, table, [f for f in files if f], merge_key, state_at, result, fields, kinds)
        _apply(con, table, strategy, merge_key, scope, names, result)
        if changes is not None:
            change_files = [f for f in changes.files if f]
            if change_files:
                change_kinds = changes.kinds if kinds is not None and changes.kinds is not None else None
                names = _stage(con, table, change_files, merge_key, None, result, changes.fields, change_kinds,
                               from_events=True)
                _apply_changes(con, table, merge_key, names, result)
            if changes.cursor is not None:
                set_cursor(con, table.schema, changes.state_key, changes.cursor)
        result.rows = con.execute(sql.SQL("SELECT count(*) FROM {}").format(_table(table))).fetchone()[0]
    return result


def get_cursor(con: psycopg.Connection, schema: str, key: str) -> Optional[int]:
    """A cursor kept in the warehouse next to the data it describes (so the two cannot drift)."""
    exists = con.execute("SELECT to_regclass(%s) IS NOT NULL",
                         [sql.SQL("{}.{}").format(_ident(schema), _ident(STATE_TABLE)).as_string(con)]).fetchone()[0]
    if not exists:
        return None
    row = con.execute(sql.SQL("SELECT value FROM {}.{} WHERE key = %s").format(_ident(schema), _ident(STATE_TABLE)),
                      [key]).fetchone()
    return int(row[0]) if row else None


def set_cursor(con: psycopg.Connection, schema: str, key: str, value: int) -> None:
    state = sql.SQL("{}.{}").format(_ident(schema), _ident(STATE_TABLE))
    con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(_ident(schema)))
    con.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value bigint, updated_at timestamptz)").format(state))
    con.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s, now()) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                        "updated_at = EXCLUDED.updated_at").format(state), [key, int(value)])


def newest_created(con: psycopg.Connection, table: TableRef, column: str = "created") -> Optional[int]:
    """The cursor for incremental loads, read from the data itself (None if the table is missing or empty)."""
    if column not in table_columns(con, table):
        return None
    value = con.execute(sql.SQL("SELECT max({}) FROM {}").format(_ident(column), _table(table))).fetchone()[0]
    return int(value) if value is not None else None
