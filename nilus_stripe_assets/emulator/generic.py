"""One builder for every catalog object without a hand-written one, driven by the SDK's shapes.

An object gets exactly the fields its stripe-python class declares (`source/shapes.py`), in the SDK's order:
its id and `object`, the creation time, `livemode`, metadata, the parent's id where the class has a field for
it, and for every other field a plausible value of the field's type: a value of its enum, an id of an object
of the referenced class (an existing one where the emulator serves that class), a time after the object's
creation for epoch fields, an amount for money-named integers, inner objects with the fields their nested
classes declare (`sdk_nested.py`) and, for nullable fields, often null, as Stripe sends them. An inner
object with a `type` field naming one of its sibling fields (a payment method's `card`, `sepa_debit`, ...)
fills only the one its type names, as Stripe does.

Renderers are compiled once per class (a closure per field); an object costs one pass over them.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Callable, Optional

from ..source import shapes
from ..source.shapes import FieldType
from . import sdk_nested
from .model import NAMED_CLASSES, id_prefix_of_class

Render = Callable[[Any, "Env", int], Any]  # (ctx, env, depth) -> value

MAX_DEPTH = 3  # inner objects deeper than this are null where the SDK allows it (it keeps objects small)
PRESENT = (0.6, 0.35, 0.2, 0.1)  # chance a nullable field has a value, by depth
DAY = 86400
AMOUNTS = (500, 999, 1500, 2000, 2500, 4900, 9900, 12000, 19900, 49900)
_MONEY = re.compile(r"(^|_)(amount|fee|net|total|subtotal|balance|price|cost|tax)(_|$)|_amount$")
_COUNT = re.compile(r"(count|quantity|number_of|_days|days_|interval|attempt|sequence|_months$|_years$)")
WORDS = ("Starter plan", "Pro plan", "Team plan", "Enterprise plan", "API credits", "Support add-on")


class Env:
    """What every field of one object is rendered against."""

    __slots__ = ("oid", "created", "path")

    def __init__(self, oid: str, created: int, path: str):
        self.oid, self.created, self.path = oid, created, path


def _string(name: str) -> Callable[[Any, Env], str]:
    """A plausible string for a field by its name (Stripe's names say what they hold)."""
    if name == "currency" or name.endswith("_currency") or name == "default_currency":
        return lambda ctx, env: "usd"
    if name == "country" or name.endswith("_country"):
        return lambda ctx, env: "US"
    if "email" in name:
        return lambda ctx, env: f"user{ctx.randint(1, 999)}@example.com"
    if name == "url" or name.endswith("_url"):
        return lambda ctx, env: f"https://example.com/{ctx.token(12)}"
    if "phone" in name:
        return lambda ctx, env: f"+1415555{ctx.randint(1000, 9999)}"
    if name == "last4":
        return lambda ctx, env: f"{ctx.randint(0, 9999):04d}"
    if name == "city":
        return lambda ctx, env: ctx.choice(("San Francisco", "New York", "Austin", "Seattle"))
    if name in ("postal_code", "zip"):
        return lambda ctx, env: ctx.choice(("94107", "10001", "73301", "98101"))
    if name == "line1":
        return lambda ctx, env: f"{ctx.randint(1, 999)} Market St"
    if name == "name" or name.endswith("_name") or name in ("nickname", "display_name", "title"):
        return lambda ctx, env: f"{ctx.choice(WORDS)} {ctx.randint(1, 99)}"
    if name in ("description", "memo", "footer", "header", "statement_descriptor", "reason"):
        return lambda ctx, env: ctx.choice(WORDS)
    if name == "id" or name.endswith("_id"):
        return lambda ctx, env: f"{name.removesuffix('_id') or 'obj'}_{ctx.token(14)}"
    return lambda ctx, env: ctx.token(10)


def _integer(name: str, epoch: bool) -> Callable[[Any, Env], int]:
    if epoch:  # after the object's creation: when it expires, was paid, arrives, ...
        return lambda ctx, env: env.created + int(ctx.rng.random() * 30 * DAY)
    if name == "exp_month":
        return lambda ctx, env: ctx.randint(1, 12)
    if name == "exp_year":
        return lambda ctx, env: ctx.randint(2027, 2032)
    if _MONEY.search(name):
        return lambda ctx, env: ctx.choice(AMOUNTS)
    if _COUNT.search(name):
        return lambda ctx, env: ctx.randint(1, 5)
    return lambda ctx, env: ctx.randint(0, 100)


def _reference(classes: tuple[str, ...], namespace: str) -> Callable[[Any, Env], str]:
    """An id of the referenced class: an existing object's where the emulator serves it, else a new id."""
    for cls in classes:
        for candidate in (f"{namespace}.{cls}" if namespace else cls, cls):
            name = NAMED_CLASSES.get(candidate)
            if name:
                prefix = id_prefix_of_class(candidate)
                return lambda ctx, env: ctx.pick(name) or f"{prefix}{ctx.token(24)}"
    prefix = id_prefix_of_class(classes[0] if classes else "")
    return lambda ctx, env: f"{prefix}{ctx.token(24)}"


def _scalar(name: str, t: FieldType, epoch: bool, namespace: str) -> Callable[[Any, Env], Any]:
    if t.values:
        values = tuple(t.values)
        return lambda ctx, env: ctx.choice(values)
    if t.kind == "string":
        if t.expandable:
            return _reference(t.expandable, namespace)
        if t.format == "decimal":
            return lambda ctx, env: f"{ctx.choice(AMOUNTS)}.{ctx.randint(0, 9)}"
        return _string(name)
    if t.kind == "integer":
        return _integer(name, epoch)
    if t.kind == "number":
        return lambda ctx, env: round(ctx.rng.random() * 100, 2)
    if t.kind == "boolean":
        return lambda ctx, env: ctx.rng.random() < 0.5
    raise ValueError(f"not a scalar: {t}")


def _field(name: str, t: FieldType, nullable: bool, epoch: bool, held: sdk_nested.Holds, ns: str) -> Render:
    """The renderer of one field (`held`: the nested class or list it holds, from the SDK)."""
    if t.kind == "array":
        if held.cls is not None and t.items is not None and t.items.kind == "object":
            inner = _class_renderer(held.cls)  # a list of inner objects: one of them
            return lambda ctx, env, depth: [inner(ctx, env, depth + 1)] if depth < MAX_DEPTH else []
        if t.items is not None and t.items.values:
            values = tuple(t.items.values)
            return lambda ctx, env, depth: [ctx.choice(values)]
        return lambda ctx, env, depth: []  # ids, strings: none by default
    if t.kind == "object":
        if held.is_list:
            if nullable:  # sent only when expanded (`checkout.Session.line_items`)
                return lambda ctx, env, depth: None
            return lambda ctx, env, depth: {"object": "list", "data": [], "has_more": False, "total_count": 0,
                                            "url": f"{env.path}/{env.oid}/{name}"}
        if held.cls is None:  # a map (`metadata`, `fraud_details`) or a union of resources
            return (lambda ctx, env, depth: None) if nullable else (lambda ctx, env, depth: {})
        inner = _class_renderer(held.cls)
        if not nullable:
            return lambda ctx, env, depth: inner(ctx, env, depth + 1)
        return lambda ctx, env, depth: inner(ctx, env, depth + 1) \
            if depth < MAX_DEPTH and ctx.rng.random() < PRESENT[depth] else None
    value = _scalar(name, t, epoch, ns)
    if not nullable:
        return lambda ctx, env, depth: value(ctx, env)
    return lambda ctx, env, depth: value(ctx, env) if ctx.rng.random() < PRESENT[min(depth, 3)] else None


def _variants(fields) -> tuple[Optional[str], frozenset[str]]:
    """A `type` field whose values name sibling fields: (its name, the sibling fields it selects)."""
    by_name = {f.name: f for f in fields}
    kind = by_name.get("type")
    if kind is None or not kind.type.values:
        return None, frozenset()
    named = frozenset(v for v in kind.type.values if v in by_name and by_name[v].type.kind == "object")
    return ("type", named) if named else (None, frozenset())


def _compile(fields, held: dict, ns: str, id_prefix: Optional[str] = None) -> Callable[[Any, Env, int], dict]:
    """Renderer of an object with `fields` (Field or Inner records; `held`: field -> Holds). `id_prefix`: of a
    resource embedded whole (a dispute's balance transactions), whose `id` is then one of its kind."""
    renders = [(f.name, _field(f.name, f.type, f.nullable, f.epoch, held[f.name], ns)) for f in fields]
    if id_prefix is not None:
        renders = [(n, (lambda ctx, env, depth: f"{id_prefix}{ctx.token(24)}") if n == "id" else r) for n, r in renders]
    selector, variants = _variants(fields)
    if not variants:
        def render(ctx, env, depth):
            return {name: r(ctx, env, depth) for name, r in renders}
        return render
    choices = tuple(sorted(variants))
    forced = {name: _field(name, f.type, False, f.epoch, held[name], ns)
              for f in fields if (name := f.name) in variants}

    def render(ctx, env, depth):
        chosen = ctx.choice(choices)
        obj = {}
        for name, r in renders:
            if name in variants:
                obj[name] = forced[name](ctx, env, depth) if name == chosen else None
            else:
                obj[name] = r(ctx, env, depth)
        obj[selector] = chosen
        return obj
    return render


@cache
def _class_renderer(cls: type) -> Callable[[Any, Env, int], dict]:
    """Renderer of an inner object (a nested SDK class, or a resource embedded whole)."""
    box: list = []

    def render(ctx, env, depth):
        # Compiled on first use: classes may refer to each other (a resource embedding one that embeds it).
        if not box:
            inner = sdk_nested.inner_fields(cls)
            ns = sdk_nested.namespace(cls)
            prefix = id_prefix_of_class(f"{ns}.{cls.__name__}" if ns else cls.__name__) \
                if sdk_nested.is_resource(cls) else None
            box.append(_compile(inner, {f.name: f.holds for f in inner}, ns, prefix))
        return box[0](ctx, env, depth)
    return render


@cache
def renderer(sdk_class: str) -> Callable[[Any, Env, int], dict]:
    """Renderer of a catalog object's own fields: the snapshot's shapes, inner objects' from the SDK."""
    fields = shapes.class_fields(sdk_class)
    held = {f.name: sdk_nested.field_holds(sdk_class, f.name) if f.type.kind in ("object", "array")
            else sdk_nested.Holds() for f in fields}
    return _compile(fields, held, sdk_class.rpartition(".")[0])


def render(sdk_class: str, ctx, oid: str, created: int, path: str) -> dict:
    """Every field `stripe.<sdk_class>` declares, with plausible values (the caller sets the common ones:
    id, object, creation time, livemode, metadata, the parent's id)."""
    return renderer(sdk_class)(ctx, Env(oid, created, path), 0)
