"""Column types and descriptions from stripe-python's declarations (columns.py), over real HTTP into DuckDB.

A column that is null in every row of a first load still gets its declared type; epoch fields are TIMESTAMPTZ
(usable without casts) while incremental cursors keep working; each column carries Stripe's description; fields
the SDK does not declare still load; values that do not fit a declaration fall back to the data's own type."""

from __future__ import annotations

import json

import dagster as dg
import duckdb

from nilus_stripe_assets.staging.columns import declared_columns
from nilus_stripe_assets.staging.spool import Spool
from nilus_stripe_assets.warehouse.strategies import TableRef, newest_created, table_columns, write
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets

from .conftest import make_resources, materialize, mode_config, query


def _types(database: str, table: str) -> dict[str, str]:
    return dict(query(database, "SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = 'stripe' AND table_name = ?", [table]))


def test_a_first_load_types_every_declared_column_even_when_all_null(shared_emulator, warehouse_path):
    assets = build_stripe_assets(["charge", "invoice_item", "invoice"])
    result = materialize(assets, make_resources(shared_emulator, warehouse_path), mode_config(assets, "sync"))
    assert result.success
    for name in ("charge", "invoice_item", "invoice"):
        types = _types(warehouse_path, name)
        declared = declared_columns(name)
        assert set(declared) <= set(types), name  # every declared field is a column, set or not
        all_null = [c for c in declared if query(warehouse_path, f'SELECT count("{c}") FROM stripe.{name}')[0][0] == 0]
        assert all_null, f"{name}: the emulator sets every field, so this test would judge nothing"
        for column, spec in declared.items():
            want = "TIMESTAMP WITH TIME ZONE" if spec.sql_type == "TIMESTAMPTZ" else spec.sql_type
            assert types[column] == want, (name, column, types[column], want)
    charge, item = _types(warehouse_path, "charge"), _types(warehouse_path, "invoice_item")
    assert charge["application_fee_amount"] == "BIGINT" and charge["created"] == "TIMESTAMP WITH TIME ZONE"
    assert item["date"] == "TIMESTAMP WITH TIME ZONE" and "created" not in item
    assert _types(warehouse_path, "invoice")["due_date"] == "TIMESTAMP WITH TIME ZONE"
    # Timestamps without casts; the incremental cursor reads them back as epoch seconds.
    recent = query(warehouse_path, "SELECT count(*) FROM stripe.charge WHERE created > now() - INTERVAL 30 DAY")[0][0]
    assert 0 < recent < query(warehouse_path, "SELECT count(*) FROM stripe.charge")[0][0]
    with duckdb.connect(warehouse_path, read_only=True) as con:
        newest = newest_created(con, TableRef("stripe", "invoice_item"), "date")
        assert newest == con.execute("SELECT epoch(max(date))::BIGINT FROM stripe.invoice_item").fetchone()[0]
    # The UI's Columns table explains every field in Stripe's words.
    mats = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    schema: dg.TableSchema = mats["charge"]["dagster/column_schema"].schema
    docs = {c.name: c.description for c in schema.columns}
    assert docs["amount"] == declared_columns("charge")["amount"].description
    assert "smallest currency unit" in docs["amount"]
    assert all(docs[c] for c in declared_columns("charge")), "every declared column is described"
    assert "gives no description" in docs["billing_details"]  # stripe-python 16.1 has no docstring for it
    assert docs["_loaded_at"] and docs["is_deleted"]


def _spool(tmp_path, objects):
    spool = Spool(directory=str(tmp_path))
    spool.write(objects)
    return spool.finish()


def _write(con, tmp_path, objects, typed=True):
    summary = _spool(tmp_path, objects)
    return write(con, TableRef("stripe", "charge"), summary.files, "merge", state_at=1000, fields=summary.fields,
                 kinds=summary.kinds if typed else None, declared=declared_columns("charge"))


def test_unknown_fields_load_and_values_that_do_not_fit_fall_back(tmp_path):
    base = {"id": "ch_1", "object": "charge", "created": 1_700_000_000, "amount": 100}
    for typed in (True, False):
        database = str(tmp_path / f"w{typed}.duckdb")
        with duckdb.connect(database) as con:
            _write(con, tmp_path, [base])
            # A newer API version adds a field; a fake server sends a number as text.
            later = {**base, "id": "ch_2", "amount": "250", "brand_new_field": {"x": 1}}
            result = _write(con, tmp_path, [later], typed)
            columns = table_columns(con, TableRef("stripe", "charge"))
            assert "brand_new_field" in result.added_columns and columns["brand_new_field"] == "JSON"
            assert columns["amount"] == "VARCHAR" and "amount" in result.widened_columns
            got = con.execute("SELECT id, amount, epoch(created)::BIGINT FROM stripe.charge ORDER BY id").fetchall()
            assert got == [("ch_1", "100", 1_700_000_000), ("ch_2", "250", 1_700_000_000)]


def test_tables_written_with_epoch_seconds_become_timestamps(tmp_path):
    database = str(tmp_path / "old.duckdb")
    with duckdb.connect(database) as con:
        con.execute("CREATE SCHEMA stripe")
        # As an older version of this package left it: epoch seconds in BIGINT columns.
        con.execute("CREATE TABLE stripe.charge (id VARCHAR, object VARCHAR, created BIGINT, amount BIGINT, "
                    "_loaded_at TIMESTAMPTZ, _state_at BIGINT, is_deleted BOOLEAN, deleted_at TIMESTAMPTZ)")
        con.execute("INSERT INTO stripe.charge VALUES ('ch_0', 'charge', 1600000000, 5, now(), 900, false, NULL)")
        result = _write(con, tmp_path, [{"id": "ch_1", "object": "charge", "created": 1_700_000_000, "amount": 7}])
        assert "created" in result.widened_columns
        assert table_columns(con, TableRef("stripe", "charge"))["created"] == "TIMESTAMPTZ"
        got = con.execute("SELECT id, epoch(created)::BIGINT FROM stripe.charge ORDER BY id").fetchall()
        assert got == [("ch_0", 1_600_000_000), ("ch_1", 1_700_000_000)]
        assert newest_created(con, TableRef("stripe", "charge")) == 1_700_000_000


def test_declared_types_cover_every_catalog_object():
    from nilus_stripe_assets.source.catalog import CATALOG

    for name in CATALOG:
        columns = declared_columns(name)
        assert columns["id"].sql_type == "VARCHAR" and columns["object"].sql_type == "VARCHAR", name
        created = CATALOG[name].created_field
        if created:
            assert columns[created].sql_type == "TIMESTAMPTZ", name
        assert {c.sql_type for c in columns.values()} <= {"TIMESTAMPTZ", "BIGINT", "DOUBLE", "BOOLEAN", "VARCHAR", "JSON"}
    assert json.dumps({c: col.sql_type for c, col in declared_columns("charge").items()})  # plain data


def test_timestamp_columns_are_not_described_as_epoch_seconds():
    """The SDK says "Measured in seconds since the Unix epoch"; the column is a TIMESTAMPTZ, so the UI's text says so."""
    from nilus_stripe_assets.source.catalog import CATALOG

    timestamps = [(n, c) for n in CATALOG for c in declared_columns(n).values() if c.sql_type == "TIMESTAMPTZ"]
    assert len(timestamps) > 40
    for name, column in timestamps:
        assert "seconds since the Unix epoch" not in column.description, (name, column.name)
        assert "A timestamp with time zone" in column.description, (name, column.name)
    created = declared_columns("charge")["created"].description
    assert created == ("Time at which the object was created. A timestamp with time zone (Stripe sends Unix seconds; "
                       "epoch(created) gives them back).")
    assert declared_columns("charge")["amount"].description.startswith("Amount intended to be collected")


def test_asset_specs_carry_the_column_schema_when_definitions_load():
    """The UI shows each table's columns before its first load: the specs carry `dagster/column_schema`."""
    from nilus_stripe_assets.connect import defs as connect_defs
    from nilus_stripe_assets.definitions import defs

    specs = {s.key.path[-1]: s for a in defs.assets if isinstance(a, dg.AssetsDefinition) for s in a.specs}
    from nilus_stripe_assets.source.catalog import CATALOG, DEFAULT_OBJECTS

    assert set(DEFAULT_OBJECTS) <= set(specs)
    for name in set(CATALOG) & set(specs):  # every Stripe table of the location, with its class's columns
        assert {c.name for c in specs[name].metadata["dagster/column_schema"].columns} >= set(declared_columns(name))
    for name in ("charge", "invoice_item", "payment_method", "invoice_line_item", "credit_note_line_item"):
        schema: dg.TableSchema = specs[name].metadata["dagster/column_schema"]
        columns = {c.name: c for c in schema.columns}
        assert set(declared_columns(name)) <= set(columns), name
        assert {"_loaded_at", "_state_at", "is_deleted", "deleted_at", "_content_hash"} <= set(columns), name
        assert all(c.description for c in schema.columns), name
    charge = {c.name: c for c in specs["charge"].metadata["dagster/column_schema"].columns}
    assert charge["created"].type == "TIMESTAMPTZ" and charge["application_fee_amount"].type == "BIGINT"
    assert "credit_note" in {c.name for c in specs["credit_note_line_item"].metadata["dagster/column_schema"].columns}
    connect_specs = {s.key.path[-1]: s for a in connect_defs.assets if isinstance(a, dg.AssetsDefinition) for s in a.specs}
    assert "stripe_account" in {c.name for c in connect_specs["charge"].metadata["dagster/column_schema"].columns}
