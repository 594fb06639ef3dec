"""Change capture from Stripe's event stream: updates and deletes that a `created` cursor cannot see.

A `created` cursor finds new objects only: a paid invoice stays "draft", a refunded charge stays
unrefunded. Stripe records every change as an event whose `data.object` is the object's state after it.

One `EventStream` per run reads `/v1/events` once for every object that captures changes, from the oldest
cursor any of them needs, and routes each event by the type of the object it carries
(`data.object.object`), never by its type's prefix: `customer.*` events also carry subscriptions, cards,
discounts and tax ids. Each object gets a spool of states tagged with the event's `created`, `type`, its
rank in the list (`ListOrder`: `created` has whole seconds, so within a second the list's order decides) and
the fields the payload carries; `warehouse.write(..., changes=ChangeSet(...))` applies the newest state
per object in the same transaction as the load (a deletion wins its second) and keeps `*.deleted` as a
flag. A state rendered in another API version than the pinned one is never applied as current (`versions.py`):
`complete` reads such objects again, in the pinned version, once the read is done. Children follow their parent's events where
Stripe embeds them (a subscription's `items`; the rest from `/v1/subscription_items` when `has_more`).
The `event` table, when loaded incrementally, is filled from the same read.

Stripe lists events for 30 days only. A cursor older than that cannot be trusted to see every change, so
the object's capture is marked expired and the caller reloads the object in full instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from .accounts import tag as stamp_account
from ..source.catalog import STRIPE_OBJECT_TYPE, StripeObject
from ..staging import disk as spool_disk
from .fetch import Window, iter_pages, iter_pages_created
from ..staging.spool import Spool, SpoolSummary
from ..staging.parquet import EVENT_CREATED, EVENT_PRESENT, EVENT_SEQ, EVENT_TYPE
from ..source.shapes import api_version
from .versions import REREAD_RANK, Newest, Rereads, source_of

if TYPE_CHECKING:  # annotations only: stripe (and requests) load when a run first makes a request
    from ..source.client import StripeApi

EVENT_RETENTION_SECONDS = 30 * 86400
# Re-read this much before the cursor: events are applied idempotently (the newest state wins), so
# overlap costs nothing, while a gap would lose a change.
EVENTS_LOOKBACK_SECONDS = 300


def state_key(obj: StripeObject, table_name: str) -> str:
    return f"events_cursor:{table_name}:{obj.name}"


def cursor_expired(cursor: int, now: int) -> bool:
    return cursor < now - EVENT_RETENTION_SECONDS + EVENTS_LOOKBACK_SECONDS


def carried_type(obj: StripeObject) -> str:
    """The `data.object.object` of the events that carry `obj`'s states (the parent's, for embedded children)."""
    if _embedded(obj):
        return STRIPE_OBJECT_TYPE[obj.parent.object]
    return STRIPE_OBJECT_TYPE[obj.name]


def carried_types(obj: StripeObject) -> set[str]:
    """Every `data.object.object` that carries `obj`'s states: an embedded child also has events of its own
    where Stripe sends them (`application_fee.refund.updated` carries a `fee_refund`)."""
    return {carried_type(obj), STRIPE_OBJECT_TYPE[obj.name]} if obj.event_types else {carried_type(obj)}


def _embedded(obj: StripeObject, carried: Optional[dict] = None) -> bool:
    """Whether `obj`'s states come embedded in its parent (in `carried`, when given: the event's object)."""
    if obj.parent is None or not obj.parent.embedded_field:
        return False
    return carried is None or carried.get("object") == STRIPE_OBJECT_TYPE[obj.parent.object]


def _name_parent(obj: StripeObject, capture: Capture, event: dict, carried: dict) -> None:
    """Note the parent an event names for `obj`'s re-list (`Parent.relist_on`); a deleted parent is gone."""
    for kind, id_field in obj.relist_on:
        parent = carried.get(id_field) if carried.get("object") == kind else None
        if isinstance(parent, str) and parent:
            if id_field == "id" and str(event.get("type", "")).endswith(".deleted"):
                capture.gone.add(parent)
            else:
                capture.parents.add(parent)


@dataclass
class Capture:
    """One object's share of the stream."""

    since: int  # the object's events cursor
    spool_dir: Optional[str] = None
    files: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    kinds: dict[str, set[str]] = field(default_factory=dict)
    events: int = 0  # events routed to this object
    objects: int = 0  # object states spooled
    cursor: Optional[int] = None  # where the next run resumes (committed with the rows)
    expired: bool = False  # the cursor is older than Stripe's 30-day event retention
    # Objects whose newest event was rendered in another API version, read again in the pinned one
    # (`versions.py`; None until `EventStream.complete`).
    reread_other_version: Optional[int] = None
    # Children re-listed by parent (`Parent.relist_on`): the parents the events name, and those deleted since
    # (their lists are gone; their rows stay as they are).
    parents: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)


class ListOrder:
    """Each event's rank in time as the list gives it, 0 for the newest: within one second (Stripe's `created`
    has no finer grain) only the list's order tells which of two events is the newer. Stripe lists newest
    first; a server that lists oldest first (some Stripe fakes do) is recognised from the `created` values
    and its positions are counted backwards."""

    def __init__(self) -> None:
        self.seen = 0
        self.oldest_first: Optional[bool] = None  # unknown while every event read shares one second
        self._last: Optional[int] = None

    def page(self, events: list) -> None:
        """Look at a page before ranking its events: its `created` values may reveal the direction."""
        if self.oldest_first is None and events:
            times = [int(e["created"]) for e in events]
            first = times[0] if self._last is None else self._last
            if first != times[-1]:
                self.oldest_first = times[-1] > first
            self._last = times[-1]

    def rank(self) -> int:
        """The next event's rank: smaller is newer."""
        self.seen += 1
        return -self.seen if self.oldest_first else self.seen


@dataclass
class _Subscriber:
    obj: StripeObject
    capture: Capture
    spool: Spool
    newest: Newest = field(default_factory=Newest)
    finished: bool = False

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            summary = self.spool.finish()
            self.capture.files, self.capture.fields, self.capture.kinds = summary.files, summary.fields, summary.kinds


class EventStream:
    """One read of `/v1/events` for a run: `subscribe` objects and `keep_events`, then `read` once.

    Connect: one stream per account (`api` sends its `Stripe-Account`); every state and event row it
    spools is stamped with `account`, as the rows read from the lists are."""

    def __init__(self, api: StripeApi, now: int, spool_root: Optional[str] = None, account: Optional[str] = None):
        self.api, self.now, self.spool_root, self.account = api, now, spool_root, account
        self.version = api_version()  # what the package reads in; events of other versions are not applied
        self._rereads = Rereads()
        self._subscribers: list[_Subscriber] = []
        self._event_rows: Optional[Spool] = None
        self._event_rows_since: Optional[int] = None
        self.events = 0  # events read
        self.seconds = 0.0
        self.started_at = now
        self.event_rows: Optional[SpoolSummary] = None

    def subscribe(self, obj: StripeObject, since: int) -> Capture:
        capture = Capture(since=since, cursor=since)
        if cursor_expired(since, self.now):
            capture.expired = True
            return capture
        spool = Spool(directory=self.spool_root, prefix=f"stripe-events-{obj.name}-")
        capture.spool_dir = str(spool.path)
        self._subscribers.append(_Subscriber(obj, capture, spool))
        return capture

    def keep_events(self, since: Optional[int]) -> str:
        """Also spool the events themselves (created at or after `since`; None: all Stripe still lists)
        for the `event` table; returns the spool's folder."""
        self._event_rows = Spool(directory=self.spool_root, prefix="stripe-event-")
        self._event_rows_since = since
        return str(self._event_rows.path)

    @property
    def needed(self) -> bool:
        return bool(self._subscribers) or self._event_rows is not None

    def _params(self) -> dict:
        starts = [s.capture.since - EVENTS_LOOKBACK_SECONDS for s in self._subscribers]
        if self._event_rows is not None:
            starts.append(self._event_rows_since)
        gte = None if None in starts else min(starts)
        params = Window(gte=gte).params()
        types = {s.obj.events_type for s in self._subscribers}
        if self._event_rows is None and len(types) == 1 and None not in types:
            # One object's events only: let Stripe filter (routing by object type still decides).
            params["type"] = types.pop()
        return params

    def read(self) -> None:
        """Read and route every event; raises Stripe's errors unchanged. Each subscriber's states are ready
        once `complete` has run for its capture."""
        routes: dict[str, list[_Subscriber]] = {}
        for sub in self._subscribers:
            for kind in [kind for kind, _ in sub.obj.relist_on] or carried_types(sub.obj):
                routes.setdefault(kind, []).append(sub)
        self.started_at = int(time.time())
        started = time.perf_counter()
        newest: Optional[int] = None
        order = ListOrder()
        try:
            # Events older than a subscriber's start are skipped below, so a server without the filter is fine.
            for page in iter_pages_created(self.api, "/v1/events", self._params()):
                self.events += len(page)
                order.page(page)
                if self._event_rows is not None:
                    since = self._event_rows_since
                    kept = [e for e in page if since is None or int(e["created"]) >= since]
                    # Stamped copies: the routing below reads the events as Stripe sent them.
                    self._event_rows.write(stamp_account([dict(e) for e in kept], self.account) if self.account else kept)
                for event in page:
                    rank = order.rank()
                    carried = (event.get("data") or {}).get("object") or {}
                    for sub in routes.get(carried.get("object") or "", ()):
                        if int(event["created"]) < sub.capture.since - EVENTS_LOOKBACK_SECONDS:
                            continue
                        sub.capture.events += 1
                        if sub.obj.relist_on:
                            _name_parent(sub.obj, sub.capture, event, carried)
                            continue
                        states = self._route(sub, event, carried, rank)
                        if self.account:  # part of the state (and its content hash), as on listed rows
                            stamp_account([state for state, _ in states], self.account)
                        # Tags name the event and the payload's fields, outside the states' content hash.
                        sub.capture.objects += sub.spool.write(
                            [state for state, _ in states], tags=[tag for _, tag in states]
                        )
                newest = max(newest or 0, max(int(e["created"]) for e in page))
        finally:
            if self._event_rows is not None:
                self.event_rows = self._event_rows.finish()
            self.seconds = time.perf_counter() - started
        for sub in self._subscribers:
            # Every event older than the read's start (less the lookback) has been seen, whatever its type,
            # so a quiet object's cursor moves on too instead of expiring after 30 days.
            sub.capture.cursor = max(sub.capture.since, newest or 0, self.started_at - EVENTS_LOOKBACK_SECONDS)

    def _route(self, sub: _Subscriber, event: dict, carried: dict, rank: int) -> list[tuple[dict, dict]]:
        """The states of one event to apply for `sub`: all it carries when rendered in the pinned version; from
        another version, only a deletion, reduced to the object's key (the rest waits for `complete`)."""
        obj, embedded = sub.obj, _embedded(sub.obj, carried)
        current = event.get("api_version") == self.version
        deletion = str(event.get("type", "")).endswith(".deleted")
        if carried.get("id"):
            # A parent's deletion is not its children's (a canceled subscription keeps its items): re-read it.
            sub.newest.see(str(carried["id"]), int(event["created"]), deletion and not embedded, rank, current)
        if current:
            return self._states(obj, event, carried, rank)
        if deletion and not embedded and carried.get("id"):
            return self._states(obj, event, {"id": carried["id"], "object": carried.get("object")}, rank)
        return []

    def complete(self, capture: Capture, api: Optional[StripeApi] = None) -> None:
        """Finish one object's share after `read`: read again, in the pinned version, the objects whose newest
        event was rendered in another one (through `api`, the object's own handle, so its requests and
        failures are its own), then close its spool. Raises Stripe's errors unchanged."""
        sub = next(s for s in self._subscribers if s.capture is capture)
        try:
            ids = sub.newest.to_reread()
            capture.reread_other_version = len(ids)
            if ids:
                at = int(time.time())  # the states read below are at least this new
                source = source_of(sub.obj)
                found = self._rereads.current(api or self.api, source, ids)
                states = [state for current in found
                          for state in self._states(sub.obj, {"created": at, "type": f"{current.get('object')}.reread"},
                                                    current, REREAD_RANK, api)]
                if self.account:
                    stamp_account([state for state, _ in states], self.account)
                capture.objects += sub.spool.write([state for state, _ in states], tags=[tag for _, tag in states])
        finally:
            sub.finish()

    def _states(self, obj: StripeObject, event: dict, carried: dict, rank: int,
                api: Optional[StripeApi] = None) -> list[tuple[dict, dict]]:
        """The object states one event carries for `obj`, each with its tag: the event's `created`, `type`
        and `rank` in the list (see `ListOrder`), and the fields the payload has. `api` reads the children
        beyond an embedded page (default: the stream's)."""
        created = int(event["created"])
        if _embedded(obj, carried):
            embedded = obj.parent.embedded_field
            # e.g. customer.subscription.updated -> the subscription's items; a canceled subscription's
            # items are not deleted objects, so only their state is applied.
            # Not every child class declares its parent's id (stripe.CreditNoteLineItem has no `credit_note`):
            # set it, as the fetch engine does for children it lists.
            parent = {obj.parent.id_column: carried.get("id")}
            items = [{**item, **parent} for item in self._embedded_items(obj, carried, embedded, api or self.api)]
            return [(item, {EVENT_CREATED: created, EVENT_TYPE: "item.updated", EVENT_SEQ: rank,
                            EVENT_PRESENT: list(item)})
                    for item in items]
        if not carried.get("id"):
            return []
        tag = {EVENT_CREATED: created, EVENT_TYPE: event.get("type", ""), EVENT_SEQ: rank, EVENT_PRESENT: list(carried)}
        return [(carried, tag)]

    def _embedded_items(self, obj: StripeObject, carried: dict, embedded: str, api: StripeApi) -> list[dict]:
        listed = carried.get(embedded) or {}
        items = list(listed.get("data") or [])
        relation = obj.parent
        if listed.get("has_more") and carried.get("id"):
            # Stripe embeds one page (10 entries); the rest are at the child list (today's state).
            if relation.param:
                path, params = relation.path_template, {relation.param: carried["id"]}
            else:
                path, params = relation.path_template.format(id=carried["id"]), {}
            after = items[-1]["id"] if items else None
            for page in iter_pages(api, path, params, after):
                items.extend(page)
        return items

    def cleanup(self) -> None:
        for sub in self._subscribers:
            sub.finish()  # closes its files, if `complete` never ran (the object failed before)
            spool_disk.remove(str(sub.spool.path))
        if self._event_rows is not None:
            spool_disk.remove(str(self._event_rows.path))


__all__ = ["Capture", "EventStream", "ListOrder", "carried_type", "carried_types", "cursor_expired", "state_key"]
