"""One Stripe API version, stated and enforced: every request sends the one stripe-python pins, every
materialization says which, and an event rendered in another version is never applied as if it were current.

The emulator plays an account whose default API version is older than the pinned one (`set_api_version`):
its events then carry invoices as `2024-12-18.acacia` renders them (`subscription` at the top instead of
under `parent`, line items with `price` instead of `pricing`). Both warehouses.
"""

from __future__ import annotations

import stripe

from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.source import shapes
from nilus_stripe_assets.warehouse.strategies import BOOKKEEPING

from .conftest import materialize, mode_config

ACACIA = "2024-12-18.acacia"


def _meta(result, name):
    for event in result.get_asset_materialization_events():
        if event.asset_key.path[-1] == name:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"no materialization for {name}")


def test_an_invoice_changed_under_an_older_api_version_ends_correct(warehouse):
    with StripeEmulator(scale=0.05, counts={"invoice": 40, "invoice_line_item": 60, "subscription": 10}, seed=8) as emu:
        names = ["invoice", "invoice_line_item"]
        assets = build_stripe_assets(names, one_step=True)
        resources = warehouse.resources(emu)
        first = materialize(assets, resources)
        assert first.success
        assert {_meta(first, n)["stripe_api_version"] for n in names} == {stripe.api_version}
        sub = warehouse.json_text("parent", "subscription_details", "subscription")
        moved, deleted = [r[0] for r in warehouse.query(f"SELECT id FROM stripe.invoice WHERE {sub} IS NOT NULL ORDER BY id LIMIT 2")]
        other = next(s for (s,) in warehouse.query(f"SELECT DISTINCT {sub} FROM stripe.invoice WHERE {sub} IS NOT NULL ORDER BY 1")
                     if s != warehouse.query(f"SELECT {sub} FROM stripe.invoice WHERE id = ?", [moved])[0][0])
        line = warehouse.query("SELECT id, invoice FROM stripe.invoice_line_item ORDER BY invoice, id LIMIT 1")[0]
        parent = emu.store.fields("invoice", moved)["parent"]

        emu.set_api_version(ACACIA)  # the account's default version: its events are rendered in it
        emu.update("invoice", moved, parent={**parent, "subscription_details": {
            **parent["subscription_details"], "subscription": other}})
        emu.update("invoice_line_item", line[0], amount=4242, pricing={
            "price_details": None, "type": "price_details", "unit_amount_decimal": "4242"})
        emu.delete("invoice", deleted)
        events = emu.store.list("event", 3)[0]
        assert all(b'"api_version":"' + ACACIA.encode() in e for e in events)
        emu.reset_stats()

        result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
        assert result.success
        assert warehouse.query(f"SELECT {sub}, is_deleted FROM stripe.invoice WHERE id = ?", [moved]) == [(other, False)]
        assert warehouse.query("SELECT is_deleted FROM stripe.invoice WHERE id = ?", [deleted]) == [(True,)]
        pricing = warehouse.json_text("pricing", "unit_amount_decimal")
        assert warehouse.query(f"SELECT amount, {pricing} FROM stripe.invoice_line_item WHERE id = ? AND invoice = ?",
                               list(line)) == [(4242, "4242")]
        for table in names:  # no column named as only the older version names fields (`price`, `paid`, ...)
            columns = {r[0] for r in warehouse.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'stripe' AND table_name = ?", [table])}
            assert columns - set(shapes.field_names(table)) == set(BOOKKEEPING), table

        invoice, lines = _meta(result, "invoice"), _meta(result, "invoice_line_item")
        # The moved invoice and the one whose line changed; the deleted one needs no re-read as an invoice, but
        # its lines are asked for (a parent's deletion is not its children's: a canceled subscription keeps its items).
        assert invoice["reread_other_version"] == 2 and lines["reread_other_version"] == 3
        assert invoice["stripe_api_version"] == lines["stripe_api_version"] == stripe.api_version
        stats = emu.stats()
        # One events read, the incremental list of new invoices, and each changed invoice once, whichever
        # objects needed it (shared by invoice and invoice_line_item), the deleted one for its lines.
        assert stats["endpoints"]["GET /v1/events"]["requests"] == 1
        assert stats["endpoints"]["GET /v1/invoices/:id"]["requests"] == 3
        assert stats["total"]["requests"] <= 6, stats["endpoints"]
        assert stats["stripe_versions"] == {stripe.api_version: stats["total"]["requests"]}


def test_products_of_other_version_events_are_read_again_100_per_request(warehouse_path):
    from .conftest import make_resources, query

    with StripeEmulator(scale=0.05, counts={"product": 150}, seed=9) as emu:
        assets = build_stripe_assets(["product"])
        resources = make_resources(emu, warehouse_path)
        assert materialize(assets, resources).success
        ids = [r[0] for r in query(warehouse_path, "SELECT id FROM stripe.product ORDER BY id LIMIT 120")]
        emu.set_api_version(ACACIA)
        for oid in ids:
            emu.update("product", oid, description="changed under acacia")
        emu.reset_stats()
        result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
        assert result.success
        assert _meta(result, "product")["reread_other_version"] == 120
        assert query(warehouse_path, "SELECT count(*) FROM stripe.product WHERE description = 'changed under acacia'") == [(120,)]
        endpoints = emu.stats()["endpoints"]
        assert "GET /v1/products/:id" not in endpoints
        # The incremental list of new products, then the 120 changed ones in two requests of `ids`.
        assert endpoints["GET /v1/products"]["requests"] == 3


def test_a_parents_deletion_in_another_version_rereads_its_children(warehouse_path):
    # `customer.subscription.deleted` cancels a subscription; its items stay, in the state a re-read gives.
    from .conftest import make_resources, query

    with StripeEmulator(scale=0.05, counts={"subscription": 10, "subscription_item": 20}, seed=10) as emu:
        assets = build_stripe_assets(["subscription_item"])
        resources = make_resources(emu, warehouse_path)
        assert materialize(assets, resources).success
        sub = query(warehouse_path, "SELECT subscription FROM stripe.subscription_item ORDER BY id LIMIT 1")[0][0]
        item = emu.store.tables["subscription_item"].key_list(sub)[0][1]
        emu.update("subscription_item", item, quantity=9)  # in the pinned version ...
        state = emu.store.fields("subscription", sub)
        emu.emit_event("customer.subscription.deleted", {**state, "status": "canceled"}, api_version=ACACIA)  # ... then not
        result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
        assert result.success
        assert _meta(result, "subscription_item")["reread_other_version"] == 1
        assert query(warehouse_path, "SELECT quantity, is_deleted FROM stripe.subscription_item WHERE id = ?", [item]) \
            == [(9, False)]
