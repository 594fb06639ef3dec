"""Object shapes come from stripe-python's typed classes: the committed snapshot equals the installed SDK."""

import json

import stripe

from nilus_stripe_assets.source import sdk_shapes, shapes
from nilus_stripe_assets.source.catalog import CATALOG, STRIPE_OBJECT_TYPE


def test_snapshot_equals_the_installed_sdk():
    committed = json.loads(sdk_shapes.SNAPSHOT.read_text(encoding="utf-8"))
    live = sdk_shapes.build_snapshot()
    assert committed["stripe_version"] == stripe.VERSION == shapes.stripe_version()
    assert committed["api_version"] == stripe.api_version == shapes.api_version() == "2026-10-28.endive"
    assert committed == live, "stripe_shapes.json is stale: run .venv/bin/python -m nilus_stripe_assets.source.sdk_shapes"


def test_field_sets_are_the_classes_declared_attributes():
    for name, obj in CATALOG.items():
        cls = sdk_shapes.sdk_class(obj.sdk_class)  # dotted for namespaced classes: checkout.Session
        declared = set()
        for klass in cls.__mro__:
            declared |= {k for k in vars(klass).get("__annotations__", {}) if not k.startswith("_")}
        declared.discard("OBJECT_NAME")
        assert set(shapes.field_names(name)) == declared, name
        assert {"id", "object"} <= declared, name


def test_catalog_names_only_declared_fields():
    for name, obj in CATALOG.items():
        assert shapes.object_type(name) == STRIPE_OBJECT_TYPE[name] == sdk_shapes.sdk_class(obj.sdk_class).OBJECT_NAME
        if obj.created_field is not None:
            created = shapes.field(name, obj.created_field)
            # stripe.Account alone may lack it (null for accounts connected before Stripe recorded it): the
            # async split then stops at its check and the account list is read with one cursor.
            assert created.epoch and created.type.kind == "integer" and (not created.nullable or name == "account"), name
        if obj.supports_created:
            assert obj.created_field is not None, f"{name}: a created[...] filter needs the field it filters on"
    assert CATALOG["invoice_item"].created_field == "date"
    assert "created" not in shapes.field_names("invoice_item")


def test_lists_batched_by_ids_are_those_whose_list_params_declare_ids():
    from nilus_stripe_assets.source.sdk_catalog import DATA, class_path, sdk_lists

    # The *ListParams of each list's own SDK method (stripe.checkout.Session.list, Customer.list_tax_ids, ...).
    params = {f"{class_path(item.owner)}.{item.method}": item.params for item in sdk_lists().values()}
    rows = {row["name"]: row for row in json.loads(DATA.read_text(encoding="utf-8"))["lists"]}
    for name, obj in CATALOG.items():
        declared = "ids" in params[rows[name]["sdk_method"]]
        assert obj.list_by_ids == (declared and obj.parent is None), name
    assert [name for name, obj in CATALOG.items() if obj.list_by_ids] == ["product"]


def test_type_descriptors():
    charge = {f.name: f for f in shapes.fields("charge")}
    assert (charge["amount"].type.kind, charge["amount"].nullable) == ("integer", False)
    assert charge["customer"].type == shapes.FieldType("string", expandable=("Customer",))
    assert charge["customer"].nullable
    assert charge["billing_details"].type.kind == "object"  # nested class Charge.BillingDetails
    assert charge["metadata"].type.kind == "object"  # UntypedStripeObject
    assert charge["captured"].type.kind == "boolean"
    assert charge["object"].type.values == ("charge",)
    assert charge["status"].type == shapes.FieldType("string", values=("failed", "pending", "succeeded"), open_enum=True)
    assert charge["refunds"].type.kind == "object"  # ListObject[Refund]
    assert "Time at which the object was created" in charge["created"].description
    item = {f.name: f for f in shapes.fields("invoice_item")}
    assert item["quantity_decimal"].type == shapes.FieldType("string", format="decimal")  # Stripe sends "1.5"
    assert item["discounts"].type.kind == "array" and item["discounts"].type.items.expandable == ("Discount",)
    assert item["date"].epoch
    assert shapes.field("tax_rate", "percentage").type.kind == "number"
    assert shapes.field("subscription_item", "price").type.kind == "object"  # embedded "Price", not expandable


def test_epoch_fields():
    epoch = {(name, f.name) for name in CATALOG for f in shapes.fields(name) if f.epoch}
    for expected in [("invoice", "period_start"), ("invoice", "due_date"), ("subscription", "canceled_at"),
                     ("payout", "arrival_date"), ("invoice", "next_payment_attempt"), ("event", "created")]:
        assert expected in epoch
    not_epoch = {("charge", "amount"), ("invoice", "attempt_count"), ("customer", "balance")}
    assert not (epoch & not_epoch)
    assert all(shapes.field(n, f).type.kind == "integer" for n, f in epoch)


def test_descriptions_are_stripes_docstrings():
    # The SDK documents every field except some nested-object ones (e.g. Charge.billing_details), whose
    # classes carry no docstring either, and two id fields; those stay empty rather than invented.
    undocumented = {(n, f.name) for n in CATALOG for f in shapes.fields(n) if not f.description and f.type.kind != "object"}
    assert undocumented == {("payment_method", "customer_account"), ("invoice_line_item", "subscription"),
                            ("apple_pay_domain", "domain_name"), ("treasury_financial_account", "is_default")}
    assert shapes.field("invoice_item", "date").description == (
        "Time at which the object was created. Measured in seconds since the Unix epoch."
    )
