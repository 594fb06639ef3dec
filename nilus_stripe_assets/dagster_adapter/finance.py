"""The finance models as Dagster assets: lineage, column descriptions, row counts and checks around SQL that
runs inside the warehouse (`warehouse/models/`).

One asset per model, `finance/<model>` in group `finance`, table `finance.<model>`. An asset depends on the
Stripe tables its SQL reads (those this location loads) and on the finance models it reads, so the UI shows
which Stripe table every number comes from. Materializing one runs its `CREATE TABLE … AS SELECT` in the
warehouse (the DuckDB file or PostgreSQL, through the `duckdb` resource); nothing but a row count comes back
into the step. Three models carry checks that judge their numbers (see `warehouse/models/checks.py`); a check
that cannot judge yet yields no result, so Dagster shows it skipped, never passed.

Connect locations pass `account_column="stripe_account"`: every model then has that column first and groups
and joins by it.
"""


from typing import Callable, Collection, Iterable, Optional, Sequence

import dagster as dg
from dagster_duckdb import DuckDBResource

from ..source.catalog import CATALOG, DEFAULT_OBJECTS
from ..warehouse.models import MODELS, Model, build, checks
from ..warehouse.strategies import TableRef, table_columns
from .duckdb_resource import open_sink

FINANCE_SCHEMA = "finance"
GROUP = "finance"

# model -> (check name, what it asserts, judge(sink, finance schema, stripe schema, account))
CHECKS: dict[str, tuple[str, str, Callable]] = {
    "daily_overview": (
        "net_matches_balance_transactions",
        "Each (day, currency) row's transactions and balance_change equal the count and net of that day's Stripe "
        "balance transactions, and its columns add up (net_volume = sales + refunds + disputes + application_fees "
        "+ other_activity - fees; balance_change = net_volume + payouts + transfers + topups). Skipped before any "
        "balance transaction is loaded.",
        lambda sink, fin, src, acct: checks.daily_overview_matches_balance_transactions(sink, fin, src, acct),
    ),
    "mrr_by_month": (
        "movements_carry_each_month",
        "Last month's MRR + new + expansion + contraction + churned + reactivation = this month's MRR, for every month "
        "and currency, and a month with MRR is followed by the next. Skipped while there is no MRR.",
        lambda sink, fin, src, acct: checks.mrr_movements_carry(sink, fin, acct),
    ),
    "payout_reconciliation": (
        "items_sum_to_payout",
        "The net of each itemized payout's balance transactions equals the payout's amount. Skipped while no payout "
        "is itemized (load stripe/payout_balance_transaction).",
        lambda sink, fin, src, acct: checks.payouts_sum_to_their_transactions(sink, fin, src, acct),
    ),
}


def _type_of(column: str, model: Model) -> str:
    """The column's SQL type as the model builds it (for the UI before the first materialization)."""
    if column.endswith("_major"):
        return "DECIMAL(38, 3)"
    if column in model.money or column in ("transactions", "charges", "payments", "customers", "subscriptions",
                                           "items", "active_subscriptions", "quantity", "new_customers",
                                           "churned_customers", "reactivated_customers", "price_interval_count"):
        return "BIGINT"
    if column == "currency_exponent":
        return "INTEGER"
    if column in ("day", "month", "created_day"):
        return "DATE"
    if column.endswith("_at") or column in ("available_on", "arrival_date", "payout_arrival_date", "period_start",
                                            "period_end"):
        return "TIMESTAMPTZ"
    if column == "automatic":
        return "BOOLEAN"
    return "VARCHAR"


def column_schema(model: Model, account_column: Optional[str], types: Optional[dict] = None) -> dg.TableSchema:
    described = model.all_columns(account_column)
    return dg.TableSchema(columns=[
        dg.TableColumn(name=c, type=(types or {}).get(c) or _type_of(c, model), description=text)
        for c, text in described.items()
    ])


def _asset(model: Model, prefix: list[str], schema: str, stripe_schema: str, group_name: str,
           account_column: Optional[str], loaded: Collection[str]) -> dg.AssetsDefinition:
    key = dg.AssetKey([group_name, model.name])
    # Lineage to the Stripe assets the location defines; a table the location does not load (a model reads
    # it when present) is no dependency, so it cannot turn up as a stub in a `stripe/*` selection.
    deps = [dg.AssetKey([*prefix, name]) for name in model.reads if name in loaded]
    deps += [dg.AssetKey([group_name, name]) for name in model.after]
    check = CHECKS.get(model.name)
    specs = [dg.AssetCheckSpec(check[0], asset=key, blocking=False, description=check[1])] if check else []
    table = TableRef(schema, model.name)

    spec = dg.AssetSpec(
        key=key, deps=deps, group_name=group_name, kinds={"sql"}, owners=["team:finance"], description=model.answers,
        metadata={"dagster/table_name": str(table), "dagster/column_schema": column_schema(model, account_column)},
    )

    # A multi-asset of one, subsettable: a check that cannot judge may then yield no result (shown skipped).
    @dg.multi_asset(specs=[spec], check_specs=specs, can_subset=True, name=key.to_python_identifier())
    def _model(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        with open_sink(duckdb) as sink:
            rows = build(sink, model, stripe_schema=stripe_schema, finance_schema=schema, account=account_column)
            types = table_columns(sink, table)
            yield dg.MaterializeResult(metadata={
                "dagster/row_count": rows,
                "dagster/table_name": str(table),
                "dagster/column_schema": column_schema(model, account_column, types),
                "warehouse": sink.kind,
            })
            if check:
                judged = check[2](sink, schema, stripe_schema, account_column)
                if judged.passed is None:
                    context.log.info(f"Check {judged.check} on {key.to_user_string()} not judged: {judged.description}.")
                else:
                    yield dg.AssetCheckResult(
                        asset_key=key, check_name=judged.check, passed=judged.passed,
                        severity=dg.AssetCheckSeverity.ERROR, description=judged.description,
                        metadata=judged.metadata,
                    )

    return _model


def build_finance_assets(
    stripe_prefix: Sequence[str] = ("stripe",),
    *,
    schema: str = FINANCE_SCHEMA,
    stripe_schema: str = "stripe",
    group_name: str = GROUP,
    account_column: Optional[str] = None,
    models: Sequence[Model] = MODELS,
    stripe_objects: Optional[Iterable[str]] = None,
) -> list[dg.AssetsDefinition]:
    """One asset per finance model (`finance/<model>`), reading the Stripe tables in `stripe_schema` whose
    assets are under `stripe_prefix`. `account_column`: the Connect account column to group by.
    `stripe_objects`: the catalog objects the code location loads (default: those `build_stripe_assets()`
    builds by default, `DEFAULT_OBJECTS`)."""
    loaded = set(DEFAULT_OBJECTS if stripe_objects is None else stripe_objects)
    return [_asset(m, list(stripe_prefix), schema, stripe_schema, group_name, account_column, loaded) for m in models]


def loaded_objects(stripe_assets: Iterable[dg.AssetsDefinition]) -> list[str]:
    """The catalog objects among the keys of a location's Stripe assets (`stripe/<object>`)."""
    return [key.path[-1] for a in stripe_assets for key in a.keys if key.path[-1] in CATALOG]


__all__ = ["CHECKS", "build_finance_assets", "column_schema", "loaded_objects"]
