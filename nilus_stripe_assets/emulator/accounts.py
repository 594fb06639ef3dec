"""Stripe Connect in the emulator: a platform account plus connected accounts, each with its own data.

A request without `Stripe-Account` (or with the platform's own id) reads the platform's store; with a
connected account's id it reads that account's store, generated on first use from a seed derived from the
account id (so accounts hold different objects, and 50 accounts cost nothing until they are read). An id
that is not connected, or whose access was revoked, gets Stripe's 403 for the header. `GET /v1/accounts`
(platform only) lists the connected accounts and `GET /v1/account` returns the requesting account.

Without connected accounts (the default) the header is only counted, as before: the platform serves every
request, so single-account behaviour and speed are unchanged.
"""

from __future__ import annotations

import random
import threading
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import orjson

from .builders import account_object, connected_since
from .errors import StripeError, invalid, no_such
from .model import ACCOUNT, ACCOUNT_ID
from .store import Store

ACCOUNT_PATHS = ("/v1/account", "/v1/accounts")
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def connected_account_ids(n: int, seed: Union[int, str] = 42) -> list[str]:
    """`n` distinct, deterministic `acct_1…` ids (16 characters after `acct_`, like Stripe's)."""
    rng = random.Random(f"{seed}:accounts")
    out: list[str] = []
    while len(out) < n:
        aid = "acct_1" + "".join(rng.choice(_ALNUM) for _ in range(15))
        if aid not in out and aid != ACCOUNT_ID:
            out.append(aid)
    return out


def no_access(masked_key: str, account: str) -> StripeError:
    """Stripe's answer to a `Stripe-Account` the key may not act for (never connected, or access revoked)."""
    return StripeError(
        403,
        f"The provided key '{masked_key}' does not have access to account '{account}' (or that account does not "
        "exist). Application access may have been revoked.",
        code="account_invalid",
    )


class Accounts:
    """The platform's store, the connected accounts' stores (made lazily), and who may be read."""

    def __init__(self, platform: Store, make_store: Callable[[str], Store], connected: Sequence[str] = (),
                 now: int = 0):
        self.platform = platform
        self._make_store = make_store
        self.enabled = bool(connected)
        self._order = list(connected)
        # Connected over the last year, oldest first; list order is newest first like every Stripe list.
        self._created = connected_since(self._order, now)
        self._stores: dict[str, Store] = {}
        self.revoked: set[str] = set()
        self._lock = threading.Lock()
        self._platform_created = now - 86400 * (len(connected) + 30)

    @property
    def ids(self) -> list[str]:
        return list(self._order)

    def store_for(self, header: Optional[str], masked_key: str) -> Store:
        """The store a request reads; raises Stripe's 403 for an account the platform cannot act for."""
        if header is None or not self.enabled or header == ACCOUNT_ID:
            return self.platform
        store = self._stores.get(header)
        if store is not None and header not in self.revoked:
            return store
        if header not in self._created or header in self.revoked:
            raise no_access(masked_key, header)
        with self._lock:  # generated once, even when the first pages arrive concurrently
            store = self._stores.get(header)
            if store is None:
                store = self._stores[header] = self._make_store(header)
        return store

    def store(self, account: Optional[str]) -> Store:
        """For the control API: the platform's store (None) or a connected account's, even if revoked."""
        if account is None or account == ACCOUNT_ID:
            return self.platform
        if account not in self._created:
            raise KeyError(account)
        revoked, self.revoked = self.revoked, set()
        try:
            return self.store_for(account, "")
        finally:
            self.revoked = revoked

    def revoke(self, account: str, revoked: bool = True) -> None:
        if account not in self._created:
            raise KeyError(account)
        (self.revoked.add if revoked else self.revoked.discard)(account)

    # ---- /v1/account and /v1/accounts ------------------------------------------------------------
    def handle(self, path: str, header: Optional[str], params: Mapping) -> tuple[bytes, int]:
        """(body, objects) for `GET /v1/account` or `GET /v1/accounts`; the store check already passed."""
        if path == "/v1/account":
            if header is None or header == ACCOUNT_ID or not self.enabled:
                return orjson.dumps(account_object(ACCOUNT_ID, self._platform_created, 0, platform=True)), 1
            return orjson.dumps(self._object(header)), 1
        if header is not None and header != ACCOUNT_ID and self.enabled:
            # A connected account has no connected accounts of its own to list.
            raise StripeError(403, "Only Connect platforms can list connected accounts.")
        return self._list(params), 0

    def _object(self, aid: str) -> dict:
        """The connected account as the platform's store holds it (the catalog's `account` rows, which the
        control routes update and delete), else as first rendered."""
        if ACCOUNT and aid in self.platform.tables[ACCOUNT].data:
            return self.platform.fields(ACCOUNT, aid)
        return account_object(aid, self._created[aid], self._order.index(aid))

    def _listed(self, aid: str) -> bool:
        """Not revoked, and not deleted through the control routes."""
        return aid not in self.revoked and not (ACCOUNT and aid in self.platform.tables[ACCOUNT].deleted)

    def _list(self, params: Mapping) -> bytes:
        limit = int(params.get("limit") or 10)
        if not 1 <= limit <= 100:
            raise invalid("This value must be between 1 and 100.", "limit", "parameter_invalid_integer")
        newest_first = [aid for aid in reversed(self._order) if self._listed(aid)]
        after, before = params.get("starting_after"), params.get("ending_before")
        if after or before:
            cursor = after or before
            if cursor not in newest_first:
                raise no_such("account", cursor, param="starting_after" if after else "ending_before")
            i = newest_first.index(cursor)
            window = newest_first[i + 1:] if after else newest_first[:i][-limit:]
        else:
            window = newest_first
        page = window[:limit]
        has_more = len(window) > limit
        data = b",".join(orjson.dumps(self._object(aid)) for aid in page)
        return (b'{"object":"list","data":[' + data + b'],"has_more":' + (b"true" if has_more else b"false")
                + b',"url":"/v1/accounts"}')


def parse_ids(accounts: Union[None, int, Iterable[str]], seed: Union[int, str]) -> list[str]:
    """`accounts` as given to the emulator: a count of generated accounts, or explicit ids."""
    if accounts is None:
        return []
    if isinstance(accounts, int):
        return connected_account_ids(accounts, seed)
    ids = list(dict.fromkeys(accounts))
    bad = [a for a in ids if not a.startswith("acct_")]
    if bad:
        raise ValueError(f"connected account ids must start with acct_: {bad}")
    return ids
