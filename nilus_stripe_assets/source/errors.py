"""Stripe failures as one clear, secret-free message.

`explain(exc, object_name, api_key)` turns any exception raised while loading a Stripe object (stripe-python
v16 errors in particular) into a `StripeLoadError` whose `str()` is one line naming the cause and the fix,
following the spec's troubleshooting table. API keys never appear in it: the message, `args`, `repr()` and
the attached `__cause__` show keys masked (`sk_test_…abcd`). Use `scrub()` on any other string (logs,
metadata) that may contain a key.

Raise the result plainly, without `from exc`::

    except stripe.StripeError as exc:
        raise explain(exc, "charge", api_key)

`explain` attaches a scrubbed copy of the original error as `__cause__` and suppresses the raw context, so
tracebacks (Python's and Dagster's) show only scrubbed text. `raise … from exc` would replace that cause
with the raw exception.

This module must not import Dagster.
"""

from __future__ import annotations

import re
from typing import Optional

import stripe

from .catalog import CATALOG
from .config import _VALID_KEY_RE, _one_line, _scrub_tokens, key_mode, mask_key, suggest_object
from .config import GLOBAL_RATE_LIMITS

__all__ = ["StripeLoadError", "ScrubbedStripeError", "PERMISSIONS", "explain", "not_offered", "not_set_up", "scrub"]

DASHBOARD_KEYS = "Stripe Dashboard → Developers → API keys"

# Catalog object -> the restricted-key permission (Stripe Dashboard wording) needed to list it.
PERMISSIONS: dict[str, str] = {
    "charge": "Charges read",
    "payment_intent": "PaymentIntents read",
    "payment_method": "PaymentMethods read",  # listed per customer: also needs Customers read
    "refund": "Refunds read",
    "payout": "Payouts read",
    "customer": "Customers read",
    "subscription": "Subscriptions read",
    "subscription_item": "Subscriptions read",
    "subscription_schedule": "Subscriptions read",
    "product": "Products read",
    "price": "Prices read",
    "coupon": "Coupons read",
    "promotion_code": "Promotion codes read",
    "invoice": "Invoices read",
    "invoice_item": "Invoices read",
    "credit_note": "Credit notes read",
    "tax_rate": "Tax Rates read",
    "balance_transaction": "Balance read",
    "event": "Events read",
    "setup_intent": "SetupIntents read",
    "webhook_endpoint": "Webhook Endpoints read",
    "invoice_line_item": "Invoices read",
    "credit_note_line_item": "Credit notes read",
    "payout_balance_transaction": "Balance read",  # listed per payout: also needs Payouts read
}


def _resource_permission(path: str) -> str:
    """A list's permission named after its resource, for the lists beyond the spec's (issue 19):
    "/v1/issuing/cards" -> "Issuing Cards read"; Stripe's Dashboard groups some of them differently."""
    words = [w for segment in path.split("/")[2:] if not segment.startswith("{") for w in segment.split("_")]
    return " ".join(w.capitalize() for w in words) + " read"


for _name, _obj in CATALOG.items():
    if _name not in PERMISSIONS:
        # A child is read through its parent's resource (a transfer's reversals: Transfers read).
        _top = CATALOG[_obj.parent.object] if _obj.parent is not None and not _obj.parent.param else _obj
        PERMISSIONS[_name] = PERMISSIONS.get(_top.name) or _resource_permission(_top.path)
# Objects reached through a parent list also need the parent's permission.
_EXTRA_PERMISSION: dict[str, str] = {
    name: PERMISSIONS[obj.parent.object]
    for name, obj in CATALOG.items()
    if obj.parent is not None and PERMISSIONS[obj.parent.object] != PERMISSIONS[name]
}


def scrub(text: object, api_key: Optional[str] = None) -> str:
    """`text` with `api_key` and every key-looking token (`sk_…`, `rk_…`, `pk_…`) replaced by its masked form."""
    if text is None:
        return ""
    s = str(text)
    if api_key:
        for k in sorted({api_key, api_key.strip()}, key=len, reverse=True):
            if len(k) >= 4:
                s = s.replace(k, mask_key(k))
    return _scrub_tokens(s)


class ScrubbedStripeError(Exception):
    """Stand-in for the original exception, attached as `StripeLoadError.__cause__`: its type name, HTTP
    status, Stripe request id and scrubbed message, without the raw object (whose text may hold a key)."""

    def __init__(self, text: str, type_name: str = "", http_status: Optional[int] = None,
                 request_id: Optional[str] = None, code: Optional[str] = None):
        super().__init__(text)
        self.type_name = type_name
        self.http_status = http_status
        self.request_id = request_id
        self.code = code

    def __reduce__(self):
        return (type(self), (self.args[0], self.type_name, self.http_status, self.request_id, self.code))


class StripeLoadError(Exception):
    """A failed Stripe load. `str()` is one line naming the cause and the fix; no raw key anywhere.

    Attributes: `kind` ("authentication", "permission", "not_found", "rate_limited", "api_error",
    "connection", "invalid_request", "unexpected"), `status` (HTTP status or None), `request_id`
    (Stripe's `req_…` or None), `object_name`.
    """

    def __init__(self, message: str, kind: str, status: Optional[int] = None,
                 request_id: Optional[str] = None, object_name: Optional[str] = None):
        message = _scrub_tokens(_one_line(message))
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.request_id = request_id
        self.object_name = object_name

    def __reduce__(self):
        return (type(self), (self.message, self.kind, self.status, self.request_id, self.object_name))


# --------------------------------------------------------------------------------------------------


# What Stripe answers to a list of a product the account has not set up: "Your account is not set up to use
# Issuing. Please visit …", or for Treasury a 400 "Unrecognized request URL … (Hint: Have you onboarded to
# Treasury? …)" (the wordings Stripe's own sync engine skips on).
NOT_SET_UP_WORDS = re.compile(r"not set up to use|have you onboarded to", re.I)


def not_set_up(exc: BaseException, obj) -> Optional[str]:
    """Stripe's message (one line) when `exc` says the account does not use the product of catalog object `obj`
    (one with a `product`); None for any other error, which still fails the object (see also `not_offered`)."""
    if getattr(obj, "product", None) is None or not isinstance(exc, stripe.InvalidRequestError):
        return None
    if exc.http_status not in (400, 404):
        return None
    message = _one_line(scrub(exc.user_message or str(exc)))
    return message if NOT_SET_UP_WORDS.search(message) else None


def not_offered(exc: BaseException, obj) -> Optional[str]:
    """One line when the list itself is not served (a 404 that is not about a missing object): Stripe answers
    "Unrecognized request URL" for a list gated to accounts in a preview or another region, and a
    Stripe-compatible server for a list it does not implement. Only for the lists beyond the default load
    (`default_load`): a 404 on a default table still fails it, as a wrong STRIPE_API_BASE should."""
    if getattr(obj, "default_load", True) or getattr(exc, "http_status", None) != 404:
        return None
    if isinstance(exc, stripe.InvalidRequestError):
        if exc.code == "resource_missing":  # "No such account: …": a parent gone, not a list missing
            return None
    elif not isinstance(exc, stripe.APIError):  # a 404 page that is not Stripe's JSON
        return None
    said = _clip(scrub(getattr(exc, "user_message", None) or str(exc)))
    return f"this server does not offer {_list_path(obj)} (404: {said})"


def _clip(text: str, limit: int = 160) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _first_sentence(text: str) -> str:
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    return m.group(1) if m else text


def _stripe_message(exc: BaseException, api_key: Optional[str]) -> str:
    msg = getattr(exc, "user_message", None) if isinstance(exc, stripe.StripeError) else None
    if msg is None:
        msg = str(exc)
    return _clip(scrub(msg, api_key))


def _list_path(obj) -> str:
    """The list an object is read from: a child's is under its parent (/v1/customers/{id}/payment_methods)."""
    return obj.parent.path_template if obj.parent else obj.path


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?…" else text + "."


def _req(request_id: Optional[str]) -> str:
    return f" (Stripe request id {request_id})" if request_id else ""


def _rate_hint(api_key: Optional[str]) -> str:
    if api_key and _VALID_KEY_RE.match(api_key):
        mode = key_mode(api_key)
        return f" (Stripe allows about {GLOBAL_RATE_LIMITS[mode]} requests/s per account in {mode} mode)"
    return ""


_HOST_RES = (
    re.compile(r"host='([^']+)',\s*port=(\d+)"),
    re.compile(r"https?://([A-Za-z0-9.\-\[\]:]+)"),
)
_CONN_REASONS = (
    ("refused", "connection refused"),
    ("timed out", "timed out"),
    ("timeout", "timed out"),
    ("name or service not known", "DNS lookup failed"),
    ("nodename nor servname", "DNS lookup failed"),
    ("temporary failure in name resolution", "DNS lookup failed"),
    ("getaddrinfo failed", "DNS lookup failed"),
    ("certificate", "TLS certificate verification failed"),
    ("ssl", "TLS error"),
    ("reset by peer", "connection reset"),
    ("remotedisconnected", "connection closed by the server"),
    ("connection aborted", "connection closed by the server"),
)


def _connection_details(text: str) -> tuple[Optional[str], Optional[str]]:
    host = None
    for rx in _HOST_RES:
        m = rx.search(text)
        if m:
            host = f"{m.group(1)}:{m.group(2)}" if m.re.groups == 2 else m.group(1)
            break
    low = text.lower()
    reason = next((label for needle, label in _CONN_REASONS if needle in low), None)
    return host, reason


def _kind(exc: BaseException, status: Optional[int], code: Optional[str]) -> str:
    if not isinstance(exc, stripe.StripeError):
        return "unexpected"
    if isinstance(exc, stripe.AuthenticationError) or status == 401:
        return "authentication"
    if isinstance(exc, stripe.PermissionError) or status == 403:
        return "permission"
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return "rate_limited"
    if status == 404 or code == "resource_missing":
        return "not_found"
    if isinstance(exc, stripe.APIConnectionError):
        return "connection"
    if isinstance(exc, stripe.InvalidRequestError) or (status is not None and 400 <= status < 500):
        return "invalid_request"
    return "api_error"


def explain(exc: BaseException, object_name: str, api_key: Optional[str] = None) -> StripeLoadError:
    """Translate `exc` (raised while loading `object_name` with `api_key`) into a `StripeLoadError`.

    The result carries a scrubbed `ScrubbedStripeError` as `__cause__` with the raw context suppressed;
    raise it plainly (`raise explain(...)`), not `from exc`.
    """
    if isinstance(exc, StripeLoadError):
        return exc
    status = getattr(exc, "http_status", None)
    status = status if isinstance(status, int) else None
    request_id = getattr(exc, "request_id", None) if isinstance(exc, stripe.StripeError) else None
    code = getattr(exc, "code", None) if isinstance(exc, stripe.StripeError) else None
    kind = _kind(exc, status, code)
    stripe_msg = _stripe_message(exc, api_key)
    said = _sentence(stripe_msg)
    obj = object_name
    masked = mask_key(api_key) if api_key else None
    req = _req(request_id)

    if kind == "authentication":
        if masked:
            message = (
                f"Stripe rejected the API key {masked} ({status or 401} Invalid API Key) while loading '{obj}': "
                f"it is wrong, revoked, expired, or for the other mode (test keys start sk_test_/rk_test_, "
                f"live keys sk_live_/rk_live_). Issue a new key in {DASHBOARD_KEYS} and set STRIPE_API_KEY."
            )
        else:
            message = (
                f"Stripe received no valid API key ({status or 401}) while loading '{obj}'. Set STRIPE_API_KEY "
                f"(api_key={{STRIPE_API_KEY}} in the stripe:// address) to a secret or restricted key from "
                f"{DASHBOARD_KEYS}."
            )
    elif kind == "permission":
        if "access to account" in stripe_msg.lower():
            message = (
                f"Stripe refused access to the connected account while loading '{obj}' (403 Forbidden): the key"
                f"{' ' + masked if masked else ''} has no access to the account in stripe_account, or it does not exist. Check the "
                f"stripe_account parameter (acct_…) or use a key of the platform that owns that account."
            )
        else:
            perm = PERMISSIONS.get(obj)
            extra = _EXTRA_PERMISSION.get(obj)
            label = f"'{perm}'" + (f" (and '{extra}')" if extra else "") if perm else f"the read permission for '{obj}'"
            grant = (perm + (f" and {extra}" if extra else "")) if perm else f"read access to {obj}"
            rak = re.search(r"'(rak_[a-z0-9_]+)'", stripe_msg)
            asks = f"; Stripe asks for {rak.group(1)}" if rak else ""
            restricted = bool(api_key) and api_key.strip().startswith("rk_")
            key_part = f"the {'restricted ' if restricted else ''}key {masked}" if masked else "the API key"
            message = (
                f"Stripe refused to list '{obj}' (403 Forbidden): {key_part} lacks the {label} permission{asks}. "
                f"Edit the restricted key's permissions in {DASHBOARD_KEYS} (grant {grant}) or use a secret "
                f"(sk_) key."
            )
    elif kind == "not_found":
        detail = _first_sentence(stripe_msg) if isinstance(exc, stripe.InvalidRequestError) else ""
        detail = f": {_clip(detail, 120).rstrip('.')}" if detail else ""
        if code == "resource_missing":
            message = (
                f"No such resource for '{obj}' (404 resource_missing{detail}): an object was deleted while the load "
                f"ran, or belongs to another account or mode. Re-run the load; if it persists, check stripe_account "
                f"and that the key's mode (test/live) matches the data{req}."
            )
        elif not isinstance(exc, stripe.InvalidRequestError) and obj in CATALOG:
            message = (
                f"No such resource for '{obj}' (404 Not Found, and the answer is not a Stripe error): the server at "
                f"api_base does not serve {_list_path(CATALOG[obj])}: it is not the Stripe API, or a Stripe-compatible "
                f"server without this list. Fix or drop api_base, or leave '{obj}' out of the selection{req}."
            )
        elif obj in CATALOG:
            message = (
                f"No such resource for '{obj}' (404 Not Found{detail}). Use singular names from the supported "
                f"objects table; if api_base is set, check that it points at the Stripe API (or its emulator), "
                f"not another server{req}."
            )
        else:
            guess = suggest_object(obj)
            hint = f" (did you mean '{guess}'?)" if guess else ""
            message = (
                f"No such resource for '{obj}' (404 Not Found{detail}). Use singular names from the supported "
                f"objects table{hint}; if api_base is set, check that it points at the Stripe API{req}."
            )
    elif kind == "rate_limited":
        headers = getattr(exc, "headers", None) or {}
        said_no = any(k.lower() == "stripe-should-retry" and str(v).lower() == "false" for k, v in headers.items())
        spent = "Stripe said not to retry (Stripe-Should-Retry: false)" if said_no else "the retry budget is spent"
        message = (
            f"Stripe kept answering 429 Too Many Requests while loading '{obj}' and {spent}"
            f"{_rate_hint(api_key)}. Lower max_requests_per_second on the Stripe resource, or stagger schedules "
            f"and limit parallel loads with the stripe_api concurrency pool in dagster.yaml{req}."
        )
    elif kind == "connection":
        host, reason = _connection_details(scrub(str(exc), api_key))
        at = f" at {host}" if host else ""
        why = f" ({reason})" if reason else ""
        message = (
            f"Could not connect to the Stripe API{at} while loading '{obj}'{why}, even after retries. Check "
            f"network, proxy and firewall access to https://api.stripe.com, or, with api_base set, that the "
            f"server or emulator there is running{req}."
        )
    elif kind == "api_error":
        if status is not None and status >= 500:
            message = (
                f"Stripe answered {status} (server error) while loading '{obj}', even after retries: a problem on "
                f"Stripe's side. Re-run later and check status.stripe.com"
                + (f"; if it persists, give Stripe support request id {request_id}." if request_id else ".")
            )
        else:
            shown = f" {status}" if status else ""
            message = (
                f"Stripe sent an unexpected{shown} response while loading '{obj}': {said} Check that "
                f"api_base (if set) points at the Stripe API{req}."
            )
    elif kind == "invalid_request":
        param = getattr(exc, "param", None)
        what = ", ".join(p for p in (str(status) if status else "", code or "", f"param {param}" if param else "") if p)
        message = (
            f"Stripe rejected the request for '{obj}' ({what or 'invalid request'}): {said} The loader "
            f"sent parameters this account or API version does not accept; report it with the request id"
            f"{req}."
        )
    elif getattr(exc, "says_what_to_do", False):  # the package's own one-line errors (a full spool disk): whole
        message = f"Loading '{obj}' failed: {_one_line(scrub(str(exc), api_key))}"
    else:  # unexpected, non-Stripe
        message = f"Loading '{obj}' failed: {type(exc).__name__}: {stripe_msg or '(no message)'}"

    err = StripeLoadError(message, kind=kind, status=status, request_id=request_id, object_name=obj)
    cause = ScrubbedStripeError(
        f"{type(exc).__module__}.{type(exc).__qualname__}: {_one_line(scrub(str(exc), api_key))}",
        type_name=type(exc).__name__,
        http_status=status,
        request_id=request_id,
        code=code,
    )
    err.__cause__ = cause
    err.__suppress_context__ = True
    return err
