"""What a finance model is: a name, what it answers, its columns, the SQL that builds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .dialect import Dialect


@dataclass(frozen=True)
class Model:
    name: str  # the table `finance.<name>` and the asset `finance/<name>`
    answers: str  # what an analyst reads it for, and how it reconciles
    columns: dict[str, str]  # output column -> description, in order (the Connect account column comes first)
    sql: Callable[[Dialect, str], str]  # (dialect, finance schema) -> SELECT (may start WITH; reads src_<table>)
    money: tuple[str, ...] = ()  # BIGINT minor-unit columns, each with a `<column>_major` twin
    currency: str = "currency"  # the column naming the currency of `money`
    reads: tuple[str, ...] = ()  # Stripe tables (lineage)
    after: tuple[str, ...] = ()  # finance models it reads

    def all_columns(self, account: str | None) -> dict[str, str]:
        """Every output column with its description, as the table has them."""
        out = {account: "The Stripe account (acct_…) the figures belong to (Connect)."} if account else {}
        out.update(self.columns)
        if self.money:
            out["currency_exponent"] = (
                f"Decimal places of `{self.currency}` in Stripe's API amounts: 0 for zero-decimal currencies "
                "(JPY), 3 for three-decimal ones (KWD), else 2."
            )
            for m in self.money:
                out[f"{m}_major"] = f"`{m}` in major units of `{self.currency}` (exact decimal: minor units ÷ 10^exponent)."
        return out
