"""Finance models downstream of the Stripe tables: daily net volume and monthly recurring revenue.

Both are ordinary Dagster assets in group `finance`. They read their Stripe tables as pandas DataFrames
through the IO manager (`io_manager`, which loads `stripe.<object>` and stores a returned DataFrame by
replacing `finance.<name>`), so they rebuild from whatever the Stripe assets last wrote.

Amounts stay in Stripe's minor units (cents for USD), as in the source tables.
"""


from __future__ import annotations  # pandas in annotations only: imported where a model runs

import json
from typing import TYPE_CHECKING, Any, Optional, Sequence

import dagster as dg

if TYPE_CHECKING:
    import pandas as pd

FINANCE_SCHEMA = "finance"
GROUP = "finance"

MRR_STATUSES = ("active", "trialing", "past_due")
# Months per billing interval: an amount billed every `interval` recurs `1 / months` times a month.
MONTHS_PER_INTERVAL = {"month": 1.0, "year": 12.0, "week": 12.0 / 52.0, "day": 12.0 / 365.0}

DAILY_COLUMNS = ["day", "currency", "transactions", "amount", "fee", "net"]
# Net volume counts sales (charges, refunds, disputes, fees...), not money moved out of or into the balance:
# payouts to the bank, transfers to connected accounts and top-ups are left out (by `reporting_category`).
NOT_SALES = ("payout", "transfer", "topup")
MRR_COLUMNS = ["currency", "subscriptions", "items", "mrr"]


def _json(value: Any) -> Any:
    """A JSON column's value as Python data (DuckDB hands JSON to pandas as text)."""
    import pandas as pd

    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value


def _live(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows Stripe has not reported deleted."""
    if "is_deleted" not in frame.columns:
        return frame
    return frame[~frame["is_deleted"].fillna(False).astype(bool)]


def daily_net_volume_frame(balance_transactions: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day (of `created`) and currency: number of balance transactions and sums of amount, fee, net,
    over sales only (payouts, transfers and top-ups are not sales; see NOT_SALES)."""
    import pandas as pd

    needed = {"created", "currency", "amount", "fee", "net"}
    if balance_transactions.empty or not needed <= set(balance_transactions.columns):
        return pd.DataFrame(
            {
                "day": pd.Series(dtype="datetime64[ns]").dt.date,
                "currency": pd.Series(dtype="object"),
                **{c: pd.Series(dtype="int64") for c in ("transactions", "amount", "fee", "net")},
            }
        )
    frame = _live(balance_transactions)
    if "reporting_category" in frame.columns:
        category = frame["reporting_category"].fillna("").astype(str)
        frame = frame[~category.str.startswith(NOT_SALES)]
    # `created` is a TIMESTAMPTZ column (columns.py); tables written by older versions hold epoch seconds.
    created = frame["created"]
    when = pd.to_datetime(created, unit="s", utc=True) if pd.api.types.is_numeric_dtype(created) else pd.to_datetime(created, utc=True)
    frame = frame.assign(day=when.dt.date)
    out = (
        frame.groupby(["day", "currency"], as_index=False)
        .agg(transactions=("id", "size"), amount=("amount", "sum"), fee=("fee", "sum"), net=("net", "sum"))
        .sort_values(["day", "currency"])
        .reset_index(drop=True)
    )
    return out[DAILY_COLUMNS].astype({"transactions": "int64", "amount": "int64", "fee": "int64", "net": "int64"})


def item_monthly_amount(item: dict) -> tuple[Optional[float], Optional[str], str]:
    """(monthly amount, currency, reason) of one subscription item; the amount is None when it has no MRR.

    unit amount × quantity, normalised to a month: ÷ interval_count, × 12/52 for weeks, × 12/365 for days,
    ÷ 12 for years.
    """
    price = item.get("price") or {}
    currency = price.get("currency")
    recurring = price.get("recurring") or None
    if not recurring:
        return None, currency, "price not recurring"
    if recurring.get("usage_type") == "metered":
        return None, currency, "metered price"
    months = MONTHS_PER_INTERVAL.get(recurring.get("interval"))
    if months is None:
        return None, currency, f"unknown interval {recurring.get('interval')!r}"
    unit = price.get("unit_amount")
    if unit is None and price.get("unit_amount_decimal") is not None:
        unit = float(price["unit_amount_decimal"])
    if unit is None:
        return None, currency, "no unit amount (tiered price)"
    import pandas as pd

    quantity = item.get("quantity")
    quantity = 1 if quantity is None or pd.isna(quantity) else quantity
    count = recurring.get("interval_count") or 1
    return float(unit) * float(quantity) / (months * float(count)), currency, ""


def mrr_frame(subscriptions: pd.DataFrame, subscription_items: Optional[pd.DataFrame] = None) -> tuple[pd.DataFrame, dict]:
    """MRR per currency of active, trialing and past-due subscriptions, plus notes for the metadata.

    A subscription's items are its embedded `items.data`; Stripe embeds at most 10, so for a subscription
    whose `items.has_more` is true the items come from the `subscription_item` table instead (when loaded).
    Discounts and taxes are not applied.
    """
    import pandas as pd

    # subscriptions_counted: those with MRR, the sum of the table's `subscriptions`; subscriptions_without_mrr:
    # live ones whose items all were skipped (e.g. metered prices).
    notes = {"subscriptions_counted": 0, "subscriptions_without_mrr": 0, "items_counted": 0, "items_skipped": 0,
             "skipped_reasons": "",
             "subscriptions_items_from_table": 0, "subscriptions_items_truncated": 0}
    rows, skipped = [], {}
    if subscriptions.empty or not {"id", "status", "items"} <= set(subscriptions.columns):
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(MRR_COLUMNS, ["object", "int64", "int64", "float64"])}), notes
    items_by_sub: dict[str, list[dict]] = {}
    if subscription_items is not None and not subscription_items.empty and "subscription" in subscription_items.columns:
        for record in _live(subscription_items).to_dict("records"):
            record["price"] = _json(record.get("price"))
            items_by_sub.setdefault(record["subscription"], []).append(record)
    live = _live(subscriptions)
    live = live[live["status"].isin(MRR_STATUSES)]
    for sub in live.to_dict("records"):
        embedded = _json(sub.get("items")) or {}
        items = [i for i in embedded.get("data") or [] if isinstance(i, dict)]
        if embedded.get("has_more"):
            if sub["id"] in items_by_sub:
                items = items_by_sub[sub["id"]]
                notes["subscriptions_items_from_table"] += 1
            else:
                notes["subscriptions_items_truncated"] += 1
        counted = False
        for item in items:
            amount, currency, reason = item_monthly_amount(item)
            if amount is None:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            rows.append({"currency": currency or sub.get("currency"), "subscription": sub["id"], "mrr": amount})
            counted = True
        notes["subscriptions_counted" if counted else "subscriptions_without_mrr"] += 1
    notes["items_counted"] = len(rows)
    notes["items_skipped"] = sum(skipped.values())
    notes["skipped_reasons"] = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items()))
    if not rows:
        return mrr_frame(pd.DataFrame())[0], notes
    frame = pd.DataFrame(rows)
    out = (
        frame.groupby("currency", as_index=False)
        .agg(subscriptions=("subscription", "nunique"), items=("subscription", "size"), mrr=("mrr", "sum"))
        .sort_values("currency")
        .reset_index(drop=True)
    )
    out["mrr"] = out["mrr"].round(2)
    return out[MRR_COLUMNS].astype({"subscriptions": "int64", "items": "int64", "mrr": "float64"}), notes


def build_finance_assets(
    stripe_prefix: Sequence[str] = ("stripe",),
    *,
    schema: str = FINANCE_SCHEMA,
    group_name: str = GROUP,
    io_manager_key: str = "io_manager",
) -> list[dg.AssetsDefinition]:
    """`finance/daily_net_volume` and `finance/mrr`, reading the Stripe assets under `stripe_prefix`."""
    prefix = list(stripe_prefix)

    def key(name: str) -> dg.AssetKey:
        return dg.AssetKey([*prefix, name])

    common = dict(group_name=group_name, kinds={"pandas", "duckdb"}, owners=["team:finance"], io_manager_key=io_manager_key)

    @dg.asset(
        key=dg.AssetKey([group_name, "daily_net_volume"]),
        ins={"balance_transaction": dg.AssetIn(key=key("balance_transaction"))},
        description=(
            "Net volume per UTC day and currency from Stripe balance transactions: count of transactions and "
            "sums of `amount`, `fee` and `net` (minor units). Days come from each transaction's `created`. "
            "Sales only: payouts, transfers and top-ups (by `reporting_category`) move money, they are not volume."
        ),
        metadata={"dagster/table_name": f"{schema}.daily_net_volume"},
        **common,
    )
    def daily_net_volume(context, balance_transaction):  # a DataFrame in, a DataFrame out
        frame = daily_net_volume_frame(balance_transaction)
        context.add_output_metadata(
            {"days": int(frame["day"].nunique()), "source_rows": int(len(balance_transaction))}
        )
        return frame

    @dg.asset(
        key=dg.AssetKey([group_name, "mrr"]),
        ins={
            "subscription": dg.AssetIn(key=key("subscription")),
            "subscription_item": dg.AssetIn(key=key("subscription_item")),
        },
        description=(
            "Monthly recurring revenue per currency (minor units) of active, trialing and past-due "
            "subscriptions: each item's unit amount × quantity normalised to a month from its price's "
            "`recurring.interval` (day, week, month, year) and `interval_count`. Items come from "
            "`subscription.items`, or from the subscription_item table when Stripe truncated the embedded list. "
            "Discounts and taxes are not applied."
        ),
        metadata={"dagster/table_name": f"{schema}.mrr"},
        **common,
    )
    def mrr(context, subscription, subscription_item):  # DataFrames in, a DataFrame out
        frame, notes = mrr_frame(subscription, subscription_item)
        context.add_output_metadata(notes)
        return frame

    return [daily_net_volume, mrr]


__all__ = ["build_finance_assets", "daily_net_volume_frame", "item_monthly_amount", "mrr_frame"]
