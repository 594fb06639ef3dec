"""Finance models against known answers: an emulator account built for them (a customer who upgrades,
downgrades, churns and comes back; a trial; a payout of known transactions; USD and JPY), loaded over HTTP and
modelled inside both warehouses (a DuckDB file and a throwaway PostgreSQL), every figure written out by hand."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import dagster as dg
import pytest

from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.dagster_adapter.finance import build_finance_assets
from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.warehouse.models import MODELS, build_all, checks

from .conftest import materialize

UPSTREAM = ["balance_transaction", "charge", "refund", "payout", "payout_balance_transaction", "customer",
            "subscription", "subscription_item", "price", "invoice", "invoice_line_item"]


def ts(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def story(emu, account=None) -> None:
    """The account the known answers below describe (ids fixed, times in 2025)."""
    make = lambda obj, **f: emu.create(obj, stripe_account=account, **f)  # noqa: E731
    for cid, cur in (("cus_upgrader", "usd"), ("cus_yen", "jpy"), ("cus_daily", "usd")):
        make("customer", id=cid, email=f"{cid}@example.com", name=cid, currency=cur, created=ts(2024, 12, 1))

    def price(pid, cur, amount, interval=None, count=1, usage="licensed"):
        recurring = {"interval": interval, "interval_count": count, "meter": None, "trial_period_days": None,
                     "usage_type": usage} if interval else None
        return make("price", id=pid, currency=cur, unit_amount=amount, unit_amount_decimal=str(amount),
                    recurring=recurring, type="recurring" if interval else "one_time", product="prod_known",
                    nickname=pid, created=ts(2024, 12, 1))

    monthly, yearly = price("price_m", "usd", 1000, "month"), price("price_y", "usd", 24000, "year")
    weekly, daily = price("price_w", "usd", 500, "week"), price("price_d", "usd", 100, "day")
    quarterly_yen, metered = price("price_q", "jpy", 9000, "month", 3), price("price_meter", "usd", 5, "month", usage="metered")

    def subscription(sid, customer, cur, start, status, ended=None, trial=None, items=()):
        make("subscription", id=sid, customer=customer, currency=cur, status=status, created=start, start_date=start,
             billing_cycle_anchor=start, canceled_at=ended, ended_at=ended, cancel_at=None,
             trial_start=start if trial else None, trial_end=trial)
        for n, (p, quantity) in enumerate(items):
            make("subscription_item", id=f"si_{sid[4:]}_{n}", subscription=sid, price=p, quantity=quantity, created=start)

    # cus_upgrader: $20 a month from January, +$20 (a yearly $240) in February, that one canceled in March,
    # the first canceled in April, back in June with 3 × $5 a week (= $65 a month).
    subscription("sub_first", "cus_upgrader", "usd", ts(2025, 1, 10), "canceled", ended=ts(2025, 4, 15), items=[(monthly, 2)])
    subscription("sub_addon", "cus_upgrader", "usd", ts(2025, 2, 5), "canceled", ended=ts(2025, 3, 20), items=[(yearly, 1)])
    subscription("sub_back", "cus_upgrader", "usd", ts(2025, 6, 1), "active", items=[(weekly, 3), (metered, 1)])
    # cus_daily: $1 a day from January 20 = 100 × 365 / 12 = 3041.67 cents, rounded to 3042.
    subscription("sub_daily", "cus_daily", "usd", ts(2025, 1, 20), "active", items=[(daily, 1)])
    # cus_yen: ¥9,000 every 3 months, trialing until May 10 (no MRR before), ended September 2.
    subscription("sub_yen", "cus_yen", "jpy", ts(2025, 3, 1), "canceled", ended=ts(2025, 9, 2), trial=ts(2025, 5, 10),
                 items=[(quarterly_yen, 1)])
    subscription("sub_never", "cus_daily", "usd", ts(2025, 2, 1), "incomplete_expired", items=[(monthly, 9)])

    make("charge", id="ch_upgrader", customer="cus_upgrader", amount=2000, currency="usd", status="succeeded",
         payment_intent=None, created=ts(2025, 1, 15, 10))
    make("charge", id="ch_daily", customer="cus_daily", amount=3042, currency="usd", status="succeeded",
         payment_intent=None, created=ts(2025, 1, 16, 9))
    make("charge", id="ch_yen", customer="cus_yen", amount=9000, currency="jpy", status="succeeded",
         payment_intent=None, created=ts(2025, 5, 10, 3))
    make("refund", id="re_upgrader", charge="ch_upgrader", amount=500, customer=None, payment_intent=None,
         currency="usd", created=ts(2025, 1, 15, 12))
    make("payout", id="po_auto", amount=1836, automatic=True, status="paid", currency="usd", created=ts(2025, 1, 17),
         arrival_date=ts(2025, 1, 19), method="standard")
    make("payout", id="po_manual", amount=300, automatic=False, status="paid", currency="usd", created=ts(2025, 1, 20),
         arrival_date=ts(2025, 1, 21), method="standard")

    def txn(tid, created, kind, category, amount, fee, source, currency="usd", payout=None):
        fields = dict(id=tid, created=created, type=kind, reporting_category=category, amount=amount, fee=fee,
                      net=amount - fee, source=source, currency=currency, status="available")
        if payout:  # listed by GET /v1/balance_transactions?payout= (and, like every one, by the account's list)
            make("payout_balance_transaction", payout=payout, **fields)
        else:
            make("balance_transaction", **fields)

    txn("txn_sale", ts(2025, 1, 15, 10), "charge", "charge", 2000, 88, "ch_upgrader", payout="po_auto")
    txn("txn_refund", ts(2025, 1, 15, 12), "refund", "refund", -500, 0, "re_upgrader", payout="po_auto")
    txn("txn_sale2", ts(2025, 1, 16, 9), "charge", "charge", 3042, 118, "ch_daily", payout="po_auto")
    txn("txn_dispute", ts(2025, 1, 16, 10), "adjustment", "dispute", -1000, 1500, "dp_known", payout="po_auto")
    # The payout's own transaction, as Stripe lists it with the others: the payout itself, not one of its items.
    txn("txn_payout", ts(2025, 1, 17), "payout", "payout", -1836, 0, "po_auto", payout="po_auto")
    txn("txn_manual", ts(2025, 1, 20), "payout", "payout", -300, 0, "po_manual")
    txn("txn_yen", ts(2025, 5, 10, 3), "charge", "charge", 9000, 324, "ch_yen", currency="jpy")

    make("invoice", id="in_back", customer="cus_upgrader", currency="usd", status="paid", number="KNOWN-0001",
         created=ts(2025, 6, 1), parent={"quote_details": None, "type": "subscription_details",
                                          "subscription_details": {"metadata": {}, "subscription": "sub_back"}})
    make("invoice_line_item", id="il_back", invoice="in_back", amount=1500, currency="usd", quantity=3,
         description="3 × Weekly", period={"start": ts(2025, 6, 1), "end": ts(2025, 6, 8)},
         pricing={"price_details": {"price": "price_w", "product": "prod_known"}, "type": "price_details",
                  "unit_amount_decimal": "500"},
         parent={"invoice_item_details": None, "type": "subscription_item_details",
                 "subscription_item_details": {"invoice_item": None, "proration": False, "proration_details": None,
                                               "subscription": "sub_back", "subscription_item": "si_back_0"}})


def empty_account() -> dict:
    return {name: 0 for name in CATALOG}


@pytest.fixture
def known():
    with StripeEmulator(counts=empty_account(), seed=5) as emu:
        story(emu)
        yield emu


def month_range(first: date, last: date):
    m = first
    while m <= last:
        yield m
        m = date(m.year + (m.month == 12), m.month % 12 + 1, 1)


THIS_MONTH = date.today().replace(day=1)
# Each customer's MRR (cents / yen) as written above, by the months it holds (last month None: still live).
MRR_SPANS = {
    ("cus_upgrader", "usd"): [(date(2025, 1, 1), date(2025, 1, 1), 2000), (date(2025, 2, 1), date(2025, 2, 1), 4000),
                              (date(2025, 3, 1), date(2025, 3, 1), 2000), (date(2025, 6, 1), None, 6500)],
    ("cus_daily", "usd"): [(date(2025, 1, 1), None, 3042)],
    ("cus_yen", "jpy"): [(date(2025, 5, 1), date(2025, 8, 1), 3000)],
}


def expected_customer_mrr() -> dict:
    """{(month, customer, currency): (mrr, previous, movement)} from MRR_SPANS."""
    out = {}
    for (customer, currency), spans in MRR_SPANS.items():
        level = {m: amount for first, last, amount in spans for m in month_range(first, last or THIS_MONTH)}
        previous, ever = 0, False
        for m in month_range(min(level), THIS_MONTH):
            now = level.get(m, 0)
            if now or previous:
                movement = (("reactivation" if ever else "new") if not previous else "churn" if not now
                            else "expansion" if now > previous else "contraction" if now < previous else None)
                out[m, customer, currency] = (now, previous, movement)
            ever, previous = ever or now > 0, now
    return out


def rows(warehouse, sql) -> list[tuple]:
    return [tuple(r) for r in warehouse.query(sql)]


def test_models_give_the_known_figures_on_both_warehouses(known, warehouse):
    assets = build_stripe_assets(UPSTREAM) + build_finance_assets()
    result = materialize(assets, warehouse.resources(known))
    assert result.success

    # Enriched balance transactions: the source's type and the charge and customer behind each.
    enriched = {r[0]: r[1:] for r in rows(warehouse, "SELECT balance_transaction_id, source_type, charge_id, refund_id, "
                                                     "payout_id, customer_id, amount, net, net_major FROM finance.balance_transactions")}
    assert enriched == {
        "txn_sale": ("charge", "ch_upgrader", None, None, "cus_upgrader", 2000, 1912, Decimal("19.12")),
        "txn_refund": ("refund", "ch_upgrader", "re_upgrader", None, "cus_upgrader", -500, -500, Decimal("-5.00")),
        "txn_sale2": ("charge", "ch_daily", None, None, "cus_daily", 3042, 2924, Decimal("29.24")),
        "txn_dispute": ("dispute", None, None, None, None, -1000, -2500, Decimal("-25.00")),  # no dispute table: by prefix
        "txn_payout": ("payout", None, None, "po_auto", None, -1836, -1836, Decimal("-18.36")),
        "txn_manual": ("payout", None, None, "po_manual", None, -300, -300, Decimal("-3.00")),
        "txn_yen": ("charge", "ch_yen", None, None, "cus_yen", 9000, 8676, Decimal("8676")),  # JPY: zero-decimal
    }

    daily = {(r[0].isoformat(), r[1]): r[2:] for r in rows(warehouse, (
        "SELECT day, currency, transactions, charges, sales, refunds, disputes, fees, net_volume, payouts, "
        "balance_change, net_volume_major, currency_exponent FROM finance.daily_overview"))}
    assert daily == {
        ("2025-01-15", "usd"): (2, 1, 2000, -500, 0, 88, 1412, 0, 1412, Decimal("14.12"), 2),
        ("2025-01-16", "usd"): (2, 1, 3042, 0, -1000, 1618, 424, 0, 424, Decimal("4.24"), 2),
        ("2025-01-17", "usd"): (1, 0, 0, 0, 0, 0, 0, -1836, -1836, Decimal("0"), 2),
        ("2025-01-20", "usd"): (1, 0, 0, 0, 0, 0, 0, -300, -300, Decimal("0"), 2),
        ("2025-05-10", "jpy"): (1, 1, 9000, 0, 0, 324, 8676, 0, 8676, Decimal("8676"), 0),
    }

    payouts = {r[0]: r[1:] for r in rows(warehouse, "SELECT payout_id, transactions, charges_gross, refunds, disputes, "
                                                    "fees, itemized_net, amount, reconciliation FROM finance.payouts")}
    assert payouts == {"po_auto": (4, 5042, -500, -1000, 1706, 1836, 1836, "reconciled"),
                       "po_manual": (0, 0, 0, 0, 0, 0, 300, "manual")}
    items = rows(warehouse, "SELECT balance_transaction_id, customer_id FROM finance.payout_reconciliation "
                            "WHERE payout_id = 'po_auto' ORDER BY 1")
    assert items == [("txn_dispute", None), ("txn_refund", "cus_upgrader"), ("txn_sale", "cus_upgrader"),
                     ("txn_sale2", "cus_daily")]

    # MRR: every customer-month, then the monthly report, against the hand-written spans.
    by_customer = {(r[0], r[1], r[2]): r[3:] for r in rows(warehouse, (
        "SELECT month, customer_id, currency, mrr, previous_mrr, movement FROM finance.mrr_by_customer"))}
    assert by_customer == expected_customer_mrr()
    report = {(r[0], r[1]): r[2:] for r in rows(warehouse, (
        "SELECT month, currency, mrr, customers, new_mrr, expansion_mrr, contraction_mrr, churned_mrr, "
        "reactivation_mrr, mrr_major FROM finance.mrr_by_month"))}
    usd = lambda y, m: report[date(y, m, 1), "usd"]  # noqa: E731
    assert usd(2025, 1) == (5042, 2, 5042, 0, 0, 0, 0, Decimal("50.42"))
    assert usd(2025, 2) == (7042, 2, 0, 2000, 0, 0, 0, Decimal("70.42"))
    assert usd(2025, 3) == (5042, 2, 0, 0, -2000, 0, 0, Decimal("50.42"))
    assert usd(2025, 4) == (3042, 1, 0, 0, 0, -2000, 0, Decimal("30.42"))
    assert usd(2025, 5) == (3042, 1, 0, 0, 0, 0, 0, Decimal("30.42"))
    assert usd(2025, 6) == (9542, 2, 0, 0, 0, 0, 6500, Decimal("95.42"))
    assert report[THIS_MONTH, "usd"][:2] == (9542, 2)
    assert report[date(2025, 5, 1), "jpy"] == (3000, 1, 3000, 0, 0, 0, 0, Decimal("3000"))  # the trial ended May 10
    assert report[date(2025, 9, 1), "jpy"] == (0, 0, 0, 0, 0, -3000, 0, Decimal("0"))
    assert not [k for k in report if k[1] == "jpy" and k[0] > date(2025, 9, 1)]

    overview = {r[0]: r[1:] for r in rows(warehouse, (
        "SELECT customer_id, currency, payments, gross, refunds, net, subscriptions, active_subscriptions, mrr, "
        "gross_major FROM finance.customer_overview"))}
    assert overview == {
        "cus_upgrader": ("usd", 1, 2000, -500, 1412, 3, 1, 6500, Decimal("20.00")),
        "cus_daily": ("usd", 1, 3042, 0, 2924, 2, 1, 3042, Decimal("30.42")),
        "cus_yen": ("jpy", 1, 9000, 0, 8676, 1, 0, 0, Decimal("9000")),
    }
    assert rows(warehouse, "SELECT first_payment_at = last_payment_at FROM finance.customer_overview "
                           "WHERE customer_id = 'cus_upgrader'") == [(True,)]

    lines = rows(warehouse, "SELECT line_item_id, invoice_number, customer_id, subscription_id, subscription_item_id, "
                            "subscription_status, price_id, price_interval, price_unit_amount, amount_major "
                            "FROM finance.invoice_line_details")
    assert lines == [("il_back", "KNOWN-0001", "cus_upgrader", "sub_back", "si_back_0", "active", "price_w", "week",
                      500, Decimal("15.00"))]

    # Every check judged, and passed; row counts in the materializations.
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()
                   if e.asset_key.path[0] == "finance"}
    assert evaluations == {"net_matches_balance_transactions": True, "movements_carry_each_month": True,
                           "items_sum_to_payout": True}
    mats = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert mats["finance/daily_overview"]["dagster/row_count"].value == 5
    assert mats["finance/balance_transactions"]["dagster/row_count"].value == 7
    if warehouse.kind == "duckdb":  # what the demo prints from the same tables
        from nilus_stripe_assets.demo import finance_summary

        summary = finance_summary(warehouse.database)
        assert f"{THIS_MONTH:%Y-%m}  usd        95.42" in summary and "1 manual, 1 reconciled" in summary, summary


def test_checks_fail_on_numbers_that_do_not_reconcile(known, warehouse):
    assert materialize(build_stripe_assets(UPSTREAM) + build_finance_assets(), warehouse.resources(known)).success
    with warehouse._connect() as con:
        judges = [lambda: checks.daily_overview_matches_balance_transactions(con),
                  lambda: checks.mrr_movements_carry(con), lambda: checks.payouts_sum_to_their_transactions(con)]
        assert [j().passed for j in judges] == [True, True, True]
        con.execute("UPDATE stripe.balance_transaction SET net = net + 1 WHERE id = 'txn_sale2'")
        con.execute("UPDATE finance.mrr_by_month SET expansion_mrr = expansion_mrr + 1 WHERE month = DATE '2025-02-01'")
        con.execute("UPDATE stripe.payout SET amount = 1837 WHERE id = 'po_auto'")
        failed = [j() for j in judges]
    assert [j.passed for j in failed] == [False, False, False]
    assert failed[0].metadata["examples"] == "2025-01-16/usd"
    assert failed[1].metadata["months_not_carried"] == 1 and "2025-02-01/usd" in failed[1].metadata["examples"]
    assert failed[2].metadata["examples"] == "po_auto" and failed[2].metadata["total_difference"] == 1


def test_models_build_empty_and_checks_skip_before_any_load(warehouse, known):
    result = dg.materialize(build_stripe_assets(UPSTREAM) + build_finance_assets(), resources=warehouse.resources(known),
                            selection=dg.AssetSelection.groups("finance"), instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert result.get_asset_check_evaluations() == [], "nothing to judge: skipped, not passed"
    for model in MODELS:
        assert warehouse.count(f"finance.{model.name}") == 0
        columns = [r[0] for r in warehouse.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'finance' AND table_name = ? "
            "ORDER BY ordinal_position", [model.name])]
        assert columns == list(model.all_columns(None)), model.name


def test_connect_models_group_by_account(tmp_path):
    """The same models per stripe_account: two accounts with the same story, one scaled differently."""
    import duckdb

    from nilus_stripe_assets.dagster_adapter.connect import account_partitions
    from nilus_stripe_assets.emulator.model import ACCOUNT_ID

    with StripeEmulator(counts=empty_account(), seed=5, accounts=1, account_counts=empty_account()) as emu:
        connected = emu.account_ids[0]
        story(emu)
        story(emu, connected)
        emu.create("charge", stripe_account=connected, id="ch_extra", customer="cus_daily", amount=700, currency="usd",
                   status="succeeded", created=ts(2025, 1, 15, 11))
        emu.create("balance_transaction", stripe_account=connected, id="txn_extra", created=ts(2025, 1, 15, 11),
                   type="charge", reporting_category="charge", amount=700, fee=0, net=700, source="ch_extra", currency="usd")
        database = str(tmp_path / "connect.duckdb")
        from .conftest import make_resources

        accounts = account_partitions()
        stripe_assets = build_stripe_assets(UPSTREAM, one_step=True, accounts=accounts)
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(accounts.name, [ACCOUNT_ID, connected])
        resources = make_resources(emu, database)
        for account in (ACCOUNT_ID, connected):
            assert dg.materialize(stripe_assets, resources=resources, instance=instance, partition_key=account).success
        finance = build_finance_assets(account_column="stripe_account")
        result = dg.materialize([*stripe_assets, *finance], resources=resources, instance=instance,
                                selection=dg.AssetSelection.groups("finance"))
        assert result.success
        assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
            "net_matches_balance_transactions": True, "movements_carry_each_month": True, "items_sum_to_payout": True}
    with duckdb.connect(database, read_only=True) as con:
        day = con.execute("SELECT stripe_account, sales, transactions FROM finance.daily_overview "
                          "WHERE day = DATE '2025-01-15' ORDER BY stripe_account").fetchall()
        assert sorted(day) == sorted([(ACCOUNT_ID, 2000, 2), (connected, 2700, 3)])
        mrr = con.execute("SELECT stripe_account, mrr FROM finance.mrr_by_month WHERE month = DATE '2025-02-01'").fetchall()
        assert sorted(mrr) == sorted([(ACCOUNT_ID, 7042), (connected, 7042)])
        customers = con.execute("SELECT stripe_account, gross FROM finance.customer_overview "
                                "WHERE customer_id = 'cus_daily'").fetchall()
        assert sorted(customers) == sorted([(ACCOUNT_ID, 3042), (connected, 3742)])


def test_finance_assets_in_the_code_location():
    from nilus_stripe_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    key = lambda name: dg.AssetKey(["finance", name])  # noqa: E731
    assert graph.get(key("daily_overview")).parent_keys == {dg.AssetKey(["stripe", "balance_transaction"])}
    assert graph.get(key("mrr_by_month")).parent_keys == {key("mrr_by_customer")}
    assert {dg.AssetKey(["stripe", "subscription_item"]), dg.AssetKey(["stripe", "subscription"])} == \
        graph.get(key("mrr_by_customer")).parent_keys
    assert key("balance_transactions") in graph.get(key("payout_reconciliation")).parent_keys
    for model in MODELS:
        node = graph.get(key(model.name))
        assert node.group_name == "finance" and node.description
        assert node.metadata["dagster/table_name"] == f"finance.{model.name}"
        described = {c.name: c.description for c in node.metadata["dagster/column_schema"].columns}
        assert list(described) == list(model.all_columns(None)) and all(described.values())
    specs = {c.asset_key.path[-1]: c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert specs == {"daily_overview": "net_matches_balance_transactions", "mrr_by_month": "movements_carry_each_month",
                     "payout_reconciliation": "items_sum_to_payout"} | {
        k: v for k, v in specs.items() if k not in ("daily_overview", "mrr_by_month", "payout_reconciliation")}


def test_models_run_in_sql_without_pandas_in_the_step(tmp_path):
    """The models never pull a table into Python: building them on an empty warehouse imports no pandas."""
    import subprocess
    import sys

    code = ("import duckdb, sys; from nilus_stripe_assets.warehouse.models import build_all; "
            f"build_all(duckdb.connect({str(tmp_path / 'w.duckdb')!r})); print('pandas' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.skipif(not {"dispute", "invoice_payment"} <= set(CATALOG), reason="the catalog has no dispute / invoice_payment table yet")
def test_disputes_and_invoice_payments_link_transactions_when_loaded(known, warehouse):
    """With the dispute and invoice_payment tables loaded, a dispute's transaction finds its charge and customer,
    and a charge finds the invoice it paid and that invoice's subscription."""
    known.create("dispute", id="dp_known", charge="ch_daily", payment_intent=None, amount=1000, currency="usd",
                 created=ts(2025, 1, 16, 10))
    known.create("invoice_payment", id="inpay_known", invoice="in_back", currency="usd", status="paid",
                 payment={"type": "charge", "charge": "ch_upgrader", "payment_intent": None}, created=ts(2025, 6, 1))
    assets = build_stripe_assets(UPSTREAM + ["dispute", "invoice_payment"]) + build_finance_assets()
    assert materialize(assets, warehouse.resources(known)).success
    linked = {r[0]: r[1:] for r in rows(warehouse, "SELECT balance_transaction_id, dispute_id, charge_id, customer_id, "
                                                   "invoice_id, subscription_id FROM finance.balance_transactions")}
    assert linked["txn_dispute"] == ("dp_known", "ch_daily", "cus_daily", None, None)
    assert linked["txn_sale"] == (None, "ch_upgrader", "cus_upgrader", "in_back", "sub_back")
    assert linked["txn_refund"][3:] == ("in_back", "sub_back"), "a refund of that charge belongs to the same invoice"
