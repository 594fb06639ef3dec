"""The 21 spec assets and the two line-item tables against the emulator over real HTTP, into a real DuckDB file."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from nilus_stripe_assets.source.catalog import CATALOG, DEFAULT_OBJECTS, SPEC_OBJECTS
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets

from .conftest import count, make_resources, materialize, mode_config, query

SPEC = Path(__file__).resolve().parents[1] / "docs" / "stripe-source.md"


def test_catalog_matches_the_spec_table_row_by_row():
    text = SPEC.read_text()
    section = text.split("## Supported objects", 1)[1].split("###", 1)[0]
    rows = re.findall(r"^\|\s*`(\w+)`\s*\|\s*`(\w+)`\s*\|\s*(\w+)\s*\|\s*(.+?)\s*\|\s*$", section, re.M)
    assert len(rows) == 21
    assert [r[0] for r in rows] == list(SPEC_OBJECTS), "catalog order follows the spec"
    # issue 11's extras, and the balance transactions of each automatic payout (payout reconciliation)
    assert set(DEFAULT_OBJECTS) - set(SPEC_OBJECTS) == {"invoice_line_item", "credit_note_line_item", "payout_balance_transaction"}
    assert list(CATALOG)[:24] == list(DEFAULT_OBJECTS)  # the default load first; issue 19's lists follow
    for name, merge_key, strategy, description in rows:
        obj = CATALOG[name]
        assert (obj.merge_key, obj.strategy, obj.description) == (merge_key, strategy, description), name


def test_catalog_reachability_follows_stripe():
    no_created = {name for name in DEFAULT_OBJECTS if not CATALOG[name].supports_created}
    assert no_created == {"payment_method", "subscription_item", "webhook_endpoint", "invoice_line_item",
                          "credit_note_line_item", "payout_balance_transaction"}
    payout_items = CATALOG["payout_balance_transaction"].parent
    assert (payout_items.path_template, payout_items.param, payout_items.id_column) == ("/v1/balance_transactions", "payout", "payout")
    assert payout_items.lists_children_of({"automatic": True}) and not payout_items.lists_children_of({"automatic": False})
    assert CATALOG["invoice_line_item"].parent.path_template == "/v1/invoices/{id}/lines"
    assert CATALOG["credit_note_line_item"].parent.path_template == "/v1/credit_notes/{id}/lines"
    assert CATALOG["credit_note_line_item"].parent.id_column == "credit_note"
    assert CATALOG["subscription_item"].parent.param == "subscription"
    assert CATALOG["payment_method"].parent.path_template == "/v1/customers/{id}/payment_methods"
    assert CATALOG["subscription"].list_params == {"status": "all"}
    assert CATALOG["invoice_item"].path == "/v1/invoiceitems"


def test_one_factory_builds_all_23_assets_with_metadata():
    assets = build_stripe_assets()
    keys = {a.key.to_user_string() for a in assets}
    assert keys == {f"stripe/{name}" for name in DEFAULT_OBJECTS}
    for asset in assets:
        spec = next(iter(asset.specs))
        obj = CATALOG[spec.key.path[-1]]
        assert spec.group_name == "stripe"
        assert spec.metadata["strategy"] == obj.strategy
        # Line ids are unique within their invoice or credit note only.
        assert spec.metadata["merge_key"] == {"invoice_line_item": "invoice, id", "credit_note_line_item": "credit_note, id"}.get(obj.name, "id")
        assert spec.metadata["dagster/table_name"] == f"stripe.{obj.name}"
        assert spec.description and obj.description in spec.description
        assert spec.kinds >= {"stripe", "duckdb"}
        assert asset.op.pool == "stripe_api"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_line_items_are_complete_with_their_parent_id(shared_emulator, warehouse_path, mode):
    assets = build_stripe_assets(["invoice_line_item", "credit_note_line_item"])
    assert materialize(assets, make_resources(shared_emulator, warehouse_path), mode_config(assets, mode)).success
    for name, parent in [("invoice_line_item", "invoice"), ("credit_note_line_item", "credit_note")]:
        rows = dict(query(warehouse_path, f"SELECT id, {parent} FROM stripe.{name}"))
        assert rows == shared_emulator.store.tables[name].attr, f"{name}: every line once, with its {parent} id"
        most = query(warehouse_path, f"SELECT max(n) FROM (SELECT count(*) AS n FROM stripe.{name} GROUP BY {parent})")
        assert most[0][0] > 10, f"{name}: lines beyond the 10 a {parent} embeds come from the lines endpoint"


def _expected_counts(emu) -> dict[str, int]:
    return emu.counts()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_object_loads_exactly_once(shared_emulator, warehouse_path, mode):
    assets = build_stripe_assets()
    result = materialize(assets, make_resources(shared_emulator, warehouse_path), mode_config(assets, mode))
    assert result.success
    expected = _expected_counts(shared_emulator)
    for name in DEFAULT_OBJECTS:
        table = f"stripe.{name}"
        rows, distinct = query(warehouse_path, f"SELECT count(*), count(DISTINCT id) FROM {table}")[0]
        assert rows == distinct, f"{name}: duplicated rows"
        assert rows == expected[name], f"{name}: {rows} rows, emulator has {expected[name]}"
        assert rows > 0, name
    # Materialization metadata users look for.
    mats = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    charge = mats["charge"]
    assert charge["dagster/row_count"].value == expected["charge"]
    assert charge["requests"].value >= expected["charge"] // 100
    assert charge["dagster/table_name"].value == "stripe.charge"
    assert "fetch_seconds" in charge and "rows_inserted" in charge


def test_nested_objects_are_json_and_queryable(shared_emulator, warehouse_path):
    assets = build_stripe_assets(["charge", "subscription"])
    assert materialize(assets, make_resources(shared_emulator, warehouse_path), mode_config(assets, "sync")).success
    types = dict(query(warehouse_path, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'charge'"))
    assert types["amount"] == "BIGINT" and types["id"] == "VARCHAR" and types["created"] == "TIMESTAMP WITH TIME ZONE"
    assert types["billing_details"] == "JSON" and types["metadata"] == "JSON"
    items = query(warehouse_path, "SELECT count(*) FROM stripe.subscription WHERE json_array_length(items->'$.data') > 0")[0][0]
    assert items > 0
    canceled = query(warehouse_path, "SELECT count(*) FROM stripe.subscription WHERE status = 'canceled'")[0][0]
    assert canceled > 0, "status=all must include canceled subscriptions"


def _written(result) -> dict:
    return {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()
            if k.startswith("rows_")}


# The strategy tests run through Dagster against both warehouses (`warehouse`: DuckDB file, PostgreSQL).


def test_merge_updates_in_place_and_new_field_adds_a_column(emulator, warehouse):
    assets = build_stripe_assets(["charge"])
    resources = warehouse.resources(emulator)
    assert materialize(assets, resources, mode_config(assets, "sync")).success
    before = warehouse.count("stripe.charge")
    target = warehouse.query("SELECT id FROM stripe.charge ORDER BY created LIMIT 1")[0][0]
    emulator.update("charge", target, description="changed by test", nilus_new_field={"nested": 1})
    result = materialize(assets, resources, mode_config(assets, "sync"))
    assert result.success
    assert warehouse.count("stripe.charge") == before
    nested = warehouse.json_text("nilus_new_field", "nested")
    row = warehouse.query(f"SELECT description, {nested} FROM stripe.charge WHERE id = ?", [target])
    assert row == [("changed by test", "1")]
    # Only the changed object is rewritten; the counts are exact.
    assert _written(result) == {"rows_inserted": 0, "rows_updated": 1, "rows_deleted": 0, "rows_unchanged": before - 1}
    again = materialize(assets, resources, mode_config(assets, "sync"))
    assert _written(again) == {"rows_inserted": 0, "rows_updated": 0, "rows_deleted": 0, "rows_unchanged": before}


def test_replace_swaps_the_snapshot(emulator, warehouse):
    assets = build_stripe_assets(["coupon"])
    resources = warehouse.resources(emulator)
    assert materialize(assets, resources).success
    before = warehouse.count("stripe.coupon")
    gone = warehouse.query("SELECT id FROM stripe.coupon ORDER BY id LIMIT 1")[0][0]
    emulator.delete("coupon", gone)
    result = materialize(assets, resources)
    assert result.success
    assert warehouse.count("stripe.coupon") == before - 1
    assert warehouse.query("SELECT count(*) FROM stripe.coupon WHERE id = ?", [gone])[0][0] == 0
    assert _written(result) == {"rows_inserted": 0, "rows_updated": 0, "rows_deleted": 1, "rows_unchanged": before - 1}


def test_append_does_not_double_on_rerun(shared_emulator, warehouse):
    assets = build_stripe_assets(["event"])
    resources = warehouse.resources(shared_emulator)
    assert materialize(assets, resources).success
    first = warehouse.count("stripe.event")
    result = materialize(assets, resources)
    assert result.success
    assert warehouse.count("stripe.event") == first
    assert _written(result)["rows_inserted"] == 0


def test_wrong_key_fails_with_a_clear_message_and_no_key(shared_emulator, warehouse_path):
    bad_key = "sk_test_WrongKey0123456789abcd"
    assets = build_stripe_assets(["customer"])
    result = materialize(assets, make_resources(shared_emulator, warehouse_path, api_key=bad_key), raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    message = failure.step_failure_data.error.message
    assert "401" in message and "Invalid API Key" in message and "sk_test_…abcd" in message
    everything = "\n".join(str(e) for e in result.all_events)
    assert bad_key not in everything


def test_a_failed_replace_keeps_the_old_table(emulator, warehouse):
    assets = build_stripe_assets(["tax_rate"])
    assert materialize(assets, warehouse.resources(emulator)).success
    before = warehouse.count("stripe.tax_rate")
    bad = warehouse.resources(emulator, api_key="sk_test_Revoked000000000000")
    assert not materialize(assets, bad, raise_on_error=False).success
    assert warehouse.count("stripe.tax_rate") == before


def test_dest_table_and_strategy_overrides(shared_emulator, warehouse_path):
    assets = build_stripe_assets(["coupon"], dest_tables={"coupon": "finance.stripe_coupons"}, strategies={"coupon": "merge"})
    spec = next(iter(assets[0].specs))
    assert spec.metadata["strategy"] == "merge"
    assert materialize(assets, make_resources(shared_emulator, warehouse_path)).success
    assert count(warehouse_path, "finance.stripe_coupons") == shared_emulator.counts()["coupon"]


def test_definitions_module_loads_all_assets():
    from nilus_stripe_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} >= {f"stripe/{n}" for n in DEFAULT_OBJECTS}
    assert isinstance(defs.resolve_job_def("stripe_full_load"), dg.JobDefinition)


def test_a_column_first_seen_only_as_null_takes_its_type_when_values_arrive(emulator, warehouse_path):
    assets = build_stripe_assets(["charge"])
    resources = make_resources(emulator, warehouse_path)
    target = emulator.create("charge", amount=100, currency="usd", nilus_late_number=None)
    assert materialize(assets, resources, mode_config(assets, "sync")).success
    emulator.update("charge", target["id"], nilus_late_number=42)
    assert materialize(assets, resources, mode_config(assets, "sync")).success
    types = dict(query(warehouse_path, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'charge'"))
    assert types["nilus_late_number"] == "BIGINT"
    assert query(warehouse_path, "SELECT nilus_late_number FROM stripe.charge WHERE id = ?", [target["id"]]) == [(42,)]
