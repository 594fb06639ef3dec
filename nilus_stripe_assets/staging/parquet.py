"""Typed staging outside the warehouse: spooled NDJSON -> one de-duplicated Parquet file, ready to apply.

Parsing JSON, typing, hashing and de-duplicating are the expensive part of a write. They run here, in a
private in-memory DuckDB capped in memory and spilling to the spool folder, so the warehouse file's
single-writer lock is not held meanwhile. The warehouse then only compares (key, content hash) pairs with
what it stores and moves the rows that changed (`warehouse.apply`). Parquet is the hand-over because any
sink reads it quickly, column by column.

Columns are typed from Stripe's declarations where the batch's values fit them (`staging/columns.py`: an all-null
field still gets its real type, epoch seconds become TIMESTAMPTZ), else from the batch alone (the JSON kinds
the spool recorded, or DuckDB's probe): the sink casts them into the table's types, which may be wider.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence, Union

import duckdb

from ..source.config import ConfigError
from .columns import Column
from .spool import CONTENT_HASH

# Fields the change-capture spool adds to each object; used for staging, never stored as columns.
EVENT_CREATED, EVENT_TYPE = "_event_created", "_event_type"
EVENT_FIELDS = (EVENT_CREATED, EVENT_TYPE)
# The event's position in the events list as read (0: the newest). Stripe's `created` has whole seconds, so
# within one second only the list's own order (newest first) tells which state is the newest.
EVENT_SEQ = "_event_seq"
# The fields an event's payload carries: a payload rendered in an older API version may lack a field, and
# an absent field must keep the row's value rather than become NULL. Staged as a VARCHAR[] (NULL: unknown).
EVENT_PRESENT = "_event_fields"
# Per-row bookkeeping the staged file carries besides the object's own fields.
STAGED_BOOKKEEPING = (CONTENT_HASH, "_state_at", "is_deleted", "deleted_at")

# "HUGE": an integer beyond BIGINT (the probe tells it apart from other UBIGINTs); stored as DOUBLE.
_NUMERIC = {"BIGINT", "UBIGINT", "DOUBLE", "HUGE"}
_JSON_KINDS = ("NULL", "BOOLEAN", "BIGINT", "UBIGINT", "DOUBLE", "VARCHAR", "OBJECT", "ARRAY", "HUGE")

# DuckDB's defaults (80 % of RAM, every core) let one write take a gigabyte; a cap makes it spill to disk
# instead, so memory stays flat however large the batch. Overridable for big machines.
MEMORY_LIMIT_ENV, THREADS_ENV = "NILUS_DUCKDB_MEMORY_LIMIT", "NILUS_DUCKDB_THREADS"
DEFAULT_MEMORY_LIMIT_MB = 96
# The staged file's layout. A row group is buffered whole, next to the JSON reader's buffers, under the cap
# above: 8,192 charges (~11 MB) leave room, so nothing is evicted. 1M charges staged in 8.6 s of CPU
# instead of 10.0 s with 16,384 rows (and 5.8 s instead of 6.3 s to insert them); 32,768 spill (4x the CPU).
PARQUET_OPTIONS = "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 8192)"
# Staging runs DuckDB under the cap above; two at a time in a process (the machine's cores) bounds memory
# however many objects or accounts a run fetches and stages at once (`stream.py` stages piece by piece).
SLOTS = threading.BoundedSemaphore(2)


def key_columns(merge_key: Union[str, Sequence[str]]) -> tuple[str, ...]:
    """A merge key as its columns: "id", or a composite such as ("stripe_account", "id") (Connect)."""
    return (merge_key,) if isinstance(merge_key, str) else tuple(merge_key)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def sql_strings(values: Sequence[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def duckdb_threads() -> int:
    """$NILUS_DUCKDB_THREADS (default 1). Raises ConfigError unless it is a whole number >= 1."""
    text = os.environ.get(THREADS_ENV, "").strip() or "1"
    if not (text.isdigit() and int(text) >= 1):
        raise ConfigError(f"{THREADS_ENV}={text[:20]!r} is not a whole number >= 1; set e.g. {THREADS_ENV}=2, or unset it (1).")
    return int(text)


def duckdb_memory_limit() -> str:
    """$NILUS_DUCKDB_MEMORY_LIMIT (default 96MB), as DuckDB's `memory_limit` takes it. Raises ConfigError for a
    value DuckDB refuses (DuckDB itself is asked, on a throwaway in-memory database)."""
    limit = _memory_limit()
    with duckdb.connect() as con:
        try:
            con.execute(f"SET memory_limit = {sql_literal(limit)}")
        except duckdb.Error as exc:
            reason = str(exc).split("Error: ", 1)[-1].splitlines()[0]
            raise ConfigError(
                f"{MEMORY_LIMIT_ENV}={limit[:20]!r} is not a memory size DuckDB accepts ({reason}); set e.g. "
                f"{MEMORY_LIMIT_ENV}=512MB, or unset it ({DEFAULT_MEMORY_LIMIT_MB}MB)."
            ) from None
    return limit


def _memory_limit() -> str:
    return os.environ.get(MEMORY_LIMIT_ENV, "").strip() or f"{DEFAULT_MEMORY_LIMIT_MB}MB"


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def limit_resources(con, megabytes: Optional[int] = None, temp_directory: Optional[str] = None) -> None:
    limit = f"{megabytes}MB" if megabytes else _memory_limit()  # checked once, when the run started
    con.execute(f"SET memory_limit = {sql_literal(limit)}")
    con.execute(f"SET threads = {duckdb_threads()}")
    con.execute("SET preserve_insertion_order = false")  # tables have no order; keeping it costs memory
    if temp_directory:
        con.execute(f"SET temp_directory = '{temp_directory}'")


def sql_type(json_types: Iterable[str]) -> Optional[str]:
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


@dataclass(frozen=True)
class StagedBatch:
    """Staged Parquet files of one schema (none when the batch is empty) and the batch's own column types.
    One file when staged at once; one per spooled piece when staged while the fetch ran (`stream.py`)."""

    paths: tuple[str, ...]
    types: dict[str, Optional[str]]  # object field -> SQL type (None: only nulls seen)
    rows: int  # after de-duplication by key

    @property
    def empty(self) -> bool:
        return not self.paths

    @property
    def relation(self) -> str:
        return f"read_parquet({sql_strings(self.paths)})"


def stage(
    files: Sequence[str],
    directory: str,
    merge_key: Union[str, Sequence[str]] = "id",
    state_at: Optional[int] = None,
    from_events: bool = False,
    fields: Optional[Sequence[str]] = None,
    kinds: Optional[Mapping[str, Iterable[str]]] = None,
    name: str = "stage",
    declared: Optional[Mapping[str, Column]] = None,
) -> StagedBatch:
    """Read spooled objects into `<directory>/<name>.parquet`, typed, hashed, one row per key (the newest
    event's state wins for change capture; any one of identical list reads otherwise)."""
    files = [f for f in files if f]
    if not files:
        return StagedBatch((), {}, 0)
    con = duckdb.connect()
    try:
        spill = tempfile.mkdtemp(prefix=f"{name}-spill-", dir=directory)
        limit_resources(con, temp_directory=spill)
        typed = kinds is not None
        try:
            types = _read(con, files, fields, kinds if typed else None, declared or {})
            return _write(con, types, directory, name, merge_key, state_at, from_events)
        except (duckdb.InvalidInputException, duckdb.ConversionException):
            if not typed:
                raise
            # A value the recorded kinds did not foresee (e.g. an integer beyond 64 bits): let DuckDB probe.
            types = _read(con, files, fields, None, declared or {})
            return _write(con, types, directory, name, merge_key, state_at, from_events)
    finally:
        con.close()


def _read(con, files, fields, kinds, declared: Mapping[str, Column]) -> dict[str, Optional[str]]:
    """View `_raw` over the files with the batch's column types; returns them (incl. event/hash fields)."""
    if kinds is not None:
        types = column_types(fields, kinds, declared)
        read_typed(con, files, types, declared)
        return types
    return _probe(con, files, fields, declared)


def column_types(fields: Optional[Sequence[str]], kinds: Mapping[str, Iterable[str]],
                 declared: Mapping[str, Column]) -> dict[str, Optional[str]]:
    """Each field's SQL type from the JSON kinds the spool recorded (declared where the values fit), in the
    order of `fields` (first seen first), then fields only `kinds` names."""
    names = list(fields) if fields is not None else list(kinds)
    names += [k for k in kinds if k not in set(names)]
    return {f: _declared_or(declared.get(f), kinds.get(f, ())) for f in names}


def read_typed(con, files: Sequence[str], types: Mapping[str, Optional[str]], declared: Mapping[str, Column]) -> None:
    """View `_raw` over the files, each field read straight into `types` (None: JSON, all nulls)."""
    read_as = {f: (declared[f].read_as if _is_declared(t, declared.get(f)) else t or "JSON") for f, t in types.items()}
    _view(con, files, read_as, "_json_typed")
    # Stripe sends epoch seconds as integers: read as BIGINT, stored as timestamps.
    epochs = [f for f, t in types.items() if t == "TIMESTAMPTZ"]
    replace = f" REPLACE ({', '.join(f'to_timestamp({quote(f)}) AS {quote(f)}' for f in epochs)})" if epochs else ""
    con.execute(f"CREATE OR REPLACE TEMP VIEW _raw AS SELECT *{replace} FROM _json_typed")


def _declared_or(column: Optional[Column], kinds: Iterable[str]) -> Optional[str]:
    """The declared SQL type when the values fit it, else the type the values alone give."""
    kinds = list(kinds)
    return column.sql_type if column is not None and column.fits(kinds) else sql_type(kinds)


def _is_declared(sql: Optional[str], column: Optional[Column]) -> bool:
    return column is not None and sql == column.sql_type


def _view(con, files, read_as: Mapping[str, str], view: str) -> None:
    spec = "{" + ", ".join("'" + c.replace("'", "''") + "': '" + t + "'" for c, t in read_as.items()) + "}"
    con.execute(f"DROP VIEW IF EXISTS {view}")
    con.execute(
        f"CREATE TEMP VIEW {view} AS SELECT * FROM read_json({sql_strings(files)}, "
        f"format='newline_delimited', columns={spec})"
    )


def _probe(con, files, fields, declared: Mapping[str, Column]) -> dict[str, Optional[str]]:
    """DuckDB finds the types itself: OR one bit per JSON kind per field over all objects (no values kept)."""
    if fields is None:
        # Objects of one type share a few shapes: distinct key lists are few, and cheap to collect.
        shapes = con.execute("SELECT DISTINCT json_keys(json) FROM read_ndjson_objects(?)", [list(files)]).fetchall()
        fields = list(dict.fromkeys(key for (keys,) in shapes for key in keys))
    _view(con, files, {f: "JSON" for f in fields}, "_json")
    kind_bits = " ".join(f"WHEN '{k}' THEN {1 << i}" for i, k in enumerate(_JSON_KINDS))
    huge = 1 << _JSON_KINDS.index("HUGE")

    def probe(f: str) -> str:
        c = quote(f)
        return (
            f"bit_or(CASE WHEN json_type({c}) = 'UBIGINT' AND TRY_CAST({c} AS BIGINT) IS NULL THEN {huge} "
            f"ELSE CASE json_type({c}) {kind_bits} ELSE 0 END END)"
        )

    masks = con.execute(f"SELECT {', '.join(probe(f) for f in fields)} FROM _json").fetchone()
    types = {
        f: _declared_or(declared.get(f), [k for i, k in enumerate(_JSON_KINDS) if (mask or 0) & (1 << i)])
        for f, mask in zip(fields, masks)
    }
    converted = ", ".join(f"{_from_json(f, types[f] or 'JSON')} AS {quote(f)}" for f in fields)
    con.execute(f"CREATE OR REPLACE TEMP VIEW _raw AS SELECT {converted} FROM _json")
    return types


def _from_json(column: str, target: str) -> str:
    """Expression turning a JSON column into `target`; JSON null becomes SQL NULL."""
    col = quote(column)
    if target == "JSON":
        return f"CASE WHEN json_type({col}) = 'NULL' THEN NULL ELSE {col} END"
    if target == "VARCHAR":
        return json_to_varchar(col)
    if target == "TIMESTAMPTZ":  # epoch seconds
        return f"to_timestamp(TRY_CAST({col} AS BIGINT))"
    return f"TRY_CAST({col} AS {target})"


def json_to_varchar(col: str) -> str:
    """Strings unwrap to their text; objects, lists and numbers keep their JSON text."""
    return (
        f"CASE WHEN json_type({col}) = 'VARCHAR' THEN {col}->>'$' WHEN json_type({col}) = 'NULL' THEN NULL "
        f"ELSE CAST({col} AS VARCHAR) END"
    )


def _write(con, types, directory, name, merge_key, state_at, from_events) -> StagedBatch:
    content, order = typed_view(con, types, merge_key, state_at, from_events)
    key = ", ".join(quote(c) for c in key_columns(merge_key))
    path = os.path.join(directory, f"{name}.parquet")
    copy = PARQUET_OPTIONS
    rows = con.execute(f"COPY (SELECT * FROM _typed) TO '{path}' {copy}").fetchone()[0]
    # A key twice in one batch (a server repeating an object, or several events of one object) keeps one
    # row. Finding repeated keys reads one narrow column; only their rows go through the window.
    first = f"read_parquet('{path}')"
    repeated = f"(SELECT {key} FROM {first} GROUP BY {key} HAVING count(*) > 1)"
    if con.execute(f"SELECT count(*) FROM {repeated}").fetchone()[0]:
        con.execute(f"CREATE TEMP TABLE _repeated AS {repeated}")
        unique = os.path.join(directory, f"{name}-unique.parquet")
        rows = con.execute(
            f"COPY (SELECT * FROM {first} ANTI JOIN _repeated USING ({key}) UNION ALL "
            f"SELECT * FROM (SELECT * FROM {first} SEMI JOIN _repeated USING ({key})) "
            f"QUALIFY row_number() OVER (PARTITION BY {key} {order}) = 1) TO '{unique}' {copy}"
        ).fetchone()[0]
        os.replace(unique, path)
    return StagedBatch((path,), content, int(rows))


def content_types(types: Mapping[str, Optional[str]]) -> dict[str, Optional[str]]:
    """The object's own columns among the staged fields (not the hash, not the event's bookkeeping)."""
    return {c: t for c, t in types.items()
            if c not in EVENT_FIELDS and c not in (CONTENT_HASH, EVENT_PRESENT, EVENT_SEQ)}


def typed_view(con, types, merge_key, state_at, from_events) -> tuple[dict[str, Optional[str]], str]:
    """View `_typed` over `_raw`: the object's columns, the content hash and the bookkeeping columns, as
    staged. Returns the object's columns with their types, and the window order that picks the row a
    repeated key keeps (the newest event's state; any one of identical list reads)."""
    content = content_types(types)
    missing = [c for c in key_columns(merge_key) if c not in content]
    if missing:
        raise ValueError(f"objects have no {missing[0]!r} field to merge on")
    if from_events and not all(c in types for c in EVENT_FIELDS):
        raise ValueError("change-capture objects must carry _event_created and _event_type")
    columns = [quote(c) for c in content]
    if CONTENT_HASH in types:
        content_hash = f"CAST({quote(CONTENT_HASH)} AS BIGINT)"
    else:  # files not written by `Spool` (no hash recorded): hash the typed values
        content_hash = f"CAST(hash({', '.join(columns)}) >> 1 AS BIGINT)"  # 63 bits fit BIGINT
    if from_events:
        created = f"CAST({quote(EVENT_CREATED)} AS BIGINT)"
        deleted = f"coalesce(CAST({quote(EVENT_TYPE)} AS VARCHAR), '') LIKE '%.deleted'"
        present = f"from_json({quote(EVENT_PRESENT)}, '[\"VARCHAR\"]')" if EVENT_PRESENT in types else "NULL"
        seq = f"CAST({quote(EVENT_SEQ)} AS BIGINT)" if EVENT_SEQ in types else "CAST(NULL AS BIGINT)"
        bookkeeping = (
            f"{created} AS _state_at, {deleted} AS is_deleted, "
            f"CASE WHEN {deleted} THEN to_timestamp({created}) END AS deleted_at, "
            f"CAST({present} AS VARCHAR[]) AS {quote(EVENT_PRESENT)}, {seq} AS {quote(EVENT_SEQ)}"
        )
        # The newest second wins; within one second a deletion wins over any other change (an object
        # deleted in that second cannot have outlived it), then the events list's order (newest first).
        order = f"ORDER BY _state_at DESC, is_deleted DESC, {quote(EVENT_SEQ)} ASC NULLS LAST"
    else:
        stamp = "NULL" if state_at is None else str(int(state_at))
        bookkeeping = f"CAST({stamp} AS BIGINT) AS _state_at, false AS is_deleted, CAST(NULL AS TIMESTAMPTZ) AS deleted_at"
        order = ""
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW _typed AS SELECT {', '.join(columns)}, {content_hash} AS {quote(CONTENT_HASH)}, "
        f"{bookkeeping} FROM _raw"
    )
    return content, order
