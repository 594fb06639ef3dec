"""Finance models against a hand computation from the emulator's data, read over HTTP with the Stripe SDK."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

import dagster as dg
import pytest
import stripe

from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.dagster_adapter.finance import build_finance_assets

from .conftest import materialize

UPSTREAM = ["balance_transaction", "subscription", "subscription_item"]
# Months in one billing interval, written out independently of the model: 1 week = 12/52 month.
PER_MONTH = {"day": 365 / 12, "week": 52 / 12, "month": 1.0, "year": 1 / 12}

JAN_15_LAST_SECOND = int(datetime(2025, 1, 15, 23, 59, 59, tzinfo=timezone.utc).timestamp())


def sdk(emu) -> stripe.StripeClient:
    return stripe.StripeClient(emu.api_key, base_addresses={"api": emu.url}, max_network_retries=0)


def price(currency: str, amount: int, interval: str | None, count: int = 1) -> dict:
    recurring = {"interval": interval, "interval_count": count, "meter": None, "usage_type": "licensed"} if interval else None
    return {"id": f"price_test_{interval}_{count}_{amount}", "object": "price", "active": True, "currency": currency,
            "recurring": recurring, "type": "recurring" if interval else "one_time", "unit_amount": amount,
            "unit_amount_decimal": str(amount), "billing_scheme": "per_unit"}


def add_euro_business(emu) -> None:
    """Known euro figures: three balance transactions around midnight UTC, one live and one canceled subscription."""
    sale = {"type": "charge", "reporting_category": "charge"}
    emu.create("balance_transaction", created=JAN_15_LAST_SECOND, currency="eur", amount=1000, fee=59, net=941, **sale)
    emu.create("balance_transaction", created=JAN_15_LAST_SECOND + 1, currency="eur", amount=-300, fee=0, net=-300,
               type="refund", reporting_category="refund")
    emu.create("balance_transaction", created=JAN_15_LAST_SECOND + 43201, currency="eur", amount=2000, fee=88, net=1912, **sale)
    # A payout moves money to the bank; it is not net volume.
    emu.create("balance_transaction", created=JAN_15_LAST_SECOND + 43202, currency="eur", amount=-2500, fee=0, net=-2500,
               type="payout", reporting_category="payout")
    live = emu.create("subscription", status="active", currency="eur")["id"]
    for unit, quantity, interval, count in [(700, 2, "week", 1), (100, 1, "day", 1), (12000, 1, "year", 2), (3000, 3, "month", 3)]:
        emu.create("subscription_item", subscription=live, quantity=quantity, price=price("eur", unit, interval, count))
    emu.create("subscription_item", subscription=live, quantity=1, price=price("eur", 5000, None))  # one-time: no MRR
    canceled = emu.create("subscription", status="canceled", currency="eur")["id"]
    emu.create("subscription_item", subscription=canceled, quantity=1, price=price("eur", 99900, "month"))


def expected_daily(client) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    sums = defaultdict(lambda: [0, 0, 0, 0])
    for txn in client.v1.balance_transactions.list({"limit": 100}).auto_paging_iter():
        if txn["reporting_category"] in ("payout", "payout_reversal", "transfer", "transfer_reversal", "topup", "topup_reversal"):
            continue  # money moved, not sales
        day = datetime.fromtimestamp(txn["created"], tz=timezone.utc).date().isoformat()
        row = sums[day, txn["currency"]]
        row[0] += 1
        row[1] += txn["amount"]
        row[2] += txn["fee"]
        row[3] += txn["net"]
    return {k: tuple(v) for k, v in sums.items()}


def expected_mrr(client) -> tuple[dict[str, tuple[int, int, float]], int, int]:
    """Per currency (subscriptions, items, MRR), plus items without a recurring price and subscriptions
    with more than the 10 embedded items, from every item listed through /v1/subscription_items."""
    subs, items, mrr = defaultdict(set), defaultdict(int), defaultdict(float)
    one_time = truncated = 0
    for sub in client.v1.subscriptions.list({"status": "all", "limit": 100}).auto_paging_iter():
        if sub["status"] not in ("active", "trialing", "past_due"):
            continue
        truncated += bool(sub["items"]["has_more"])
        for item in client.v1.subscription_items.list({"subscription": sub["id"], "limit": 100}).auto_paging_iter():
            p = item["price"]
            if not p["recurring"]:
                one_time += 1
                continue
            rec = p["recurring"]
            mrr[p["currency"]] += p["unit_amount"] * item["quantity"] * PER_MONTH[rec["interval"]] / rec["interval_count"]
            subs[p["currency"]].add(sub["id"])
            items[p["currency"]] += 1
    return {c: (len(subs[c]), items[c], mrr[c]) for c in mrr}, one_time, truncated


def test_daily_net_volume_and_mrr_match_a_hand_computation(emulator, warehouse):
    add_euro_business(emulator)
    assets = build_stripe_assets(UPSTREAM) + build_finance_assets()
    result = materialize(assets, warehouse.resources(emulator))
    assert result.success
    client = sdk(emulator)

    daily = {
        (day.isoformat(), cur): (n, amount, fee, net)
        for day, cur, n, amount, fee, net in warehouse.query("SELECT * FROM finance.daily_net_volume ORDER BY day, currency")
    }
    assert daily == expected_daily(client)
    # The euro rows by hand: 23:59:59 is the 15th, one second later is the 16th (UTC).
    assert daily["2025-01-15", "eur"] == (1, 1000, 59, 941)
    assert daily["2025-01-16", "eur"] == (2, 1700, 88, 1612)
    assert len({cur for _, cur in daily}) == 2

    mrr = {cur: (s, i, m) for cur, s, i, m in warehouse.query("SELECT currency, subscriptions, items, mrr FROM finance.mrr")}
    expected, one_time, truncated = expected_mrr(client)
    assert set(mrr) == set(expected) == {"eur", "usd"}
    for cur, (subs, items, amount) in expected.items():
        assert mrr[cur][:2] == (subs, items), cur
        assert mrr[cur][2] == pytest.approx(amount, abs=0.005), cur
    # 700×2 weekly + 100 daily + 12000 every 2 years + 3000×3 every 3 months; the canceled one is left out.
    assert mrr["eur"] == (1, 4, pytest.approx(1400 * 52 / 12 + 100 * 365 / 12 + 500 + 3000, abs=0.005))

    mats = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    meta = mats["finance/mrr"]
    assert meta["dagster/table_name"].value == "finance.mrr"
    assert meta["dagster/row_count"].value == 2
    assert meta["items_skipped"].value == one_time == 1, "only the test's own one-time item: the emulator obeys Stripe"
    # The metadata agrees with the table it describes.
    assert meta["subscriptions_counted"].value == sum(s for s, _, _ in mrr.values())
    assert meta["items_counted"].value == sum(i for _, i, _ in mrr.values())
    assert meta["subscriptions_without_mrr"].value == 0
    assert meta["subscriptions_items_from_table"].value == truncated and truncated >= 1, "emulator seeds >10 items"
    assert meta["subscriptions_items_truncated"].value == 0
    assert mats["finance/daily_net_volume"]["dagster/row_count"].value == len(daily)
    assert mats["finance/daily_net_volume"]["dagster/table_name"].value == "finance.daily_net_volume"

    # Re-running replaces the tables rather than appending to them.
    again = dg.materialize(
        assets, resources=warehouse.resources(emulator), selection=dg.AssetSelection.groups("finance"),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert again.success
    assert warehouse.query("SELECT count(*) FROM finance.daily_net_volume")[0][0] == len(daily)
    assert warehouse.query("SELECT count(*) FROM finance.mrr")[0][0] == 2


def test_finance_models_build_empty_tables_before_any_stripe_load(shared_emulator, warehouse):
    assets = build_stripe_assets(UPSTREAM) + build_finance_assets()
    result = dg.materialize(
        assets, resources=warehouse.resources(shared_emulator), selection=dg.AssetSelection.groups("finance"),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    columns = warehouse.query(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'finance' ORDER BY table_name, ordinal_position",
    )
    by_table: dict[str, list[str]] = {}
    for table, column in columns:
        by_table.setdefault(table, []).append(column)
    assert sorted(by_table.items()) == [
        ("daily_net_volume", ["day", "currency", "transactions", "amount", "fee", "net"]),
        ("mrr", ["currency", "subscriptions", "items", "mrr"]),
    ]
    assert warehouse.query("SELECT count(*) FROM finance.mrr")[0][0] == 0


def test_finance_assets_in_the_code_location():
    from nilus_stripe_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    daily, mrr = dg.AssetKey(["finance", "daily_net_volume"]), dg.AssetKey(["finance", "mrr"])
    assert graph.get(daily).parent_keys == {dg.AssetKey(["stripe", "balance_transaction"])}
    assert graph.get(mrr).parent_keys == {dg.AssetKey(["stripe", "subscription"]), dg.AssetKey(["stripe", "subscription_item"])}
    for key in (daily, mrr):
        node = graph.get(key)
        assert node.group_name == "finance"
        assert node.metadata["dagster/table_name"] == f"finance.{key.path[-1]}"
        assert node.description
