"""The one-step shape (`build_stripe_assets(one_step=True)`, what the code locations use): one subsettable
multi-asset loads the selected objects concurrently; each is written and checked as soon as its fetch ends;
one object's failure neither hides the others' rows nor their materializations."""

from __future__ import annotations

import dagster as dg
import pytest

from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.dagster_adapter.factory import ONE_STEP_NAME, build_stripe_assets

from .conftest import SMALL, make_resources, materialize, query

OBJECTS = ["customer", "charge", "coupon", "subscription_item", "payment_method"]
RESTRICTED = "rk_test_OnlyCustomersAndCoupons99"


def _materialized(result) -> dict[str, dict]:
    return {
        event.asset_key.path[-1]: event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }


def test_one_step_loads_every_selected_object_with_its_checks(shared_emulator, warehouse_path):
    assets = build_stripe_assets(OBJECTS, one_step=True)
    assert len(assets) == 1 and assets[0].op.name == ONE_STEP_NAME
    result = materialize(assets, make_resources(shared_emulator, warehouse_path))
    assert result.success
    assert [e.step_key for e in result.get_step_success_events()] == [ONE_STEP_NAME]
    expected = shared_emulator.counts()
    metadata = _materialized(result)
    assert set(metadata) == set(OBJECTS)
    for name in OBJECTS:
        rows, distinct = query(warehouse_path, f"SELECT count(*), count(DISTINCT id) FROM stripe.{name}")[0]
        assert rows == distinct == expected[name], name
        assert metadata[name]["dagster/row_count"].value == rows
        assert metadata[name]["requests"].value > 0  # each object counts its own requests
    checks = result.get_asset_check_evaluations()
    assert {(c.asset_key.path[-1], c.check_name) for c in checks} >= {(n, "id_unique") for n in OBJECTS}
    assert all(c.passed for c in checks if c.check_name in ("id_unique", "id_not_null"))


def test_a_subset_runs_only_the_selected_objects_and_their_modes(shared_emulator, warehouse_path):
    assets = build_stripe_assets(OBJECTS, one_step=True)
    before = shared_emulator.stats()["total"]["requests"]
    result = dg.materialize(
        assets,
        selection=["stripe/charge", "stripe/coupon"],
        resources=make_resources(shared_emulator, warehouse_path),
        run_config={"ops": {ONE_STEP_NAME: {"config": {"mode": "sync", "modes": {"coupon": "async"}}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    metadata = _materialized(result)
    assert set(metadata) == {"charge", "coupon"}
    assert metadata["charge"]["mode"].value == "sync"
    assert metadata["coupon"]["mode"].value == "async"
    tables = {r[0] for r in query(warehouse_path, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'stripe'")}
    assert {"charge", "coupon"} <= tables and not tables & {"customer", "subscription_item", "payment_method"}
    assert shared_emulator.stats()["total"]["requests"] > before


def test_one_object_failing_keeps_the_others_loaded_and_says_which(tmp_path):
    warehouse = str(tmp_path / "warehouse.duckdb")
    with StripeEmulator(scale=SMALL, seed=5, restricted_keys={RESTRICTED: {"customer", "coupon"}}) as emu:
        assets = build_stripe_assets(["customer", "coupon", "charge"], one_step=True)
        result = materialize(
            assets, make_resources(emu, warehouse, api_key=RESTRICTED, budget_dir=str(tmp_path)), raise_on_error=False
        )
        expected = emu.counts()
    assert not result.success
    # The objects the key may read were written, and Dagster recorded them as materialized.
    assert set(_materialized(result)) == {"customer", "coupon"}
    assert query(warehouse, "SELECT count(*) FROM stripe.customer")[0][0] == expected["customer"]
    assert query(warehouse, "SELECT count(*) FROM stripe.coupon")[0][0] == expected["coupon"]
    failures = result.get_step_failure_events()
    assert len(failures) == 1
    message = failures[0].step_failure_data.error.message
    assert "1 of 3 Stripe objects failed (2 loaded and written)" in message
    assert "rak_charge_read" in message  # Stripe's own hint, in the one line for `charge`
    assert RESTRICTED not in message and "Traceback" not in message


def test_checks_selected_alone_judge_the_table_without_fetching(shared_emulator, warehouse_path):
    assets = build_stripe_assets(["coupon", "tax_rate"], one_step=True)
    resources = make_resources(shared_emulator, warehouse_path)
    assert materialize(assets, resources).success
    before = shared_emulator.stats()["total"]["requests"]
    job = dg.Definitions(assets=assets, resources=resources).resolve_implicit_global_asset_job_def()
    result = job.get_subset(
        asset_check_selection={dg.AssetCheckKey(dg.AssetKey(["stripe", "coupon"]), "id_unique")},
        asset_selection=set(),
    ).execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert [(e.asset_key.path[-1], e.check_name, e.passed) for e in evaluations] == [("coupon", "id_unique", True)]
    assert result.get_asset_materialization_events() == []
    assert shared_emulator.stats()["total"]["requests"] == before


def test_partitioned_one_step_keeps_objects_without_created_apart():
    partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    split = build_stripe_assets(partitions_def=partitions, one_step=True)
    assert [a.op.name for a in split] == [ONE_STEP_NAME, f"{ONE_STEP_NAME}_unpartitioned"]
    assert split[0].partitions_def == partitions and split[1].partitions_def is None
    assert {k.path[-1] for k in split[1].keys} == {
        "payment_method", "subscription_item", "webhook_endpoint", "invoice_line_item", "credit_note_line_item",
        "payout_balance_transaction",
    }
    assert len(split[0].keys) == 18


@pytest.mark.parametrize("shape", ["one_step", "per_object"])
def test_both_shapes_write_the_same_rows(shared_emulator, tmp_path, shape):
    warehouse = str(tmp_path / f"{shape}.duckdb")
    assets = build_stripe_assets(["invoice", "refund"], one_step=shape == "one_step")
    assert len(assets) == (1 if shape == "one_step" else 2)
    assert materialize(assets, make_resources(shared_emulator, warehouse)).success
    expected = shared_emulator.counts()
    for name in ("invoice", "refund"):
        assert query(warehouse, f"SELECT count(DISTINCT id), count(*) FROM stripe.{name}")[0] == (expected[name],) * 2
