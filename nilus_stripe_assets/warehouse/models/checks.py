"""Checks that judge the finance models' numbers against the Stripe tables, in SQL, without Dagster.

Each returns a `Judgment`: passed or failed with counts and a few examples, or `passed=None` with the reason
when it cannot judge (nothing to compare yet), which the Dagster adapter shows as a skipped check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..sinks import Sink, as_sink
from ..strategies import TableRef, quote, table_columns
from .dialect import Dialect, source_relation

EXAMPLES = 5


@dataclass(frozen=True)
class Judgment:
    check: str
    passed: Optional[bool]  # None: could not judge
    description: str
    metadata: dict = field(default_factory=dict)


def _exists(d: Dialect, schema: str, name: str) -> bool:
    return bool(table_columns(d.sink, TableRef(schema, name)))


def _keys(d: Dialect, alias: str, *cols: str) -> str:
    acct = [f"{alias}.{quote(d.account)}"] if d.account else []
    return " || '/' || ".join(f"CAST({c} AS VARCHAR)" for c in acct + [f"{alias}.{c}" for c in cols])


def daily_overview_matches_balance_transactions(con, finance_schema: str = "finance", stripe_schema: str = "stripe",
                                                account: Optional[str] = None) -> Judgment:
    name = "net_matches_balance_transactions"
    d = Dialect(as_sink(con), account)
    fin = TableRef(finance_schema, "daily_overview")
    if not _exists(d, finance_schema, "daily_overview") or not _exists(d, stripe_schema, "balance_transaction"):
        return Judgment(name, None, "daily_overview or stripe.balance_transaction is not built yet")
    raw = source_relation(d, stripe_schema, "balance_transaction")
    sql = f"""WITH raw AS (
  SELECT {d.a('t')}CAST({d.utc('t.created')} AS DATE) AS day, t.currency, count(*) AS n, sum(t.net) AS net
  FROM ({raw}) t GROUP BY {d.a('t')}CAST({d.utc('t.created')} AS DATE), t.currency),
cmp AS (
  SELECT coalesce({_keys(d, 'r', 'day', 'currency')}, {_keys(d, 'o', 'day', 'currency')}) AS k,
    r.day IS NULL OR o.day IS NULL OR r.net <> o.balance_change OR r.n <> o.transactions
      OR o.net_volume <> o.sales + o.refunds + o.disputes + o.application_fees + o.other_activity - o.fees
      OR o.balance_change <> o.net_volume + o.payouts + o.transfers + o.topups AS bad
  FROM raw r FULL JOIN {fin.sql} o ON o.day = r.day AND o.currency = r.currency{d.on('o', 'r')})
SELECT count(*), count(*) FILTER (WHERE bad) FROM cmp"""
    compared, bad = d.sink.execute(sql).fetchone()
    if not compared:
        return Judgment(name, None, "no balance transactions to compare yet")
    examples = [r[0] for r in d.sink.execute(f"{sql.rsplit('SELECT count(*)', 1)[0]}SELECT k FROM cmp WHERE bad ORDER BY k LIMIT {EXAMPLES}").fetchall()] if bad else []
    return Judgment(
        name, bad == 0,
        f"{bad} of {compared} (day, currency) rows differ from their balance transactions' count or net, or do not add up."
        if bad else f"All {compared} (day, currency) rows match their balance transactions' count and net, and add up.",
        {"rows_compared": int(compared), "rows_differing": int(bad), "examples": ", ".join(map(str, examples))},
    )


def mrr_movements_carry(con, finance_schema: str = "finance", account: Optional[str] = None) -> Judgment:
    name = "movements_carry_each_month"
    d = Dialect(as_sink(con), account)
    if not _exists(d, finance_schema, "mrr_by_month"):
        return Judgment(name, None, "mrr_by_month is not built yet")
    t = TableRef(finance_schema, "mrr_by_month").sql
    prev = f"CAST(m.month - INTERVAL '1 month' AS DATE)"
    nxt = f"CAST(p.month + INTERVAL '1 month' AS DATE)"
    this_month = f"CAST(date_trunc('month', {d.utc('CURRENT_TIMESTAMP')}) AS DATE)"
    sql = f"""WITH carried AS (
  SELECT {_keys(d, 'm', 'month', 'currency')} AS k,
    coalesce(p.mrr, 0) + m.new_mrr + m.expansion_mrr + m.contraction_mrr + m.churned_mrr + m.reactivation_mrr <> m.mrr AS bad
  FROM {t} m LEFT JOIN {t} p ON p.currency = m.currency AND p.month = {prev}{d.on('p', 'm')}
  UNION ALL
  SELECT {_keys(d, 'p', 'month', 'currency')} AS k, true AS bad
  FROM {t} p WHERE p.mrr <> 0 AND p.month < {this_month}
    AND NOT EXISTS (SELECT 1 FROM {t} m WHERE m.currency = p.currency AND m.month = {nxt}{d.on('m', 'p')}))
SELECT count(*), count(*) FILTER (WHERE bad) FROM carried"""
    compared, bad = d.sink.execute(sql).fetchone()
    if not compared:
        return Judgment(name, None, "no MRR yet")
    examples = [r[0] for r in d.sink.execute(sql.replace("SELECT count(*), count(*) FILTER (WHERE bad) FROM carried",
                                                         f"SELECT k FROM carried WHERE bad ORDER BY k LIMIT {EXAMPLES}")).fetchall()] if bad else []
    return Judgment(
        name, bad == 0,
        f"{bad} of {compared} months do not carry: last month's MRR + movements differs from the month's MRR "
        "(or a month with MRR has no next month)." if bad else
        f"All {compared} months carry: last month's MRR + new + expansion + contraction + churn + reactivation = MRR.",
        {"months_compared": int(compared), "months_not_carried": int(bad), "examples": ", ".join(examples)},
    )


def payouts_sum_to_their_transactions(con, finance_schema: str = "finance", stripe_schema: str = "stripe",
                                      account: Optional[str] = None) -> Judgment:
    name = "items_sum_to_payout"
    d = Dialect(as_sink(con), account)
    if not _exists(d, finance_schema, "payout_reconciliation"):
        return Judgment(name, None, "payout_reconciliation is not built yet")
    payouts = source_relation(d, stripe_schema, "payout")
    t = TableRef(finance_schema, "payout_reconciliation").sql
    sql = f"""WITH items AS (
  SELECT {d.a('r')}r.payout_id, sum(r.net) AS net FROM {t} r GROUP BY {d.a('r')}r.payout_id),
cmp AS (
  SELECT {_keys(d, 'i', 'payout_id')} AS k, po.id IS NULL OR po.amount <> i.net AS bad, po.amount - i.net AS off
  FROM items i LEFT JOIN ({payouts}) po ON po.id = i.payout_id{d.on('po', 'i')})
SELECT count(*), count(*) FILTER (WHERE bad), coalesce(sum(abs(off)), 0) FROM cmp"""
    compared, bad, off = d.sink.execute(sql).fetchone()
    if not compared:
        return Judgment(name, None, "no itemized payout yet (load stripe/payout_balance_transaction)")
    examples = [r[0] for r in d.sink.execute(sql.rsplit("SELECT count(*)", 1)[0] + f"SELECT k FROM cmp WHERE bad ORDER BY k LIMIT {EXAMPLES}").fetchall()] if bad else []
    return Judgment(
        name, bad == 0,
        f"{bad} of {compared} itemized payouts differ from the net of their transactions." if bad else
        f"All {compared} itemized payouts equal the net of their transactions.",
        {"payouts_compared": int(compared), "payouts_differing": int(bad), "total_difference": int(off),
         "examples": ", ".join(examples)},
    )
