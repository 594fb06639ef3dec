"""Finance models computed inside the warehouse (DuckDB or PostgreSQL), without Dagster.

`MODELS` in build order (a model after those it reads); `run.build(con, model)` builds one; `checks` judges
them. See README "Finance models" for what each answers and how it reconciles.
"""

from __future__ import annotations

from .ledger import BALANCE_TRANSACTIONS, DAILY_OVERVIEW, PAYOUT_RECONCILIATION, PAYOUT_SUMMARY
from .model import Model
from .revenue import CUSTOMER_OVERVIEW, INVOICE_LINE_DETAILS, MRR_BY_CUSTOMER, MRR_BY_MONTH
from .run import build, select_sql

MODELS: tuple[Model, ...] = (BALANCE_TRANSACTIONS, DAILY_OVERVIEW, PAYOUT_RECONCILIATION, PAYOUT_SUMMARY, MRR_BY_CUSTOMER,
                             MRR_BY_MONTH, CUSTOMER_OVERVIEW, INVOICE_LINE_DETAILS)
BY_NAME: dict[str, Model] = {m.name: m for m in MODELS}


def build_all(con, *, stripe_schema: str = "stripe", finance_schema: str = "finance", account=None) -> dict[str, int]:
    """Every model, in order; returns row counts."""
    return {m.name: build(con, m, stripe_schema=stripe_schema, finance_schema=finance_schema, account=account)
            for m in MODELS}


__all__ = ["BY_NAME", "MODELS", "Model", "build", "build_all", "select_sql"]
