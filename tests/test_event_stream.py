"""Change capture reads /v1/events once per run and routes each event by the object it carries
(`data.object.object`), over real HTTP (the emulator) into a real DuckDB file."""

from __future__ import annotations

import time

import dagster as dg
import duckdb
import orjson
import stripe

from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.warehouse.strategies import get_cursor, set_cursor
from nilus_stripe_assets.dagster_adapter.automation import build_events_sensor, build_incremental_job
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets

from .conftest import SMALL, count, make_resources, materialize, mode_config, query

EVENTS = "GET /v1/events"


def _requests(emu, endpoint: str) -> int:
    return emu.stats()["endpoints"].get(endpoint, {}).get("requests", 0)


def _stored(emu, name: str, oid: str) -> dict:
    return orjson.loads(emu.store.retrieve(name, oid))


def _other_customer_events(emu, customer_id: str) -> list[dict]:
    """Events whose type starts with `customer.` but which carry no customer (as Stripe sends them)."""
    return [
        emu.emit_event("customer.source.created", {
            "id": "card_1Emulated", "object": "card", "customer": customer_id, "brand": "Visa", "last4": "4242",
        }),
        emu.emit_event("customer.discount.created", {
            "id": "di_1Emulated", "object": "discount", "customer": customer_id, "coupon": {"id": "SUMMER25"},
        }),
        emu.emit_event("customer.tax_id.created", {
            "id": "txi_1Emulated", "object": "tax_id", "customer": customer_id, "type": "eu_vat", "value": "DE123",
        }),
    ]


def test_customer_table_holds_only_customers_and_the_event_table_comes_from_the_same_read(emulator, warehouse_path):
    names = ["customer", "subscription", "subscription_item", "event"]
    assets = build_stripe_assets(names, one_step=True)
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources).success
    events_before = count(warehouse_path, "stripe.event")
    customer, subscription = query(
        warehouse_path, "SELECT customer, id FROM stripe.subscription WHERE customer IS NOT NULL LIMIT 1"
    )[0]
    emulator.update("subscription", subscription, description="upgraded")  # customer.subscription.updated
    emulator.create("subscription", customer=customer)  # customer.subscription.created
    others = _other_customer_events(emulator, customer)
    emulator.update("customer", customer, description="vip")  # the only customer change
    emulator.reset_stats()

    result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
    assert result.success
    assert _requests(emulator, EVENTS) == 1  # one read for all four objects, the event table included
    objects, prefixes, rows = query(
        warehouse_path,
        "SELECT list(DISTINCT object), list(DISTINCT split_part(id, '_', 1)), count(*) FROM stripe.customer",
    )[0]
    assert objects == ["customer"] and prefixes == ["cus"]
    assert rows == emulator.counts()["customer"]
    assert query(warehouse_path, "SELECT description FROM stripe.customer WHERE id = ?", [customer]) == [("vip",)]
    assert query(warehouse_path, "SELECT description FROM stripe.subscription WHERE id = ?", [subscription]) == [("upgraded",)]
    assert count(warehouse_path, "stripe.subscription") == emulator.counts()["subscription"]
    # The event table holds every new event, the ones about cards, discounts and tax ids too.
    assert count(warehouse_path, "stripe.event") >= events_before + 3 + len(others)
    stored = {r[0] for r in query(warehouse_path, "SELECT id FROM stripe.event")}
    assert {e["id"] for e in others} <= stored


def test_events_sensor_routes_by_object_type(emulator, warehouse_path):
    assets = build_stripe_assets()
    job = build_incremental_job(assets)
    sensor = build_events_sensor(assets, job)
    resources = make_resources(emulator, warehouse_path)
    defs = dg.Definitions(assets=assets, jobs=[job], sensors=[sensor], resources=resources)
    sensor_def = defs.resolve_sensor_def("stripe_events_sensor")
    with dg.build_sensor_context(resources={"stripe": resources["stripe"]}, definitions=defs) as context:
        assert isinstance(sensor_def(context), dg.SkipReason)
        cursor = context.cursor
    subscription = query_one_subscription(emulator)
    emulator.update("subscription", subscription["id"], description="upgraded")
    _other_customer_events(emulator, subscription["customer"])
    with dg.build_sensor_context(cursor=cursor, resources={"stripe": resources["stripe"]}, definitions=defs) as context:
        request = sensor_def(context)
    assert isinstance(request, dg.RunRequest), request
    # customer.* events, but none carries a customer: only subscriptions (and their items) changed.
    assert {k.path[-1] for k in request.asset_selection} == {"subscription", "subscription_item", "event"}


def query_one_subscription(emu) -> dict:
    items, _ = emu.store.list("subscription", 100)
    return next(s for s in map(orjson.loads, items) if s.get("customer"))


def test_payment_methods_and_items_come_from_events_without_listing_parents(emulator, warehouse_path):
    names = ["payment_method", "subscription_item"]
    assets = build_stripe_assets(names, one_step=True)
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources).success
    customer = query(warehouse_path, "SELECT customer FROM stripe.payment_method LIMIT 1")[0][0]
    attached = emulator.create("payment_method", customer=customer)  # payment_method.attached
    changed, detached = [r[0] for r in query(warehouse_path, "SELECT id FROM stripe.payment_method ORDER BY id LIMIT 2")]
    emulator.update("payment_method", changed, metadata={"note": "new card details"})  # payment_method.updated
    emulator.delete("payment_method", detached)  # payment_method.detached (customer: null)
    # An item beyond the first 10 that a subscription embeds: read through /v1/subscription_items.
    big, = query(
        warehouse_path,
        "SELECT subscription FROM stripe.subscription_item GROUP BY 1 HAVING count(*) > 10 ORDER BY 1 LIMIT 1",
    )[0]
    oldest = query(
        warehouse_path, "SELECT id FROM stripe.subscription_item WHERE subscription = ? ORDER BY created, id LIMIT 1", [big]
    )[0][0]
    emulator.update("subscription_item", oldest, quantity=42)  # customer.subscription.updated
    emulator.reset_stats()

    result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
    assert result.success
    endpoints = emulator.stats()["endpoints"]
    assert "GET /v1/customers/:id/payment_methods" not in endpoints  # no request per customer
    assert "GET /v1/customers" not in endpoints and "GET /v1/subscriptions" not in endpoints
    assert endpoints[EVENTS]["requests"] == 1
    assert endpoints["GET /v1/subscription_items"]["requests"] == 1  # the rest of one subscription's items
    row = "SELECT customer, metadata->>'$.note' FROM stripe.payment_method WHERE id = ?"
    assert query(warehouse_path, row, [attached["id"]]) == [(customer, None)]
    assert query(warehouse_path, row, [changed])[0][1] == "new card details"
    assert query(warehouse_path, row, [detached])[0][0] is None
    assert query(warehouse_path, "SELECT quantity FROM stripe.subscription_item WHERE id = ?", [oldest]) == [(42,)]
    assert count(warehouse_path, "stripe.subscription_item") == emulator.counts()["subscription_item"]


def test_a_payload_in_another_api_version_is_never_applied_but_read_again(emulator, warehouse_path):
    assets = build_stripe_assets(["customer"])
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources).success
    old, new, gone = [r[0] for r in query(
        warehouse_path, "SELECT id FROM stripe.customer WHERE email IS NOT NULL AND name IS NOT NULL ORDER BY id LIMIT 3"
    )]
    stored = _stored(emulator, "customer", old)
    # Rendered in an API version without `email` and `name`, and claiming a change Stripe's object does not
    # have (the payload's version is not the one its fields are read in): the object is read again instead.
    state = {k: v for k, v in stored.items() if k not in ("email", "name")}
    emulator.emit_event("customer.updated", {**state, "description": "as an old version put it"}, api_version="2017-06-05")
    emulator.update("customer", new, email="new@example.com", name=None)  # the pinned version: applied as is
    emulator.emit_event("customer.deleted", _stored(emulator, "customer", gone), api_version="2017-06-05")
    emulator.reset_stats()

    result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
    assert result.success
    row = "SELECT email, name, description, is_deleted FROM stripe.customer WHERE id = ?"
    assert query(warehouse_path, row, [old]) == [(stored["email"], stored["name"], stored["description"], False)]
    assert query(warehouse_path, row, [new])[0][:2] == ("new@example.com", None)  # a real null still applies
    assert query(warehouse_path, row, [gone])[0][3] is True  # a deletion applies in any version
    meta = {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert meta["reread_other_version"] == 1 and meta["stripe_api_version"] == stripe.api_version
    endpoints = emulator.stats()["endpoints"]
    assert endpoints["GET /v1/customers/:id"]["requests"] == 1 and endpoints[EVENTS]["requests"] == 1


def test_objects_with_different_cursors_share_one_read_from_the_oldest(warehouse_path):
    with StripeEmulator(counts={"charge": 1000, "refund": 1000}, scale=SMALL, seed=3) as emu:
        _different_cursors(emu, warehouse_path)


def _different_cursors(emulator, warehouse_path):
    assets = build_stripe_assets(["charge", "refund"], one_step=True)
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources).success
    now = int(time.time())
    refund_since = now - 10 * 86400
    with duckdb.connect(warehouse_path) as con:
        set_cursor(con, "stripe", "events_cursor:stripe.refund:refund", refund_since)
        # Rows that only events can repair: created a few days ago, their state lost since.
        picks = {}
        for name in ("charge", "refund"):
            oid = con.execute(
                f"SELECT id FROM stripe.{name} WHERE epoch(created) BETWEEN ? AND ? ORDER BY id LIMIT 1",
                [refund_since + 86400, now - 86400],
            ).fetchone()[0]
            con.execute(f"UPDATE stripe.{name} SET status = 'lost', _state_at = 0 WHERE id = ?", [oid])
            picks[name] = oid
    emulator.reset_stats()
    assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
    stats = emulator.stats()["endpoints"][EVENTS]
    # One read from the refund's (older) cursor: each event served once, not once per object.
    expected_events = len(emulator.store.list("event", 100_000, gte=refund_since - 300)[0])
    assert stats["objects"] == expected_events
    status = "SELECT status FROM stripe.{} WHERE id = ?"
    assert query(warehouse_path, status.format("refund"), [picks["refund"]])[0][0] != "lost"  # its event re-applied
    # The charge's cursor is newer than that event: the charge does not re-apply it.
    assert query(warehouse_path, status.format("charge"), [picks["charge"]]) == [("lost",)]
    with duckdb.connect(warehouse_path, read_only=True) as con:
        for name in ("charge", "refund"):
            assert get_cursor(con, "stripe", f"events_cursor:stripe.{name}:{name}") >= now - 300


def test_a_403_from_the_events_read_names_events_read(tmp_path):
    key = "rk_test_ChargesOnly0001"
    database = str(tmp_path / "w.duckdb")
    with StripeEmulator(scale=SMALL, seed=5, restricted_keys={key: {"charge"}}) as emu:
        assets = build_stripe_assets(["charge"])
        resources = make_resources(emu, database, api_key=key, budget_dir=str(tmp_path))
        assert materialize(assets, resources).success  # a full load reads no events
        result = materialize(assets, resources, mode_config(assets, "sync:incremental"), raise_on_error=False)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "/v1/events" in message and "'Events read'" in message, message
    assert "Charges read" not in message
    assert key not in message


def test_the_control_route_emits_any_event(emulator):
    from nilus_stripe_assets.emulator.client import EmulatorClient

    client = EmulatorClient(emulator.url)
    sent = client.emit_event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"}, api_version="2019-12-03")
    listed, _ = emulator.store.list("event", 1)
    assert orjson.loads(listed[0]) == sent
    assert sent["type"] == "customer.tax_id.created" and sent["api_version"] == "2019-12-03"
    assert sent["data"]["object"] == {"id": "txi_1", "object": "tax_id"}


def test_invoice_lines_beyond_the_embedded_page_come_from_the_invoice_events(emulator, warehouse_path):
    assets = build_stripe_assets(["invoice_line_item"])
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources).success
    invoice, = query(
        warehouse_path, "SELECT invoice FROM stripe.invoice_line_item GROUP BY 1 HAVING count(*) > 10 ORDER BY 1 LIMIT 1"
    )[0]
    lines = [r[0] for r in query(warehouse_path, "SELECT id FROM stripe.invoice_line_item WHERE invoice = ?", [invoice])]
    listed, _ = emulator.store.list("invoice_line_item", 100, parent=invoice)
    embedded = {orjson.loads(b)["id"] for b in listed[:10]}
    beyond = next(line for line in lines if line not in embedded)  # not in the page an invoice embeds
    emulator.update("invoice_line_item", beyond, description="re-priced")  # invoice.updated
    emulator.reset_stats()
    assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
    endpoints = emulator.stats()["endpoints"]
    assert endpoints[EVENTS]["requests"] == 1 and "GET /v1/invoices" not in endpoints
    assert endpoints["GET /v1/invoices/:id/lines"]["requests"] == 1
    row = "SELECT description, invoice FROM stripe.invoice_line_item WHERE id = ?"
    assert query(warehouse_path, row, [beyond]) == [("re-priced", invoice)]
    assert count(warehouse_path, "stripe.invoice_line_item") == emulator.counts()["invoice_line_item"]
