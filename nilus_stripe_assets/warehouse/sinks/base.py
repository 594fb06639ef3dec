"""The seam between the write strategies (`warehouse/strategies.py`, defined once) and a warehouse engine.

A `Sink` wraps one open connection and answers the few things the strategies, checks and the IO manager
cannot say in SQL both engines speak: how to open a transaction, how to make a staged Parquet file
readable, how a row is addressed, a few spellings (casts, JSON paths, epochs) and how to move DataFrames.
Everything else (the comparison of content hashes, merge/replace/append, change capture, cursors, counts)
is plain SQL that DuckDB and PostgreSQL both run, in `strategies.py`.

Like dagster-duckdb's type handlers, the engine is picked from the connection itself (`as_sink`, in this
package's `__init__`: the base never imports its implementations), so callers keep passing the connection
they opened (`strategies.write(con, …)`), whatever the engine.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Protocol, Sequence, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from ...staging.parquet import StagedBatch
    from ..strategies import TableRef

T = TypeVar("T")


@runtime_checkable
class Sink(Protocol):
    kind: str  # "duckdb" or "postgresql", as shown in the UI's kinds and in messages
    con: Any  # the engine's connection
    rowid: str  # a pseudo-column addressing a stored row, so a join's rows can be deleted cheaply

    def execute(self, sql: str) -> Any:
        """Run one statement (no parameters: values are inlined with `literal`); returns a cursor."""

    def changed(self, sql: str) -> int:
        """Run an INSERT/UPDATE/DELETE; return how many rows it changed."""

    def transaction(self) -> AbstractContextManager:
        """One transaction: committed on exit, rolled back if the block raises."""

    def guarded(self, apply: Callable[[], T]) -> T:
        """Run one whole write (`apply` opens its own transaction) under the engine's limits and retries."""

    def columns(self, table: "TableRef") -> dict[str, str]:
        """The table's columns and their types in DuckDB's spelling (VARCHAR, BIGINT, DOUBLE, JSON, …)."""

    def type_sql(self, sql_type: str) -> str:
        """A DuckDB-spelled type in this engine's DDL."""

    def create_schema(self, schema: str) -> None:
        """Create `schema` if it is missing, committed at once: outside any write's transaction, so that
        concurrent first loads (one process per object) do not wait for each other's writes."""

    def lock_ddl(self, name: str) -> None:
        """Until the current transaction ends, make other sessions' `lock_ddl(name)` wait: schema changes to
        one table, taken after re-reading what is there, then never race. A no-op where one process writes."""

    def create_table(self, table: "TableRef", columns: Mapping[str, str], key: Sequence[str]) -> None:
        """Create `table` with these columns (DuckDB-spelled types), indexed on the merge key if it helps."""

    def index_key(self, table: "TableRef", key: Sequence[str]) -> None:
        """Within the current transaction, make `key` the table's unique key where `create_table` indexes one
        (a table made with another merge key: one account's `id`, now Connect's `(stripe_account, id)`)."""

    def retype(self, column: str, current: str, target: str) -> str:
        """The `ALTER COLUMN … TYPE` clause (after TYPE) changing a column from `current` to `target`."""

    def load(self, staged: "StagedBatch", name: str, columns: Optional[Sequence[str]] = None,
             only: Optional[tuple[str, Sequence[str]]] = None) -> str:
        """Make a staged Parquet file readable in SQL (within the current transaction); returns a relation.
        The relation needs to hold no more than `columns` (None: all) and, with `only` = (table, key
        columns), no more than the rows whose key is in that table: an engine that must copy the file
        copies only that much."""

    def temp_table(self, name: str, select: str) -> None:
        """(Re)create temporary table `name` as `select`, dropped at the latest when the transaction ends."""

    def cast(self, expr: str, staged: Optional[str], target: str) -> str:
        """`expr`, of the staged type, as the table's (possibly wider) type."""

    def contains(self, array: str, text: str) -> str:
        """True when the staged text array `array` holds the string literal `text`."""

    def any_value(self, expr: str) -> str:
        """An aggregate of one of the group's values."""

    def epoch(self, expr: str) -> str:
        """A TIMESTAMPTZ as epoch seconds."""

    def json_text(self, expr: str, path: Sequence[str]) -> str:
        """The text at `path` inside JSON `expr` (a string unwrapped; NULL when absent)."""

    def json_elements(self, expr: str, path: Sequence[str], alias: str) -> str:
        """A FROM item: one row per element of the JSON array at `path`, its JSON as column `alias`.item."""

    def frame(self, sql: str) -> "pd.DataFrame":
        """A query's rows as a pandas DataFrame (JSON columns as text or Python data)."""

    def store_frame(self, table: "TableRef", frame: "pd.DataFrame") -> None:
        """Replace `table` with the DataFrame's rows, in one transaction."""

    def close(self) -> None:
        ...


def literal(value: str) -> str:
    """A SQL string literal (standard quoting: both engines read backslashes literally)."""
    return "'" + str(value).replace("'", "''") + "'"
