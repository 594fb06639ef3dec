"""Objects as an older Stripe API version renders them, for events of an account pinned to that version.

Stripe renders an event's `data.object` in the API version the event was created with (the account's
default version then), whatever version the reader asks for. The emulator's objects have the shape of the
version stripe-python pins (`model.API_VERSION`); `render` moves the fields back where versions before
`2025-03-31.basil` had them (docs.stripe.com/changelog/basil/2025-03-31/adds-new-parent-field-to-invoicing-objects
and the stripe-python 12.0 changelog):
- Invoice: `parent.subscription_details.subscription` was `subscription` (with `subscription_details.metadata`
  and `subscription_proration_date`), `parent.quote_details.quote` was `quote`; `charge`, `payment_intent`
  and `paid` were still on the invoice.
- Invoice line item: `pricing` was `price` (and `plan`); `parent` was `type`, `subscription`,
  `subscription_item`, `invoice_item`, `proration`, `proration_details`.
- Invoice item: `pricing` was `price` (and `plan`), `parent` was `subscription`, `subscription_item`.
- Charge and PaymentIntent still named their `invoice`.
"""

from __future__ import annotations

from typing import Optional

BASIL = "2025-03-31.basil"


def released(version: str) -> str:
    """The release date of an API version (`2024-12-18.acacia` -> `2024-12-18`), which orders versions."""
    return version.split(".", 1)[0]


def before_basil(version: Optional[str]) -> bool:
    return version is not None and released(version) < released(BASIL)


def render(obj: dict, version: Optional[str]) -> dict:
    """`obj` (in the pinned version's shape) as `version` renders it; a copy when anything moved."""
    if not before_basil(version):
        return obj
    shape = _OLDER.get(obj.get("object"))
    return shape(dict(obj)) if shape else obj


def _details(parent: Optional[dict], kind: str) -> dict:
    return ((parent or {}).get(kind) or {}) if isinstance(parent, dict) else {}


def _price(pricing: Optional[dict]) -> Optional[dict]:
    details = (pricing or {}).get("price_details") or {}
    if not details.get("price"):
        return None
    return {"id": details["price"], "object": "price", "product": details.get("product"),
            "unit_amount_decimal": (pricing or {}).get("unit_amount_decimal")}


def _invoice(o: dict) -> dict:
    parent = o.pop("parent", None)
    subscription = _details(parent, "subscription_details")
    o["subscription"] = subscription.get("subscription")
    o["subscription_details"] = {"metadata": subscription.get("metadata")} if subscription else None
    o["subscription_proration_date"] = subscription.get("subscription_proration_date")
    o["quote"] = _details(parent, "quote_details").get("quote")
    o.setdefault("charge", None)
    o.setdefault("payment_intent", None)
    o["paid"] = o.get("status") == "paid"
    lines = o.get("lines")
    if isinstance(lines, dict) and isinstance(lines.get("data"), list):
        o["lines"] = {**lines, "data": [render(line, "2024-12-18.acacia") for line in lines["data"]]}
    return o


def _line_item(o: dict) -> dict:
    parent = o.pop("parent", None)
    item = _details(parent, "subscription_item_details")
    invoice_item = _details(parent, "invoice_item_details")
    o["price"], o["plan"] = _price(o.pop("pricing", None)), None
    o["type"] = "subscription" if item else "invoiceitem"
    o["subscription"] = item.get("subscription") or invoice_item.get("subscription")
    o["subscription_item"] = item.get("subscription_item")
    o["invoice_item"] = invoice_item.get("invoice_item")
    o["proration"] = bool(item.get("proration") or invoice_item.get("proration"))
    o["proration_details"] = item.get("proration_details") or invoice_item.get("proration_details")
    return o


def _invoice_item(o: dict) -> dict:
    parent = o.pop("parent", None)
    item = _details(parent, "subscription_details")
    o["price"], o["plan"] = _price(o.pop("pricing", None)), None
    o["subscription"] = item.get("subscription")
    o["subscription_item"] = item.get("subscription_item")
    return o


def _names_invoice(o: dict) -> dict:
    o.setdefault("invoice", None)
    return o


_OLDER = {"invoice": _invoice, "line_item": _line_item, "invoiceitem": _invoice_item,
          "charge": _names_invoice, "payment_intent": _names_invoice}
