"""Warehouse columns from Stripe's own definitions: each declared field's SQL type and description.

The data alone cannot type a column that is null in every row of a first load (`charge.application_fee_amount`,
`invoice.due_date`): the old rule made those VARCHAR, and a later load had to retype them. stripe-python declares
every field's type (see `source/shapes.py`), so declared fields get their real type from the start:

| SDK type                              | SQL type      |
| ------------------------------------- | ------------- |
| integer, seconds since the Unix epoch | `TIMESTAMPTZ` |
| integer                               | `BIGINT`      |
| number                                | `DOUBLE`      |
| boolean                               | `BOOLEAN`     |
| string, enum, decimal string, id of an expandable object | `VARCHAR` |
| object, list                          | `JSON`        |

Epoch fields (`created`, `date`, `*_at`, `period_start`, ...) are timestamps in SQL without casts. Stripe sends
them as integers, so they are read as `BIGINT` and converted with `to_timestamp`; `epoch(created)` gives the
seconds back (the incremental cursor does that).

A declared type only applies when the batch's values fit it (Stripe may widen a field in a newer API version,
and a fake server may send anything): otherwise the column is typed from the data, as unknown fields always
are, and the table widens as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Iterable

from ..source.shapes import Field, fields

# JSON kinds (as the spool records them / DuckDB's json_type names them) each SQL type accepts.
_FITS: dict[str, frozenset[str]] = {
    "TIMESTAMPTZ": frozenset({"BIGINT", "UBIGINT"}),
    "BIGINT": frozenset({"BIGINT", "UBIGINT"}),
    "DOUBLE": frozenset({"BIGINT", "UBIGINT", "DOUBLE"}),
    "BOOLEAN": frozenset({"BOOLEAN"}),
    "VARCHAR": frozenset({"VARCHAR"}),
    "JSON": frozenset({"OBJECT", "ARRAY", "VARCHAR", "BIGINT", "UBIGINT", "DOUBLE", "BOOLEAN"}),
}

# Descriptions of the columns the package adds to every table.
BOOKKEEPING_DESCRIPTIONS = {
    "_loaded_at": "When this row was last written by the loader.",
    "_state_at": "Stripe-side time (epoch seconds) the row's state is known from: the load's start for list reads, "
    "the event's `created` for change capture. The newest state wins.",
    "_content_hash": "Hash of the object's content, used to leave unchanged rows untouched on re-loads.",
    "is_deleted": "True when Stripe reported the object deleted (a `*.deleted` event); the row is kept.",
    "deleted_at": "When Stripe reported the object deleted.",
    "stripe_account": "The Stripe account (acct_...) the row was read from.",
}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # what the column is in the warehouse
    read_as: str  # what the JSON value is read as (BIGINT for TIMESTAMPTZ: Stripe sends epoch integers)
    description: str
    nullable: bool

    @property
    def epoch(self) -> bool:
        return self.sql_type == "TIMESTAMPTZ"

    def fits(self, json_kinds: Iterable[str]) -> bool:
        """Whether values of these JSON kinds (nulls aside) can be stored in this column as declared."""
        return {k for k in json_kinds if k and k != "NULL"} <= _FITS[self.sql_type]


def _sql_type(f: Field) -> str:
    kind = f.type.kind
    if kind == "integer":
        return "TIMESTAMPTZ" if f.epoch else "BIGINT"
    if kind == "number":
        return "DOUBLE"
    if kind == "boolean":
        return "BOOLEAN"
    if kind == "string":
        return "VARCHAR"  # enums, decimals ("12.5": exact as sent), unexpanded references (ids)
    return "JSON"  # objects and lists: query with ->> / json_extract


def _undocumented(name: str, field_name: str, sql_type: str) -> str:
    # stripe-python leaves some nested objects (`charge.billing_details`, `payment_method.card`) without a
    # docstring; say what the column is rather than show nothing.
    what = "Nested Stripe object (JSON, query with ->>)" if sql_type == "JSON" else f"Stripe field ({sql_type})"
    return f"{what} `{field_name}` of `{name}`; stripe-python gives no description."


_EPOCH_SENTENCE = re.compile(r"\s*Measured in seconds since the Unix epoch\.?")


def _timestamp_description(text: str, field_name: str) -> str:
    """Stripe's text for an epoch field, true for its TIMESTAMPTZ column: the SDK says "Measured in seconds
    since the Unix epoch", which the column is not (it is a timestamp; `epoch(col)` gives the seconds)."""
    text = _EPOCH_SENTENCE.sub("", text).strip()
    return f"{text} A timestamp with time zone (Stripe sends Unix seconds; epoch({field_name}) gives them back)."


@cache
def declared_columns(name: str) -> dict[str, Column]:
    """The columns stripe-python declares for the catalog object `name`, in the SDK's order."""
    out = {}
    for f in fields(name):
        sql_type = _sql_type(f)
        description = f.description or _undocumented(name, f.name, sql_type)
        out[f.name] = Column(
            name=f.name,
            sql_type=sql_type,
            read_as="BIGINT" if sql_type == "TIMESTAMPTZ" else sql_type,
            description=_timestamp_description(description, f.name) if sql_type == "TIMESTAMPTZ" else description,
            nullable=f.nullable,
        )
    return out


def descriptions(name: str) -> dict[str, str]:
    """Column descriptions for the UI: Stripe's own text for declared fields, ours for bookkeeping columns."""
    return {**{c: col.description for c, col in declared_columns(name).items()}, **BOOKKEEPING_DESCRIPTIONS}
