"""In-memory object store: per object a list of (created, id) keys sorted ascending (list order, newest
first, is that list read backwards), the JSON bytes per id, and per-parent key lists for child objects.

Pages are found with bisect (created filters, cursors) and slicing; objects are never re-serialized on
read. Mutations re-serialize the one object they touch and append a Stripe event. Lazily generated
objects (`lazy.LazyTable`, same interface) are rendered on read; their updates are an overlay, and the
events of those updates keep the overlay's fields and render when read (`_LazyEvent`).
"""

from __future__ import annotations

import random
import threading
import time
from bisect import bisect_left, insort
from typing import Callable, Iterable, Optional

import orjson

from ..source.catalog import CATALOG
from .builders import ALNUM, RandomContext, build, coupon_ids, declared, new_ids, settled_amount
from .data import Record, event_bytes
from . import versions
from .lazy import LazySource, LazyTable
from .model import API_VERSION, ATTR_FIELD, EMBEDDED, EMBEDDED_PAGE, NAMES, OBJECT_TYPE, PARENT, SHARED_WITH, VIA_PARENT
from .model import event_type, natural_ids
from .model import embedded_list

Key = tuple[int, str]


def _dumps(obj) -> bytes:
    return memoryview(orjson.dumps(obj)).tobytes()  # exact-size copy (orjson over-allocates)


class Table:
    """One object type."""

    __slots__ = ("name", "keys", "data", "created", "attr", "children", "deleted")

    def __init__(self, name: str, records: Iterable[Record] = ()):
        self.name = name
        recs = sorted(records, key=lambda r: (r[0], r[1]))
        self.keys: list[Key] = [(c, oid) for c, oid, _, _ in recs]
        self.data: dict[str, bytes] = {oid: body for _, oid, body, _ in recs}
        self.created: dict[str, int] = {oid: c for c, oid, _, _ in recs}
        self.attr: dict[str, Optional[str]] = {oid: a for _, oid, _, a in recs} if name in ATTR_FIELD else {}
        self.children: Optional[dict[str, list[Key]]] = {} if name in PARENT else None
        if self.children is not None:
            for key in self.keys:  # already sorted, so each parent's list is too
                self.children.setdefault(self.attr[key[1]], []).append(key)
        self.deleted: dict[str, int] = {}  # id -> created, so cursors on deleted objects keep working

    def add(self, oid: str, created: int, body: bytes, attr: Optional[str]) -> None:
        key = (created, oid)
        insort(self.keys, key)
        self.data[oid], self.created[oid] = body, created
        if self.name in ATTR_FIELD:
            self.attr[oid] = attr
        if self.children is not None:
            insort(self.children.setdefault(attr, []), key)

    def remove(self, oid: str) -> None:
        key = (self.created[oid], oid)
        _discard(self.keys, key)
        if self.children is not None:
            _discard(self.children.get(self.attr[oid], []), key)
        del self.data[oid], self.created[oid]
        self.attr.pop(oid, None)

    def key_list(self, parent: Optional[str]) -> list[Key]:
        return self.keys if parent is None else (self.children or {}).get(parent, [])


def _key_of_served(table: "Table", keys: list[Key], served: str) -> str:
    """The store's key of the child in `keys` (one parent's) served under id `served`: with repeated line ids
    (`data.repeated_id`) a line's id is unique within its parent only, so the store keys it apart."""
    needle = b'"id":"' + served.encode() + b'"'
    for _, oid in keys:
        if needle in _bytes(table.data[oid]):
            return oid
    return served


def _discard(keys: list[Key], key: Key) -> None:
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        del keys[i]


def page(keys: list[Key], limit: int, lo: int, hi: int, after: Optional[int], before: Optional[int],
         pred: Optional[Callable[[str], bool]]) -> tuple[list[Key], bool]:
    """One page in list order (newest first) from ascending `keys[lo:hi]`.

    `after`: walk older than index `after` (exclusive upper bound); `before`: walk newer from index
    `before` (inclusive) and return the `limit` objects closest to the cursor. Returns (keys, has_more).
    """
    if before is not None:
        start = max(lo, before)
        if pred is None:
            end = min(hi, start + limit)
            out = keys[start:end] if start < end else []
            out.reverse()
            return out, end < hi
        out = []
        for i in range(start, hi):
            if pred(keys[i][1]):
                if len(out) == limit:
                    out.reverse()
                    return out, True
                out.append(keys[i])
        out.reverse()
        return out, False
    top = hi if after is None else min(hi, after)
    if pred is None:
        bottom = max(lo, top - limit)
        out = keys[bottom:top] if bottom < top else []
        out.reverse()
        return out, bottom > lo
    out = []
    for i in range(top - 1, lo - 1, -1):
        if pred(keys[i][1]):
            if len(out) == limit:
                return out, True
            out.append(keys[i])
    return out, False


def page_oldest_first(keys: list[Key], limit: int, lo: int, hi: int, cursor_at: Optional[int], cursor_present: bool,
                      backwards: bool, pred: Optional[Callable[[str], bool]]) -> tuple[list[Key], bool]:
    """One page in ascending order (how some Stripe fakes list, unlike Stripe) from ascending `keys[lo:hi]`.

    `cursor_at`: the cursor's index (insertion point if it is gone); `backwards` for `ending_before`.
    """
    if backwards:
        top = hi if cursor_at is None else min(hi, cursor_at)
        out = [k for k in keys[lo:top] if pred is None or pred(k[1])]
        return out[-limit:], len(out) > limit
    start = lo if cursor_at is None else max(lo, cursor_at + cursor_present)
    out = []
    for i in range(start, hi):
        if pred is None or pred(keys[i][1]):
            if len(out) == limit:
                return out, True
            out.append(keys[i])
    return out, False


class _LazyEvent:
    """An update event of a lazily generated object: its bytes are rendered when it is read."""

    __slots__ = ("table", "oid", "changed", "eid", "etype", "created", "extra", "version")

    def __init__(self, table: LazyTable, oid: str, changed: dict, eid: str, etype: str, created: int, extra: bytes,
                 version: str = API_VERSION):
        self.table, self.oid, self.changed = table, oid, changed
        self.eid, self.etype, self.created, self.extra, self.version = eid, etype, created, extra, version

    def __call__(self) -> bytes:
        body = self.table.render(self.oid, self.changed)
        if self.version != API_VERSION:
            body = _dumps(versions.render(orjson.loads(body), self.version))
        return event_bytes(self.eid, self.etype, self.created, body, self.extra, self.version)


def _bytes(body) -> bytes:
    return body if body.__class__ is bytes else body()


class CursorMissing(LookupError):
    """The starting_after/ending_before id is unknown."""


class StoreContext(RandomContext):
    """Builder context for objects created at runtime: references point at objects in the store."""

    def __init__(self, store: "Store", rng: random.Random):
        super().__init__(rng)
        self.store = store

    def pick(self, name: str) -> Optional[str]:
        keys = self.store.tables[name].keys
        return self.choice(keys)[1] if keys else None

    def obj(self, name: str) -> Optional[dict]:
        oid = self.pick(name)
        return orjson.loads(self.store.tables[name].data[oid]) if oid else None

    def settled(self, name: str) -> Optional[tuple[str, int]]:
        for _ in range(20):
            found = self.obj(name)
            money = settled_amount(name, found) if found else None
            if money:
                return money
        return None


class Store:
    def __init__(self, data: dict[str, list[Record]], seed: int = 42, clock: Callable[[], float] = time.time):
        self.tables: dict[str, Table] = {
            name: LazyTable(name, recs) if isinstance(recs, LazySource) else Table(name, recs)
            for name, recs in ((name, data.get(name, ())) for name in NAMES)}
        self.lock = threading.Lock()
        self.clock = clock
        self.ctx = StoreContext(self, random.Random(f"{seed}:runtime"))
        self._events_made = 0
        # The account's default API version, in which its events are rendered (objects read are in the
        # pinned one, as a client pinning it gets them).
        self.api_version = API_VERSION

    # ---- reads -------------------------------------------------------------------------------
    def list(self, name: str, limit: int, *, starting_after: Optional[str] = None,
             ending_before: Optional[str] = None, gte: Optional[int] = None, lte: Optional[int] = None,
             parent: Optional[str] = None, pred: Optional[Callable[[str], bool]] = None,
             oldest_first: bool = False) -> tuple[list[bytes], bool]:
        """A page of serialized objects (newest first, or oldest first if asked) and has_more. Raises CursorMissing."""
        with self.lock:
            table = self.tables[name]
            keys = table.key_list(parent)
            lo = 0 if gte is None else bisect_left(keys, (gte,))
            hi = len(keys) if lte is None else bisect_left(keys, (lte + 1,))
            after = before = None
            cursor = starting_after or ending_before
            if cursor is not None:
                if parent is not None and cursor not in table.created and cursor not in table.deleted:
                    cursor = _key_of_served(table, keys, cursor)
                created = table.created.get(cursor, table.deleted.get(cursor))
                if created is None:
                    raise CursorMissing(starting_after or ending_before)
                i = bisect_left(keys, (created, cursor))
                if starting_after is not None:
                    after = i
                else:
                    before = i + (i < len(keys) and keys[i][1] == cursor)
            if oldest_first:
                at = None if cursor is None else bisect_left(keys, (created, cursor))
                present = at is not None and at < len(keys) and keys[at][1] == cursor
                sel, has_more = page_oldest_first(keys, limit, lo, hi, at, present, ending_before is not None, pred)
            else:
                sel, has_more = page(keys, limit, lo, hi, after, before, pred)
            data = table.data
            return [_bytes(data[oid]) for _, oid in sel], has_more

    def list_merged(self, names, limit: int, parent: str, *, starting_after: Optional[str] = None,
                    ending_before: Optional[str] = None) -> tuple[list[bytes], bool]:
        """A page over the children of `parent` in several tables, as one list (newest first)."""
        with self.lock:
            tables = [self.tables[name] for name in names]
            keys = sorted(k for t in tables for k in t.key_list(parent))
            owner = {oid: t for t in tables for _, oid in t.key_list(parent)}
            after = before = None
            cursor = starting_after or ending_before
            if cursor is not None:
                table = owner.get(cursor) or next((t for t in tables if cursor in t.deleted), None)
                if table is None:
                    raise CursorMissing(cursor)
                created = table.created.get(cursor, table.deleted.get(cursor))
                i = bisect_left(keys, (created, cursor))
                if starting_after is not None:
                    after = i
                else:
                    before = i + (i < len(keys) and keys[i][1] == cursor)
            sel, has_more = page(keys, limit, 0, len(keys), after, before, None)
            return [_bytes(owner[oid].data[oid]) for _, oid in sel], has_more

    def attr_of(self, name: str) -> dict[str, Optional[str]]:
        return self.tables[name].attr

    def exists(self, name: str, oid: str) -> bool:
        return oid in self.tables[name].data

    def fields(self, name: str, oid: str) -> dict:
        """An existing object as a dict."""
        with self.lock:
            return orjson.loads(_bytes(self.tables[name].data[oid]))

    def retrieve(self, name: str, oid: str) -> Optional[bytes]:
        """The object's bytes, a `deleted: true` stub for deleted objects, or None."""
        with self.lock:
            table = self.tables[name]
            body = table.data.get(oid)
            if body is None and oid in table.deleted:
                body = _dumps({"id": oid, "object": OBJECT_TYPE[name], "deleted": True})
            return None if body is None else _bytes(body)

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {name: len(t.data) for name, t in self.tables.items()}

    # ---- mutations ---------------------------------------------------------------------------
    def create(self, name: str, fields: dict) -> dict:
        fields = dict(fields)
        with self.lock:
            table = self.tables[name]
            oid = fields.pop("id", None) or self._new_id(name)
            if oid in table.data or (name in SHARED_WITH and oid in self.tables[SHARED_WITH[name]].data):
                raise ValueError(f"{OBJECT_TYPE[name]} {oid!r} already exists")
            created_field = CATALOG[name].created_field or "created"
            created = int(fields.pop(created_field, None) or self.clock())
            parent = None
            if name in PARENT:
                parent_name, field = PARENT[name]
                # The parent id is a field only where the class declares one (not CreditNoteLineItem).
                given = fields.get(field) if field in declared(name) else fields.pop(field, None)
                parent = given or self.ctx.pick(parent_name)
            self.ctx.children = []
            obj = build(name, self.ctx, oid, created, parent)
            obj.update(fields)
            for field, child in EMBEDDED.get(name, ()):
                obj[field] = self._embedded(oid, child)
            self._put(name, obj, created, parent)
            if name in SHARED_WITH:  # one object in both lists: the payout's and /v1/balance_transactions
                self._put(SHARED_WITH[name], obj, created)
            if name in VIA_PARENT:
                self._refresh_parent(name, [parent])
            else:
                self._event(name, "created", obj)
            self._signal_parent(name, parent, obj)
            return obj

    def update(self, name: str, oid: str, fields: dict) -> dict:
        with self.lock:
            table = self.tables[name]
            if oid not in table.data:
                raise KeyError(oid)
            obj = orjson.loads(table.data[oid])
            if fields.get("id", oid) != oid:
                raise ValueError("id cannot be changed")
            previous = {k: obj.get(k) for k, v in fields.items() if obj.get(k) != v}
            if not previous:
                return obj
            old_parent, created = table.attr.get(oid), table.created[oid]
            obj.update(fields)
            if isinstance(table, LazyTable):  # keeps only the changed fields; its event renders from them
                self._event(name, "updated", obj, previous, lazy=(table, table.patch(oid, fields)))
                return obj
            table.remove(oid)
            self._put(name, obj, created, old_parent)
            if name in VIA_PARENT:
                self._refresh_parent(name, [old_parent, table.attr.get(oid)])
            else:
                self._event(name, "updated", obj, previous)
            self._signal_parent(name, table.attr.get(oid), obj)
            return obj

    def delete(self, name: str, oid: str) -> dict:
        with self.lock:
            table = self.tables[name]
            if oid not in table.data:
                raise KeyError(oid)
            if isinstance(table, LazyTable):
                table.remove(oid)  # refuses, before anything changed
            obj = orjson.loads(table.data[oid])
            parent = table.attr.get(oid)
            table.deleted[oid] = table.created[oid]
            table.remove(oid)
            if name in VIA_PARENT:
                self._refresh_parent(name, [parent])
            else:
                if name in PARENT and (event_type(name, "deleted") or "").endswith(".detached"):
                    obj[PARENT[name][1]] = None  # a detached payment method belongs to no customer
                self._event(name, "deleted", obj)
            self._signal_parent(name, parent, None)
            return {"id": oid, "object": OBJECT_TYPE[name], "deleted": True}

    def emit(self, etype: str, data_object: dict, api_version: Optional[str] = None,
             previous_attributes: Optional[dict] = None) -> dict:
        """Append any event, e.g. one about an object outside the catalog (`customer.source.created` with a
        card) or one rendered in an older API version (a payload without some fields)."""
        with self.lock:
            return orjson.loads(self._append_event(etype, data_object, api_version or API_VERSION, previous_attributes))

    # ---- helpers (lock held) -----------------------------------------------------------------
    def _append_event(self, etype: str, data_object: dict, api_version: str,
                      previous_attributes: Optional[dict] = None) -> bytes:
        """Append an event carrying `data_object` as it is (not re-rendered); returns its bytes."""
        eid = self._new_id("event")
        created = int(self.clock())
        extra = b',"previous_attributes":' + orjson.dumps(previous_attributes) if previous_attributes else b""
        body = event_bytes(eid, etype, created, _dumps(data_object), extra, api_version)
        self.tables["event"].add(eid, created, body, etype)
        return body

    def _put(self, name: str, obj: dict, created: Optional[int] = None, parent: Optional[str] = None) -> None:
        """Store `obj`, listed by its creation time (`created` for classes without one: line items) and
        indexed by its parent id (`parent` where the class declares no field for it)."""
        field = ATTR_FIELD.get(name)
        created_field = CATALOG[name].created_field
        if created_field:
            created = int(obj[created_field])
        attr = obj.get(field, parent) if field else None
        self.tables[name].add(obj["id"], int(created), _dumps(obj), attr)

    def _new_event_id(self) -> str:
        """`evt_1…` ids that sort in the order the events happen: the store lists a second's objects by id,
        and Stripe lists a second's events newest first, in the order they happened."""
        self._events_made += 1
        number, digits = self._events_made, ""
        while number:
            number, digit = divmod(number, 62)
            digits = chr(ALNUM[digit]) + digits
        return "evt_1" + digits.rjust(8, "0") + self.ctx.token(15)

    def _new_id(self, name: str) -> str:
        if name == "event":
            return self._new_event_id()
        table, rng = self.tables[name], self.ctx.rng
        while True:
            prefix = CATALOG[name].id_prefix
            names = None if prefix else natural_ids(name)
            if names:  # the first name not taken (a runtime object beyond the names gets a numbered one)
                free = [n for n in names if n not in table.data and n not in table.deleted]
                return free[0] if free else f"{names[0]}_{len(table.data)}"
            oid = new_ids(rng, name, prefix, 1)[0] if prefix else coupon_ids(rng, 1)[0] + self.ctx.token(4).upper()
            if oid not in table.data and oid not in table.deleted:
                return oid

    def _embedded(self, parent_id: str, child: str) -> dict:
        table = self.tables[child]
        keys = table.key_list(parent_id)
        first = [orjson.loads(table.data[oid]) for _, oid in reversed(keys[-EMBEDDED_PAGE:])]
        return embedded_list(parent_id, child, first, len(keys))

    def _signal_parent(self, child: str, parent_id: Optional[str], obj: Optional[dict]) -> None:
        """What Stripe says about a change of a child no event carries (`Parent.relist_on`): a customer balance
        transaction moves its customer's `balance` (`customer.updated`); an entitlement change updates the
        customer's `entitlements.active_entitlement_summary`. `obj`: the child as it is now (None: deleted)."""
        relist_on = CATALOG[child].relist_on
        if not relist_on or not parent_id:
            return
        parent_name = PARENT[child][0]
        for kind, id_field in relist_on:
            if id_field == "id" and kind == OBJECT_TYPE[parent_name]:
                parents = self.tables[parent_name]
                if parent_id not in parents.data or obj is None or "ending_balance" not in obj:
                    continue
                parent = orjson.loads(parents.data[parent_id])
                previous = {"balance": parent.get("balance")}
                parent["balance"] = obj["ending_balance"]
                parents.remove(parent_id)
                self._put(parent_name, parent)
                self._event(parent_name, "updated", parent, previous)
            else:
                summary = {"object": kind, id_field: parent_id, "livemode": False,
                           "entitlements": self._embedded(parent_id, child)}
                self._append_event(f"{kind}.updated", summary, self.api_version)

    def _refresh_parent(self, child: str, parent_ids) -> None:
        """Re-render the embedded child list of the parents `parent_ids` and emit the parents' updated events."""
        parent_name, _ = PARENT[child]
        embed_field = next((field for field, kid in EMBEDDED.get(parent_name, ()) if kid == child), None)
        table = self.tables[parent_name]
        for pid in dict.fromkeys(parent_ids):
            if pid not in table.data:
                continue
            parent = orjson.loads(table.data[pid])
            previous = {}
            if embed_field:
                previous[embed_field] = parent.get(embed_field)
                parent[embed_field] = self._embedded(pid, child)
            table.remove(pid)
            self._put(parent_name, parent)
            self._event(parent_name, "updated", parent, previous)

    def _event(self, name: str, action: str, obj: dict, previous: Optional[dict] = None,
               lazy: Optional[tuple[LazyTable, dict]] = None) -> None:
        etype = event_type(name, action)
        if name == "event" or etype is None:  # Stripe has no event for this object and action
            return
        events = self.tables["event"]
        eid = self._new_id("event")
        created = int(self.clock())
        extra = b',"previous_attributes":' + orjson.dumps(previous) if previous is not None else b""
        version = self.api_version
        if lazy:  # 100k updates of 10M lazy charges would otherwise hold ~300 MB of event bytes
            body = _LazyEvent(lazy[0], obj["id"], lazy[1], eid, etype, created, extra, version)
        else:
            body = event_bytes(eid, etype, created, _dumps(versions.render(obj, version)), extra, version)
        events.add(eid, created, body, etype)
