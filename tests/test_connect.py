"""Connect platforms: each account a partition, one table per object for all accounts, `stripe_account` on
every row, per-account merge keys, cursors, replace scope and failures (emulator over HTTP, DuckDB files,
Dagster in-process)."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pytest

from nilus_stripe_assets.source.catalog import CATALOG, DEFAULT_OBJECTS, every_object
from nilus_stripe_assets.daily import daily_partitions
from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.emulator.model import ACCOUNT_ID
from nilus_stripe_assets.dagster_adapter.connect import account_partitions, build_accounts_asset, build_accounts_sensor
from nilus_stripe_assets.dagster_adapter.factory import StripeTranslator, StripeTranslatorData, build_stripe_assets

from .conftest import make_resources, mode_config, query

OBJECTS = ["charge", "coupon", "customer", "event"]


@pytest.fixture
def platform():
    with StripeEmulator(scale=0.1, seed=9, accounts=2, account_counts={"charge": 250}, account_scale=0.05) as emu:
        yield emu


def _instance(*accounts) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("stripe_accounts", list(accounts))
    return instance


def _run(assets, resources, instance, partition, run_config=None, raise_on_error=True):
    return dg.materialize(assets, resources=resources, instance=instance, partition_key=partition,
                          run_config=run_config or {}, raise_on_error=raise_on_error)


def _rows(path, table="stripe.charge"):
    return dict(query(path, f"SELECT stripe_account, count(*) FROM {table} GROUP BY 1"))


def test_each_account_is_a_partition_of_one_table(platform, warehouse_path):
    a, b = platform.account_ids
    accounts = account_partitions()
    assets = build_stripe_assets(OBJECTS, one_step=True, accounts=accounts)
    resources = make_resources(platform, warehouse_path)
    instance = _instance(ACCOUNT_ID, a, b)
    platform.create("coupon", stripe_account=a, id="SUMMER25", percent_off=25)
    platform.create("coupon", stripe_account=b, id="SUMMER25", percent_off=10)
    for account in (ACCOUNT_ID, a, b):
        result = _run(assets, resources, instance, account)
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks if c.check_name.startswith("id_")), checks
    assert _rows(warehouse_path) == {ACCOUNT_ID: platform.counts()["charge"], a: 250, b: 250}
    # The platform's own requests carry no Stripe-Account; each connected account's do.
    assert set(platform.stats()["accounts"]) == {a, b}
    # User-chosen ids exist once per account: the merge key is (stripe_account, id).
    assert sorted(query(warehouse_path, "SELECT stripe_account, percent_off FROM stripe.coupon WHERE id = 'SUMMER25'")) \
        == sorted([(a, 25.0), (b, 10.0)])

    # Re-running one account changes nothing anywhere; coupon (replace) swaps only that account's rows.
    gone = query(warehouse_path, "SELECT id FROM stripe.coupon WHERE stripe_account = ? AND id <> 'SUMMER25' LIMIT 1", [a])[0][0]
    platform.delete("coupon", gone, stripe_account=a)
    before = _rows(warehouse_path, "stripe.coupon")
    assert _run(assets, resources, instance, a).success
    after = _rows(warehouse_path, "stripe.coupon")
    assert after == {**before, a: before[a] - 1}
    assert _rows(warehouse_path) == {ACCOUNT_ID: platform.counts()["charge"], a: 250, b: 250}


def test_incremental_cursors_and_changes_are_per_account(platform, warehouse_path):
    a, b = platform.account_ids
    assets = build_stripe_assets(["charge"], one_step=True, accounts=account_partitions())
    resources = make_resources(platform, warehouse_path)
    instance = _instance(a, b)
    for account in (a, b):
        assert _run(assets, resources, instance, account).success
    cursors = dict(query(warehouse_path, "SELECT key, value FROM stripe._nilus_state"))
    assert {k.rsplit(":", 1)[-1] for k in cursors} == {a, b}

    old = query(warehouse_path, "SELECT id FROM stripe.charge WHERE stripe_account = ? ORDER BY created LIMIT 1", [b])[0][0]
    platform.update("charge", old, stripe_account=b, description="changed in b")
    platform.create("charge", stripe_account=b, amount=4242, currency="usd")
    platform.create("charge", stripe_account=a, amount=4343, currency="usd")  # not loaded: a's run is not asked for
    platform.reset_stats()
    result = _run(assets, resources, instance, b, mode_config(assets, "sync:incremental"))
    assert result.success
    assert _rows(warehouse_path) == {a: 250, b: 251}
    assert query(warehouse_path, "SELECT description FROM stripe.charge WHERE id = ?", [old]) == [("changed in b",)]
    assert set(platform.stats()["accounts"]) == {b}
    assert platform.stats()["total"]["requests"] <= 6  # access check, page of new charges, events: b's cursors


def test_a_revoked_account_fails_its_partition_with_one_line(platform, warehouse_path):
    a, b = platform.account_ids
    assets = build_stripe_assets(["charge", "customer"], one_step=True, accounts=account_partitions())
    resources = make_resources(platform, warehouse_path)
    instance = _instance(a, b)
    platform.revoke(b)
    result = _run(assets, resources, instance, b, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.user_failure_data.description
    assert "\n" not in message and b in message and "403" in message and platform.api_key not in message
    assert _run(assets, resources, instance, a).success
    assert _rows(warehouse_path) == {a: 250}


def test_account_by_day_partitions(platform, warehouse_path):
    a, _ = platform.account_ids
    assets = build_stripe_assets(["charge", "webhook_endpoint"], one_step=True, accounts=account_partitions(),
                                 partitions_def=daily_partitions)
    by_day = next(x for x in assets if isinstance(x.partitions_def, dg.MultiPartitionsDefinition))
    resources = make_resources(platform, warehouse_path)
    instance = _instance(a)
    created = platform.create("charge", stripe_account=a, amount=100, currency="usd", created=1_767_312_000 + 3600)
    day = datetime.fromtimestamp(created["created"], timezone.utc).strftime("%Y-%m-%d")
    key = dg.MultiPartitionKey({"account": a, "day": day})
    assert dg.materialize([by_day], resources=resources, instance=instance, partition_key=key).success
    rows = query(warehouse_path, "SELECT stripe_account, epoch(min(created))::BIGINT, epoch(max(created))::BIGINT "
                                 "FROM stripe.charge GROUP BY 1")  # created is TIMESTAMPTZ
    assert len(rows) == 1 and rows[0][0] == a
    assert 1_767_312_000 <= rows[0][1] <= rows[0][2] < 1_767_312_000 + 86400


def test_sensor_adds_new_accounts_as_partitions(platform, warehouse_path):
    accounts = account_partitions()
    assets = build_stripe_assets(["charge"], one_step=True, accounts=accounts)
    job = dg.define_asset_job("load", selection=dg.AssetSelection.assets(*assets), partitions_def=accounts)
    sensor = build_accounts_sensor(accounts, job)
    defs = dg.Definitions(assets=assets, jobs=[job], sensors=[sensor], resources=make_resources(platform, warehouse_path))
    instance = dg.DagsterInstance.ephemeral()
    stripe = make_resources(platform, warehouse_path)["stripe"]

    result = sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources={"stripe": stripe}))
    assert isinstance(result, dg.SensorResult)
    (request,) = result.dynamic_partitions_requests
    assert list(request.partition_keys) == [ACCOUNT_ID, *reversed(platform.account_ids)]
    assert sorted(r.partition_key for r in result.run_requests) == sorted(request.partition_keys)
    instance.add_dynamic_partitions(accounts.name, list(request.partition_keys))
    again = sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources={"stripe": stripe}))
    assert isinstance(again, dg.SkipReason)

    listed = make_resources(platform, warehouse_path, connected_accounts=[platform.account_ids[0]])["stripe"]
    only = sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), definitions=defs,
                                          resources={"stripe": listed}))
    assert list(only.dynamic_partitions_requests[0].partition_keys) == [platform.account_ids[0]]


def test_cli_a_range_of_accounts_in_one_run_and_a_revoked_one(tmp_path):
    import os
    import subprocess
    import sys

    with StripeEmulator(scale=0.05, seed=4, accounts=3, account_counts={"charge": 120}, account_scale=0.02) as emu:
        a, b, c = emu.account_ids
        home = tmp_path / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        instance = dg.DagsterInstance.from_config(str(home))
        instance.add_dynamic_partitions("stripe_accounts", [ACCOUNT_ID, a, b, c])
        instance.dispose()
        database = str(tmp_path / "w.duckdb")
        env = {**os.environ, "STRIPE_API_KEY": emu.api_key, "STRIPE_API_BASE": emu.url,
               "NILUS_DUCKDB_PATH": database, "DAGSTER_HOME": str(home)}
        dagster = os.path.join(os.path.dirname(sys.executable), "dagster")

        def cli(*args):
            return subprocess.run([dagster, "asset", "materialize", "-m", "nilus_stripe_assets.connect",
                                   "--select", "stripe/charge", *args], env=env, cwd=tmp_path, capture_output=True,
                                  text=True, timeout=300)

        done = cli("--partition-range", f"{a}...{b}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert _rows(database) == {a: 120, b: 120}
        assert len(dg.DagsterInstance.from_config(str(home)).get_runs()) == 1

        emu.revoke(c)
        failed = cli("--partition", c)
        assert failed.returncode != 0
        lines = [line for line in (failed.stdout + failed.stderr).splitlines() if "refused access to connected account" in line]
        assert lines and c in lines[0] and "403" in lines[0] and emu.api_key not in failed.stdout + failed.stderr
        assert _rows(database) == {a: 120, b: 120}


def test_writer_merges_replaces_and_appends_on_a_composite_key(tmp_path):
    """The warehouse writer takes the merge key as a list of columns: (stripe_account, id) here."""
    import json

    import duckdb

    from nilus_stripe_assets.warehouse.strategies import Slice, TableRef, write

    def spool(name, rows):
        path = tmp_path / f"{name}.ndjson"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return [str(path)]

    key, table = ("stripe_account", "id"), TableRef("stripe", "coupon")
    a = [{"id": "SUMMER25", "object": "coupon", "created": 1, "percent_off": 25, "stripe_account": "acct_a"},
         {"id": "VIP10", "object": "coupon", "created": 2, "percent_off": 10, "stripe_account": "acct_a"}]
    b = [{"id": "SUMMER25", "object": "coupon", "created": 3, "percent_off": 5, "stripe_account": "acct_b"}]
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        write(con, table, spool("a", a), "merge", key)
        result = write(con, table, spool("b", b), "merge", key)
        assert (result.inserted, result.updated) == (1, 0)
        again = write(con, table, spool("b2", [{**b[0], "percent_off": 6}]), "merge", key)
        assert (again.inserted, again.updated) == (0, 1)
        rows = "SELECT stripe_account, id, percent_off FROM stripe.coupon ORDER BY 1, 2"
        assert con.execute(rows).fetchall() == [("acct_a", "SUMMER25", 25), ("acct_a", "VIP10", 10), ("acct_b", "SUMMER25", 6)]
        # replace scoped to one account swaps only its rows
        only_a = Slice(None, equals=(("stripe_account", "acct_a"),))
        swapped = write(con, table, spool("a2", a[:1]), "replace", key, scope=only_a)
        assert (swapped.deleted, swapped.unchanged) == (1, 1)  # SUMMER25 in acct_a is as stored
        assert con.execute(rows).fetchall() == [("acct_a", "SUMMER25", 25), ("acct_b", "SUMMER25", 6)]
        # append adds a key once per account
        appended = write(con, table, spool("a3", a), "append", key)
        assert (appended.inserted, appended.unchanged) == (1, 1)


def test_budget_rule_is_the_platforms_unless_configured_per_account():
    from nilus_stripe_assets.dagster_adapter.resources import StripeResource

    shared = StripeResource(api_key="sk_test_emulator", api_base="http://127.0.0.1:9")
    assert shared.get_api(stripe_account="acct_1a").budget is shared.get_api(stripe_account="acct_1b").budget
    assert shared.get_api(stripe_account="acct_1a").budget is shared.get_api(stripe_account=None).budget
    own = StripeResource(api_key="sk_test_emulator", api_base="http://127.0.0.1:9", connect_budget="account")
    assert own.get_api(stripe_account="acct_1a").budget is not own.get_api(stripe_account="acct_1b").budget
    assert own.get_api(stripe_account="acct_1a").budget is own.get_api(stripe_account="acct_1a").budget


def test_connect_locations_load():
    import nilus_stripe_assets.connect as connect
    import nilus_stripe_assets.connect_daily as connect_daily

    jobs = {j.name for j in connect.defs.resolve_all_job_defs()}
    assert {"stripe_connect_load", "stripe_incremental"} <= jobs
    assert connect.defs.resolve_sensor_def("stripe_accounts_sensor")
    assert connect.defs.resolve_schedule_def("stripe_connect_incremental_hourly")
    kinds = sorted(type(a.partitions_def).__name__ for a in connect_daily.stripe_assets)
    assert kinds == ["DynamicPartitionsDefinition", "MultiPartitionsDefinition"]
    # Every list (the children of connected accounts too), one account-partitioned step; the default job loads
    # the default tables and the platform's Connect lists.
    assert len(connect.stripe_assets) == 1 and len(connect.stripe_assets[0].keys) == len(every_object(connect=True))
    load = connect.defs.resolve_job_def("stripe_connect_load")
    selected = {k.path[-1] for k in load.asset_layer.selected_asset_keys} - {"stripe_accounts"}
    platform_lists = {"account", "person", "capability", "external_bank_account", "external_card", "application_fee",
                      "application_fee_refund", "transfer", "transfer_reversal", "country_spec"}
    assert selected == set(DEFAULT_OBJECTS) | platform_lists
    assert {k.path[-1] for k in connect.defs.resolve_job_def("stripe_connect_everything").asset_layer.selected_asset_keys} \
        == set(every_object(connect=True))
    # The finance models per account: their tables carry stripe_account first.
    graph = connect.defs.resolve_asset_graph()
    schema = graph.get(dg.AssetKey(["finance", "mrr_by_month"])).metadata["dagster/column_schema"]
    assert schema.columns[0].name == "stripe_account"


def test_checks_and_row_counts_judge_the_runs_accounts(platform, warehouse_path):
    """A run for one account checks that account's rows: another account's duplicates or stale rows do not
    fail it, they fail that account's checks (and the whole table's, judged without a run)."""
    import duckdb

    from nilus_stripe_assets.warehouse.strategies import TableRef
    from nilus_stripe_assets.dagster_adapter.checks import stripe_table_checks

    a, b = platform.account_ids
    assets = build_stripe_assets(["charge", "event"], one_step=True, accounts=account_partitions())
    resources = make_resources(platform, warehouse_path)
    instance = _instance(a, b)
    changed = platform.create("charge", stripe_account=b, amount=500, currency="usd")
    platform.emit_event("charge.updated", changed, stripe_account=b)
    for account in (a, b):
        result = _run(assets, resources, instance, account)
        charge = next(m.materialization for m in result.get_asset_materialization_events()
                      if m.materialization.asset_key == dg.AssetKey(["stripe", "charge"]))
        assert charge.metadata["account_rows"].value == (250 if account == a else 251)
        checks = result.get_asset_check_evaluations()
        assert {c.check_name for c in checks if c.asset_key.path[-1] == "charge"} == {"id_unique", "id_not_null", "no_stale_rows"}
        assert all(c.passed and c.metadata["stripe_accounts"].value == account for c in checks), checks
    assert charge.metadata["dagster/row_count"].value == 501  # the table: both accounts

    # Account b's table rows go wrong: a duplicated row, and a row older than its account's latest change.
    with duckdb.connect(warehouse_path) as con:
        con.execute("INSERT INTO stripe.charge SELECT * FROM stripe.charge WHERE stripe_account = ? AND id <> ? LIMIT 1",
                    [b, changed["id"]])
        con.execute("UPDATE stripe.charge SET _state_at = 0 WHERE stripe_account = ? AND id = ?", [b, changed["id"]])
    result = _run(assets, resources, instance, a)  # a's checks judge a's rows only
    assert all(c.passed for c in result.get_asset_check_evaluations())

    # The checks build_stripe_checks makes from the assets' metadata: the same scoping, per (account, id).
    checks = next(c for c in stripe_table_checks(assets) if c.key == dg.AssetKey(["stripe", "charge"]))
    assert (checks.keys, checks.account_column, checks.events) == (("id",), "stripe_account", TableRef("stripe", "event"))
    with duckdb.connect(warehouse_path) as con:
        for accounts in ([b], None):  # b's partition, and the whole table
            judged = {r.check_name: r for r in checks.evaluate(con, accounts=accounts)}
            assert not judged["id_unique"].passed and judged["id_unique"].metadata["duplicated_keys"].value == 1
            assert judged["id_unique"].metadata["example_ids"].value.startswith(f"{b}/ch_")
            assert not judged["no_stale_rows"].passed
            assert judged["no_stale_rows"].metadata["example_ids"].value == changed["id"]
            assert judged["id_not_null"].passed
        assert all(r.passed for r in checks.evaluate(con, accounts=[a]))


def test_translator_sees_the_account_column_and_partitions():
    seen = {}

    class Recording(StripeTranslator):
        def get_asset_spec(self, data: StripeTranslatorData) -> dg.AssetSpec:
            seen[data.object.name] = (data.account_column, data.partitions_def)
            return super().get_asset_spec(data)

    accounts = account_partitions()
    by_day = build_stripe_assets(["charge", "webhook_endpoint"], one_step=True, accounts=accounts, partitions_def=daily_partitions,
                                 translator=Recording())
    assert seen["webhook_endpoint"] == ("stripe_account", accounts)  # no `created` filter: by account only
    assert seen["charge"][0] == "stripe_account" and isinstance(seen["charge"][1], dg.MultiPartitionsDefinition)
    spec = next(s for a in by_day for s in a.specs if s.key == dg.AssetKey(["stripe", "charge"]))
    assert spec.metadata["merge_key"] == "stripe_account, id" and spec.metadata["stripe/account_column"] == "stripe_account"
    single = build_stripe_assets(["charge"], translator=Recording())
    assert seen["charge"] == (None, None) and single[0].specs_by_key[dg.AssetKey(["stripe", "charge"])].metadata["merge_key"] == "id"


def test_accounts_asset_adds_the_accounts_as_partitions(platform, warehouse_path):
    """`stripe_accounts` (the command line's way, without a sensor tick): the sensor's rule, added through
    the run's instance, each account once; a refused key fails with one line."""
    accounts = account_partitions()
    asset = build_accounts_asset(accounts)
    instance = dg.DagsterInstance.ephemeral()
    stripe = make_resources(platform, warehouse_path)["stripe"]
    result = dg.materialize([asset], resources={"stripe": stripe}, instance=instance)
    expected = [ACCOUNT_ID, *reversed(platform.account_ids)]
    assert instance.get_dynamic_partitions(accounts.name) == expected
    assert result.asset_materializations_for_node("stripe_accounts")[0].metadata["added"].value == 3
    again = dg.materialize([asset], resources={"stripe": stripe}, instance=instance)
    assert again.asset_materializations_for_node("stripe_accounts")[0].metadata["added"].value == 0
    assert instance.get_dynamic_partitions(accounts.name) == expected

    listed = make_resources(platform, warehouse_path, connected_accounts=[platform.account_ids[1]])["stripe"]
    other = dg.DagsterInstance.ephemeral()
    assert dg.materialize([asset], resources={"stripe": listed}, instance=other).success
    assert other.get_dynamic_partitions(accounts.name) == [platform.account_ids[1]]

    wrong = make_resources(platform, warehouse_path, api_key="sk_test_" + "x" * 24)["stripe"]
    failed = dg.materialize([asset], resources={"stripe": wrong}, instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    message = next(e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE) \
        .step_failure_data.user_failure_data.description
    assert "\n" not in message and "x" * 24 not in message


def test_an_accounts_first_load_with_nothing_to_load(platform, warehouse_path):
    """A first Connect load that lists no object (a day without charges) still makes a table with the account
    column: its metadata and checks read `stripe_account`, and the next load finds its key."""
    a, _ = platform.account_ids
    assets = build_stripe_assets(["charge"], one_step=True, accounts=account_partitions(),
                                 partitions_def=daily_partitions)
    resources = make_resources(platform, warehouse_path)
    instance = _instance(a)
    empty = dg.MultiPartitionKey({"account": a, "day": "2024-01-02"})  # before the emulator's data starts
    result = dg.materialize(assets, resources=resources, instance=instance, partition_key=empty)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks if c.check_name.startswith("id_")), checks
    assert "stripe_account" in dict(query(warehouse_path, "SELECT column_name, data_type FROM information_schema.columns "
                                                          "WHERE table_name = 'charge'"))
    assert query(warehouse_path, "SELECT count(*) FROM stripe.charge") == [(0,)]


def test_the_platforms_own_lists_are_read_once_without_stripe_account(platform, warehouse_path):
    """Issue 19: transfers (and the other `platform_level` lists) share the accounts' partitions, so one
    selection and one `--partition` cover every asset, but only the platform's partition reads them, with the
    platform's key alone; a connected account's partition skips them (not materialized) and says so."""
    a, b = platform.account_ids
    accounts = account_partitions()
    assets = build_stripe_assets(["charge", "transfer", "transfer_reversal", "person"], one_step=True, accounts=accounts)
    assert len(assets) == 1 and assets[0].partitions_def == accounts
    resources = make_resources(platform, warehouse_path)
    instance = _instance(ACCOUNT_ID, a, b)

    platform.reset_stats()
    result = _run(assets, resources, instance, a)
    done = {m.materialization.asset_key.path[-1] for m in result.get_asset_materialization_events()}
    assert done == {"charge"}  # the platform's lists are not the connected account's
    stats = platform.stats()
    assert set(stats["accounts"]) == {a}
    assert not any("/transfers" in path or "/persons" in path for path in stats["endpoints"]), stats["endpoints"]

    platform.reset_stats()
    result = _run(assets, resources, instance, ACCOUNT_ID)
    done = {m.materialization.asset_key.path[-1] for m in result.get_asset_materialization_events()}
    assert done == {"charge", "transfer", "transfer_reversal", "person"}
    counts = platform.counts()
    for name in ("transfer", "transfer_reversal", "person"):
        # Read once, with the platform's key: every row is the platform's.
        assert _rows(warehouse_path, f"stripe.{name}") == {ACCOUNT_ID: counts[name]}, name
    # Persons of every connected account, through /v1/accounts/{id}/persons, none with Stripe-Account.
    assert {x for (x,) in query(warehouse_path, "SELECT DISTINCT account FROM stripe.person")} <= set(platform.account_ids)
    stats = platform.stats()
    assert stats["accounts"] == {} and stats["total"]["requests"] > 0  # no request carried Stripe-Account
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [(c.asset_key, c.check_name, c.metadata) for c in checks if not c.passed]
