"""Asset checks on the Stripe tables: they pass on a clean load and fail on a broken table, with metadata."""

from __future__ import annotations

import time

import dagster as dg

from nilus_stripe_assets.source.catalog import CATALOG, every_object
from nilus_stripe_assets.dagster_adapter.checks import build_stripe_checks
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets

from .conftest import materialize, mode_config

OBJECTS = ["charge", "subscription", "subscription_item", "event", "webhook_endpoint"]


def evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def meta(evaluation, name):
    return evaluation.metadata[name].value


def run_checks(assets, checks, resources):
    """Only the checks (no asset step, no Stripe request), as `dagster asset check` would."""
    return dg.materialize(
        [*assets, *checks], resources=resources, selection=dg.AssetSelection.all_asset_checks(),
        instance=dg.DagsterInstance.ephemeral(),
    )


def test_every_stripe_table_has_its_checks_in_the_code_location():
    from nilus_stripe_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    by_asset: dict[str, set[str]] = {}
    for key in graph.asset_check_keys:
        by_asset.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    # The location defines every list (issue 19), the default load and the others alike: each has its checks.
    for name, obj in ((n, CATALOG[n]) for n in every_object()):
        expected = {"id_unique", "id_not_null"} | ({"no_stale_rows"} if obj.strategy == "merge" else set())
        assert by_asset.pop(f"stripe/{name}") == expected, name
    # The finance models carry the checks that judge their numbers (issue 22); nothing else has checks.
    assert by_asset == {
        "finance/daily_overview": {"net_matches_balance_transactions"},
        "finance/payout_reconciliation": {"items_sum_to_payout"},
        "finance/mrr_by_month": {"movements_carry_each_month"},
    }, "checks only on Stripe tables and the finance models' reconciliations"
    for key in graph.asset_check_keys:
        spec = graph.get_check_spec(key)
        assert not spec.blocking and spec.description, key


def test_checks_pass_on_a_clean_load_and_fail_on_a_broken_table(emulator, warehouse):
    assets = build_stripe_assets(OBJECTS, with_checks=False)  # standalone checks, as `dagster asset check` runs them
    checks = build_stripe_checks(assets)
    resources = warehouse.resources(emulator)

    # Clean load: every check runs right after its asset, in the same run, and passes.
    result = materialize([*assets, *checks], resources, mode_config(assets, "sync"))
    assert result.success
    clean = evaluations(result)
    assert {k for k in clean if k[0] == "charge"} == {("charge", c) for c in ("id_unique", "id_not_null", "no_stale_rows")}
    assert {k for k in clean if k[0] == "webhook_endpoint"} == {("webhook_endpoint", c) for c in ("id_unique", "id_not_null")}
    assert len(clean) == 2 * len(OBJECTS) + 3  # charge, subscription, subscription_item are merge tables
    assert all(e.passed for e in clean.values()), [k for k, e in clean.items() if not e.passed]
    rows = warehouse.query("SELECT count(*) FROM stripe.charge")[0][0]
    assert meta(clean["charge", "id_unique"], "rows") == rows
    assert meta(clean["charge", "no_stale_rows"], "stale_rows") == 0
    assert clean["charge", "id_unique"].severity == dg.AssetCheckSeverity.ERROR

    # Break it: a duplicated id, a null id, and rows Stripe changed after they were read.
    dup, stale = [r[0] for r in warehouse.query("SELECT id FROM stripe.charge ORDER BY id LIMIT 2")]
    if warehouse.kind == "postgres":  # its unique index on the merge key would refuse the duplicate
        warehouse.execute('DROP INDEX stripe."charge__id__key"')
    warehouse.execute("INSERT INTO stripe.charge SELECT * FROM stripe.charge WHERE id = ?", [dup])
    warehouse.execute("INSERT INTO stripe.charge (id, object, created) VALUES (NULL, 'charge', to_timestamp(1700000000))")
    item, sub = warehouse.query(
        f"SELECT i.id, i.subscription FROM stripe.subscription_item i JOIN stripe.subscription s ON s.id = i.subscription "
        f"WHERE {warehouse.json_length('s.items', 'data')} < 10 ORDER BY i.id LIMIT 1",
    )[0]
    time.sleep(1.1)  # `_state_at` has second precision: the change must come strictly after the read
    emulator.update("charge", stale, description="changed after the load")  # -> charge.updated
    emulator.update("subscription_item", item, quantity=42)  # -> customer.subscription.updated
    # Only the events are loaded again: the charge and subscription tables now lag behind them.
    events = [a for a in assets if a.key.path[-1] == "event"]
    assert materialize(events, resources, mode_config(events, "sync")).success
    result = run_checks(assets, checks, resources)
    assert result.success, "a failed check is not a failed run (blocking=False)"
    broken = evaluations(result)
    unique = broken["charge", "id_unique"]
    assert not unique.passed and unique.severity == dg.AssetCheckSeverity.ERROR
    assert meta(unique, "duplicated_keys") == 1 and meta(unique, "extra_rows") == 1
    assert meta(unique, "example_ids") == dup
    not_null = broken["charge", "id_not_null"]
    assert not not_null.passed and not_null.severity == dg.AssetCheckSeverity.ERROR
    assert meta(not_null, "null_rows") == 1 and meta(not_null, "rows") == rows + 2
    stale_charge = broken["charge", "no_stale_rows"]
    assert not stale_charge.passed and stale_charge.severity == dg.AssetCheckSeverity.WARN
    assert meta(stale_charge, "stale_rows") == 1 and meta(stale_charge, "example_ids") == stale
    assert meta(stale_charge, "max_lag_seconds") >= 1
    stale_item = broken["subscription_item", "no_stale_rows"]
    assert not stale_item.passed and item in meta(stale_item, "example_ids").split(", ")
    assert not broken["subscription", "no_stale_rows"].passed
    assert sub in meta(broken["subscription", "no_stale_rows"], "example_ids").split(", ")
    assert broken["event", "id_unique"].passed and broken["subscription", "id_unique"].passed

    # A reload brings the lagging rows up to date; the stale-row check passes again.
    lagging = [a for a in assets if a.key.path[-1] in ("charge", "subscription", "subscription_item")]
    assert materialize(lagging, resources, mode_config(lagging, "sync")).success
    healed = evaluations(run_checks(assets, checks, resources))
    assert healed["charge", "no_stale_rows"].passed
    assert healed["subscription_item", "no_stale_rows"].passed
    assert healed["subscription", "no_stale_rows"].passed
    assert not healed["charge", "id_unique"].passed, "a reload merges; it does not hide duplicates"


def test_checks_fail_clearly_before_the_first_load(shared_emulator, warehouse):
    assets = build_stripe_assets(["coupon"], with_checks=False)
    result = run_checks(assets, build_stripe_checks(assets), warehouse.resources(shared_emulator))
    found = evaluations(result)
    assert set(found) == {("coupon", "id_unique"), ("coupon", "id_not_null")}
    for evaluation in found.values():
        assert not evaluation.passed and "does not exist" in evaluation.description


def test_stale_check_is_skipped_not_passed_while_events_are_not_loaded(shared_emulator, warehouse):
    """A check that cannot judge yields no result: Dagster records it as planned and never evaluated (the UI
    shows Skipped), and the run's log says why."""
    assets = build_stripe_assets(["refund"], with_checks=False)
    checks = build_stripe_checks(assets)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize([*assets, *checks], warehouse.resources(shared_emulator), instance=instance)
    assert result.success
    found = evaluations(result)
    assert ("refund", "no_stale_rows") not in found and found["refund", "id_unique"].passed
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(
        "Check no_stale_rows on stripe/refund not judged: the events table stripe.event is not loaded" in m for m in logs
    ), logs
    key = dg.AssetCheckKey(dg.AssetKey(["stripe", "refund"]), "no_stale_rows")
    [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    # Planned in a run that succeeded, never evaluated: what Dagster resolves to SKIPPED for the UI.
    assert record.status.value == "PLANNED" and record.run_id == result.run_id


def test_the_component_judges_stale_rows_against_the_default_events_table():
    from nilus_stripe_assets.dagster_adapter.factory import StripePipeline, build_stripe_asset
    from nilus_stripe_assets.source.catalog import CATALOG as catalog

    asset = build_stripe_asset(StripePipeline(catalog["charge"], dest_table="finance.stripe_charges"))
    spec = next(s for s in asset.check_specs if s.name == "no_stale_rows")
    assert "stripe.event" in spec.description and "finance.event" not in spec.description
