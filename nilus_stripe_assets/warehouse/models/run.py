"""Build finance models inside the warehouse: one `CREATE TABLE … AS SELECT` per model, swapped in one transaction.

Nothing is read into Python but a row count: the SQL runs where the data is (DuckDB under the same memory cap
as the loader's writes, spilling to disk; PostgreSQL in its server). A model's table is dropped and created in
the same transaction, so readers see the old table or the new one, never none or half.
"""

from __future__ import annotations

import re
from typing import Optional

from ..sinks import Sink, as_sink
from ..strategies import TableRef, quote
from .currency import exponent_sql, major_sql
from .dialect import Dialect, source_relation
from .model import Model

_SOURCE = re.compile(r"\bsrc_(\w+)\b")


def select_sql(model: Model, d: Dialect, stripe_schema: str = "stripe", finance_schema: str = "finance") -> str:
    """The model's whole SELECT: its source relations, its own SQL, and the major-unit columns."""
    body = model.sql(d, quote(finance_schema))
    sources = sorted(set(_SOURCE.findall(body)))
    ctes = ", ".join(f"src_{name} AS ({source_relation(d, stripe_schema, name)})" for name in sources)
    # Sums are HUGEINT in DuckDB and numeric in PostgreSQL: amounts are stored as BIGINT minor units on both.
    cols = [f"m.{quote(d.account)}"] if d.account else []
    cols += [f"CAST(m.{quote(c)} AS BIGINT) AS {quote(c)}" if c in model.money else f"m.{quote(c)}" for c in model.columns]
    if model.money:
        cur = f"m.{quote(model.currency)}"
        cols.append(f"{exponent_sql(cur)} AS currency_exponent")
        cols += [f"{major_sql(f'm.{quote(c)}', cur)} AS {quote(c + '_major')}" for c in model.money]
    return f"{'WITH ' + ctes + ' ' if ctes else ''}SELECT {', '.join(cols)} FROM ({body}) m"


def build(con, model: Model, *, stripe_schema: str = "stripe", finance_schema: str = "finance",
          account: Optional[str] = None) -> int:
    """(Re)build `finance_schema.<model>` from the Stripe tables in `stripe_schema`; returns its row count.
    `account`: the Connect account column every model then groups by (None for a single account)."""
    sink: Sink = as_sink(con)
    d = Dialect(sink, account)
    table = TableRef(finance_schema, model.name)

    def apply() -> int:
        sink.create_schema(finance_schema)
        with sink.transaction():
            sink.lock_ddl(str(table))  # PostgreSQL: concurrent DDL on one name collides in its catalog
            select = select_sql(model, d, stripe_schema, finance_schema)
            sink.execute(f"DROP TABLE IF EXISTS {table.sql}")
            sink.execute(f"CREATE TABLE {table.sql} AS {select}")
            return int(sink.execute(f"SELECT count(*) FROM {table.sql}").fetchone()[0])

    return sink.guarded(apply)
