"""What the finance models' SQL needs to say differently on DuckDB and PostgreSQL, and the source relations.

The models are one SQL text for both engines (window functions, FILTER, CASE, `AT TIME ZONE`, generate_series
and CREATE TABLE AS are spelled alike). The few spellings that differ come from here: JSON paths (the sink's),
integer division, JSON/NULL types. `Dialect` also adds the Connect account to select lists, joins and
partitions when the tables carry one, so one text serves single accounts and Connect platforms.

Source relations (`src_<table>`): each model reads Stripe tables only through these, which hold the columns
the models need, typed, without rows Stripe reported deleted. A table or column that is not loaded (a dispute
table before its first load, an older table without a field) reads as typed NULLs, so every model builds
on any warehouse, and LEFT JOINs to a missing table simply find nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from ..sinks import Sink, literal
from ..strategies import TableRef, quote, table_columns

V, B, T, J, BOOL = "VARCHAR", "BIGINT", "TIMESTAMPTZ", "JSON", "BOOLEAN"

# The Stripe columns the models read, with the type stripe-python declares (staging/columns.py's mapping).
SOURCES: dict[str, dict[str, str]] = {
    "balance_transaction": {"id": V, "created": T, "available_on": T, "type": V, "reporting_category": V,
                            "status": V, "currency": V, "amount": B, "fee": B, "net": B, "source": V,
                            "description": V},
    "charge": {"id": V, "customer": V, "payment_intent": V, "amount": B, "currency": V, "status": V, "created": T},
    "refund": {"id": V, "charge": V, "payment_intent": V, "customer": V},
    "dispute": {"id": V, "charge": V, "payment_intent": V},
    "payout": {"id": V, "amount": B, "currency": V, "created": T, "arrival_date": T, "automatic": BOOL,
               "status": V, "method": V, "reconciliation_status": V},
    "payout_balance_transaction": {"id": V, "payout": V, "created": T, "type": V, "reporting_category": V,
                                   "currency": V, "amount": B, "fee": B, "net": B, "source": V},
    "transfer": {"id": V, "destination": V, "source_transaction": V},
    "application_fee": {"id": V, "account": V, "charge": V},
    "invoice_payment": {"id": V, "invoice": V, "payment": J, "status": V},
    "invoice": {"id": V, "customer": V, "currency": V, "status": V, "number": V, "created": T, "total": B,
                "amount_paid": B, "period_start": T, "period_end": T, "parent": J},
    "invoice_line_item": {"id": V, "invoice": V, "amount": B, "currency": V, "description": V, "quantity": B,
                          "subscription": V, "period": J, "pricing": J, "parent": J},
    "subscription": {"id": V, "customer": V, "currency": V, "status": V, "created": T, "start_date": T,
                     "ended_at": T, "canceled_at": T, "cancel_at": T, "trial_start": T, "trial_end": T},
    "subscription_item": {"id": V, "subscription": V, "created": T, "quantity": B, "price": J},
    "price": {"id": V, "product": V, "nickname": V, "currency": V, "unit_amount": B, "recurring": J},
    "customer": {"id": V, "email": V, "name": V, "created": T, "currency": V},
}


@dataclass(frozen=True)
class Dialect:
    sink: Sink
    account: Optional[str] = None  # the Connect account column ("stripe_account"), None for one account

    def a(self, alias: str) -> str:
        """`alias.account, ` for select lists, GROUP BY and PARTITION BY ('' for one account)."""
        return f"{alias}.{quote(self.account)}, " if self.account else ""

    @property
    def out(self) -> str:
        """The output column list's account column (`stripe_account, `), unqualified."""
        return f"{quote(self.account)}, " if self.account else ""

    def on(self, left: str, right: str) -> str:
        """` AND left.account = right.account` for join conditions ('' for one account)."""
        return f" AND {left}.{quote(self.account)} = {right}.{quote(self.account)}" if self.account else ""

    def json(self, expr: str, *path: str) -> str:
        return self.sink.json_text(expr, list(path))

    def idiv(self, a: str, b: str) -> str:
        """Integer division, truncated (both operands BIGINT)."""
        if self.sink.kind == "postgresql":
            return f"CAST(div({a}, {b}) AS BIGINT)"
        return f"(({a}) // ({b}))"

    def null(self, sql_type: str) -> str:
        return f"CAST(NULL AS {self.sink.type_sql(sql_type)})"

    def utc(self, ts: str) -> str:
        """A TIMESTAMPTZ as UTC wall time (days and months are UTC, whatever the session's time zone)."""
        return f"({ts} AT TIME ZONE 'UTC')"


def source_relation(d: Dialect, stripe_schema: str, table: str) -> str:
    """SELECT of `src_<table>`: the needed columns of `stripe_schema.table`, typed NULLs where missing."""
    wanted = SOURCES[table]
    have = table_columns(d.sink, TableRef(stripe_schema, table))
    cols = []
    if d.account:
        cols.append(f"t.{quote(d.account)}" if d.account in have else f"{d.null(V)} AS {quote(d.account)}")
    for name, sql_type in wanted.items():
        cols.append(f"t.{quote(name)}" if name in have else f"{d.null(sql_type)} AS {quote(name)}")
    if not have:  # not loaded: no rows, the same columns (all of them typed NULLs above)
        return f"SELECT {', '.join(cols)} WHERE 1 = 0"
    where = " WHERE NOT coalesce(t.is_deleted, false)" if "is_deleted" in have else ""
    return f"SELECT {', '.join(cols)} FROM {TableRef(stripe_schema, table).sql} t{where}"


def loaded(d: Dialect, stripe_schema: str, tables: Sequence[str]) -> Mapping[str, bool]:
    return {t: bool(table_columns(d.sink, TableRef(stripe_schema, t))) for t in tables}


__all__ = ["Dialect", "SOURCES", "literal", "loaded", "source_relation"]
