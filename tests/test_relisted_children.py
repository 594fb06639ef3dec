"""Child lists no event carries, re-listed only for the parents the run's events name.

A customer balance transaction has no events, but creating one moves its customer's `balance`, so Stripe
sends `customer.updated`; a customer's entitlements change with `entitlements.active_entitlement_summary.updated`
naming the customer. An incremental run reads those customers' lists again and replaces just their rows,
instead of one request per customer of the account. Exact against the server's own lists, both warehouses.
"""

from __future__ import annotations

import orjson

from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import materialize, mode_config

LISTS = ("customer_balance_transaction", "entitlements_active_entitlement")


def _served(emu: StripeEmulator, name: str) -> set[str]:
    """Every id the emulator lists for `name`, over all customers (as a full re-read would see them)."""
    table = emu.store.tables[name]
    return set(table.data)


def _stored(warehouse, name: str) -> set[str]:
    return {oid for (oid,) in warehouse.query(f"SELECT id FROM stripe.{name}")}


def _child_requests(emu: StripeEmulator) -> int:
    return sum(stat["requests"] for endpoint, stat in emu.stats()["endpoints"].items()
               if "balance_transactions" in endpoint or "active_entitlements" in endpoint)


def test_an_incremental_run_relists_only_the_customers_its_events_name(warehouse):
    counts = {"customer": 60, "customer_balance_transaction": 120, "entitlements_active_entitlement": 90}
    with StripeEmulator(scale=0.05, counts=counts, seed=21) as emu:
        assets = build_stripe_assets(list(LISTS))
        resources = warehouse.resources(emu)
        assert materialize(assets, resources).success
        for name in LISTS:
            assert _stored(warehouse, name) == _served(emu, name), name
        customers = sorted(orjson.loads(v)["id"] for v in emu.store.tables["customer"].data.values())
        entitlements = emu.store.tables["entitlements_active_entitlement"]
        with_entitlements = sorted({entitlements.attr[oid] for oid in entitlements.data})

        added = emu.create("customer_balance_transaction", customer=customers[0], amount=-500)
        gone = next(oid for oid in entitlements.data if entitlements.attr[oid] == with_entitlements[0])
        emu.delete("entitlements_active_entitlement", gone)
        granted = emu.create("entitlements_active_entitlement", customer=customers[1])

        emu.reset_stats()
        result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
        assert result.success
        for name in LISTS:
            assert _stored(warehouse, name) == _served(emu, name), name
        assert added["id"] in _stored(warehouse, "customer_balance_transaction")
        assert gone not in _stored(warehouse, "entitlements_active_entitlement")
        assert granted["id"] in _stored(warehouse, "entitlements_active_entitlement")
        # One customer's balance transactions, two customers' entitlements: 3 list requests, not 2 × 60.
        assert _child_requests(emu) == 3, emu.stats()["endpoints"]
        notes = {m.materialization.asset_key.path[-1]: m.materialization.metadata.get("notes")
                 for m in result.get_asset_materialization_events()}
        assert "customer(s) named by the run's events" in str(notes["customer_balance_transaction"])

        # A run with no new events: the cursor's 5-minute lookback reads the same events again, so the same
        # three lists (and nothing else) are read, and nothing changes.
        emu.reset_stats()
        assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
        assert _child_requests(emu) == 3
        for name in LISTS:
            assert _stored(warehouse, name) == _served(emu, name), name


def test_a_deleted_customers_rows_stay_and_its_list_is_not_asked_for(warehouse):
    counts = {"customer": 20, "customer_balance_transaction": 40}
    with StripeEmulator(scale=0.05, counts=counts, seed=22) as emu:
        assets = build_stripe_assets(["customer_balance_transaction"])
        resources = warehouse.resources(emu)
        assert materialize(assets, resources).success
        transactions = emu.store.tables["customer_balance_transaction"]
        owner = next(iter(transactions.attr[oid] for oid in transactions.data))
        kept = {oid for oid in transactions.data if transactions.attr[oid] == owner}
        emu.update("customer", owner, description="about to leave")
        emu.delete("customer", owner)

        emu.reset_stats()
        assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
        assert _child_requests(emu) == 0
        assert kept <= _stored(warehouse, "customer_balance_transaction")


def test_connect_relists_one_accounts_customers_and_leaves_the_others_rows(warehouse_path):
    import dagster as dg

    from nilus_stripe_assets.dagster_adapter.connect import account_partitions
    from nilus_stripe_assets.emulator.model import ACCOUNT_ID

    from .conftest import make_resources, query

    counts = {"customer": 10, "customer_balance_transaction": 30}
    with StripeEmulator(scale=0.05, counts=counts, seed=23, accounts=2, account_counts=counts,
                        account_scale=0.05) as emu:
        a, b = emu.account_ids
        assets = build_stripe_assets(["customer_balance_transaction"], one_step=True, accounts=account_partitions())
        resources = make_resources(emu, warehouse_path)
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("stripe_accounts", [ACCOUNT_ID, a, b])

        def run(account, config=None):
            assert dg.materialize(assets, resources=resources, instance=instance, partition_key=account,
                                  run_config=config or {}).success

        for account in (ACCOUNT_ID, a, b):
            run(account)
        before = dict(query(warehouse_path, "SELECT stripe_account, count(*) FROM stripe.customer_balance_transaction "
                                            "GROUP BY 1"))
        assert before == {ACCOUNT_ID: 30, a: 30, b: 30}
        store = emu.accounts.store(a)
        customer = next(iter(store.tables["customer"].data))
        added = emu.create("customer_balance_transaction", stripe_account=a, customer=customer, amount=700)

        emu.reset_stats()
        run(a, mode_config(assets, "sync:incremental"))
        after = dict(query(warehouse_path, "SELECT stripe_account, count(*) FROM stripe.customer_balance_transaction "
                                           "GROUP BY 1"))
        assert after == {ACCOUNT_ID: 30, a: 31, b: 30}
        assert query(warehouse_path, "SELECT stripe_account FROM stripe.customer_balance_transaction WHERE id = ?",
                     [added["id"]]) == [(a,)]
        assert _child_requests(emu) == 1
