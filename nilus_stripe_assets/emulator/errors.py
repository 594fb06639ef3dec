"""Stripe error responses (`{"error": {...}}` bodies with Stripe's messages)."""

from __future__ import annotations

from typing import Optional

import orjson

from .model import ACCOUNT_ID


class StripeError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: Optional[str] = None,
                 param: Optional[str] = None, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status, self.headers = status, headers
        error = {"message": message, "type": type}
        if code:
            error["code"] = code
        if param:
            error["param"] = param
        self.body = orjson.dumps({"error": error})


def invalid(message: str, param: Optional[str] = None, code: Optional[str] = None) -> StripeError:
    return StripeError(400, message, code=code, param=param)


def no_such(object_type: str, oid: str, param: Optional[str] = None, status: int = 400) -> StripeError:
    return StripeError(status, f"No such {object_type}: '{oid}'", code="resource_missing", param=param)


def unrecognized(method: str, path: str) -> StripeError:
    return StripeError(404, f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we "
                            "can help at https://support.stripe.com/.")


def missing_key() -> StripeError:
    return StripeError(401, "You did not provide an API key. You need to provide your API key in the Authorization "
                            "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                            "https://stripe.com/docs/api#authentication for details, or we can help at "
                            "https://support.stripe.com/.")


def invalid_key(masked: str) -> StripeError:
    return StripeError(401, f"Invalid API Key provided: {masked}")


def permission(masked: str, name: str) -> StripeError:
    return StripeError(403, f"The provided key '{masked}' does not have the required permissions for this endpoint "
                            f"on account '{ACCOUNT_ID}'. Having the 'rak_{name}_read' permission would allow this "
                            "request to continue.", code="secret_key_required")


def rate_limited(reason: str, should_retry: Optional[bool]) -> StripeError:
    headers = [("Stripe-Rate-Limited-Reason", reason), ("Retry-After", "1")]
    if should_retry is not None:
        headers.append(("Stripe-Should-Retry", "true" if should_retry else "false"))
    return StripeError(429, "Request rate limit exceeded. Learn more about rate limits here "
                            "https://stripe.com/docs/rate-limits.", code="rate_limit", headers=tuple(headers))


def api_error() -> StripeError:
    return StripeError(500, "An unknown error occurred", type="api_error")


# What Stripe answers a list or retrieve of a product the account has not set up. Issuing's and Identity's
# messages are Stripe's own, as Stripe's sync engine logged them (stripe/sync-engine, source-stripe
# src-list-api.ts: the errors it skips); Treasury answers an "Unrecognized request URL" 400 with a hint
# (same source). Other products' wording is modelled on Issuing's: no verbatim source was found.
_NOT_SET_UP = {
    "issuing": "Your account is not set up to use Issuing. Please visit https://dashboard.stripe.com/issuing/overview "
               "to get started.",
    "identity": "Your account is not set up to use Identity. Please have an account admin visit "
                "https://dashboard.stripe.com/identity to get started.",
    "treasury": "Unrecognized request URL (GET: {path}). Please see https://stripe.com/docs or we can help at "
                "https://support.stripe.com/. (Hint: Have you onboarded to Treasury? You can learn more about the "
                "steps needed at https://stripe.com/docs/treasury/access)",
}


def not_set_up(product: str, path: str) -> StripeError:
    """Stripe's 400 for a request to a product the account does not use (`product`: e.g. "Issuing")."""
    template = _NOT_SET_UP.get(product.lower())
    if template is None:
        slug = product.lower().replace(" ", "-")
        template = (f"Your account is not set up to use {product}. Please visit https://dashboard.stripe.com/{slug} "
                    "to get started.")
    return StripeError(400, template.format(path=path))
