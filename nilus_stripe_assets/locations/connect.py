"""The Connect code location: a platform key loads each connected account as its own partition.

    dg launch --assets stripe_accounts -m nilus_stripe_assets.connect     # add the accounts as partitions
    dg launch --job stripe_connect_load -m nilus_stripe_assets.connect --partition acct_1…

Every catalog list, partitioned by account (a `DynamicPartitionsDefinition` named `stripe_accounts`), into
the same `stripe.<object>` tables for every account; each row carries `stripe_account` and is merged on
`(stripe_account, id)`. The platform's own lists (connected accounts with their persons, capabilities and
external accounts, application fees and their refunds, transfers and their reversals, country specs) load
in the platform's partition only, without Stripe-Account. `stripe_connect_load` loads the default tables
plus those (groups `stripe` and `stripe_connect`); `stripe_connect_everything` (or `key:"stripe/*"`) every
list. The asset `stripe_accounts` adds accounts as partitions when materialized (those in
`NILUS_STRIPE_ACCOUNTS=acct_a,acct_b`, else every account `GET /v1/accounts` lists plus the platform);
`stripe_accounts_sensor` does the same every 5 minutes and starts a first load of each new one;
`stripe_connect_incremental_hourly` runs `sync:incremental` for every known account.
`nilus_stripe_assets.connect_daily` partitions by account x day instead.

Same asset keys as the single-account locations: load one location per workspace.
"""

import os
from typing import Optional

import dagster as dg

from ..dagster_adapter.automation import build_incremental_job, selected_keys
from ..dagster_adapter.connect import account_partitions, build_accounts_asset, build_accounts_sensor
from ..dagster_adapter.defaults import default_executor, default_resources
from ..dagster_adapter.factory import build_stripe_assets
from ..dagster_adapter.finance import build_finance_assets, loaded_objects
from ..dagster_adapter.resources import StripeResource
from ..source.catalog import CATALOG, DEFAULT_OBJECTS, every_object
from ..source.config import ConfigError, check_account

ACCOUNTS_ENV = "NILUS_STRIPE_ACCOUNTS"
# A platform's default load: the default tables of each account, plus the platform's own Connect lists
# (money moved to its accounts: transfers, application fees), which only the platform's partition reads.
CONNECT_DEFAULT_OBJECTS = (*DEFAULT_OBJECTS, *(n for n in every_object(connect=True) if CATALOG[n].platform_level))


def listed_accounts() -> Optional[list[str]]:
    """Accounts listed in `NILUS_STRIPE_ACCOUNTS` (comma-separated), or None to discover them."""
    listed = [a.strip() for a in os.environ.get(ACCOUNTS_ENV, "").split(",") if a.strip()]
    try:
        return [check_account(a) for a in listed] or None
    except ConfigError as exc:
        raise ConfigError(f"{ACCOUNTS_ENV}: {exc} Write it as acct_a,acct_b, or unset it to add every account.") from None


def connect_resources() -> dict:
    resources = default_resources()
    # The key comes from STRIPE_API_KEY at run time (StripeResource falls back to it), as in the other locations.
    resources["stripe"] = StripeResource(connected_accounts=listed_accounts())
    return resources


def build_accounts_schedule(job, accounts: dg.DynamicPartitionsDefinition, name: str, cron: str) -> dg.ScheduleDefinition:
    """One run per known account (each account's run fails or succeeds on its own)."""

    @dg.schedule(name=name, job=job, cron_schedule=cron, execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.STOPPED)
    def _every_account(context: dg.ScheduleEvaluationContext):
        keys = context.instance.get_dynamic_partitions(accounts.name)
        if not keys:
            return dg.SkipReason("No Stripe accounts yet: materialize stripe_accounts or turn on stripe_accounts_sensor.")
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
        return [dg.RunRequest(partition_key=k, run_key=f"{k}:{tick}") for k in keys]

    return _every_account


accounts = account_partitions()
stripe_assets = build_stripe_assets(every_object(connect=True), one_step=True, accounts=accounts)
# The finance models, per Connect account (every model groups by stripe_account).
finance_assets = build_finance_assets(account_column="stripe_account", stripe_objects=loaded_objects(stripe_assets))
stripe_connect_load = dg.define_asset_job(
    "stripe_connect_load",
    selection=dg.AssetSelection.assets(*selected_keys(stripe_assets, CONNECT_DEFAULT_OBJECTS)),
    partitions_def=accounts,
    description="The default Stripe tables of one Connect account (the partition); in the platform's "
                "partition also its Connect lists (accounts, transfers, application fees, ...).",
)
stripe_connect_everything = dg.define_asset_job(
    "stripe_connect_everything",
    selection=dg.AssetSelection.assets(*stripe_assets),
    partitions_def=accounts,
    description="Every Stripe list of one Connect account (lists of products it has not set up are written empty).",
)
incremental = build_incremental_job(stripe_assets, CONNECT_DEFAULT_OBJECTS)

defs = dg.Definitions(
    assets=[build_accounts_asset(accounts), *stripe_assets, *finance_assets],
    jobs=[stripe_connect_load, stripe_connect_everything, incremental],
    schedules=[build_accounts_schedule(incremental, accounts, "stripe_connect_incremental_hourly", "0 * * * *")],
    sensors=[build_accounts_sensor(accounts, stripe_connect_load)],
    resources=connect_resources(),
    executor=default_executor(),
)
