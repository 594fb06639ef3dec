"""Deterministic seed data: the same (seed, now, counts) always gives byte-identical objects.

`generate()` returns, per catalog object, records `(created, id, json_bytes, attr)` (attr: the value of
`model.ATTR_FIELD[name]`, or None). Objects are serialized once here; the store only slices bytes.
Objects named in `lazy` are a `lazy.LazySource` instead: computed per index when read (see lazy.py).
"""

from __future__ import annotations

import random
import time
from typing import Collection, Mapping, Optional, Sequence, Union

import orjson

from ..source.catalog import CATALOG
from .builders import BUILDERS, SETTLED_STATUS, RandomContext, account_object, build, connected_since, new_ids
from .builders import settled_amount
from .lazy import LazySource, can_be_lazy
from .model import API_VERSION, ATTR_FIELD, EMBEDDED, EMBEDDED_PAGE, EVENT_RETENTION_SECONDS, NAMES, event_type
from .model import ACCOUNT, NO_SEED_EVENTS, PARENT, SHARED_WITH, embedded_list

Record = tuple[int, str, bytes, Optional[str]]

DEFAULT_COUNTS: dict[str, int] = {
    "charge": 600, "payment_intent": 250, "payment_method": 250, "refund": 60, "payout": 40, "customer": 200,
    "subscription": 120, "subscription_item": 280, "subscription_schedule": 30, "product": 40, "price": 80,
    "coupon": 20, "promotion_code": 30, "invoice": 300, "invoice_item": 200, "credit_note": 30, "tax_rate": 10,
    "balance_transaction": 450, "setup_intent": 60, "webhook_endpoint": 5,
    # every invoice and credit note has a line; a few have more than the 10 a list response embeds
    "invoice_line_item": 450, "credit_note_line_item": 60,
}  # events are derived: one `<type>.created` per seeded object of the last 30 days (`counts["event"]` caps them)
# Every other catalog object (issue 19's): a few each, so the default emulator starts and loads fast; child
# lists enough that one parent holds more than the 10 a parent embeds or a default page returns.
OTHER_COUNT, OTHER_CHILD_COUNT = 12, 30
# Children seeded with a uniformly random parent, as before issue 19 (their data must not change); every
# other child is spread by `_distribute`: a few parents get more than one page of children.
RANDOM_PARENT = frozenset({"payment_method"})
SPAN_SECONDS = 400 * 86400
LAZY_ABOVE = 2_000_000  # objects beyond this count are generated lazily unless asked otherwise (~2 GB per 1M eager)
LAZY_SAMPLE = 5_000  # settled objects of a lazy type that refunds and balance transactions can point at
TIE_RATE = 0.1  # share of objects created in the same second as their predecessor
DICT_SOURCES = ("price",)  # objects other builders embed whole (subscription_item.price)


def default_now() -> int:
    """Midnight UTC of the current day: data is reproducible within a day."""
    return int(time.time()) // 86400 * 86400


def resolve_counts(counts: Optional[Mapping[str, int]] = None, scale: float = 1.0) -> dict[str, int]:
    unknown = set(counts or ()) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown objects in counts: {sorted(unknown)}")
    out = {name: max(1, round(n * scale)) for name, n in DEFAULT_COUNTS.items()}
    for name in NAMES:
        if name not in out and name != "event":
            out[name] = max(1, round((OTHER_CHILD_COUNT if name in PARENT else OTHER_COUNT) * scale))
    out.update({name: int(n) for name, n in (counts or {}).items()})
    return out


class GenContext(RandomContext):
    """What builders see during generation: a per-object RNG and every object's (pre-drawn) ids."""

    def __init__(self, rng: random.Random, ids: dict[str, list[str]], dicts: dict[str, list[dict]],
                 settled: dict[str, list[tuple[str, int]]]):
        super().__init__(rng)
        self.ids, self.dicts, self._settled = ids, dicts, settled

    def settled(self, name: str) -> Optional[tuple[str, int]]:
        pool = self._settled.get(name)
        return self.choice(pool) if pool else None

    def pick(self, name: str) -> Optional[str]:
        ids = self.ids.get(name)
        return self.choice(ids) if ids else None

    def obj(self, name: str) -> Optional[dict]:
        objs = self.dicts.get(name)
        return self.choice(objs) if objs else None


def timestamps(rng: random.Random, n: int, now: int) -> list[int]:
    """`n` creation seconds over the last ~400 days, newest first, with ties (some straddling page ends)."""
    ts = sorted((now - 1 - rng.randrange(SPAN_SECONDS) for _ in range(n)), reverse=True)
    rand = rng.random
    for i in range(1, n):
        if rand() < TIE_RATE:
            ts[i] = ts[i - 1]
    # runs of equal seconds across the page boundaries of limit=7/10 and every 100th object
    for b in [7, 10, 14, 21, *range(100, n, 100)]:
        if b + 3 <= n:
            ts[b - 2 : b + 3] = [ts[b - 3]] * 5
    return ts


def _distribute(rng: random.Random, parents: list[str], n: int) -> list[str]:
    """Parent of each of `n` embedded children: a few parents get 11-15 (more than one embedded page)."""
    if not parents:
        return [None] * n  # type: ignore[list-item]
    out: list[str] = []
    big = rng.sample(parents, k=min(3, len(parents) // 10, n // 30))
    for p in big:
        out += [p] * rng.randint(EMBEDDED_PAGE + 1, EMBEDDED_PAGE + 5)
    small = [p for p in parents if p not in set(big)] or parents
    out += small[: max(0, n - len(out))]
    while len(out) < n:
        out.append(small[int(rng.random() * len(small))])
    return out[:n]


def _order() -> list[str]:
    """Build order: embedded sources first, parents with embedded lists after their children, events last."""
    late = [p for p in EMBEDDED]
    return [*DICT_SOURCES, *(n for n in NAMES if n not in DICT_SOURCES and n not in late and n != "event"), *late]


def _parents_first(names) -> list[str]:
    """`names` with every child after its parent (a child's creation times follow its parent's)."""
    out: list[str] = []

    def add(name: str) -> None:
        if name not in out:
            if name in PARENT and PARENT[name][0] in names:
                add(PARENT[name][0])
            out.append(name)
    for name in names:
        add(name)
    return out


def lazy_names(n_of: Mapping[str, int], lazy: Union[None, bool, Collection[str]]) -> frozenset[str]:
    """Which objects to generate lazily: `None` those above LAZY_ABOVE, `True` every one that can be,
    `False` none, or the names given (each must be able to: see `lazy.can_be_lazy`)."""
    if lazy is None:
        return frozenset(n for n, count in n_of.items() if count > LAZY_ABOVE and can_be_lazy(n))
    if isinstance(lazy, bool):
        return frozenset(n for n in n_of if can_be_lazy(n)) if lazy else frozenset()
    wrong = sorted(n for n in lazy if n not in NAMES or not can_be_lazy(n))
    if wrong:
        raise ValueError(f"cannot generate lazily: {wrong} (only top-level objects listed by created)")
    return frozenset(lazy)


# Children identified by (parent id, id) in the catalog: Stripe keeps their ids unique only within a parent.
REPEATING = frozenset(name for name, o in CATALOG.items() if o.parent is not None and o.parent.id_column in o.key_columns)


def repeated_id(name: str, position: int) -> str:
    """The id the `position`-th line of every parent is served under with `repeat_line_ids`, as in Stripe's
    fixtures (stripe-mock serves one line id for every invoice)."""
    return f"{CATALOG[name].id_prefix}fixture{position:05d}"


def generate(counts: Optional[Mapping[str, int]] = None, scale: float = 1.0, seed: int = 42,
             now: Optional[int] = None, lazy: Union[None, bool, Collection[str]] = None,
             connected: Sequence[str] = (), repeat_line_ids: bool = False) -> dict[str, Union[list[Record], LazySource]]:
    """`connected`: the platform's connected accounts (the catalog's `account` objects and their children's
    parents); a connected account's own data has none. `repeat_line_ids`: see `repeated_id`."""
    now = default_now() if now is None else int(now)
    n_of = resolve_counts(counts, scale)
    if ACCOUNT:
        n_of[ACCOUNT] = len(connected)
    sources = {name: LazySource(name, n_of[name], seed, now, SPAN_SECONDS) for name in lazy_names(n_of, lazy)}
    rngs = {name: random.Random(f"{seed}:{name}") for name in NAMES}
    ids = {name: sources[name].ids if name in sources else new_ids(rngs[name], name, CATALOG[name].id_prefix, n_of.get(name, 0))
           for name in NAMES if name not in ("event", ACCOUNT)}
    if ACCOUNT:
        ids[ACCOUNT] = list(connected)
    embedded_children = {child for pairs in EMBEDDED.values() for _, child in pairs}
    # listed with their parent's creation time (children of a lazily generated parent are not: too many parents)
    spread = {name for name, (parent, _) in PARENT.items() if name not in RANDOM_PARENT and parent not in sources}
    created: dict[str, list[int]] = {name: timestamps(rngs[name], len(ids[name]), now)
                                     for name in ids if name not in spread and name not in sources and name != ACCOUNT}
    if ACCOUNT:
        created[ACCOUNT] = list(connected_since(list(connected), now).values())
    parents: dict[str, list] = {}
    for name in _parents_first(list(ids)):
        if name in spread:  # a few parents hold more children than one page
            parent_name = PARENT[name][0]
            pool = ids.get(parent_name, [])
            parents[name] = _distribute(rngs[name], pool, len(ids[name]))
            created_at = dict(zip(pool, created.get(parent_name, [])))
            created[name] = [created_at.get(p, now - 1) for p in parents[name]]
        elif name in PARENT:
            pool, rng = ids[PARENT[name][0]], rngs[name]
            parents[name] = [pool[int(rng.random() * len(pool))] if pool else None for _ in ids[name]]
        elif name not in sources:
            parents[name] = [None] * len(ids[name])
    keep = set(DICT_SOURCES) | embedded_children
    dicts: dict[str, list[dict]] = {}
    settled: dict[str, list[tuple[str, int]]] = {}  # (id, amount) only: 200k charges stay cheap
    out: dict[str, Union[list[Record], LazySource]] = {}
    for name in _order():
        ctx = GenContext(rngs[name], ids, dicts, settled)
        pool = settled.setdefault(name, []) if name in SETTLED_STATUS else None
        if name in sources:  # rendered when read; a spread sample stands for it in the settled pool
            source = out[name] = sources[name]
            source.attach(ctx)
            if pool is not None:
                step = max(1, source.n // LAZY_SAMPLE)
                pool += filter(None, (settled_amount(name, source.render(i)) for i in range(0, source.n, step)))
            continue
        field = ATTR_FIELD.get(name)
        embeds = EMBEDDED.get(name, ())
        kids = {child: _group_children(child, ids, created, parents, dicts) for _, child in embeds}
        recs, objs = [], []
        dumps = orjson.dumps
        repeats = repeat_line_ids and name in REPEATING
        per_parent: dict[str, int] = {}
        for oid, c, parent in zip(ids[name], created[name], parents[name]):
            if embeds:  # the parent's amounts add up its (first list's) children: an invoice's total is its lines'
                ctx.children = kids[embeds[0][1]].get(oid, [])
            obj = account_object(oid, c, len(recs)) if name == ACCOUNT else build(name, ctx, oid, c, parent)
            if repeats:  # served under an id its parent's siblings share; the store keeps `oid` as its own key
                obj["id"] = repeated_id(name, per_parent.setdefault(parent, 0))
                per_parent[parent] += 1
            for field_name, child in embeds:
                mine = kids[child].get(oid, [])
                obj[field_name] = embedded_list(oid, child, mine[:EMBEDDED_PAGE], len(mine))
            # A child's parent id is kept beside it: not every class declares it (CreditNoteLineItem).
            attr = parent if name in PARENT else (obj[field] if field else None)
            recs.append((c, oid, memoryview(dumps(obj)).tobytes(), attr))
            if name in keep:
                objs.append(obj)
            if pool is not None and (money := settled_amount(name, obj)):
                pool.append(money)
        if name in keep:
            dicts[name] = objs
        out[name] = recs
    for child, top in SHARED_WITH.items():
        if PARENT[child][0] != "payout":
            continue
        if isinstance(out.get(top), LazySource) or isinstance(out["payout"], LazySource):
            out[child] = []  # lazily generated transactions are never swept into a payout
        else:
            out["payout"], out[top], out[child] = itemize_payouts(out["payout"], out[top])
    out["event"] = seed_events(out, now, rngs["event"], n_of.get("event"))
    return out


def itemize_payouts(payouts: list[Record], transactions: list[Record]) -> tuple[list[Record], list[Record], list[Record]]:
    """What Stripe's automatic payouts are: each paid one sweeps the balance transactions created since the
    previous one (payouts excluded), and its amount is their net. Returns the payouts with that amount, the
    balance transactions (a payout's own moves the balance by minus its amount) and the (created, id, bytes,
    payout id) records of `GET /v1/balance_transactions?payout=`."""
    parsed = sorted((c, oid, orjson.loads(body)) for c, oid, body, _ in payouts)
    moves = sorted((c, oid, body, orjson.loads(body)) for c, oid, body, _ in transactions)
    new_payouts, items, i, since = [], [], 0, None
    for c, oid, payout in parsed:
        if not (payout.get("automatic") and payout.get("status") == "paid"):
            new_payouts.append((c, oid, orjson.dumps(payout), None))
            continue
        mine = []
        while i < len(moves) and moves[i][0] <= c:
            if moves[i][3].get("type") != "payout" and (since is None or moves[i][0] > since):
                mine.append(moves[i])
            i += 1
        since = c
        net = sum(m[3]["net"] for m in mine)
        if mine and net > 0:
            payout["amount"] = net
            items += [(mc, mid, body, oid) for mc, mid, body, _ in mine]
        new_payouts.append((c, oid, orjson.dumps(payout), None))
    amount_of = {oid: orjson.loads(body)["amount"] for _, oid, body, _ in new_payouts}
    moved = []
    for c, oid, body, attr in transactions:
        txn = orjson.loads(body)
        if txn.get("type") == "payout" and txn.get("source") in amount_of and txn["amount"] != -amount_of[txn["source"]]:
            txn["amount"] = txn["net"] = -amount_of[txn["source"]]
            body = orjson.dumps(txn)
        moved.append((c, oid, body, attr))
    return new_payouts, moved, items


def _group_children(child: str, ids, created, parents, dicts) -> dict[str, list[dict]]:
    """Children per parent id, in list order (created desc, id desc)."""
    by_parent: dict[str, list[dict]] = {}
    for _, _, parent, obj in sorted(zip(created[child], ids[child], parents[child], dicts.get(child, [])),
                                    key=lambda r: (r[0], r[1]), reverse=True):
        by_parent.setdefault(parent, []).append(obj)
    return by_parent


def event_bytes(eid: str, etype: str, created: int, obj: bytes, extra: bytes = b"", api_version: str = API_VERSION) -> bytes:
    """An event around an already-serialized object (no re-encoding)."""
    return b"".join([
        b'{"id":"', eid.encode(), b'","object":"event","account":null,"api_version":"', api_version.encode(),
        b'","context":null,"created":', str(created).encode(), b',"data":{"object":', obj, extra,
        b'},"livemode":false,"pending_webhooks":0,"request":{"id":null,"idempotency_key":null},"type":"',
        etype.encode(), b'"}',
    ])


def seed_events(data: dict[str, list[Record]], now: int, rng: random.Random, cap: Optional[int]) -> list[Record]:
    """One `<prefix>.created` event per seeded object created in the last 30 days before `now`."""
    since = now - EVENT_RETENTION_SECONDS
    # The objects with hand-written builders (seeded before issue 19) first, so their events keep their ids;
    # objects without a created event in Stripe (per the catalog) get none.
    first = sorted(data, key=lambda name: name not in BUILDERS)
    todo = [(c, name, body) for name in first if name not in NO_SEED_EVENTS and event_type(name, "created")
            and not isinstance(data[name], LazySource) for c, _, body, _ in data[name] if c >= since]
    eids = new_ids(rng, "event", CATALOG["event"].id_prefix, len(todo))
    events = []
    for eid, (c, name, body) in zip(eids, todo):
        etype = event_type(name, "created")
        events.append((c, eid, event_bytes(eid, etype, c, body), etype))
    if cap is not None and cap < len(events):
        events.sort(reverse=True)
        events = events[:cap]
    return events
