"""Stripe-shaped field builders: one small function per object of the spec, registered in `BUILDERS` by catalog
name (they follow Stripe's money rules: a refund never exceeds its charge, an invoice's total is its lines');
every other catalog object is rendered from the SDK shapes by `generic.py`.

A builder gets a context (`ctx`: seeded RNG, `pick(name)` -> an existing id of that object or None,
`obj(name)` -> an existing object as a dict, `token(n)`, `metadata()`), the new object's id, its
`created` second and its parent id (for children listed through a parent), and returns the object's own
fields. `build()` starts from the object's field template (every field its stripe-python class declares,
null; built once per object type from `source/shapes.py`), adds the common ones (id, object, the creation time in
the catalog's `created_field`, livemode, metadata) where the class declares them, then the builder's. So
every object has exactly Stripe's field set; fields the emulator has nothing realistic for stay null.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Callable, Optional

from ..source import shapes
from ..source.catalog import CATALOG
from . import generic
from .model import API_VERSION, OBJECT_TYPE, natural_ids

ALNUM = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ALNUM_TABLE = bytes(ALNUM[i % 62] for i in range(256))  # random byte -> alphanumeric
ID_LENGTH = {"customer": 14, "product": 14, "subscription_item": 14}  # others: 24 like ch_3MmlLrLkdIwHu7ix0snN0B15

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Frances", "Dennis", "Radia", "Niklaus"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Torvalds", "Allen", "Ritchie"]
CITIES = [("San Francisco", "CA", "94107"), ("New York", "NY", "10001"), ("Austin", "TX", "73301"), ("Seattle", "WA", "98101")]
PRODUCTS = ["Starter plan", "Pro plan", "Team plan", "Enterprise plan", "API credits", "Support add-on", "Extra seats"]
COUPON_WORDS = ["SPRING", "SUMMER", "FALL", "WINTER", "WELCOME", "LAUNCH", "VIP", "FRIENDS", "BLACKFRIDAY", "PROMO"]
BRANDS = ["visa", "visa", "mastercard", "amex", "discover"]
AMOUNTS = [500, 999, 1500, 2000, 2500, 4900, 9900, 12000, 19900, 49900]
# What moves a balance, as often as a business sees it: 85 % charges, 5 % refunds, 10 % payouts.
BALANCE_KINDS = ["charge"] * 17 + ["refund"] + ["payout"] * 2
EVENTS = ["charge.succeeded", "charge.refunded", "customer.created", "invoice.paid", "customer.subscription.updated"]


class RandomContext:
    """Fast random helpers over one seeded `random.Random` (random() is ~5x cheaper than randint/choice)."""

    POOL_SIZE = 101

    def __init__(self, rng):
        self.rng = rng
        self._random = rng.random
        self._pools: dict[str, list] = {}

    def choice(self, seq):
        return seq[int(self._random() * len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + int(self._random() * (b - a + 1))

    def token(self, n: int) -> str:
        return self.rng.randbytes(n).translate(ALNUM_TABLE).decode("ascii")

    def pooled(self, factory: Callable[["RandomContext"], Any]):
        """One of POOL_SIZE values made by `factory` (repeat buyers, cards, addresses); treat as read-only."""
        pool = self._pools.get(factory.__name__)
        if pool is None:
            pool = self._pools[factory.__name__] = [factory(self) for _ in range(self.POOL_SIZE)]
        return pool[int(self._random() * len(pool))]

    children: list = []  # a parent's children while it is built (e.g. an invoice's lines)

    def settled(self, name: str):  # (id, amount) of a succeeded charge / refund or a paid payout, or None
        raise NotImplementedError

    def pick(self, name: str):  # an existing id of `name`, or None
        raise NotImplementedError

    def obj(self, name: str):  # an existing object of `name` as a dict, or None
        raise NotImplementedError


def _address(ctx) -> dict:
    city, state, postal = ctx.choice(CITIES)
    return {"city": city, "country": "US", "line1": f"{ctx.randint(1, 999)} Market St", "line2": None,
            "postal_code": postal, "state": state}


def _person(ctx) -> tuple[str, str]:
    first, last = ctx.choice(FIRST), ctx.choice(LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@example.com"


def _card(ctx) -> dict:
    r = ctx.rng
    return {"brand": ctx.choice(BRANDS), "checks": {"address_line1_check": None, "address_postal_code_check": "pass",
            "cvc_check": "pass"}, "country": "US", "exp_month": ctx.randint(1, 12), "exp_year": ctx.randint(2026, 2032),
            "fingerprint": ctx.token(16), "funding": "credit", "last4": f"{ctx.randint(0, 9999):04d}"}


def _billing(ctx) -> dict:
    name, email = _person(ctx)
    return {"address": _address(ctx), "email": email, "name": name, "phone": None}


def _charge_card(ctx) -> dict:
    card = _card(ctx)
    card.update({"network": card["brand"], "three_d_secure": None, "wallet": None})
    return {"card": card, "type": "card"}


def _period(created: int, days: int = 30) -> dict:
    return {"end": created + days * 86400, "start": created}


def customer(ctx, oid, created, parent):
    name, email = _person(ctx)
    r = ctx.rng
    return {"address": _address(ctx) if r.random() < 0.6 else None, "balance": 0, "currency": "usd",
            "default_source": None, "delinquent": r.random() < 0.05, "description": None if r.random() < 0.7 else
            "Imported customer", "discount": None, "email": email, "invoice_prefix": ctx.token(8).upper(),
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                 "rendering_options": None}, "name": name, "next_invoice_sequence": ctx.randint(1, 20),
            "phone": None, "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None}


def payment_method(ctx, oid, created, parent):
    name, email = _person(ctx)
    card = _card(ctx)
    card.update({"display_brand": card["brand"], "generated_from": None, "networks": {"available": [card["brand"]],
                 "preferred": None}, "three_d_secure_usage": {"supported": True}, "wallet": None})
    return {"allow_redisplay": "unspecified", "billing_details": {"address": _address(ctx), "email": email,
            "name": name, "phone": None}, "card": card, "customer": parent, "type": "card"}


def charge(ctx, oid, created, parent):
    r = ctx.rng
    amount = ctx.choice(AMOUNTS)
    status = "succeeded" if r.random() < 0.9 else ("failed" if r.random() < 0.7 else "pending")
    ok = status == "succeeded"
    refunded = ok and r.random() < 0.08
    billing = ctx.pooled(_billing)
    return {
        "amount": amount, "amount_captured": amount if ok else 0, "amount_refunded": amount if refunded else 0,
        "application": None, "application_fee": None, "application_fee_amount": None,
        "balance_transaction": ctx.pick("balance_transaction") if ok else None,
        "billing_details": billing,
        "calculated_statement_descriptor": "EMULATOR INC", "captured": ok, "currency": "usd",
        "customer": ctx.pick("customer"), "description": None if r.random() < 0.6 else "Subscription payment",
        "disputed": False, "failure_balance_transaction": None,
        "failure_code": None if status != "failed" else "card_declined",
        "failure_message": None if status != "failed" else "Your card was declined.", "fraud_details": {},
        "outcome": {"network_status": "approved_by_network" if ok else "declined_by_network", "reason": None,
                    "risk_level": "normal", "risk_score": ctx.randint(0, 99),
                    "seller_message": "Payment complete." if ok else "The bank did not return any further details.",
                    "type": "authorized" if ok else "issuer_declined"},
        "paid": ok, "payment_intent": ctx.pick("payment_intent"), "payment_method": ctx.pick("payment_method"),
        "payment_method_details": ctx.pooled(_charge_card),
        "receipt_email": billing["email"] if r.random() < 0.5 else None,
        "receipt_number": None, "receipt_url": f"https://pay.stripe.com/receipts/{oid}", "refunded": refunded,
        "review": None, "shipping": None, "source_transfer": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": status, "transfer_data": None, "transfer_group": None,
    }


def payment_intent(ctx, oid, created, parent):
    r = ctx.rng
    amount = ctx.choice(AMOUNTS)
    status = ctx.choice(["succeeded", "succeeded", "succeeded", "requires_payment_method", "canceled", "processing"])
    return {"amount": amount, "amount_capturable": 0, "amount_received": amount if status == "succeeded" else 0,
            "application": None, "automatic_payment_methods": {"enabled": True},
            "canceled_at": created + 3600 if status == "canceled" else None,
            "cancellation_reason": "abandoned" if status == "canceled" else None, "capture_method": "automatic",
            "client_secret": f"{oid}_secret_{ctx.token(24)}", "confirmation_method": "automatic", "currency": "usd",
            "customer": ctx.pick("customer"), "description": None, "last_payment_error": None,
            "latest_charge": ctx.pick("charge") if status == "succeeded" else None, "next_action": None,
            "payment_method": ctx.pick("payment_method"), "payment_method_types": ["card"], "receipt_email": None,
            "setup_future_usage": None, "shipping": None, "statement_descriptor": None, "status": status}


def refund(ctx, oid, created, parent):
    r = ctx.rng
    charge_id, charged = ctx.settled("charge") or (None, ctx.choice(AMOUNTS))
    # A refund returns all or part of a succeeded charge, never more than it.
    amount = charged if r.random() < 0.7 else max(50, charged // 2)
    return {"amount": amount, "balance_transaction": ctx.pick("balance_transaction"),
            "charge": charge_id, "currency": "usd",
            "destination_details": {"card": {"reference_status": "available", "reference_type": "acquirer_reference_number",
                                             "type": "refund"}, "type": "card"},
            "payment_intent": ctx.pick("payment_intent"),
            "reason": ctx.choice([None, "requested_by_customer", "duplicate", "fraudulent"]), "receipt_number": None,
            "payment_method": ctx.pick("payment_method"), "customer": ctx.pick("customer"),
            "source_transfer_reversal": None, "status": "succeeded" if r.random() < 0.9 else "pending",
            "transfer_reversal": None}


def payout(ctx, oid, created, parent):
    r = ctx.rng
    # About a week of the seeded sales (1.5 charges a day of ~$100 on average): $300 to $1,500.
    return {"amount": ctx.randint(30_000, 150_000), "arrival_date": created + 2 * 86400, "automatic": True,
            "balance_transaction": ctx.pick("balance_transaction"), "currency": "usd", "description": "STRIPE PAYOUT",
            "destination": "ba_1Emulator" + ctx.token(13), "failure_balance_transaction": None, "failure_code": None,
            "failure_message": None, "method": "standard" if r.random() < 0.9 else "instant", "original_payout": None,
            "reconciliation_status": "completed", "reversed_by": None, "source_type": "card",
            "statement_descriptor": None, "status": ctx.choice(["paid", "paid", "paid", "in_transit", "failed"]),
            "type": "bank_account"}


def subscription(ctx, oid, created, parent):
    r = ctx.rng
    status = ctx.choice(["active", "active", "active", "trialing", "past_due", "canceled", "canceled", "incomplete"])
    canceled = status == "canceled"
    return {"application": None, "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": created, "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
            "billing_schedules": [], "cancel_at": None, "cancel_at_period_end": False,
            "canceled_at": created + 40 * 86400 if canceled else None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": "cancellation_requested" if canceled
                                     else None}, "collection_method": "charge_automatically", "currency": "usd",
            "customer": ctx.pick("customer"), "days_until_due": None, "default_payment_method": ctx.pick("payment_method"),
            "description": None, "discounts": [], "ended_at": created + 40 * 86400 if canceled else None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "latest_invoice": ctx.pick("invoice"), "pause_collection": None, "start_date": created, "status": status,
            "test_clock": None, "trial_end": created + 14 * 86400 if status == "trialing" else None,
            "trial_start": created if status == "trialing" else None}


def _recurring_price(ctx) -> Optional[dict]:
    """A recurring price: Stripe accepts only those on subscription items."""
    for _ in range(50):
        price = ctx.obj("price")
        if price is None or price.get("recurring"):
            return price
    return None


def _plan(price: dict) -> dict:
    """The legacy Plan view Stripe renders beside a subscription item's recurring price (same id and amounts)."""
    recurring = price["recurring"]
    return {"id": price["id"], "object": "plan", "active": price["active"], "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"], "billing_scheme": price["billing_scheme"],
            "created": price["created"], "currency": price["currency"], "interval": recurring["interval"],
            "interval_count": recurring["interval_count"], "livemode": False, "metadata": {}, "meter": None,
            "nickname": price["nickname"], "product": price["product"], "tiers_mode": None, "transform_usage": None,
            "trial_period_days": None, "usage_type": recurring["usage_type"]}


def subscription_item(ctx, oid, created, parent):
    period = _period(created)
    price = _recurring_price(ctx)
    return {"billing_thresholds": None, "current_period_end": period["end"], "current_period_start": period["start"],
            "discounts": [], "plan": _plan(price) if price else None, "price": price, "quantity": ctx.randint(1, 5),
            "subscription": parent, "tax_rates": []}


def subscription_schedule(ctx, oid, created, parent):
    r = ctx.rng
    status = ctx.choice(["not_started", "active", "active", "completed", "released", "canceled"])
    return {"application": None, "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
            "canceled_at": created + 86400 if status == "canceled" else None,
            "completed_at": created + 90 * 86400 if status == "completed" else None,
            "current_phase": {"end_date": created + 30 * 86400, "start_date": created} if status == "active" else None,
            "customer": ctx.pick("customer"), "default_settings": {"application_fee_percent": None,
            "billing_cycle_anchor": "automatic", "collection_method": "charge_automatically",
            "default_payment_method": None, "description": None, "invoice_settings": {"days_until_due": None}},
            "end_behavior": ctx.choice(["release", "cancel"]),
            "phases": [{"end_date": created + 30 * 86400, "items": [{"price": ctx.pick("price"), "quantity": 1}],
                        "start_date": created}], "pause_schedules": [], "released_at": None, "released_subscription": None,
            "status": status, "subscription": ctx.pick("subscription"), "test_clock": None}


def product(ctx, oid, created, parent):
    r = ctx.rng
    return {"active": r.random() < 0.85, "default_price": None,
            "description": None if r.random() < 0.5 else "A product sold by the emulator.", "images": [],
            "marketing_features": [], "name": f"{ctx.choice(PRODUCTS)} {ctx.randint(1, 99)}", "package_dimensions": None,
            "shippable": None, "statement_descriptor": None, "tax_code": None, "type": "service", "unit_label": None,
            "updated": created + ctx.randint(0, 86400), "url": None}


def price(ctx, oid, created, parent):
    r = ctx.rng
    amount = ctx.choice(AMOUNTS)
    recurring = r.random() < 0.7
    return {"active": r.random() < 0.9, "billing_scheme": "per_unit", "currency": "usd", "custom_unit_amount": None,
            "lookup_key": None, "nickname": None if r.random() < 0.6 else "Standard", "product": ctx.pick("product"),
            "recurring": {"interval": ctx.choice(["month", "month", "year"]), "interval_count": 1, "meter": None,
                          "trial_period_days": None, "usage_type": "licensed"} if recurring else None,
            "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
            "type": "recurring" if recurring else "one_time", "unit_amount": amount, "unit_amount_decimal": str(amount)}


def coupon(ctx, oid, created, parent):
    r = ctx.rng
    percent = r.random() < 0.7
    duration = ctx.choice(["once", "repeating", "forever"])
    return {"amount_off": None if percent else ctx.choice([500, 1000, 2500]), "currency": None if percent else "usd",
            "duration": duration, "duration_in_months": 3 if duration == "repeating" else None,
            "max_redemptions": ctx.choice([None, 100, 1000]), "name": oid.title(),
            "percent_off": float(ctx.choice([10, 15, 20, 25, 50])) if percent else None, "redeem_by": None,
            "times_redeemed": ctx.randint(0, 80), "valid": r.random() < 0.9}


def promotion_code(ctx, oid, created, parent):
    r = ctx.rng
    return {"active": r.random() < 0.8, "code": ctx.token(8).upper(), "customer": None, "expires_at": None,
            "max_redemptions": None, "promotion": {"coupon": ctx.pick("coupon"), "type": "coupon"},
            "restrictions": {"first_time_transaction": r.random() < 0.3, "minimum_amount": None,
                             "minimum_amount_currency": None}, "times_redeemed": ctx.randint(0, 40)}


def invoice_line_item(ctx, oid, created, parent):
    """One line of invoice `parent`; `created` is the invoice's (a line has no time of its own)."""
    amount = ctx.choice(AMOUNTS)
    return {"amount": amount, "currency": "usd", "description": f"1 × {ctx.choice(PRODUCTS)}", "discount_amounts": [],
            "discountable": True, "discounts": [], "invoice": parent, "period": _period(created - 30 * 86400),
            "pretax_credit_amounts": [],
            "pricing": {"price_details": None, "type": "price_details", "unit_amount_decimal": str(amount)},
            "quantity": 1, "quantity_decimal": "1", "subtotal": amount, "taxes": []}


def invoice(ctx, oid, created, parent):
    r = ctx.rng
    status = ctx.choice(["paid", "paid", "paid", "open", "draft", "void", "uncollectible"])
    subscription_id = ctx.pick("subscription") if r.random() < 0.7 else None
    total = sum(line["amount"] for line in ctx.children)
    name, email = _person(ctx)
    paid = status == "paid"
    finalized = None if status == "draft" else created + 3600
    return {"account_country": "US", "account_name": "Emulator Inc.", "amount_due": total, "amount_overpaid": 0,
            "amount_paid": total if paid else 0, "amount_remaining": 0 if paid else total, "amount_shipping": 0,
            "attempt_count": int(paid), "attempted": paid, "auto_advance": status == "draft",
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                              "status": None},
            "billing_reason": "subscription_cycle" if subscription_id else "manual",
            "collection_method": "charge_automatically", "currency": "usd", "customer": ctx.pick("customer"),
            "customer_email": email, "customer_name": name, "default_payment_method": None, "default_tax_rates": [],
            "description": None, "discounts": [], "due_date": None, "effective_at": finalized,
            "ending_balance": None if status == "draft" else 0,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/{oid}", "invoice_pdf": f"https://pay.stripe.com/invoice/{oid}/pdf",
            "issuer": {"type": "self"},
            "number": f"{ctx.token(8).upper()}-{ctx.randint(1, 9999):04d}",
            "parent": {"quote_details": None, "subscription_details": {"metadata": {}, "subscription": subscription_id},
                       "type": "subscription_details"} if subscription_id else None,
            "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
            "period_end": created, "period_start": created - 30 * 86400, "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0, "starting_balance": 0, "status": status,
            "status_transitions": {"finalized_at": finalized, "marked_uncollectible_at": None,
                                   "paid_at": created + 3600 if paid else None,
                                   "voided_at": created + 7200 if status == "void" else None},
            "subtotal": total, "subtotal_excluding_tax": total, "total": total, "total_discount_amounts": [],
            "total_excluding_tax": total, "total_pretax_credit_amounts": [], "total_taxes": []}


def invoice_item(ctx, oid, created, parent):
    r = ctx.rng
    amount = ctx.choice(AMOUNTS)
    return {"amount": amount, "currency": "usd", "customer": ctx.pick("customer"), "description": ctx.choice(PRODUCTS),
            "discountable": True, "discounts": [], "invoice": ctx.pick("invoice"), "net_amount": amount,
            "period": _period(created),
            "pricing": {"price_details": None, "type": "price_details", "unit_amount_decimal": str(amount)},
            "proration": r.random() < 0.1, "quantity": 1, "quantity_decimal": "1", "tax_rates": [], "test_clock": None}


def credit_note_line_item(ctx, oid, created, parent):
    """One line of credit note `parent` (the class has no field naming it: the loader adds that column)."""
    amount = ctx.choice(AMOUNTS)
    return {"amount": amount, "description": ctx.choice(PRODUCTS), "discount_amount": 0, "discount_amounts": [],
            "pretax_credit_amounts": [], "quantity": 1, "tax_rates": [], "taxes": [], "type": "custom_line_item",
            "unit_amount": amount, "unit_amount_decimal": str(amount)}


def credit_note(ctx, oid, created, parent):
    r = ctx.rng
    amount = sum(line["amount"] for line in ctx.children)
    kind = ctx.choice(["pre_payment", "post_payment"])
    void = r.random() >= 0.9
    return {"amount": amount, "amount_shipping": 0, "currency": "usd", "customer": ctx.pick("customer"),
            "customer_balance_transaction": None, "discount_amount": 0, "discount_amounts": [],
            "effective_at": created, "invoice": ctx.pick("invoice"),
            "memo": None, "number": f"{ctx.token(8).upper()}-CN-01", "out_of_band_amount": None,
            "pdf": f"https://pay.stripe.com/credit_notes/{oid}/pdf",
            "post_payment_amount": amount if kind == "post_payment" else 0,
            "pre_payment_amount": amount if kind == "pre_payment" else 0, "pretax_credit_amounts": [],
            "reason": ctx.choice([None, "duplicate", "order_change", "product_unsatisfactory"]), "refunds": [],
            "status": "void" if void else "issued", "subtotal": amount, "subtotal_excluding_tax": amount,
            "total": amount, "total_excluding_tax": amount, "total_taxes": [], "type": kind,
            "voided_at": created + 86400 if void else None}


def tax_rate(ctx, oid, created, parent):
    r = ctx.rng
    pct = ctx.choice([5.0, 7.25, 8.5, 19.0, 20.0])
    return {"active": r.random() < 0.9, "country": ctx.choice(["US", "DE", "GB", None]), "description": None,
            "display_name": "Sales Tax" if pct < 10 else "VAT", "effective_percentage": pct,
            "inclusive": pct >= 10, "jurisdiction": None, "jurisdiction_level": None, "percentage": pct,
            "rate_type": "percentage",
            "state": None, "tax_type": "sales_tax" if pct < 10 else "vat"}


def balance_transaction(ctx, oid, created, parent):
    r = ctx.rng
    kind = ctx.choice(BALANCE_KINDS)
    # The transaction moves the balance by its source's amount: + a succeeded charge, - a refund or a payout.
    source, moved = ctx.settled(kind) or (None, ctx.choice(AMOUNTS))
    amount = moved if kind == "charge" else -moved
    fee = amount * 29 // 1000 + 30 if kind == "charge" else 0  # 2.9% + 30¢
    return {"amount": amount, "available_on": created + 2 * 86400, "balance_type": "payments", "currency": "usd",
            "description": None,
            "exchange_rate": None, "fee": fee, "fee_details": [{"amount": fee, "application": None, "currency": "usd",
            "description": "Stripe processing fees", "type": "stripe_fee"}] if fee else [], "net": amount - fee,
            "reporting_category": kind, "source": source, "status": ctx.choice(["available", "pending"]),
            "type": kind}


def event(ctx, oid, created, parent):
    return {"api_version": API_VERSION, "data": {"object": {}}, "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None}, "type": "emulator.ping"}


def setup_intent(ctx, oid, created, parent):
    status = ctx.choice(["succeeded", "succeeded", "requires_payment_method", "canceled"])
    return {"application": None, "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
            "cancellation_reason": "abandoned" if status == "canceled" else None,
            "client_secret": f"{oid}_secret_{ctx.token(24)}", "customer": ctx.pick("customer"), "description": None,
            "flow_directions": None, "last_setup_error": None, "latest_attempt": None, "mandate": None,
            "next_action": None, "payment_method": ctx.pick("payment_method") if status == "succeeded" else None,
            "payment_method_types": ["card"], "single_use_mandate": None, "status": status, "usage": "off_session"}


def webhook_endpoint(ctx, oid, created, parent):
    r = ctx.rng
    return {"api_version": API_VERSION, "application": None, "description": None,
            "enabled_events": r.sample(EVENTS, 2), "status": "enabled" if r.random() < 0.8 else "disabled",
            "url": f"https://example.com/stripe/webhooks/{ctx.randint(1, 999)}"}


BUILDERS: dict[str, Callable[..., dict]] = {
    f.__name__: f
    for f in [charge, payment_intent, payment_method, refund, payout, customer, subscription, subscription_item,
              subscription_schedule, product, price, coupon, promotion_code, invoice, invoice_item, credit_note,
              tax_rate, balance_transaction, event, setup_intent, webhook_endpoint, invoice_line_item,
              credit_note_line_item]
}
BUILDERS["payout_balance_transaction"] = balance_transaction  # a payout's transactions are balance transactions
METADATA_KEYS = ["order_id", "plan", "source", "region"]


def metadata(ctx) -> dict:
    r = ctx.rng
    if r.random() < 0.7:
        return {}
    return {k: f"{k}_{ctx.randint(1, 9999)}" for k in r.sample(METADATA_KEYS, ctx.randint(1, 2))}


# Declared by the SDK classes of deletable objects ("Always true for a deleted object"), but Stripe sends it
# only in the `{"id", "object", "deleted": true}` stub of a deleted object, never as `null` on a live one.
ONLY_ON_DELETED = frozenset({"deleted"})


@cache
def _template_of(sdk_class: str) -> dict:
    """Every field stripe.<sdk_class> declares for a live object, null, in the SDK's order (copied per object)."""
    return dict.fromkeys(f.name for f in shapes.class_fields(sdk_class) if f.name not in ONLY_ON_DELETED)


def sdk_template(sdk_class: str) -> dict:
    """A live stripe.<sdk_class> object's fields, all null, in the SDK's order (a fresh copy)."""
    return dict(_template_of(sdk_class))


@cache
def _common(name: str) -> tuple[dict, Optional[str], bool]:
    """(template, creation-time field, has metadata) of a catalog object."""
    template = dict(_template_of(CATALOG[name].sdk_class))
    template["object"] = OBJECT_TYPE[name]
    if "livemode" in template:
        template["livemode"] = False
    return template, CATALOG[name].created_field, "metadata" in template


# Objects whose amounts move the balance once settled: balance transactions and refunds take theirs from them.
SETTLED_STATUS = {"charge": "succeeded", "refund": "succeeded", "payout": "paid"}


def settled_amount(name: str, obj: dict):
    """(id, amount) of `obj` if it settled (see SETTLED_STATUS), else None."""
    if obj.get("status") == SETTLED_STATUS.get(name):
        return obj["id"], obj["amount"]
    return None


def declared(name: str) -> frozenset[str]:
    """The fields the catalog object's stripe-python class declares (those a live object carries)."""
    return frozenset(_common(name)[0])


def build(name: str, ctx, oid: str, created: int, parent: Any = None) -> dict:
    """A complete object with exactly the fields its stripe-python class declares: from its hand-written
    builder (the objects whose amounts follow Stripe's money rules), else from the SDK shapes (`generic`)."""
    template, created_field, with_metadata = _common(name)
    if name not in BUILDERS:
        return _build_generic(name, ctx, oid, created, parent)
    obj = template.copy()
    obj["id"] = oid
    if created_field:
        obj[created_field] = created
    if with_metadata:
        obj["metadata"] = metadata(ctx)
    obj.update(BUILDERS[name](ctx, oid, created, parent))
    return obj


def _build_generic(name: str, ctx, oid: str, created: int, parent: Any) -> dict:
    o = CATALOG[name]
    template, created_field, with_metadata = _common(name)
    obj = generic.render(o.sdk_class, ctx, oid, created, o.path)
    for gone in ONLY_ON_DELETED:
        obj.pop(gone, None)
    obj.update((k, template[k]) for k in ("object", "livemode") if k in template)
    obj["id"] = oid
    if created_field:
        obj[created_field] = created
    if with_metadata:
        obj["metadata"] = metadata(ctx)
    if o.parent and o.parent.id_column in obj:  # the parent's id where the class declares a field for it
        obj[o.parent.id_column] = parent
    return obj


_ACCOUNT_NAMES = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Hooli", "Pied Piper", "Vandelay"]
_ACCOUNT_KINDS = ["Coffee", "Books", "Bikes", "Studio", "Labs", "Goods", "Outfitters", "Bakery", "Garden", "Games"]


def account_object(aid: str, created: int, index: int, platform: bool = False) -> dict:
    """An Account with exactly the fields stripe-python's `stripe.Account` declares for a live account (from
    the SDK's field set, as every other emulated object); the ones nothing realistic fills stay null. Nested
    objects carry only fields their SDK classes declare (`Account.BusinessProfile`, `Account.Controller`)."""
    kind = _ACCOUNT_KINDS[(index // 10) % len(_ACCOUNT_KINDS)]
    name = "Emulator Platform" if platform else f"{_ACCOUNT_NAMES[index % len(_ACCOUNT_NAMES)]} {kind}"
    account = sdk_template("Account")
    account.update({
        "id": aid, "object": "account",
        "business_profile": {"name": name, "mcc": "5734", "url": None, "support_email": None,
                             "product_description": None},
        "business_type": "company", "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": None if platform else {"type": "application", "is_controller": True},
        "country": "US", "created": created, "default_currency": "usd", "details_submitted": True,
        "email": f"owner{index}@example.com" if not platform else "platform@example.com",
        "metadata": {}, "payouts_enabled": True, "type": "standard",
    })
    return account


def connected_since(connected: list[str], now: int) -> dict[str, int]:
    """When each connected account was connected: over the last days, oldest first (list order is newest first)."""
    return {aid: now - 86400 * (len(connected) - i) for i, aid in enumerate(connected)}


def coupon_ids(rng, n: int) -> list[str]:
    """Short user-chosen-looking coupon ids like SPRING25X, unique."""
    seen: set[str] = set()
    out = []
    while len(out) < n:
        cid = f"{rng.choice(COUPON_WORDS)}{rng.choice([5, 10, 15, 20, 25, 50])}{ALNUM[rng.randrange(10, 36)]:c}"
        if len(out) > 200:
            cid += f"{rng.randrange(1000):03d}"
        if cid not in seen:
            seen.add(cid)
            out.append(cid)
    return out


def new_ids(rng, name: str, prefix: str, n: int) -> list[str]:
    """`n` distinct ids `<prefix><alphanumerics>`, from one block of random bytes; for objects with natural
    ids, up to `n` of their names (`model.natural_ids`), or coupon-like codes."""
    if not prefix:
        names = natural_ids(name) if name in CATALOG else None
        return rng.sample(names, min(n, len(names))) if names else coupon_ids(rng, n)
    length = ID_LENGTH.get(name, 24)
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        want = n - len(ids)
        block = rng.randbytes(want * length).translate(ALNUM_TABLE).decode("ascii")
        for i in range(0, want * length, length):
            oid = prefix + block[i : i + length]
            if oid not in seen:
                seen.add(oid)
                ids.append(oid)
    return ids
