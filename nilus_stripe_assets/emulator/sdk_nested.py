"""The nested classes of stripe-python's resources: what an object's inner objects declare.

The snapshot (`source/shapes.py`) describes each object's own fields; a field holding an inner object
(`Dispute.evidence`, a `stripe.Dispute.Evidence`) is only `kind: object` there. The emulator renders inner
objects with exactly the fields their nested SDK classes declare, read here from the installed SDK on first
use (classes are imported once per process; the type descriptors come from `sdk_shapes.describe`, the
snapshot's own reader, so both speak the same types).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cache
from typing import Optional

from ..source import sdk_shapes
from ..source.shapes import FieldType


@dataclass(frozen=True)
class Holds:
    """What an object-typed field (or an array's items) holds, beyond the snapshot's `kind: object`."""

    cls: Optional[type] = None  # a nested class (Dispute.Evidence) or a resource embedded whole (Price)
    is_list: bool = False  # a Stripe list object (`Transfer.reversals`)


@dataclass(frozen=True)
class Inner:
    """One field of a nested class."""

    name: str
    type: FieldType
    nullable: bool
    epoch: bool
    holds: Holds


def _stripe():
    import stripe  # needed only to render objects the hand-written builders do not cover

    return stripe


@cache
def resource(path: str) -> Optional[type]:
    """`stripe.<path>` ("checkout.Session" -> stripe.checkout.Session), or None."""
    target = _stripe()
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target if isinstance(target, type) else None


def namespace(cls: type) -> str:
    """"issuing" for stripe.issuing.Card, "" for stripe.Charge (forward references resolve there first)."""
    parts = cls.__module__.split(".")
    return parts[1] if len(parts) > 2 else ""


def is_resource(cls: type) -> bool:
    """A top-level resource (stripe.BalanceTransaction), not a nested class (stripe.Dispute.Evidence)."""
    return issubclass(cls, _stripe().APIResource)


def _annotations(cls: type) -> dict:
    out: dict = {}
    for klass in reversed(cls.__mro__):
        out.update({k: v for k, v in vars(klass).get("__annotations__", {}).items()
                    if not k.startswith("_") and k != "OBJECT_NAME"})
    return out


def holds(annotation, ns: str) -> Holds:
    """What an annotation holds: a nested class or embedded resource, a list object, or nothing to render
    beyond its kind (scalars, ids of expandable fields, maps such as `metadata`, unions of resources)."""
    stripe = _stripe()
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return holds(rest[0], ns) if len(rest) == 1 else Holds()
    if origin in (list, typing.List):
        return holds(args[0], ns)
    if isinstance(annotation, (typing.ForwardRef, str)):
        name = annotation.__forward_arg__ if isinstance(annotation, typing.ForwardRef) else annotation
        return Holds(cls=(resource(f"{ns}.{name}") if ns else None) or resource(name))
    base = origin or annotation
    if isinstance(base, type) and issubclass(base, stripe.StripeObject):
        if issubclass(base, stripe.ListObject):
            return Holds(is_list=True)
        if "." in base.__qualname__ or issubclass(base, stripe.APIResource):
            return Holds(cls=base)
    return Holds()  # UntypedStripeObject (metadata-like maps) and scalars


@cache
def field_holds(path: str, field: str) -> Holds:
    """What a resource's own field holds (`("Dispute", "evidence")` -> stripe.Dispute.Evidence)."""
    cls = resource(path)
    annotation = _annotations(cls).get(field) if cls is not None else None
    return Holds() if annotation is None else holds(annotation, namespace(cls))


@cache
def inner_fields(cls: type) -> tuple[Inner, ...]:
    """The declared fields of a nested class (or an embedded resource), in the SDK's order."""
    ns = namespace(cls)
    out = []
    for name, annotation in _annotations(cls).items():
        try:
            raw, nullable = sdk_shapes.describe(annotation)
        except ValueError:  # a shape the snapshot reader does not know: an opaque map
            raw, nullable = {"kind": "object"}, True
        ftype = FieldType.from_json(raw)
        out.append(Inner(name, ftype, nullable, sdk_shapes.is_epoch(name, ftype.kind, ""), holds(annotation, ns)))
    return tuple(out)


# Options every SDK method takes that are not query parameters (`*ListParams` inherit them from RequestOptions).
_REQUEST_OPTIONS = frozenset({"api_key", "stripe_version", "stripe_account", "stripe_context", "max_network_retries",
                              "idempotency_key", "content_type", "headers"})


@cache
def list_params(sdk_method: str) -> Optional[frozenset[str]]:
    """The query parameters a list method takes ("Transfer.list_reversals" -> its `TransferListReversalsParams`'
    keys minus request options), or None if the SDK does not say."""
    owner, _, method = sdk_method.rpartition(".")
    cls = resource(owner)
    fn = getattr(cls, method, None) if cls is not None else None
    params = (getattr(fn, "__annotations__", None) or {}).get("params")
    refs = typing.get_args(params)
    if not refs:
        return None
    ref = refs[0]
    name = ref.__forward_arg__ if isinstance(ref, typing.ForwardRef) else getattr(ref, "__name__", "")
    import stripe.params as sdk_params  # the TypedDicts, by the class's namespace ("issuing") or at the top

    ns = namespace(cls)
    for module in ((getattr(sdk_params, ns, None),) if ns else ()) + (sdk_params,):
        typed = getattr(module, name, None) if module is not None else None
        if typed is not None:
            return frozenset(typed.__annotations__) - _REQUEST_OPTIONS
    return None
