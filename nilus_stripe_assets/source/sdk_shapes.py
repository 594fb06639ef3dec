"""Read object shapes out of stripe-python's typed resource classes (the source of truth for field sets).

stripe-python generates one class per resource from Stripe's OpenAPI spec: each field is an annotation,
followed by a docstring holding Stripe's description of the field. This module turns a class into a list
of neutral field records (see `source/shapes.py`) and writes the committed snapshot `stripe_shapes.json`:

    .venv/bin/python -m nilus_stripe_assets.source.sdk_shapes        # regenerate after upgrading stripe
    (`python -m nilus_stripe_assets.source.sdk_catalog` rewrites the catalog's data, then this snapshot)

Introspecting the classes costs ~1 s (importing ~100 SDK modules, parsing their source for the
docstrings), too much for the import path of a code location, so the package reads the snapshot and a
test checks that it equals what this module reads from the installed SDK.

Raw `__annotations__` are read, not `typing.get_type_hints`, which fails on the SDK's forward references
(`ExpandableField["Customer"]` is `Union[str, ForwardRef('Customer')]`).
"""

from __future__ import annotations

import ast
import decimal
import inspect
import json
import re
import sys
import typing
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("stripe_shapes.json")

# Stripe's wording for epoch-second fields ("Time at which the object was created. Measured in seconds since
# the Unix epoch."). A few date fields do not say it in their description; their names do.
_MILLISECONDS = re.compile(r"milliseconds since", re.I)
_EPOCH_WORDS = re.compile(r"seconds since (the )?(unix )?epoch|\btimestamp\b|\btime at which\b", re.I)
_EPOCH_NAMES = re.compile(r"^(created|date|updated|.*_at|.*_date|period_(start|end)|current_period_(start|end)"
                          r"|trial_(start|end)|available_on|redeem_by|billed_until|billing_cycle_anchor)$")


def _sdk():
    import stripe  # only the snapshot builder and its test need the SDK's classes loaded

    return stripe


def _type_name(ref) -> str:
    if isinstance(ref, typing.ForwardRef):
        return ref.__forward_arg__
    if isinstance(ref, str):
        return ref
    return ref.__name__


def describe(annotation, encoding: typing.Optional[str] = None) -> tuple[dict, bool]:
    """(type descriptor, nullable) of one annotation; raises ValueError on a shape it does not know."""
    stripe = _sdk()
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        nullable = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return describe(rest[0], encoding)[0], nullable
        refs = [a for a in rest if isinstance(a, (typing.ForwardRef, str)) and a is not str]
        if str in rest and refs and len(refs) == len(rest) - 1:
            # Expandable field: the id unless the request asked for `expand[]`.
            return {"kind": "string", "expandable": [_type_name(r) for r in refs]}, nullable
        literals = [a for a in rest if typing.get_origin(a) is typing.Literal]
        if str in rest and len(literals) == len(rest) - 1:
            # An open enum: one of the known values, or a newer string.
            values = [v for lit in literals for v in typing.get_args(lit)]
            return {"kind": "string", "values": values, "open_enum": True}, nullable
        if refs and len(refs) == len(rest):
            return {"kind": "object", "one_of": [_type_name(r) for r in refs]}, nullable
        raise ValueError(f"unknown union {annotation!r}")
    if origin is typing.Literal:
        if all(isinstance(a, bool) for a in args):
            return {"kind": "boolean"}, False
        if all(isinstance(a, str) for a in args):
            return {"kind": "string", "values": list(args)}, False
        raise ValueError(f"unknown literal {annotation!r}")
    if origin in (list, typing.List):
        return {"kind": "array", "items": describe(args[0], encoding)[0]}, False
    if isinstance(annotation, (typing.ForwardRef, str)):
        return {"kind": "object", "ref": _type_name(annotation)}, False  # an embedded resource, e.g. "Price"
    base = origin or annotation
    if isinstance(base, type):
        if issubclass(base, stripe.ListObject):
            return {"kind": "object", "list_of": _type_name(args[0]) if args and not typing.get_args(args[0]) else None}, False
        if issubclass(base, stripe.StripeObject):  # nested classes (Charge.BillingDetails), metadata maps
            return {"kind": "object"}, False
        if base is bool:
            return {"kind": "boolean"}, False
        if base is int:
            return {"kind": "integer"}, False
        if base is float:
            return {"kind": "number"}, False
        if base is str:
            return {"kind": "string"}, False
        if base is decimal.Decimal:
            # Stripe sends decimals as strings ("12.5"); the SDK's `_field_encodings` say "decimal_string".
            if encoding not in (None, "decimal_string"):
                raise ValueError(f"unexpected encoding {encoding!r} for a Decimal")
            return {"kind": "string", "format": "decimal"}, False
    raise ValueError(f"unknown annotation {annotation!r}")


def _docstrings(cls: type) -> dict[str, str]:
    """Field -> the docstring literal that follows its annotation in the class body."""
    source = inspect.getsource(sys.modules[cls.__module__])
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    docs = {}
    for stmt, following in zip(node.body, node.body[1:] + [None]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant) \
                    and isinstance(following.value.value, str):
                docs[stmt.target.id] = inspect.cleandoc(following.value.value)
    return docs


def is_epoch(name: str, kind: str, description: str) -> bool:
    """An integer field holding seconds since the Unix epoch (Stripe's timestamps). A few fields count
    milliseconds instead (`terminal.Reader.last_seen_at` says so): those stay integers, not shifted 1000x."""
    if _MILLISECONDS.search(description):
        return False
    return kind == "integer" and bool(_EPOCH_WORDS.search(description) or _EPOCH_NAMES.match(name))


def sdk_class(class_name: str) -> type:
    """`stripe.<class_name>`; namespaced classes are dotted: "checkout.Session" is stripe.checkout.Session."""
    target = _sdk()
    for part in class_name.split("."):
        target = getattr(target, part)
    return target


def class_fields(class_name: str) -> list[dict]:
    """The declared fields of `stripe.<class_name>`, in declaration order, as snapshot records."""
    cls = sdk_class(class_name)
    annotations: dict = {}
    docs: dict[str, str] = {}
    encodings: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        own = {k: v for k, v in vars(klass).get("__annotations__", {}).items()
               if not k.startswith("_") and k != "OBJECT_NAME"}
        if own:
            annotations.update(own)
            docs.update(_docstrings(klass))
        encodings.update(vars(klass).get("_field_encodings", {}) or {})
    fields = []
    for name, annotation in annotations.items():
        descriptor, nullable = describe(annotation, encodings.get(name))
        description = docs.get(name, "")
        fields.append({
            "name": name, "type": descriptor, "nullable": nullable,
            "epoch": is_epoch(name, descriptor["kind"], description), "description": description,
        })
    return fields


def build_snapshot() -> dict:
    """Every catalog object's SDK class, introspected; keyed by class name."""
    from .catalog import CATALOG

    # Plus the classes of lists that objects embed (invoice.lines, credit_note.lines), and Connect's accounts
    # (`/v1/account`, `/v1/accounts`), which the emulator renders.
    classes = sorted({o.sdk_class for o in CATALOG.values()} | {"InvoiceLineItem", "CreditNoteLineItem", "Account"})
    sdk = _sdk()
    # The API version the SDK pins: the version its classes describe, and the one every request sends.
    return {"stripe_version": sdk.VERSION, "api_version": sdk.api_version,
            "classes": {name: class_fields(name) for name in classes}}


def render(snapshot: dict) -> str:
    return json.dumps(snapshot, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    SNAPSHOT.write_text(render(build_snapshot()), encoding="utf-8")
    print(f"wrote {SNAPSHOT}")


if __name__ == "__main__":
    main()
