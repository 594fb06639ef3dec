"""Any failure while loading one object (not only Stripe's errors) fails that object alone, with one line;
the other objects of the run are written and materialized, and the step fails with the summary."""

from __future__ import annotations

import duckdb

from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets

from .conftest import SMALL, make_resources, materialize, query

OBJECTS = ["customer", "coupon", "charge"]


def _materialized(result) -> set[str]:
    return {event.asset_key.path[-1] for event in result.get_asset_materialization_events()}


def _failure(result) -> str:
    failures = result.get_step_failure_events()
    assert len(failures) == 1
    return failures[0].step_failure_data.error.message


def test_bad_json_from_one_endpoint_fails_only_that_object(tmp_path):
    warehouse = str(tmp_path / "warehouse.duckdb")
    with StripeEmulator(scale=SMALL, seed=5) as emu:
        emu.configure(malformed=["GET /v1/coupons"])  # answers cut in half: not JSON
        assets = build_stripe_assets(OBJECTS, one_step=True)
        result = materialize(assets, make_resources(emu, warehouse, budget_dir=str(tmp_path)), raise_on_error=False)
        expected = emu.counts()
    assert not result.success
    assert _materialized(result) == {"customer", "charge"}
    for name in ("customer", "charge"):
        assert query(warehouse, f"SELECT count(*) FROM stripe.{name}")[0][0] == expected[name]
    message = _failure(result)
    lines = message.splitlines()
    assert lines[0].endswith("1 of 3 Stripe objects failed (2 loaded and written):")
    assert len(lines) == 2 and "'coupon'" in lines[1], message
    assert "Traceback" not in message


def test_a_database_error_in_one_write_fails_only_that_object(tmp_path):
    warehouse = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(warehouse) as con:
        # Something else owns the name `stripe.coupon`: the coupon write cannot go there.
        con.execute("CREATE SCHEMA stripe")
        con.execute("CREATE VIEW stripe.coupon AS SELECT 1 AS id")
    with StripeEmulator(scale=SMALL, seed=5) as emu:
        assets = build_stripe_assets(OBJECTS, one_step=True)
        result = materialize(assets, make_resources(emu, warehouse, budget_dir=str(tmp_path)), raise_on_error=False)
        expected = emu.counts()
    assert not result.success
    assert _materialized(result) == {"customer", "charge"}
    for name in ("customer", "charge"):
        assert query(warehouse, f"SELECT count(*) FROM stripe.{name}")[0][0] == expected[name]
    assert query(warehouse, "SELECT * FROM stripe.coupon") == [(1,)]  # untouched
    lines = _failure(result).splitlines()
    assert lines[0].endswith("1 of 3 Stripe objects failed (2 loaded and written):")
    assert lines[1].startswith("Writing 'coupon' into stripe.coupon failed, so the table is unchanged: "), lines
    assert len(lines) == 2
