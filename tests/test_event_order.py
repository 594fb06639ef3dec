"""Several events of one object in one second: the events list's order decides, and a deletion wins its second.

Stripe's `created` has whole seconds, so a `customer.updated` and a `customer.deleted` of the same second tie
on time; only the list's order (newest first) says which happened last. The emulator's clock is frozen so
that every change below shares one second, as they do on Stripe, and each case is repeated over several
customers so that no lucky order of rows can pass for the right one. Both warehouses.
"""

from __future__ import annotations

import time

import orjson

from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import materialize, mode_config

PER_CASE = 6


def _customer(emu: StripeEmulator, oid: str) -> dict:
    return orjson.loads(emu.store.tables["customer"].data[oid])


def test_same_second_events_follow_the_list_order_and_deletions_win(warehouse):
    with StripeEmulator(scale=0.05, counts={"customer": 5 * PER_CASE}, seed=5) as emu:
        assets = build_stripe_assets(["customer"])
        resources = warehouse.resources(emu)
        assert materialize(assets, resources).success
        ids = [r[0] for r in warehouse.query("SELECT id FROM stripe.customer ORDER BY id")]
        update_then_delete, delete_then_update, updated_twice, reverse = (
            ids[i * PER_CASE:(i + 1) * PER_CASE] for i in range(4))

        emu.freeze_clock(int(time.time()))
        for oid in update_then_delete:  # list: deleted (newest), updated
            emu.update("customer", oid, name="updated before its deletion")
            emu.delete("customer", oid)
        for oid in delete_then_update:  # list: updated (newest), deleted: the deletion still wins its second
            state = {**_customer(emu, oid), "name": "updated after its deletion"}
            emu.delete("customer", oid)
            emu.emit_event("customer.updated", state)
        for oid in updated_twice:  # list: second (newest), first
            emu.update("customer", oid, name="first")
            emu.update("customer", oid, name="second")
        created = []
        for _ in range(PER_CASE):  # list: updated (newest), created
            new = emu.create("customer", name="as created")
            emu.update("customer", new["id"], name="as updated")
            created.append(new["id"])
        for oid in reverse:  # list: created (newest), updated: the list's order, not the event's type, decides
            state = _customer(emu, oid)
            emu.emit_event("customer.updated", {**state, "name": "listed older"})
            emu.emit_event("customer.created", {**state, "name": "listed newer"})
        emu.freeze_clock(None)

        config = mode_config(assets, "sync:incremental")
        for _ in range(2):  # the second run reads the same events again (the cursor's lookback): same result
            assert materialize(assets, resources, config).success

            def rows(of, columns="name, is_deleted"):
                marks = ", ".join("?" * len(of))
                return warehouse.query(
                    f"SELECT {columns}, count(*) FROM stripe.customer WHERE id IN ({marks}) GROUP BY {columns}", of)

            assert rows(update_then_delete) == [("updated before its deletion", True, PER_CASE)]
            assert rows(delete_then_update, "is_deleted") == [(True, PER_CASE)]
            assert rows(updated_twice) == [("second", False, PER_CASE)]
            assert rows(created) == [("as updated", False, PER_CASE)]
            assert rows(reverse) == [("listed newer", False, PER_CASE)]


def test_a_server_listing_events_oldest_first_is_read_backwards(warehouse_path):
    # Some Stripe fakes list oldest first: the `created` values show it, and the ranks are counted backwards.
    from .conftest import make_resources, query

    with StripeEmulator(scale=0.05, counts={"customer": 2 * PER_CASE}, seed=6) as emu:
        assets = build_stripe_assets(["customer"])
        resources = make_resources(emu, warehouse_path)
        assert materialize(assets, resources).success
        ids = [r[0] for r in query(warehouse_path, "SELECT id FROM stripe.customer ORDER BY id")]
        second = int(time.time())
        emu.freeze_clock(second - 1)
        emu.update("customer", ids[0], name="a second earlier")
        emu.freeze_clock(second)
        for oid in ids[:PER_CASE]:
            emu.update("customer", oid, name="first")
            emu.update("customer", oid, name="second")
        for oid in ids[PER_CASE:]:
            emu.update("customer", oid, name="updated before its deletion")
            emu.delete("customer", oid)
        emu.freeze_clock(None)
        emu.configure(oldest_first=True)
        assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
        assert query(warehouse_path, "SELECT name, is_deleted, count(*) FROM stripe.customer GROUP BY ALL ORDER BY 1") == [
            ("second", False, PER_CASE), ("updated before its deletion", True, PER_CASE)]
