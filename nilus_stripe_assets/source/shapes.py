"""Object shapes from stripe-python's typed classes: every catalog object's declared fields, with types.

    fields("invoice_item") -> [Field(name="amount", type=FieldType(kind="integer"), nullable=False, ...), ...]

The shapes come from a snapshot (`stripe_shapes.json`, written by `source/sdk_shapes.py` from the installed
stripe-python and checked against it by a test), read once on first use: introspecting the SDK itself costs
~0.3 s, the snapshot ~3 ms. Dagster-free; the emulator, the engine and the schema code all read it here.

A field's type is a small neutral descriptor:
- `kind`: integer | number | string | boolean | object | array;
- `items`: for arrays, the element's descriptor;
- `expandable`: for an expandable reference (`Union[str, Customer]`): the classes it expands to. Stripe sends
  the id (a string) unless the request asks for `expand[]`;
- `values`: an enum's values (`Literal`, e.g. `object`'s one value); `open_enum` when the SDK also allows any
  other string (`Union[Literal[...], str]`: Stripe may add values);
- `format`: "decimal" for decimals, which Stripe sends as strings ("12.5").
`nullable` follows `Optional[...]`; `epoch` marks integer fields in seconds since the Unix epoch (Stripe's
timestamps: `created`, `date`, `*_at`, `period_start`, ...); `description` is Stripe's own text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Optional

SNAPSHOT = Path(__file__).with_name("stripe_shapes.json")


@dataclass(frozen=True)
class FieldType:
    kind: str
    items: Optional["FieldType"] = None
    expandable: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    open_enum: bool = False
    format: Optional[str] = None

    @classmethod
    def from_json(cls, raw: dict) -> "FieldType":
        return cls(
            kind=raw["kind"],
            items=cls.from_json(raw["items"]) if raw.get("items") else None,
            expandable=tuple(raw.get("expandable", ())),
            values=tuple(raw.get("values", ())),
            open_enum=raw.get("open_enum", False),
            format=raw.get("format"),
        )


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    nullable: bool
    epoch: bool  # seconds since the Unix epoch
    description: str


@cache
def _snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def stripe_version() -> str:
    """The stripe-python version the shapes were read from."""
    return _snapshot()["stripe_version"]


def api_version() -> str:
    """The Stripe API version stripe-python pins (`stripe.api_version`), which its classes describe: every
    request sends it as `Stripe-Version`, so lists come back in it (events keep their own, see reading/events)."""
    return _snapshot()["api_version"]


@cache
def class_fields(sdk_class: str) -> tuple[Field, ...]:
    """Declared fields of `stripe.<sdk_class>`, in the SDK's order."""
    raw = _snapshot()["classes"].get(sdk_class)
    if raw is None:
        raise KeyError(f"no shape for stripe.{sdk_class}: regenerate with `python -m nilus_stripe_assets.source.sdk_shapes`")
    return tuple(
        Field(f["name"], FieldType.from_json(f["type"]), f["nullable"], f["epoch"], f["description"]) for f in raw
    )


def fields(name: str) -> tuple[Field, ...]:
    """Declared fields of the catalog object `name` (e.g. "charge"), in the SDK's order."""
    from .catalog import CATALOG

    return class_fields(CATALOG[name].sdk_class)


def field_names(name: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(name))


def field(name: str, field_name: str) -> Field:
    for f in fields(name):
        if f.name == field_name:
            return f
    raise KeyError(f"stripe.{name} declares no field {field_name!r}")


def object_type(name: str) -> str:
    """Stripe's `object` value for the catalog object (the one value of the class's `object` Literal)."""
    values = field(name, "object").type.values
    if len(values) != 1:
        raise ValueError(f"stripe.{name}.object is not a single literal: {values}")
    return values[0]


__all__ = ["Field", "FieldType", "api_version", "class_fields", "field", "field_names", "fields", "object_type", "stripe_version"]
