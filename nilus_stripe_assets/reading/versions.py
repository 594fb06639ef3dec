"""Events rendered in another Stripe API version than the one the package reads in are never applied as current.

Every request sends the version stripe-python pins (`source.shapes.api_version()`), so every list comes back
in it. An event's `data.object`, though, is rendered in the version the account had when the event happened
(`event.api_version`): in an older one, fields that moved since arrive under their old names (before
`2025-03-31.basil` an invoice named its `subscription` at the top, not under `parent`), so applying such a
payload would silently keep a stale value or add a column that no current object has.

So a state in another version is not applied. A deletion still is (an object is deleted in every version;
only its key is kept from the payload). Any other change makes the object be read again in the pinned
version, once however many of its events the read saw, and not at all when its newest event is in the
pinned version or deletes it: one `GET <path>/<id>` per object, or one list request per 100 objects where
the list takes `ids` (products); children embedded in their parent (invoice lines, subscription items)
come with their parent's re-read. An object Stripe no longer has (404, or a `deleted` stub) is left to
its deletion event.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence

from ..source.catalog import CATALOG, StripeObject

if TYPE_CHECKING:  # annotations only: stripe (and requests) load when a run first makes a request
    from ..source.client import StripeApi

# A re-read state is newer than every event of the read: below every rank `ListOrder` gives (1, 2, ... for a
# newest-first list, -1, -2, ... for one read oldest first).
REREAD_RANK = -(2**62)
IDS_PER_LIST = 100  # `ids` of one list request: a page of at most 100 holds them all
REREAD_WORKERS = 8


def source_of(obj: StripeObject) -> StripeObject:
    """The object whose read gives `obj`'s current state: its parent for children embedded in it."""
    if obj.parent is not None and obj.parent.embedded_field:
        return CATALOG[obj.parent.object]
    return obj


@dataclass
class Newest:
    """Per object id, what its newest event of the read was (by second, then a deletion, then list rank)."""

    _by_id: dict[str, tuple[tuple[int, bool, int], bool]] = field(default_factory=dict)

    def see(self, oid: str, created: int, deletion: bool, rank: int, current: bool) -> None:
        order = (created, deletion, -rank)
        known = self._by_id.get(oid)
        if known is None or order > known[0]:
            self._by_id[oid] = (order, current)

    def to_reread(self) -> list[str]:
        """Objects whose newest event is a change rendered in another version."""
        return [oid for oid, ((_, deletion, _), current) in self._by_id.items() if not current and not deletion]


class Rereads:
    """Objects read again in the pinned version, shared by the objects of one events read: an invoice's
    re-read serves both `invoice` and `invoice_line_item`, even while both ask at once (one request)."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], Future] = {}
        self._lock = threading.Lock()

    def current(self, api: StripeApi, source: StripeObject, ids: Sequence[str]) -> list[dict]:
        """The current state of each of `ids` that Stripe still has, in the pinned version."""
        mine, waits = [], []
        with self._lock:
            for oid in ids:
                pending = self._found.get((source.name, oid))
                if pending is None:  # nobody has asked: this caller reads it
                    pending = self._found[(source.name, oid)] = Future()
                    mine.append(oid)
                waits.append(pending)
        try:
            found = _read(api, source, mine) if mine else {}
        except BaseException as exc:
            for oid in mine:
                self._found[(source.name, oid)].set_exception(exc)
            raise
        for oid in mine:
            self._found[(source.name, oid)].set_result(found.get(oid))
        return [state for state in (pending.result() for pending in waits) if state is not None]


def _read(api: StripeApi, source: StripeObject, ids: Sequence[str]) -> dict[str, dict]:
    if source.list_by_ids and len(ids) > 1:
        import stripe

        chunks = [list(ids[i:i + IDS_PER_LIST]) for i in range(0, len(ids), IDS_PER_LIST)]
        try:
            pages = _each(lambda chunk: api.list_page(
                source.path, {**source.list_params, "ids": chunk, "limit": IDS_PER_LIST})["data"], chunks)
            wanted = set(ids)
            return {o["id"]: o for page in pages for o in page if o.get("id") in wanted}
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 400:
                raise
            # A Stripe-compatible server without the `ids` parameter (localstripe): one request per object.
    return {o["id"]: o for o in _each(lambda oid: _retrieve(api, source, oid), ids) if o and not o.get("deleted")}


def _retrieve(api: StripeApi, source: StripeObject, oid: str) -> Optional[dict]:
    import stripe

    try:
        return api.retrieve(f"{source.path}/{oid}")
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:  # gone since: its deletion event says so
            return None
        raise


def _each(read, items: Sequence) -> list:
    if len(items) <= 1:
        return [read(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(REREAD_WORKERS, len(items)), thread_name_prefix="stripe-reread") as pool:
        return list(pool.map(read, items))


__all__ = ["Newest", "REREAD_RANK", "Rereads", "source_of"]
