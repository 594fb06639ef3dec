"""Objects generated from their index on demand, for accounts too large to hold (10M charges ~ 20 GB eager).

A lazy object type has `n` objects, index 0 the oldest. Everything about object `i` follows from
(seed, i): its `created` second (non-decreasing in `i`, with runs of five equal seconds every 50 objects
from the newest, straddling the 100-object page boundaries as in eager data), its id (`<prefix>` + the
index in 6 order-preserving base-62 digits + 18 hashed characters, so ids ascend with the index and an id
names its index) and its fields (the same `builders.build` as eager data, with an RNG seeded from `i`).
So the ascending `(created, id)` keys the store pages over are a sequence computed per position, and a
cursor id finds its position without any index in memory.

What changes at runtime (updates through the control route) is an overlay of changed fields per index;
an update's event renders its object when it is read. Lazy objects cannot be created or deleted at
runtime, and have no seeded `.created` events (eager data has one per object of the last 30 days).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Callable, Optional

import orjson

from ..source.catalog import CATALOG
from .builders import ALNUM, ALNUM_TABLE, ID_LENGTH, RandomContext, build
from .model import ACCOUNT, ATTR_FIELD, EMBEDDED, PARENT

INDEX_DIGITS = 6  # 62**6 = 56.8 billion objects
TIE_EVERY, TIE_RUN = 50, 5  # five equal `created` seconds every 50 objects, counted from the newest
DICT_SOURCES = frozenset({"price"})  # embedded whole by other builders: kept as dicts, so never lazy


def can_be_lazy(name: str) -> bool:
    """Top-level objects listed by `created` with prefixed ids and no parent, children or filter attribute."""
    o = CATALOG[name]
    return (bool(o.id_prefix) and o.supports_created and bool(o.created_field) and name not in ("event", ACCOUNT)
            and name not in PARENT and name not in EMBEDDED and name not in ATTR_FIELD and name not in DICT_SOURCES)


_PAIRS = [chr(ALNUM[a]) + chr(ALNUM[b]) for a in range(62) for b in range(62)]  # two base-62 digits


def _base62(i: int) -> str:
    """INDEX_DIGITS (6) base-62 digits, most significant first: ids sort as their indexes do."""
    return _PAIRS[i // 14776336 % 3844] + _PAIRS[i // 3844 % 3844] + _PAIRS[i % 3844]


_DIGIT = {chr(c): v for v, c in enumerate(ALNUM)}


class _PooledContext(RandomContext):
    """The generation context of eager data (ids, dicts, settled pools), re-seeded per object; the pools of
    repeated values (`pooled`) come from their own seed, so an object's fields never depend on which
    objects were rendered before it."""

    def __init__(self, base, pool_seed: str):
        super().__init__(random.Random(0))
        self.base, self.pool_seed = base, pool_seed

    def pooled(self, factory: Callable):
        pool = self._pools.get(factory.__name__)
        if pool is None:
            maker = RandomContext(random.Random(f"{self.pool_seed}:{factory.__name__}"))
            pool = self._pools[factory.__name__] = [factory(maker) for _ in range(self.POOL_SIZE)]
        return pool[int(self._random() * len(pool))]

    def settled(self, name):
        pool = self.base._settled.get(name)
        return self.choice(pool) if pool else None

    def pick(self, name):
        ids = self.base.ids.get(name)
        return self.choice(ids) if ids else None

    def obj(self, name):
        objs = self.base.dicts.get(name)
        return self.choice(objs) if objs else None


class LazySource:
    """`n` objects of one type, each computed from (seed, index)."""

    def __init__(self, name: str, n: int, seed, now: int, span: int):
        self.name, self.n, self.span = name, int(n), int(span)
        self.start = int(now) - self.span
        self.prefix = CATALOG[name].id_prefix
        self._tail = ID_LENGTH.get(name, 24) - INDEX_DIGITS
        digest = hashlib.blake2b(f"{seed}:{name}:lazy".encode(), digest_size=16).digest()
        self._key, self._seed = digest, int.from_bytes(digest[:8], "little") << 64
        self._pool_seed = f"{seed}:{name}"
        self.ctx: Optional[_PooledContext] = None
        self.ids = LazyIds(self)

    def attach(self, generation_context) -> None:
        """Render with the eager data's context (ids and pools of the other objects)."""
        self.ctx = _PooledContext(generation_context, self._pool_seed)

    def created(self, i: int) -> int:
        r = self.n - 1 - i  # position from the newest
        run = (r + 2) // TIE_RUN
        if run % (TIE_EVERY // TIE_RUN) == 0:  # a run of equal seconds: the run's oldest member's
            i = max(0, self.n - 1 - (TIE_RUN * run + 2))
        return self.start + i * self.span // self.n

    def oid(self, i: int) -> str:
        tail = hashlib.blake2b(i.to_bytes(8, "little"), digest_size=self._tail, key=self._key).digest()
        return self.prefix + _base62(i) + tail.translate(ALNUM_TABLE).decode("ascii")

    def index(self, oid: str) -> Optional[int]:
        """The index an id names, or None if it is not one of this source's ids."""
        head = oid[len(self.prefix): len(self.prefix) + INDEX_DIGITS]
        if not oid.startswith(self.prefix) or len(head) != INDEX_DIGITS:
            return None
        i = 0
        for ch in head:
            d = _DIGIT.get(ch)
            if d is None:
                return None
            i = i * 62 + d
        return i if i < self.n and self.oid(i) == oid else None

    def render(self, i: int, changed: Optional[dict] = None, oid: Optional[str] = None) -> dict:
        ctx = self.ctx
        ctx.rng.seed(self._seed + i)
        obj = build(self.name, ctx, oid or self.oid(i), self.created(i), None)
        if changed:
            obj.update(changed)
        return obj


class LazyIds(Sequence):
    """The ids in index order (what builders of other objects pick references from)."""

    def __init__(self, source: LazySource):
        self.source = source

    def __len__(self) -> int:
        return self.source.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.source.oid(j) for j in range(*i.indices(self.source.n))]
        if i < 0:
            i += self.source.n
        if not 0 <= i < self.source.n:
            raise IndexError(i)
        return self.source.oid(i)


class _Keys(LazyIds):
    """Ascending `(created, id)` keys: what `store.page` and `bisect` walk."""

    def __getitem__(self, i):
        s = self.source
        if isinstance(i, slice):
            return [(s.created(j), s.oid(j)) for j in range(*i.indices(s.n))]
        if i < 0:
            i += s.n
        if not 0 <= i < s.n:
            raise IndexError(i)
        return s.created(i), s.oid(i)


class _Bodies(Mapping):
    """id -> JSON bytes, rendered on read with the overlay applied."""

    def __init__(self, table: "LazyTable"):
        self.table = table

    def __getitem__(self, oid: str) -> bytes:
        i = self.table.source.index(oid)
        if i is None:
            raise KeyError(oid)
        return orjson.dumps(self.table.source.render(i, self.table.overlay.get(i), oid))

    def __contains__(self, oid) -> bool:
        return isinstance(oid, str) and self.table.source.index(oid) is not None

    def __iter__(self):
        return iter(self.table.source.ids)

    def __len__(self) -> int:
        return self.table.source.n


class _Created(_Bodies):
    def __getitem__(self, oid: str) -> int:
        i = self.table.source.index(oid)
        if i is None:
            raise KeyError(oid)
        return self.table.source.created(i)


class LazyTable:
    """The store's table interface (`store.Table`) over a `LazySource` plus an overlay of changed fields."""

    lazy = True

    def __init__(self, name: str, source: LazySource):
        self.name, self.source = name, source
        self.keys, self.data, self.created = _Keys(source), _Bodies(self), _Created(self)
        self.attr: dict = {}
        self.children = None
        self.deleted: dict = {}
        self.overlay: dict[int, dict] = {}  # index -> every field changed so far (replaced, never mutated)

    def key_list(self, parent: Optional[str]) -> Sequence:
        return self.keys if parent is None else []

    def patch(self, oid: str, fields: dict) -> dict:
        """Record changed fields; returns the object's changes so far (an update's event renders from it)."""
        i = self.source.index(oid)
        if i is None:
            raise KeyError(oid)
        created_field = CATALOG[self.name].created_field
        if created_field in fields and int(fields[created_field]) != self.source.created(i):
            raise ValueError(f"{self.name} is generated lazily: its {created_field} (its place in lists) cannot be changed")
        changed = self.overlay[i] = {**self.overlay.get(i, {}), **fields}
        return changed

    def render(self, oid: str, changed: Optional[dict]) -> bytes:
        return orjson.dumps(self.source.render(self.source.index(oid), changed))

    def add(self, *_):
        raise ValueError(f"{self.name} is generated lazily: the emulator can update these objects, not create them")

    def remove(self, *_):
        raise ValueError(f"{self.name} is generated lazily: the emulator can update these objects, not delete them")
