"""sync:incremental, change capture from events, partitions over `created`, and the events sensor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import dagster as dg
import duckdb
import pytest

from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.warehouse.strategies import ChangeSet, TableRef, get_cursor, set_cursor, write
from nilus_stripe_assets.dagster_adapter.automation import build_events_sensor, build_incremental_job
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets

from .conftest import count, make_resources, materialize, mode_config, query


def _meta(result, name):
    for event in result.get_asset_materialization_events():
        if event.asset_key.path[-1] == name:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"no materialization for {name}")


def test_incremental_sees_new_and_updated_objects_with_few_requests(warehouse_path):
    with StripeEmulator(counts={"charge": 20000}, seed=3) as emu:
        assets = build_stripe_assets(["charge"])
        resources = make_resources(emu, warehouse_path)
        assert materialize(assets, resources).success
        assert count(warehouse_path, "stripe.charge") == 20000

        old = [r[0] for r in query(warehouse_path, "SELECT id FROM stripe.charge ORDER BY created LIMIT 10")]
        for charge_id in old:
            emu.update("charge", charge_id, refunded=True, amount_refunded=100, status="succeeded")
        for i in range(50):
            emu.create("charge", amount=1000 + i, currency="usd")

        result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
        assert result.success
        meta = _meta(result, "charge")
        assert meta["requests"] <= 5, meta
        assert count(warehouse_path, "stripe.charge") == 20050
        refunded = query(warehouse_path, f"SELECT count(*) FROM stripe.charge WHERE refunded AND id IN ({','.join('?' * 10)})", old)
        assert refunded[0][0] == 10, "every update to an old charge is visible"
        rows, distinct = query(warehouse_path, "SELECT count(*), count(DISTINCT id) FROM stripe.charge")[0]
        assert rows == distinct


def test_deleted_customer_is_flagged_after_the_next_incremental_run(emulator, warehouse_path):
    assets = build_stripe_assets(["customer"])
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources).success
    victim = query(warehouse_path, "SELECT id FROM stripe.customer ORDER BY created LIMIT 1")[0][0]
    emulator.delete("customer", victim)
    assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
    flagged = query(warehouse_path, "SELECT is_deleted, deleted_at IS NOT NULL FROM stripe.customer WHERE id = ?", [victim])
    assert flagged == [(True, True)]
    assert query(warehouse_path, "SELECT count(*) FROM stripe.customer WHERE is_deleted")[0][0] == 1


def test_objects_sharing_the_cursor_second_are_neither_lost_nor_duplicated(emulator, warehouse_path):
    assets = build_stripe_assets(["invoice"])
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources, mode_config(assets, "sync")).success
    newest = query(warehouse_path, "SELECT epoch(max(created))::BIGINT FROM stripe.invoice")[0][0]
    # Three new invoices in the cursor's own second, as Stripe allows.
    for _ in range(3):
        emulator.create("invoice", created=newest)
    assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
    rows, distinct = query(warehouse_path, "SELECT count(*), count(DISTINCT id) FROM stripe.invoice")[0]
    assert rows == distinct == emulator.counts()["invoice"]


def test_invoice_items_are_timed_by_date_as_stripe_declares(emulator, warehouse_path):
    # stripe.InvoiceItem has `date`, no `created`: the async split, the cursor and the metadata read `date`.
    assets = build_stripe_assets(["invoice_item"])
    resources = make_resources(emulator, warehouse_path)
    result = materialize(assets, resources, mode_config(assets, "async"))
    assert result.success
    columns = {r[0] for r in query(warehouse_path, "SELECT column_name FROM information_schema.columns WHERE table_name = 'invoice_item'")}
    assert "date" in columns and "created" not in columns
    assert count(warehouse_path, "stripe.invoice_item") == emulator.counts()["invoice_item"]
    newest = query(warehouse_path, "SELECT epoch(max(date))::BIGINT FROM stripe.invoice_item")[0][0]
    assert _meta(result, "invoice_item")["created_max"] == newest
    emulator.create("invoice_item", date=newest + 5)
    result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
    assert result.success
    meta = _meta(result, "invoice_item")
    assert meta["objects_fetched"] < 10, "the cursor comes from `date`: only the newest items are re-read"
    assert count(warehouse_path, "stripe.invoice_item") == emulator.counts()["invoice_item"]


@pytest.mark.parametrize(
    "name",
    ["payment_method", "subscription_item", "webhook_endpoint", "coupon", "event", "invoice_line_item", "credit_note_line_item",
     "payout_balance_transaction"],
)
def test_every_object_works_incrementally(emulator, warehouse_path, name):
    assets = build_stripe_assets([name])
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
    first = count(warehouse_path, f"stripe.{name}")
    assert first == emulator.counts()[name] > 0
    assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
    assert count(warehouse_path, f"stripe.{name}") == first


def test_expired_events_cursor_falls_back_to_a_full_reload(emulator, warehouse_path):
    assets = build_stripe_assets(["refund"])
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources).success
    table = TableRef("stripe", "refund")
    key = f"events_cursor:{table}:refund"
    with duckdb.connect(warehouse_path) as con:
        set_cursor(con, "stripe", key, 1_600_000_000)  # 2020: far beyond Stripe's 30 days of events
    result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
    assert result.success
    meta = _meta(result, "refund")
    assert "30-day" in meta["notes"] and meta["objects_fetched"] == emulator.counts()["refund"]
    with duckdb.connect(warehouse_path, read_only=True) as con:
        assert get_cursor(con, "stripe", key) > 1_600_000_000


def test_latest_event_wins_even_out_of_order(tmp_path):
    database = str(tmp_path / "w.duckdb")
    lines = [
        {"id": "ch_1", "object": "charge", "created": 10, "status": "pending", "_event_created": 300, "_event_type": "charge.updated"},
        {"id": "ch_1", "object": "charge", "created": 10, "status": "succeeded", "_event_created": 500, "_event_type": "charge.updated"},
        {"id": "ch_1", "object": "charge", "created": 10, "status": "failed", "_event_created": 400, "_event_type": "charge.updated"},
    ]
    base = tmp_path / "base.ndjson"
    base.write_text(json.dumps({"id": "ch_1", "object": "charge", "created": 10, "status": "new"}) + "\n")
    events = tmp_path / "events.ndjson"
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    stale = tmp_path / "stale.ndjson"
    stale.write_text(json.dumps({**lines[0], "status": "stale", "_event_created": 450}) + "\n")
    table = TableRef("stripe", "charge")
    with duckdb.connect(database) as con:
        write(con, table, [str(base)], "merge", state_at=200)
        write(con, table, [], "merge", changes=ChangeSet([str(events)], "k", 500))
        assert con.execute("SELECT status, _state_at FROM stripe.charge").fetchall() == [("succeeded", 500)]
        write(con, table, [], "merge", changes=ChangeSet([str(stale)], "k", 500))  # older event arrives late
        assert con.execute("SELECT status FROM stripe.charge").fetchall() == [("succeeded",)]
        assert get_cursor(con, "stripe", "k") == 500


# --- partitions ---------------------------------------------------------------------------------

def _daily_assets(names):
    partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")
    return build_stripe_assets(names, partitions_def=partitions)


def _day_bounds(day: str) -> tuple[int, int]:
    start = int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp())
    return start, start + 86400


def _busiest_days(database, table, n):
    return [
        r[0]
        for r in query(
            database,
            f"SELECT strftime(created AT TIME ZONE 'UTC', '%Y-%m-%d') d, count(*) c FROM {table} "
            "GROUP BY d ORDER BY c DESC, d LIMIT ?",
            [n],
        )
    ]


def test_a_partition_loads_exactly_its_day_and_reruns_are_idempotent(shared_emulator, tmp_path):
    reference = str(tmp_path / "reference.duckdb")
    full = build_stripe_assets(["charge", "coupon"])
    assert materialize(full, make_resources(shared_emulator, reference), mode_config(full, "sync")).success
    day = _busiest_days(reference, "stripe.charge", 1)[0]
    lo, hi = _day_bounds(day)
    expected = query(reference, "SELECT count(*) FROM stripe.charge WHERE created >= to_timestamp(?) AND created < to_timestamp(?)", [lo, hi])[0][0]
    assert expected > 0

    database = str(tmp_path / "partitioned.duckdb")
    assets = _daily_assets(["charge"])
    resources = make_resources(shared_emulator, database)
    for _ in range(2):
        assert materialize(assets, resources, partition_key=day).success
        rows, distinct, outside = query(
            database, "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE created < to_timestamp(?) OR created >= to_timestamp(?)) FROM stripe.charge", [lo, hi]
        )[0]
        assert (rows, distinct, outside) == (expected, expected, 0)


def test_partitioned_replace_swaps_only_its_slice(emulator, tmp_path, warehouse):
    assets = _daily_assets(["coupon"])
    resources = warehouse.resources(emulator)
    reference = str(tmp_path / "ref.duckdb")
    assert materialize(build_stripe_assets(["coupon"]), make_resources(emulator, reference)).success
    day_a, day_b = _busiest_days(reference, "stripe.coupon", 2)
    assert materialize(assets, resources, partition_key=day_a).success
    assert materialize(assets, resources, partition_key=day_b).success
    both = warehouse.count("stripe.coupon")
    lo, hi = _day_bounds(day_a)
    in_day = "created >= to_timestamp(?) AND created < to_timestamp(?)"
    victim = warehouse.query(f"SELECT id FROM stripe.coupon WHERE {in_day} ORDER BY id LIMIT 1", [lo, hi])[0][0]
    day_rows = warehouse.query(f"SELECT count(*) FROM stripe.coupon WHERE {in_day}", [lo, hi])[0][0]
    emulator.delete("coupon", victim)
    result = materialize(assets, resources, partition_key=day_a)
    assert result.success
    assert warehouse.count("stripe.coupon") == both - 1
    assert (_meta(result, "coupon")["rows_deleted"], _meta(result, "coupon")["rows_unchanged"]) == (1, day_rows - 1)


def _cli(args, env, cwd):
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "dagster"), "asset", "materialize", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def test_cli_partition_concurrent_partitions_and_a_30_day_backfill_in_one_run(shared_emulator, tmp_path):
    reference = str(tmp_path / "reference.duckdb")
    full = build_stripe_assets(["charge"])
    assert materialize(full, make_resources(shared_emulator, reference), mode_config(full, "sync")).success
    day_a, day_b = _busiest_days(reference, "stripe.charge", 2)

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    database = str(tmp_path / "w.duckdb")
    env = {
        **os.environ,
        "STRIPE_API_KEY": shared_emulator.api_key,
        "STRIPE_API_BASE": shared_emulator.url,
        "NILUS_DUCKDB_PATH": database,
        "DAGSTER_HOME": str(home),
        "NILUS_PARTITIONS_START": "2024-01-01",
    }
    module = ["-m", "nilus_stripe_assets.daily", "--select", "stripe/charge"]
    # Create the instance's storage first: two CLIs racing to create its SQLite tables can fail.
    dg.DagsterInstance.from_config(str(home)).dispose()
    procs = [
        subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "dagster"), "asset", "materialize", *module, "--partition", day],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for day in (day_a, day_b)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for day in (day_a, day_b):
        lo, hi = _day_bounds(day)
        sql = "SELECT count(*) FROM stripe.charge WHERE created >= to_timestamp(?) AND created < to_timestamp(?)"
        assert query(database, sql, [lo, hi]) == query(reference, sql, [lo, hi])

    # A 30-day range backfill: one run (single-run backfill policy), every charge of those days.
    last = datetime.now(timezone.utc).date().toordinal() - 1
    first_day = datetime.fromordinal(last - 29).strftime("%Y-%m-%d")
    last_day = datetime.fromordinal(last).strftime("%Y-%m-%d")
    done = _cli([*module, "--partition-range", f"{first_day}...{last_day}"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lo, hi = _day_bounds(first_day)[0], _day_bounds(last_day)[1]
    sql = "SELECT count(*) FROM stripe.charge WHERE created >= to_timestamp(?) AND created < to_timestamp(?)"
    assert query(database, sql, [lo, hi]) == query(reference, sql, [lo, hi])
    env_instance = dg.DagsterInstance.from_config(str(home))
    runs = env_instance.get_runs()
    assert len(runs) == 3  # two single partitions, one 30-day range
    assert runs[0].tags.get("dagster/asset_partition_range_start") == first_day


# --- the events sensor ---------------------------------------------------------------------------

def test_events_sensor_requests_runs_only_for_changed_objects(emulator, warehouse_path):
    assets = build_stripe_assets()
    job = build_incremental_job(assets)
    sensor = build_events_sensor(assets, job)
    resources = make_resources(emulator, warehouse_path)
    defs = dg.Definitions(assets=assets, jobs=[job], sensors=[sensor], resources=resources)
    sensor_def = defs.resolve_sensor_def("stripe_events_sensor")

    with dg.build_sensor_context(resources={"stripe": resources["stripe"]}, definitions=defs) as context:
        first = sensor_def(context)
        assert isinstance(first, dg.SkipReason)
        cursor = context.cursor
    charge = emulator.create("charge", amount=4200, currency="usd")
    if charge.get("customer"):
        emulator.update("customer", charge["customer"], description="vip")
    with dg.build_sensor_context(cursor=cursor, resources={"stripe": resources["stripe"]}, definitions=defs) as context:
        request = sensor_def(context)
        assert isinstance(request, dg.RunRequest), request
        selected = {k.path[-1] for k in request.asset_selection}
        assert {"charge", "event"} <= selected
        if charge.get("customer"):
            assert "customer" in selected
        # Payment methods have their own events: a customer's change does not refresh them.
        assert selected.isdisjoint({"coupon", "tax_rate", "webhook_endpoint", "product", "price", "payout", "subscription",
                                    "payment_method", "subscription_item"})
        assert all(op["config"]["mode"] == "sync:incremental" for op in request.run_config["ops"].values())
        cursor = context.cursor
    with dg.build_sensor_context(cursor=cursor, resources={"stripe": resources["stripe"]}, definitions=defs) as context:
        assert isinstance(sensor_def(context), dg.SkipReason)  # nothing new: nothing requested


def test_incremental_mode_on_a_partition_reads_only_its_day(shared_emulator, tmp_path):
    """A partition is a slice of history: incremental config must not add change capture requests."""
    reference = str(tmp_path / "reference.duckdb")
    full = build_stripe_assets(["charge"])
    assert materialize(full, make_resources(shared_emulator, reference), mode_config(full, "sync")).success
    day = _busiest_days(reference, "stripe.charge", 1)[0]
    expected = query(reference, "SELECT count(*) FROM stripe.charge WHERE created >= to_timestamp(?) AND created < to_timestamp(?)", list(_day_bounds(day)))[0][0]
    database = str(tmp_path / "w.duckdb")
    assets = _daily_assets(["charge"])
    result = materialize(assets, make_resources(shared_emulator, database), mode_config(assets, "sync:incremental"), partition_key=day)
    assert result.success
    meta = _meta(result, "charge")
    assert meta["objects_fetched"] == expected
    assert meta["requests"] == expected // 100 + 1  # list pages only: no /v1/events reads
    assert "change capture" not in meta.get("notes", "")


def test_incremental_run_relists_the_recent_payouts_transactions(emulator, warehouse_path):
    """No event carries a payout's balance transactions: an incremental run lists those of the payouts created
    in the last 30 days (one request each, plus the payouts page), so a new payout's transactions arrive."""
    import time

    assets = build_stripe_assets(["payout_balance_transaction"])
    resources = make_resources(emulator, warehouse_path)
    assert materialize(assets, resources).success
    first = count(warehouse_path, "stripe.payout_balance_transaction")
    assert first == emulator.counts()["payout_balance_transaction"] > 0
    now = int(time.time())
    payout = emulator.create("payout", automatic=True, status="paid", amount=1200, created=now - 60)
    for net in (1000, 200):
        emulator.create("payout_balance_transaction", payout=payout["id"], amount=net, fee=0, net=net, type="charge",
                        created=now - 3600)
    recent = sum(1 for p in emulator.store.tables["payout"].data
                 if emulator.store.tables["payout"].created[p] >= now - 30 * 86400)
    emulator.reset_stats()
    result = materialize(assets, resources, mode_config(assets, "sync:incremental"))
    assert result.success
    assert count(warehouse_path, "stripe.payout_balance_transaction") == first + 2
    assert query(warehouse_path, "SELECT sum(net) FROM stripe.payout_balance_transaction WHERE payout = ?",
                 [payout["id"]]) == [(1200,)]
    payouts_pages = 1
    assert emulator.stats()["total"]["requests"] <= payouts_pages + recent + 2, "only the recent payouts' lists"
    assert "last 30 days" in _meta(result, "payout_balance_transaction")["notes"]
