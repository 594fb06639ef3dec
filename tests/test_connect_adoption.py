"""Turning Connect on for an account already loaded (issue 21): the platform's earlier rows are adopted.

The single-account location writes rows without `stripe_account`. The first Connect write into such a
table stamps them with the platform's id in its own transaction, so no check meets a null account and the
platform's Connect load merges onto them instead of adding a second copy. Both warehouses: the DuckDB file,
and PostgreSQL, whose single-account tables carry a unique index on `id` alone (two accounts may hold one
coupon id), which the adoption moves to `(stripe_account, id)`.
"""

from __future__ import annotations

import dagster as dg
import pytest

from nilus_stripe_assets.dagster_adapter.connect import account_partitions
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.emulator.model import ACCOUNT_ID

OBJECTS = ["charge", "coupon", "customer", "event"]  # merge, replace and append tables
CHARGES_PER_ACCOUNT = 120


@pytest.fixture
def platform():
    with StripeEmulator(scale=0.1, seed=17, accounts=2, account_counts={"charge": CHARGES_PER_ACCOUNT},
                        account_scale=0.05) as emu:
        yield emu


def _checks_passed(result) -> None:
    checks = [c for c in result.get_asset_check_evaluations() if c.check_name.startswith("id_")]
    assert checks and all(c.passed for c in checks), [(c.asset_key, c.check_name, c.description) for c in checks
                                                       if not c.passed]


def _adopted(result) -> dict[str, int]:
    out = {}
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        if "rows_adopted" in metadata:
            out[event.asset_key.path[-1]] = metadata["rows_adopted"].value
    return out


def _log_lines(instance: dg.DagsterInstance, result, text: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(result.run_id) if text in (e.user_message or "")]


def test_connect_adopts_the_rows_a_single_account_load_wrote(platform, warehouse):
    a, b = platform.account_ids
    platform.create("coupon", id="SUMMER25", percent_off=25)  # the platform's
    platform.create("coupon", stripe_account=a, id="SUMMER25", percent_off=10)  # the same id in account a
    resources = warehouse.resources(platform)

    single = dg.materialize(build_stripe_assets(OBJECTS, one_step=True), resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert single.success
    counts = {name: warehouse.count(f"stripe.{name}") for name in OBJECTS}
    assert counts["charge"] == platform.counts()["charge"]

    assets = build_stripe_assets(OBJECTS, one_step=True, accounts=account_partitions())
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("stripe_accounts", [ACCOUNT_ID, a, b])

    # A connected account's first load: the platform's earlier rows are adopted in its write's transaction.
    first = dg.materialize(assets, resources=resources, instance=instance, partition_key=a)
    assert first.success
    _checks_passed(first)
    assert _adopted(first) == counts
    said = _log_lines(instance, first, "rows loaded before Connect")
    assert len(said) == len(OBJECTS) and all(ACCOUNT_ID in line for line in said), said
    for name in OBJECTS:
        assert warehouse.query(f"SELECT count(*) FROM stripe.{name} WHERE stripe_account IS NULL") == [(0,)]
        assert warehouse.query(f"SELECT count(*) FROM stripe.{name} WHERE stripe_account = ?", [ACCOUNT_ID]) \
            == [(counts[name],)]

    # The platform's own Connect load finds its rows: merged onto, no second copy, nothing adopted again.
    own = dg.materialize(assets, resources=resources, instance=instance, partition_key=ACCOUNT_ID)
    assert own.success
    _checks_passed(own)
    assert _adopted(own) == {} and _log_lines(instance, own, "rows loaded before Connect") == []
    charge = next(e.materialization.metadata for e in own.get_asset_materialization_events()
                  if e.asset_key.path[-1] == "charge")
    assert charge["rows_inserted"].value == 0
    assert charge["account_rows"].value == counts["charge"]

    assert dg.materialize(assets, resources=resources, instance=instance, partition_key=b).success
    rows = dict(warehouse.query("SELECT stripe_account, count(*) FROM stripe.charge GROUP BY 1"))
    assert rows == {ACCOUNT_ID: counts["charge"], a: CHARGES_PER_ACCOUNT, b: CHARGES_PER_ACCOUNT}
    for name in OBJECTS:
        assert warehouse.query(
            f"SELECT count(*) - count(DISTINCT stripe_account || '/' || id) FROM stripe.{name}") == [(0,)], name
    assert sorted(warehouse.query("SELECT stripe_account, percent_off FROM stripe.coupon WHERE id = 'SUMMER25'")) \
        == sorted([(ACCOUNT_ID, 25.0), (a, 10.0)])
