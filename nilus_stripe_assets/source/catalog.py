"""The catalog: one row of data per Stripe object the package loads.

Everything else (the fetch engine, the warehouse writer, the Dagster factory, the emulator) reads this
table; nothing special-cases an object by name outside it. Rows follow the spec's "Supported objects"
table (`docs/stripe-source.md`) and Stripe's list API: which endpoints accept `created[...]`
filters was checked against stripe-python's generated `*ListParams` types.

Object shapes come from stripe-python 16.1's typed classes (`sdk_class`; see `source/shapes.py`). The engine reads
no field by name that a class does not declare, except the ones named here: `id` (every class) and
`created_field`, the field holding the creation time (`created`, but `date` for `stripe.InvoiceItem`,
whose list endpoint still filters with `created[...]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Optional, Union

Strategy = Literal["merge", "replace", "append"]
STRATEGIES: tuple[Strategy, ...] = ("merge", "replace", "append")


@dataclass(frozen=True)
class Parent:
    """How a child list is reached through a parent list (Stripe has no top-level list for it)."""

    object: str  # catalog name of the parent, e.g. "subscription"
    path_template: str  # child list path, `{id}` is the parent id, e.g. "/v1/customers/{id}/payment_methods"
    param: Optional[str] = None  # when the parent id is a query parameter instead, e.g. "subscription"
    embedded_field: Optional[str] = None  # parent field holding the first page of children, e.g. "items"
    # Only parents whose fields hold these values have the child list: Stripe itemizes automatic payouts
    # only, and answers a 400 for a manual one (e.g. (("automatic", True),)).
    only_if: tuple[tuple[str, object], ...] = ()
    # Children no event carries (a payout's balance transactions): an incremental run re-lists those of the
    # parents created in the last `relist_days` days instead of reading nothing.
    relist_days: Optional[int] = None

    def lists_children_of(self, parent: Mapping) -> bool:
        return all(parent.get(field) == value for field, value in self.only_if)

    @property
    def id_column(self) -> str:
        """The child's column holding its parent's id. The fetch engine sets it on every child it reads
        through a parent, since not every class declares it (stripe.CreditNoteLineItem has no `credit_note`)."""
        return self.param or self.object


@dataclass(frozen=True)
class StripeObject:
    name: str  # singular, as in the spec: "invoice_item"
    path: str  # Stripe list endpoint: "/v1/invoiceitems"
    id_prefix: str  # prefix of Stripe ids, e.g. "ii_" (the emulator uses it; "" for user-chosen ids)
    strategy: Strategy  # the spec's default write strategy
    description: str
    sdk_class: str  # stripe-python class declaring the object's fields, e.g. "InvoiceItem" (stripe.InvoiceItem)
    created_field: Optional[str] = "created"  # field with the creation time (epoch s); None: the class has none
    supports_created: bool = True  # endpoint accepts created[gt|gte|lt|lte]
    # The columns a row is identified by: `id`, or (parent id, id) for line items, whose ids Stripe does not
    # keep unique across parents (its fixtures and older API versions repeat them).
    merge_key: Union[str, tuple[str, ...]] = "id"
    parent: Optional[Parent] = None
    list_params: Mapping[str, str] = field(default_factory=dict)  # always sent, e.g. status=all
    # The list takes `ids` (stripe-python's `*ListParams` declares it: products only), so objects to read
    # again come 100 per request instead of one each.
    list_by_ids: bool = False
    event_prefix: Optional[str] = None  # event type prefix, e.g. "invoiceitem" for invoiceitem.updated
    extra: bool = False  # not one of the spec's 21 objects (the child tables issue 11 added)

    @property
    def events_type(self) -> str:
        """Value for `GET /v1/events?type=` that selects this object's events."""
        return f"{self.event_prefix or self.name}.*"

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (self.merge_key,) if isinstance(self.merge_key, str) else tuple(self.merge_key)

    @property
    def table(self) -> str:
        return self.name


def _o(name, path, prefix, strategy, description, sdk_class, **kw) -> StripeObject:
    return StripeObject(name=name, path=path, id_prefix=prefix, strategy=strategy, description=description,
                        sdk_class=sdk_class, **kw)


CATALOG: dict[str, StripeObject] = {
    o.name: o
    for o in [
        _o("charge", "/v1/charges", "ch_", "merge", "Payment charges.", "Charge"),
        _o("payment_intent", "/v1/payment_intents", "pi_", "merge", "Payment intents.", "PaymentIntent"),
        _o(
            "payment_method",
            "/v1/payment_methods",
            "pm_",
            "merge",
            "Saved payment methods.",
            "PaymentMethod",
            supports_created=False,
            # GET /v1/payment_methods without `customer` lists only Treasury payment methods.
            parent=Parent(object="customer", path_template="/v1/customers/{id}/payment_methods"),
        ),
        _o("refund", "/v1/refunds", "re_", "merge", "Refunds.", "Refund"),
        _o("payout", "/v1/payouts", "po_", "merge", "Payouts to bank accounts.", "Payout"),
        _o("customer", "/v1/customers", "cus_", "merge", "Customer records.", "Customer"),
        _o(
            "subscription",
            "/v1/subscriptions",
            "sub_",
            "merge",
            "Customer subscriptions.",
            "Subscription",
            list_params={"status": "all"},  # otherwise canceled subscriptions are hidden
            event_prefix="customer.subscription",
        ),
        _o(
            "subscription_item",
            "/v1/subscription_items",
            "si_",
            "merge",
            "Individual subscription items.",
            "SubscriptionItem",
            supports_created=False,
            parent=Parent(
                object="subscription",
                path_template="/v1/subscription_items",
                param="subscription",
                embedded_field="items",
            ),
            event_prefix="customer.subscription",  # items change through their subscription's events
        ),
        _o(
            "subscription_schedule",
            "/v1/subscription_schedules",
            "sub_sched_",
            "merge",
            "Scheduled subscription updates.",
            "SubscriptionSchedule",
        ),
        _o("product", "/v1/products", "prod_", "merge", "Product catalog.", "Product", list_by_ids=True),
        _o("price", "/v1/prices", "price_", "merge", "Product prices.", "Price"),
        _o("coupon", "/v1/coupons", "", "replace", "Coupons.", "Coupon"),
        _o("promotion_code", "/v1/promotion_codes", "promo_", "merge", "Promotion codes.", "PromotionCode"),
        _o("invoice", "/v1/invoices", "in_", "merge", "Customer invoices.", "Invoice"),
        _o("invoice_item", "/v1/invoiceitems", "ii_", "merge", "Invoice line items.", "InvoiceItem",
           created_field="date", event_prefix="invoiceitem"),
        _o("credit_note", "/v1/credit_notes", "cn_", "merge", "Credit notes.", "CreditNote"),
        _o("tax_rate", "/v1/tax_rates", "txr_", "replace", "Tax rates.", "TaxRate"),
        _o("balance_transaction", "/v1/balance_transactions", "txn_", "merge", "Balance transaction history.", "BalanceTransaction"),
        _o("event", "/v1/events", "evt_", "append", "Event stream (account-level events).", "Event"),
        _o("setup_intent", "/v1/setup_intents", "seti_", "merge", "Setup intents for future payments.", "SetupIntent"),
        _o(
            "webhook_endpoint",
            "/v1/webhook_endpoints",
            "we_",
            "replace",
            "Configured webhook endpoints.",
            "WebhookEndpoint",
            supports_created=False,
        ),
        # Not in the spec: every line of invoices and credit notes. A list response embeds only their first 10
        # lines (`has_more` beyond); the rest is at the endpoint. The classes have no creation time.
        _o(
            "invoice_line_item",
            "/v1/invoices/{id}/lines",
            "il_",
            "merge",
            "Every line of every invoice (an invoice embeds only its first 10), with the invoice id.",
            "InvoiceLineItem",
            supports_created=False,
            created_field=None,
            parent=Parent(object="invoice", path_template="/v1/invoices/{id}/lines", embedded_field="lines"),
            merge_key=("invoice", "id"),
            event_prefix="invoice",  # lines change through their invoice's events
            extra=True,
        ),
        _o(
            "credit_note_line_item",
            "/v1/credit_notes/{id}/lines",
            "cnli_",
            "merge",
            "Every line of every credit note (a credit note embeds only its first 10), with the credit note id.",
            "CreditNoteLineItem",
            supports_created=False,
            created_field=None,
            parent=Parent(object="credit_note", path_template="/v1/credit_notes/{id}/lines", embedded_field="lines"),
            merge_key=("credit_note", "id"),
            event_prefix="credit_note",
            extra=True,
        ),
        # Not in the spec: the balance transactions each automatic payout paid out (`GET /v1/balance_transactions
        # ?payout=po_…`), with the payout id: what payout reconciliation reads. Balance transactions have no
        # events: an incremental run re-lists the payouts of the last 30 days (Stripe itemizes a payout once
        # it is paid, within days), a full load every automatic payout.
        _o(
            "payout_balance_transaction",
            "/v1/balance_transactions",
            "txn_",
            "merge",
            "The balance transactions each automatic payout paid out, with the payout id (payout reconciliation).",
            "BalanceTransaction",
            supports_created=False,
            parent=Parent(object="payout", path_template="/v1/balance_transactions", param="payout",
                          only_if=(("automatic", True),), relist_days=30),
            extra=True,
        ),
    ]
}

# The spec's 21 objects, in the spec's order (the catalog's extras follow them).
SPEC_OBJECTS: tuple[str, ...] = tuple(name for name, o in CATALOG.items() if not o.extra)

# Stripe's `object` field value for each catalog name (the emulator renders it; events carry it).
STRIPE_OBJECT_TYPE: dict[str, str] = {
    name: {"invoice_item": "invoiceitem", "invoice_line_item": "line_item",
           "payout_balance_transaction": "balance_transaction"}.get(name, name) for name in CATALOG
}


def get(name: str) -> StripeObject:
    return CATALOG[name]
