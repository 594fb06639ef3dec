"""The catalog: one row of data per Stripe list the package loads (every v1 list a secret key can read).

Everything else (the fetch engine, the warehouse writer, the Dagster factory, the emulator) reads this
table; nothing special-cases an object by name outside it. The rows are data, `stripe_lists.json`,
written by `sdk_catalog.py` from stripe-python 16.1 itself (its list methods, `*ListParams`, classes and
event types) plus one table of decisions the SDK cannot make (names, product areas, strategies); a test
regenerates it and fails when the installed SDK disagrees. The spec's 21 objects (`docs/stripe-source.md`)
keep their names, paths and strategies; with the invoice and credit-note lines they are the 23 tables of
the default load (`DEFAULT_OBJECTS`), and the other lists are loaded when selected (see README, "Every list").

Object shapes come from the same SDK's typed classes (`sdk_class`; see `source/shapes.py`). The engine reads
no field by name that a class does not declare, except the ones named here: `id` (every class) and
`created_field`, the field holding the creation time (`created`, but `date` for `stripe.InvoiceItem`,
whose list endpoint still filters with `created[...]`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
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
    # Children no event carries whose changes show on their parent (a customer balance transaction moves the
    # customer's `balance`): (the `data.object.object` of such events, its field naming the parent). An
    # incremental run re-lists the children of the parents those events name, and replaces just theirs.
    relist_on: tuple[tuple[str, str], ...] = ()

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
    extra: bool = False  # not one of the spec's 21 objects
    stripe_type: str = ""  # Stripe's `object` value: "checkout.session", "line_item" (events carry it)
    group: str = "core"  # product area: payments, billing, connect, issuing, treasury, ...
    product: Optional[str] = None  # the product a "Your account is not set up to use X" 400 names; None: core
    deletable: bool = False  # Stripe deletes it (the SDK's delete method, or `*.deleted` events)
    event_types: tuple[str, ...] = ()  # event types whose `data.object.object` is `stripe_type`
    platform_level: bool = False  # Connect: the platform's own list, read once without Stripe-Account
    connect_only: bool = False  # only in the Connect locations (children of connected accounts)
    default_load: bool = False  # one of the tables of the default full load (group `stripe`)

    @property
    def events_type(self) -> Optional[str]:
        """Value for `GET /v1/events?type=` that selects this object's events, or None when no one prefix
        covers them (routing by `data.object.object` decides either way; the filter only saves pages).
        Stripe's prefixes differ from the object's name: `charge.dispute.*`, `issuing_card.*` for issuing.card."""
        prefixes = {t.rsplit(".", 1)[0] for t in self.event_types}
        own = self.event_prefix or (self.name if self.default_load else None)
        if own:
            # A filter must cover every type that carries the object: a refund also arrives in
            # `charge.refund.updated`, which `refund.*` would drop; then no one filter is safe.
            uncovered = {p for p in prefixes if p != own and not p.startswith(f"{own}.")}
            return f"{own}.*" if not uncovered else None
        return f"{prefixes.pop()}.*" if len(prefixes) == 1 else None

    @property
    def relist_on(self) -> tuple[tuple[str, str], ...]:
        """`Parent.relist_on` of a child list (the events naming the parents to re-list), else ()."""
        return self.parent.relist_on if self.parent is not None else ()

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (self.merge_key,) if isinstance(self.merge_key, str) else tuple(self.merge_key)

    @property
    def table(self) -> str:
        return self.name


DATA = Path(__file__).with_name("stripe_lists.json")


def _object(row: dict) -> StripeObject:
    parent = row["parent"]
    return StripeObject(
        name=row["name"], path=row["path"], id_prefix=row["id_prefix"], strategy=row["strategy"],
        description=row["description"], sdk_class=row["sdk_class"], created_field=row["created_field"],
        supports_created=row["supports_created"],
        parent=Parent(parent["object"], parent["path_template"], parent["param"], parent["embedded_field"],
                      tuple((field, value) for field, value in parent["only_if"]), parent["relist_days"],
                      tuple((kind, field) for kind, field in parent.get("relist_on", ())))
        if parent else None,
        merge_key=row["merge_key"] if isinstance(row["merge_key"], str) else tuple(row["merge_key"]),
        list_params=dict(row["list_params"]), list_by_ids=row["list_by_ids"], event_prefix=row["event_prefix"],
        extra=not row["spec"],
        stripe_type=row["stripe_type"], group=row["group"], product=row["product"], deletable=row["deletable"],
        event_types=tuple(row["event_types"]), platform_level=row["platform_level"],
        connect_only=row["connect_only"], default_load=row["default_load"],
    )


_DATA = json.loads(DATA.read_text(encoding="utf-8"))
# The spec's 21 first, in the spec's order, then the invoice and credit-note lines, then the rest by area.
CATALOG: dict[str, StripeObject] = {row["name"]: _object(row) for row in _DATA["lists"]}
# SDK lists the catalog does not load, each with its reason: {"sdk_method", "path", "reason"}.
LEFT_OUT: tuple[dict, ...] = tuple(_DATA["left_out"])

# The spec's 21 objects, in the spec's order (the catalog's extras follow them).
SPEC_OBJECTS: tuple[str, ...] = tuple(name for name, o in CATALOG.items() if not o.extra)
# The tables of the default full load: the spec's 21, the invoice / credit-note lines, a payout's transactions.
DEFAULT_OBJECTS: tuple[str, ...] = tuple(name for name, o in CATALOG.items() if o.default_load)

# Stripe's `object` field value for each catalog name (the emulator renders it; events carry it).
STRIPE_OBJECT_TYPE: dict[str, str] = {name: o.stripe_type for name, o in CATALOG.items()}


def every_object(connect: bool = False) -> tuple[str, ...]:
    """Every list a location can load: the whole catalog, less the children of connected accounts (persons,
    capabilities, external accounts) outside the Connect locations."""
    return tuple(name for name, o in CATALOG.items() if connect or not o.connect_only)


def get(name: str) -> StripeObject:
    return CATALOG[name]
