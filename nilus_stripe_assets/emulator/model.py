"""Catalog-derived facts the emulator needs, in one place (no per-object code elsewhere).

Everything here is computed from `nilus_stripe_assets.source.catalog`; the emulator never names an object
outside this module and the field-builder table in `builders.py`.
"""

from __future__ import annotations

import json
from typing import Optional

from ..source import shapes
from ..source.catalog import CATALOG, DATA

# The version stripe-python pins (and the package sends): objects are rendered in its shapes. Events of an
# account whose default version is older are rendered in that one (`Store.api_version`, `versions.py`).
API_VERSION = shapes.api_version()
ACCOUNT_ID = "acct_1Emulator"
EVENT_RETENTION_SECONDS = 30 * 86400  # Stripe lists events of the last 30 days only

NAMES: tuple[str, ...] = tuple(CATALOG)
# Stripe's `object` value: the catalog's, else the one value of the SDK class's `object` literal.
OBJECT_TYPE: dict[str, str] = {
    name: getattr(o, "stripe_type", None) or shapes.object_type(name) for name, o in CATALOG.items()
}
# A path names its top-level object; a child list served at another object's path by a parameter
# (`/v1/balance_transactions?payout=po_…`) is reached through that parameter (PARAM_CHILDREN).
PATH_TO_NAME: dict[str, str] = {o.path: o.name for o in CATALOG.values() if o.parent is None}
PATH_TO_NAME.update({o.path: o.name for o in CATALOG.values() if o.parent is not None and o.path not in PATH_TO_NAME})
PARAM_CHILDREN: dict[str, list[tuple[str, str]]] = {}  # top-level object -> [(parameter, child)]
for _o in CATALOG.values():
    if _o.parent is not None and _o.parent.param and PATH_TO_NAME.get(_o.path) not in (None, _o.name):
        PARAM_CHILDREN.setdefault(PATH_TO_NAME[_o.path], []).append((_o.parent.param, _o.name))

# Children that list objects of a top-level type (a payout's balance transactions are balance transactions):
# creating one also lists it at the top level, as Stripe has one object in both lists. child -> top-level name
SHARED_WITH: dict[str, str] = {
    name: top for name, o in CATALOG.items() if o.parent is not None
    for top, t in CATALOG.items() if t.parent is None and OBJECT_TYPE[top] == OBJECT_TYPE[name]
}

# Children listed at one path, told apart by a parameter (an account's external accounts: `object=bank_account`
# or `object=card`, both without it): child -> every child of that path, in catalog order.
SAME_PATH: dict[str, tuple[str, ...]] = {}
for _name, _o in CATALOG.items():
    if _o.parent:
        _group = tuple(n for n, o in CATALOG.items() if o.parent and o.parent.path_template == _o.parent.path_template)
        if len(_group) > 1:
            SAME_PATH[_name] = _group

# The SDK method each list is read with (the catalog's data: `stripe_lists.json`), e.g. "Transfer.list_reversals".
_SDK_METHOD: dict[str, str] = {row["name"]: row["sdk_method"] for row in json.loads(DATA.read_text("utf-8"))["lists"]
                               if row.get("sdk_method")} if DATA.exists() else {}


def accepted_params(name: str) -> Optional[frozenset[str]]:
    """The query parameters Stripe takes on the list of `name` (its `*ListParams`), or None if unknown."""
    method = _SDK_METHOD.get(name)
    if method is None:
        return None
    from . import sdk_nested  # the SDK is imported only when a list is asked for

    return sdk_nested.list_params(method)


# The catalog's connected accounts (`GET /v1/accounts`), if it has them: the platform's, seeded from the
# emulator's connected accounts (`accounts.py`), parents of persons, capabilities and external accounts.
ACCOUNT: Optional[str] = next((n for n, o in CATALOG.items() if OBJECT_TYPE[n] == "account" and not o.parent), None)

# Event type prefix per object: the catalog's `event_prefix`, else Stripe's `object` value. Stripe names
# subscription events `customer.subscription.*`; the catalog row may not say so, hence the fallback.
EVENT_PREFIX: dict[str, str] = {
    name: o.event_prefix or {"subscription": "customer.subscription"}.get(name, OBJECT_TYPE[name])
    for name, o in CATALOG.items()
}

# Stripe's own names where an action's event is not `<prefix>.<action>`: payment methods are attached to
# and detached from customers (`payment_method.attached` / `.detached`; there is no `.created`/`.deleted`).
_EVENT_ACTIONS: dict[str, dict[str, str]] = {"payment_method": {"created": "attached", "deleted": "detached"}}


def event_type(name: str, action: str) -> Optional[str]:
    """The Stripe event type for `action` ("created", "updated", "deleted") on catalog object `name`, or None
    where Stripe has no such event (the object's `event_types` in the catalog do not include one)."""
    wanted = f"{EVENT_PREFIX[name]}.{_EVENT_ACTIONS.get(name, {}).get(action, action)}"
    # The default load's objects keep the three events the emulator always rendered (their data and events
    # stay byte-identical, e.g. `charge.created`, which the SDK's list of types lacks); the others have only
    # the types the catalog lists.
    known = None if getattr(CATALOG[name], "default_load", False) else getattr(CATALOG[name], "event_types", None)
    if known is None or wanted in known:  # a catalog without event types: every object has its three
        return wanted
    # e.g. a dispute's are `charge.dispute.*`: the catalog's type for the action, whatever its prefix
    return next((t for t in known if t.endswith(f".{action}")), None)


# Child objects reached through a parent: child name -> (parent name, field on the child holding the parent id)
PARENT: dict[str, tuple[str, str]] = {
    name: (o.parent.object, o.parent.id_column) for name, o in CATALOG.items() if o.parent
}


def _always_embedded(parent: str, field: str) -> bool:
    """Stripe sends the list in every parent object (`Transfer.reversals`), not only when asked to with
    `expand[]` (`checkout.Session.line_items`, which the SDK declares nullable)."""
    return not any(f.name == field and f.nullable for f in shapes.fields(parent))


# Parents whose objects embed the first page of child lists: parent -> ((field, child name), ...)
EMBEDDED: dict[str, tuple[tuple[str, str], ...]] = {}
for _name, _o in CATALOG.items():
    if _o.parent and _o.parent.embedded_field and _always_embedded(_o.parent.object, _o.parent.embedded_field):
        EMBEDDED[_o.parent.object] = EMBEDDED.get(_o.parent.object, ()) + ((_o.parent.embedded_field, _name),)
EMBEDDED_PAGE = 10  # Stripe embeds at most 10 subscription items, invoice lines, transfer reversals, ...

# The one field per object the store keeps beside the JSON bytes: children's parent id (indexed) and the
# fields list endpoints filter on (subscription status, event type).
ATTR_FIELD: dict[str, str] = {name: field for name, (_, field) in PARENT.items()}
ATTR_FIELD.update({"subscription": "status", "event": "type"})

# Children whose changes Stripe reports through their parent's events (same event prefix as the parent):
# mutating a subscription item emits `customer.subscription.updated` carrying the subscription.
VIA_PARENT = frozenset(name for name, (parent, _) in PARENT.items() if EVENT_PREFIX[name] == EVENT_PREFIX[parent])

# The Stripe product an object belongs to where an account must set that product up first (catalog `product`,
# e.g. "Issuing"): the emulator's not-set-up switch answers Stripe's 400 for these objects' requests.
PRODUCT: dict[str, str] = {name: p for name, o in CATALOG.items() if (p := getattr(o, "product", None))}
PRODUCTS: tuple[str, ...] = tuple(sorted(set(PRODUCT.values())))

# stripe-python class -> catalog name (the first object of that class), for references between objects.
NAMED_CLASSES: dict[str, str] = {}
for _name, _o in CATALOG.items():
    NAMED_CLASSES.setdefault(_o.sdk_class, _name)

# Id prefixes of classes the emulator does not serve but objects refer to (an id of the right kind).
_OTHER_PREFIXES = {
    "Account": "acct_", "Application": "ca_", "BankAccount": "ba_", "Card": "card_", "ConfirmationToken": "ctoken_",
    "Discount": "di_", "File": "file_", "Mandate": "mandate_", "Source": "src_", "Review": "prv_",
    "TestClock": "clock_", "test_helpers.TestClock": "clock_", "Topup": "tu_", "Transfer": "tr_",
    "ApplicationFee": "fee_", "Dispute": "dp_", "Quote": "qt_", "PaymentLink": "plink_",
}


# Objects whose ids are names, not prefixed random strings: Stripe's own vocabulary for them.
_COUNTRIES = ("US", "CA", "GB", "DE", "FR", "IE", "NL", "ES", "IT", "AU", "NZ", "JP", "SG", "HK", "CH", "SE", "DK",
              "NO", "FI", "AT", "BE", "PT", "PL", "CZ", "MX", "BR", "IN", "AE", "TH", "MY", "LU", "EE")
_REPORT_TYPES = ("balance.summary.1", "balance_change_from_activity.itemized.1",
                 "balance_change_from_activity.itemized.2", "balance_change_from_activity.itemized.3",
                 "balance_change_from_activity.summary.1", "payouts.itemized.1", "payouts.itemized.2",
                 "payouts.itemized.3", "payouts.summary.1", "payout_reconciliation.itemized.5",
                 "payout_reconciliation.summary.1", "ending_balance_reconciliation.itemized.4",
                 "ending_balance_reconciliation.summary.1", "connected_account_balance.summary.1")


def natural_ids(name: str) -> Optional[tuple[str, ...]]:
    """The ids an object with natural ids can have (country specs: countries; capabilities: the capability
    names stripe.Account.Capabilities declares; report types: Stripe's), or None."""
    if CATALOG[name].id_prefix or name not in ("country_spec", "capability", "reporting_report_type"):
        return None
    if name == "country_spec":
        return _COUNTRIES
    if name == "reporting_report_type":
        return _REPORT_TYPES
    from . import sdk_nested  # the SDK is imported only when an object needs it

    return tuple(f.name for f in sdk_nested.inner_fields(sdk_nested.resource("Account.Capabilities")))


def id_prefix_of_class(sdk_class: str) -> str:
    """The id prefix of objects of `sdk_class` ("Customer" -> "cus_"); a made-up one for unknown classes."""
    name = NAMED_CLASSES.get(sdk_class)
    if name and CATALOG[name].id_prefix:
        return CATALOG[name].id_prefix
    known = _OTHER_PREFIXES.get(sdk_class)
    if known:
        return known
    initials = "".join(ch for ch in sdk_class.rpartition(".")[2] if ch.isupper()).lower()
    return f"{initials or 'obj'}_"  # e.g. "mpd_" for a MandatePaymentDetails: plausible, never one we serve


# Objects with no seeded `<type>.created` event: events themselves, and children whose changes are
# reported through their parent's events (subscription items -> customer.subscription.*).
NO_SEED_EVENTS = frozenset({"event"} | VIA_PARENT)


def embedded_list(parent_id: str, child: str, items: list, total: int) -> dict:
    """Stripe's embedded list object, e.g. subscription.items."""
    relation = CATALOG[child].parent
    if "{id}" in relation.path_template:  # /v1/invoices/{id}/lines
        url = relation.path_template.format(id=parent_id)
    else:  # /v1/subscription_items?subscription=sub_…
        url = f"{relation.path_template}?{relation.param}={parent_id}"
    return {"object": "list", "data": items, "has_more": total > len(items), "total_count": total, "url": url}
