"""Stripe Connect, without Dagster: which accounts a platform key reaches, and how their rows are kept apart.

A platform loads each connected account by sending `Stripe-Account: acct_…` with its own key
(docs.stripe.com/connect/authentication). All accounts share one table per object; every row carries
`stripe_account`, and the platform's own data carries the platform's id (`GET /v1/account`).

The merge key is `(stripe_account, id)` for every object, not only where Stripe lets users choose ids
(coupons: `SUMMER25` can exist in two accounts; products and plans also accept a chosen `id`). One rule
for all objects means no catalog row can be wrong about it, and it keeps each account's rows its own:
a `replace` or a change applied for one account can never touch another account's row with the same id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

from ..source.catalog import StripeObject
from .fetch import iter_pages

if TYPE_CHECKING:
    from ..source.client import StripeApi
# stripe-python is imported by the functions that make requests: the wiring needs this module's names to
# build definitions, which must not import the SDK (tests/test_definitions_imports.py).

ACCOUNT_COLUMN = "stripe_account"


def merge_key(obj: StripeObject, account: Optional[str]) -> Union[str, tuple[str, ...]]:
    """The columns a row is identified by: the object's key, plus the account when loading per account."""
    return (ACCOUNT_COLUMN, *obj.key_columns) if account else obj.merge_key


def tag(objects: list, account: str) -> list:
    """Stamp each object with the account it was read from (Stripe's objects have no such field)."""
    for o in objects:
        o[ACCOUNT_COLUMN] = account
    return objects


def own_account_id(api: "StripeApi") -> str:
    """The id of the account the key belongs to (the platform), from `GET /v1/account`."""
    return str(api.list_page("/v1/account", {})["id"])


def connected_account_ids(api: "StripeApi") -> list[str]:
    """Every account connected to the platform, newest first (`GET /v1/accounts`, all pages)."""
    return [str(a["id"]) for page in iter_pages(api, "/v1/accounts", {}) for a in page]


def access_problem(api: "StripeApi", account: str) -> Optional[str]:
    """None if the platform may read `account` (one `GET /v1/account` with `Stripe-Account`), else one line.

    Checked before any object is read, so a revoked account fails once, not once per object.
    """
    import stripe

    from ..source.config import _one_line
    from ..source.errors import scrub

    try:
        api.list_page("/v1/account", {})
        return None
    except stripe.PermissionError as exc:
        said = _one_line(scrub(getattr(exc, "user_message", None) or str(exc), api.api_key))[:200]
        return (
            f"Stripe refused access to connected account {account} (403 Forbidden: {said}). The account revoked "
            f"the platform's access or no longer exists: reconnect it, or delete its partition '{account}'."
        )
    except stripe.AuthenticationError:
        raise  # the platform key itself is wrong: every account fails the same way, explained by the caller
