"""The IO manager that writes Stripe batches into the warehouse (DuckDB, or PostgreSQL) and enforces each asset's strategy.

Why not dagster-duckdb's `DuckDBPandasIOManager` directly: its `DbIOManager` always deletes (the table or
the partition's slice) before the type handler runs, so it cannot MERGE, and it would need the whole batch
in memory as a DataFrame. This IO manager instead builds on `DuckDBResource` (connection handling, the
file-lock retry with backoff). It stages each batch's spooled files outside the warehouse (`warehouse.prepare`:
typed, hashed, de-duplicated Parquet next to the spool), and only then opens the warehouse to apply it in one
transaction (`warehouse.apply`), so the file's single-writer lock is held for the shortest time.
Downstream assets read tables back as pandas DataFrames, as they would from dagster-duckdb. The resource
may point at PostgreSQL instead (`WarehouseResource.url`): everything here goes through its `Sink`.
"""


import time
from datetime import datetime, timezone
from typing import Mapping, Optional

import dagster as dg
from dagster_duckdb import DuckDBResource

from ..staging import disk as spool_disk
from ..source.shapes import api_version
from ..staging.columns import declared_columns, descriptions
from ..reading.accounts import ACCOUNT_COLUMN
from ..engine.load import Batch
from ..source.catalog import StripeObject
from ..warehouse.strategies import BOOKKEEPING, Adoption, TableRef, WriteResult, apply, prepare, quote, table_columns
from ..warehouse.sinks.base import literal
from .duckdb_resource import open_sink

PREVIEW_ROWS = 5
PREVIEW_COLUMNS = 16


def _table_for(context) -> TableRef:
    metadata = context.definition_metadata or {}
    table = metadata.get("dagster/table_name")
    if table:
        return TableRef.parse(str(table))
    return TableRef.parse("_".join(context.asset_key.path[1:]) or context.asset_key.path[-1], context.asset_key.path[0])


class StripeDuckDBIOManager(dg.ConfigurableIOManager):
    """Writes `Batch` outputs with their strategy; stores DataFrames by replace; loads tables as DataFrames."""

    duckdb: dg.ResourceDependency[DuckDBResource]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if isinstance(obj, Batch):
            self._write_batch(context, obj)
        elif type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas"):
            # Checked by name: pandas is imported only where a model uses it (it costs ~0.5 s to import).
            self._write_frame(context, obj)
        elif obj is not None:
            raise TypeError(f"StripeDuckDBIOManager stores Batch or pandas DataFrame outputs, not {type(obj).__name__}")

    def _write_batch(self, context: dg.OutputContext, batch: Batch) -> None:
        context.add_output_metadata(write_batch(self.duckdb, batch))

    def _write_frame(self, context: dg.OutputContext, frame) -> None:
        table = _table_for(context)
        with open_sink(self.duckdb) as sink:
            sink.store_frame(table, frame)
            metadata = _table_metadata(sink, table)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext):
        import pandas as pd

        table = _table_for(context.upstream_output) if context.upstream_output else _table_for(context)
        with open_sink(self.duckdb) as sink:
            if not table_columns(sink, table):
                return pd.DataFrame()
            return sink.frame(f"SELECT * FROM {table.sql}")


def prepare_batch(batch: Batch):
    """Stage a batch for its write (typed, hashed, de-duplicated Parquet in its spool folder)."""
    return prepare(
        batch.spool.files, batch.merge_key, state_at=batch.started_at, changes=batch.changes,
        fields=batch.spool.fields, kinds=batch.spool.kinds, directory=batch.spool_dir,
        declared=declared_columns(batch.object.name), streamed=batch.streamed,
    )


def write_batch(duckdb: DuckDBResource, batch: Batch) -> dict:
    """Write one batch with its strategy (one transaction) and return its materialization metadata.

    The Stripe assets call this from their step for each object (and yield `MaterializeResult`), so one
    object's failed write fails that object only; `handle_output` calls it for `Batch` outputs.
    """
    started = time.perf_counter()
    try:
        # Staged outside the warehouse, so the file's lock is held only while applying; the engine may
        # have staged it already, in the fetch's thread (`run.run(prepare=prepare_batch)`).
        prepared = batch.prepared or prepare_batch(batch)
        with open_sink(duckdb) as sink:
            locked = time.perf_counter()
            # Connect: rows loaded before it (no account) are the platform's, adopted in this transaction.
            adopt = Adoption(ACCOUNT_COLUMN, batch.platform) if batch.account and batch.platform else None
            result = apply(sink, batch.table, prepared, batch.strategy, batch.merge_key, scope=batch.scope,
                           adopt=adopt)
            metadata = _table_metadata(sink, batch.table, batch.object.created_field, descriptions(batch.object.name))
            if batch.account:  # Connect: the table holds every account; this account's share of it
                metadata["account_rows"] = _account_rows(sink, batch.table, batch.account)
            lock_seconds = time.perf_counter() - locked
    finally:
        if batch.streamed is not None:
            batch.streamed.close()
        spool_disk.remove(batch.spool_dir)
        if batch.changes_dir:
            spool_disk.remove(batch.changes_dir)
    timing = {
        "write_seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        "lock_seconds": dg.MetadataValue.float(round(lock_seconds, 3)),  # the warehouse was open for the write
    }
    return {**metadata, **_write_metadata(batch, result), **timing}


def _account_rows(sink, table: TableRef, account: str) -> int:
    where = f"{quote(ACCOUNT_COLUMN)} = {literal(account)}"
    return int(sink.execute(f"SELECT count(*) FROM {table.sql} WHERE {where}").fetchone()[0])


def describe(batch: Batch, metadata: dict) -> str:
    """One line per written object for the run log: all objects of a run share one step (one bar in the
    run's timeline), so each says when it was done, how long it took and what it changed."""
    requests = int(batch.requests.get("requests", 0))
    value = lambda name: getattr(metadata.get(name), "value", metadata.get(name)) or 0  # noqa: E731
    line = (
        f"{batch.object.name}: {batch.spool.objects:,} objects in {batch.seconds:.1f}s "
        f"({batch.objects_per_second:,.0f}/s, {requests:,} requests, mode {batch.mode}), written to "
        f"{batch.table} in {value('write_seconds'):.1f}s ({value('rows_inserted'):,} inserted, "
        f"{value('rows_updated'):,} updated)"
    )
    if value("rows_adopted"):  # the first Connect write into a table loaded for one account: said once
        line += (f"; {value('rows_adopted'):,} rows loaded before Connect (no {ACCOUNT_COLUMN}) adopted as the "
                 f"platform's ({batch.platform})")
    return line


def declared_schema(obj: StripeObject, account_column: Optional[str] = None) -> dg.TableSchema:
    """The table's columns as known when definitions load (stripe-python's fields for the object, the parent's
    id for a child, the account, the bookkeeping columns), so the UI shows them before a first load. A load's
    materialization then records the table's actual columns (fields the SDK does not declare included)."""
    docs = descriptions(obj.name)
    columns = [dg.TableColumn(name=c.name, type=c.sql_type, description=c.description)
               for c in declared_columns(obj.name).values()]
    names = {c.name for c in columns}
    extra = {}
    if obj.parent is not None and obj.parent.id_column not in names:
        extra[obj.parent.id_column] = ("VARCHAR", f"Id of the {obj.parent.object} this {obj.name} was read through.")
    if account_column:
        extra[account_column] = ("VARCHAR", docs.get(account_column))
    for name, sql_type in BOOKKEEPING.items():
        extra.setdefault(name, (sql_type, docs.get(name)))
    columns += [dg.TableColumn(name=n, type=t, description=d) for n, (t, d) in extra.items() if n not in names]
    return dg.TableSchema(columns=columns)


def _table_metadata(sink, table: TableRef, newest_first: Optional[str] = "created", docs: Mapping[str, str] = {}) -> dict:  # noqa: B006
    """Row count, the column schema (with `docs`: Stripe's description of each field) and a preview ordered by
    `newest_first` (the object's creation time)."""
    columns = table_columns(sink, table)
    rows = sink.execute(f"SELECT count(*) FROM {table.sql}").fetchone()[0]
    # Nested JSON makes previews unreadable; the scalar columns, in table order, newest rows first.
    shown = [c for c, t in columns.items() if t != "JSON" and c != "_loaded_at"][:PREVIEW_COLUMNS]
    order = f"ORDER BY {quote(newest_first)} DESC NULLS LAST " if newest_first in columns else ""
    select = ", ".join(quote(c) for c in shown)
    preview = sink.execute(f"SELECT {select} FROM {table.sql} {order}LIMIT {PREVIEW_ROWS}").fetchall() if shown else []
    return {
        "dagster/row_count": dg.MetadataValue.int(int(rows)),
        "dagster/table_name": str(table),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=c, type=t, description=docs.get(c)) for c, t in columns.items()]
        ),
        # Dagster's table metadata: the UI renders it as a table with typed columns.
        "preview": dg.MetadataValue.table(
            records=[dg.TableRecord({c: _cell(v) for c, v in zip(shown, row)}) for row in preview],
            schema=dg.TableSchema(columns=[dg.TableColumn(name=c, type=columns[c]) for c in shown]),
        ),
    }


def _cell(value):
    """A value as TableRecord takes it: str, int, float, bool or None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _write_metadata(batch: Batch, result: WriteResult) -> dict:
    req = batch.requests
    metadata = {
        "strategy": result.strategy,
        "mode": batch.mode,
        "objects_fetched": batch.spool.objects,
        "rows_inserted": result.inserted,
        "rows_updated": result.updated,
        "rows_deleted": result.deleted,
        "rows_unchanged": result.unchanged,
        **({"stripe/not_set_up": batch.not_set_up} if batch.not_set_up else {}),
        **({"rows_adopted": result.adopted} if result.adopted else {}),
        "requests": int(req.get("requests", 0)),
        "rate_limited_429": int(req.get("rate_limited", 0)),
        "server_errors_5xx": int(req.get("server_errors", 0)),
        "retries": int(req.get("retries", 0)),  # every retried attempt: stripe-python's (5xx, 409,
        # connection errors) and ours after a 429
        "fetch_started": dg.MetadataValue.timestamp(float(batch.started_at)),
        "fetch_seconds": dg.MetadataValue.float(round(batch.seconds, 3)),
        "objects_per_second": dg.MetadataValue.float(round(batch.objects_per_second, 1)),
        # The version every request sent (stripe-python's pin), so every row read is in it.
        "stripe_api_version": api_version(),
    }
    if batch.reread_other_version is not None:
        metadata["reread_other_version"] = batch.reread_other_version
    if batch.spool.min_created is not None:
        metadata["created_min"] = dg.MetadataValue.timestamp(float(batch.spool.min_created))
        metadata["created_max"] = dg.MetadataValue.timestamp(float(batch.spool.max_created))
    if batch.window.bounded:  # half-open: from gte (inclusive) to lt (exclusive), as dates like created_min/max
        start = _utc(batch.window.gte) if batch.window.gte is not None else "the beginning"
        end = _utc(batch.window.lt) if batch.window.lt is not None else "now"
        metadata["created_window"] = f"from {start} up to (not including) {end}"
    if result.added_columns:
        metadata["columns_added"] = ", ".join(result.added_columns)
    if result.widened_columns:
        metadata["columns_widened"] = ", ".join(result.widened_columns)
    if batch.notes:
        metadata["notes"] = "\n".join(batch.notes)
    return metadata
