"""The translator seam: `get_asset_spec(data)` as in dagster-dlt / dagster-sling, and the per-attribute methods
that existing users override. Built assets are materialized from the emulator into a real DuckDB file."""

from __future__ import annotations

import dagster as dg

from nilus_stripe_assets.dagster_adapter.factory import StripeTranslator, StripeTranslatorData, build_stripe_assets

from .conftest import count, make_resources, materialize, mode_config


class SpecTranslator(StripeTranslator):
    seen: list

    def __init__(self):
        self.seen = []

    def get_asset_spec(self, data: StripeTranslatorData) -> dg.AssetSpec:
        self.seen.append(data)
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(
            key=dg.AssetKey(["raw", "payments", data.object.name]),
            group_name="payments",
            metadata={**spec.metadata, "dagster/table_name": f"raw.{data.object.name}s"},
            tags={**spec.tags, "sink": data.sink},
        )


class LegacyTranslator(StripeTranslator):
    def get_asset_key(self, obj):
        return dg.AssetKey(["legacy", obj.name])

    def get_group_name(self, obj):
        return "legacy"


def _spec(assets, key: str) -> dg.AssetSpec:
    return next(s for a in assets for s in a.specs if s.key.to_user_string() == key)


def test_get_asset_spec_sees_the_catalog_object_table_and_strategy():
    translator = SpecTranslator()
    assets = build_stripe_assets(["charge", "coupon"], translator=translator, one_step=True)
    by_name = {d.object.name: d for d in translator.seen}
    assert set(by_name) == {"charge", "coupon"}
    assert str(by_name["charge"].table) == "stripe.charge" and by_name["charge"].strategy == "merge"
    assert by_name["coupon"].strategy == "replace" and by_name["coupon"].sink == "duckdb"
    spec = _spec(assets, "raw/payments/charge")
    assert spec.group_name == "payments" and spec.tags["sink"] == "duckdb"
    # The table in the translator's metadata is where the asset is written (and what the UI shows).
    assert spec.metadata["dagster/table_name"] == "raw.charges"


def test_a_spec_override_changes_where_rows_land(shared_emulator, warehouse_path):
    assets = build_stripe_assets(["coupon"], translator=SpecTranslator(), one_step=True)
    result = materialize(assets, make_resources(shared_emulator, warehouse_path), mode_config(assets, "sync"))
    assert result.success
    assert count(warehouse_path, "raw.coupons") == shared_emulator.counts()["coupon"] > 0
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.asset_key == dg.AssetKey(["raw", "payments", "coupon"]) for c in checks)


def test_per_attribute_overrides_keep_working():
    assets = build_stripe_assets(["charge"], translator=LegacyTranslator())
    spec = _spec(assets, "legacy/charge")
    assert spec.group_name == "legacy"
    assert spec.metadata["dagster/table_name"] == "stripe.charge"
    assert assets[0].op.name == "legacy__charge"
