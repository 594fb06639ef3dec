"""Change capture from Stripe's event stream: updates and deletes that a `created` cursor cannot see.

A `created` cursor finds new objects only: a paid invoice stays "draft", a refunded charge stays
unrefunded. Stripe records every change as an event whose `data.object` is the object's state after it.
`capture` reads `/v1/events?type=<object>.*` since the cursor into a spool, each object tagged with its
event's `created` and `type`; `warehouse.write(..., changes=ChangeSet(...))` then applies the newest state
per object in the same transaction as the load, and keeps `*.deleted` as a flag.

Stripe lists events for 30 days only. A cursor older than that cannot be trusted to see every change, so
`capture` reports it and the caller reloads the object in full instead of silently skipping changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .catalog import StripeObject
from .fetch import Window, iter_pages
from .spool import Spool
from .stripe_api import StripeApi
from .staging import EVENT_CREATED, EVENT_TYPE

EVENT_RETENTION_SECONDS = 30 * 86400
# Re-read this much before the cursor: events are applied idempotently (the newest state wins), so
# overlap costs nothing, while a gap would lose a change.
EVENTS_LOOKBACK_SECONDS = 300


def state_key(obj: StripeObject, table_name: str) -> str:
    return f"events_cursor:{table_name}:{obj.name}"


@dataclass
class Capture:
    spool_dir: Optional[str] = None
    files: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    kinds: dict[str, set[str]] = field(default_factory=dict)
    events: int = 0
    objects: int = 0
    cursor: Optional[int] = None  # newest event `created` seen (or the previous cursor)
    expired: bool = False  # the cursor is older than Stripe's 30-day event retention


def cursor_expired(cursor: int, now: int) -> bool:
    return cursor < now - EVENT_RETENTION_SECONDS + EVENTS_LOOKBACK_SECONDS


def _states(obj: StripeObject, event: dict) -> list[tuple[dict, dict]]:
    """The object states one event carries for `obj` (subscription events carry their items), each with
    the tag naming its event (kept out of the state's content hash)."""
    state = (event.get("data") or {}).get("object") or {}
    tag = {EVENT_CREATED: event["created"], EVENT_TYPE: event.get("type", "")}
    embedded = obj.parent.embedded_field if obj.parent else None
    if embedded:
        # e.g. customer.subscription.updated -> the subscription's items; a canceled subscription's
        # items are not deleted objects, so only their state is applied.
        items = (state.get(embedded) or {}).get("data") or []
        parent = {obj.parent.id_column: state.get("id")}
        item_tag = {EVENT_CREATED: event["created"], EVENT_TYPE: "item.updated"}
        return [({**item, **parent}, item_tag) for item in items]
    if not state.get("id"):
        return []
    return [(state, tag)]


def capture(api: StripeApi, obj: StripeObject, since: int, now: int, spool_root: Optional[str] = None) -> Capture:
    """Read `obj`'s events created at or after `since - lookback` into a spool."""
    result = Capture(cursor=since)
    if cursor_expired(since, now):
        result.expired = True
        return result
    spool = Spool(directory=spool_root, prefix=f"stripe-events-{obj.name}-")
    params = {"type": obj.events_type, **Window(gte=since - EVENTS_LOOKBACK_SECONDS).params()}
    try:
        for page in iter_pages(api, "/v1/events", params):
            states = [s for event in page for s in _states(obj, event)]
            result.events += len(page)
            result.objects += spool.write([state for state, _ in states], tags=[tag for _, tag in states])
            result.cursor = max(result.cursor or 0, max(int(e["created"]) for e in page))
    except BaseException:
        spool.finish()
        spool.cleanup()
        raise
    summary = spool.finish()
    result.files, result.fields, result.kinds = summary.files, summary.fields, summary.kinds
    result.spool_dir = str(spool.path)
    return result
