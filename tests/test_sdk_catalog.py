"""The catalog's data is what stripe-python 16.1 says: regenerated here from the installed SDK and compared."""

import json

import pytest
import stripe

from nilus_stripe_assets.source import sdk_catalog, sdk_shapes
from nilus_stripe_assets.source.catalog import CATALOG, DEFAULT_OBJECTS, LEFT_OUT, SPEC_OBJECTS, STRIPE_OBJECT_TYPE


@pytest.fixture(scope="module")
def generated():
    return sdk_catalog.build_rows()


def test_committed_data_equals_what_the_installed_sdk_says(generated):
    committed = json.loads(sdk_catalog.DATA.read_text(encoding="utf-8"))
    assert committed["stripe_version"] == stripe.VERSION
    assert committed == generated, (
        "stripe_lists.json is stale: run .venv/bin/python -m nilus_stripe_assets.source.sdk_catalog and review the diff"
    )


def test_every_sdk_list_is_loaded_or_left_out_with_a_reason(generated):
    lists = sdk_catalog.sdk_lists()
    loaded = {row["sdk_method"] for row in generated["lists"]}
    left_out = {row["sdk_method"] for row in generated["left_out"]}
    named = {f"{sdk_catalog.class_path(item.owner)}.{item.method}" for item in lists.values()}
    assert named == loaded | left_out
    assert not loaded & left_out
    assert all(len(row["reason"]) > 20 for row in LEFT_OUT)
    assert {row["path"] for row in LEFT_OUT} >= {"/v1/exchange_rates", "/v1/apps/secrets"}
    assert len(CATALOG) >= 80 and len(lists) >= 96


def test_a_list_nobody_decided_fails_the_generator(monkeypatch):
    # What an SDK bump with a new list looks like: the generator names it instead of guessing.
    decisions = dict(sdk_catalog.DECISIONS)
    decisions.pop("dispute.list")
    monkeypatch.setattr(sdk_catalog, "DECISIONS", decisions)
    with pytest.raises(ValueError, match=r"neither loads nor leaves out: \['dispute.list'\]"):
        sdk_catalog.build_rows()


def test_rows_follow_the_sdk_classes_and_params():
    for name, obj in CATALOG.items():
        cls = sdk_shapes.sdk_class(obj.sdk_class)
        assert STRIPE_OBJECT_TYPE[name] == obj.stripe_type == cls.OBJECT_NAME, name
        assert name == name.lower() and "." not in name, name
        if obj.parent is not None:
            assert obj.parent.object in CATALOG, name
            assert obj.parent.param or "{id}" in obj.parent.path_template, name
    # Required parent parameters become fan-outs over the parent.
    assert CATALOG["setup_attempt"].parent.param == "setup_intent"
    assert CATALOG["financial_connections_transaction"].parent.param == "account"
    assert CATALOG["financial_connections_transaction"].parent.object == "financial_connections_account"
    assert {o.parent.param for n, o in CATALOG.items() if n.startswith("treasury_") and o.parent} == {"financial_account"}
    # Nested lists under the parent's id, with the first page embedded where the parent class embeds it.
    assert CATALOG["transfer_reversal"].parent.path_template == "/v1/transfers/{id}/reversals"
    assert CATALOG["transfer_reversal"].parent.embedded_field == "reversals"
    assert CATALOG["application_fee_refund"].parent.embedded_field == "refunds"
    assert CATALOG["checkout_session_line_item"].stripe_type == "item"
    assert CATALOG["checkout_session"].stripe_type == "checkout.session"
    assert CATALOG["issuing_card"].sdk_class == "issuing.Card"
    # `created[...]` where the *ListParams declare it; a creation field only where the class has one.
    assert CATALOG["dispute"].supports_created and not CATALOG["quote"].supports_created
    assert CATALOG["checkout_session_line_item"].created_field is None


def test_events_and_deletes_come_from_the_sdk():
    assert "charge.dispute.created" in CATALOG["dispute"].event_types  # routed by data.object.object
    assert "customer.subscription.deleted" in CATALOG["subscription"].event_types
    assert "treasury.received_credit.created" in CATALOG["treasury_received_credit"].event_types  # by prefix
    assert CATALOG["external_bank_account"].event_types == CATALOG["external_card"].event_types == (
        "account.external_account.created", "account.external_account.deleted", "account.external_account.updated")
    assert CATALOG["balance_transaction"].event_types == ()
    deletable = {name for name, o in CATALOG.items() if o.deletable}
    assert {"customer", "coupon", "product", "tax_id", "person", "terminal_reader", "radar_value_list_item"} <= deletable
    assert not {"charge", "dispute", "transfer", "checkout_session"} & deletable


def test_the_spec_objects_keep_their_place_and_the_rest_is_described():
    assert list(CATALOG)[:21] == list(SPEC_OBJECTS)
    assert len(DEFAULT_OBJECTS) == 24 and all(CATALOG[n].group for n in DEFAULT_OBJECTS)
    for name, obj in CATALOG.items():
        assert obj.description.endswith("."), name
        assert obj.strategy in ("merge", "replace") or name == "event", name
    products = {o.product for o in CATALOG.values()} - {None}
    assert {"Issuing", "Treasury", "Terminal", "Climate", "Identity", "Financial Connections", "Tax"} <= products
    assert all(CATALOG[n].product is None for n in DEFAULT_OBJECTS)
    platform = {name for name, o in CATALOG.items() if o.platform_level}
    assert {"account", "application_fee", "application_fee_refund", "transfer", "transfer_reversal",
            "country_spec"} <= platform
    assert {name for name, o in CATALOG.items() if o.connect_only} == {
        "person", "capability", "external_bank_account", "external_card"}


def test_the_code_location_shows_every_list_and_its_jobs_keep_the_default_load():
    import dagster as dg

    from nilus_stripe_assets.definitions import defs
    from nilus_stripe_assets.source.catalog import every_object

    graph = defs.resolve_asset_graph()
    stripe_keys = {k for k in graph.get_all_asset_keys() if k.path[0] == "stripe"}
    assert stripe_keys == {dg.AssetKey(["stripe", name]) for name in every_object()} and len(stripe_keys) >= 80
    assert graph.get(dg.AssetKey(["stripe", "checkout_session"])).group_name == "stripe_checkout"
    assert graph.get(dg.AssetKey(["stripe", "issuing_card"])).group_name == "stripe_issuing"
    assert {graph.get(dg.AssetKey(["stripe", n])).group_name for n in DEFAULT_OBJECTS} == {"stripe"}
    assert not {"person", "capability"} & set(every_object())  # Connect locations only

    def selected(job: str) -> set[str]:
        return {k.path[-1] for k in defs.resolve_job_def(job).asset_layer.selected_asset_keys if k.path[0] == "stripe"}

    assert selected("stripe_full_load") == selected("stripe_incremental") == set(DEFAULT_OBJECTS)
    assert selected("stripe_everything") == set(every_object())
