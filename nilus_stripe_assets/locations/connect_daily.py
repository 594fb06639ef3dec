"""The Connect code location by account x day: backfills per account over `created` days.

    dagster asset materialize -m nilus_stripe_assets.connect_daily --select stripe/charge \
        --partition 'acct_1…|2024-03-01'

The objects Stripe filters by `created` are partitioned by a `MultiPartitionsDefinition` of the
accounts (dynamic, dimension `account`) and the UTC days (dimension `day`, from `NILUS_PARTITIONS_START`);
the others by account only. A partition key is `<account>|<day>` (Dagster orders dimensions by name). The
asset `stripe_accounts` (materialized once: `dg launch --assets stripe_accounts -m …connect_daily`) and the
accounts sensor add accounts as partitions without starting loads: backfill the days you want.
"""

import dagster as dg

from .connect import CONNECT_DEFAULT_OBJECTS, connect_resources
from .daily import daily_partitions
from ..dagster_adapter.automation import build_incremental_job, selected_keys
from ..dagster_adapter.connect import account_partitions, build_accounts_asset, build_accounts_sensor
from ..dagster_adapter.defaults import default_executor
from ..dagster_adapter.factory import build_stripe_assets
from ..dagster_adapter.finance import build_finance_assets, loaded_objects
from ..source.catalog import every_object

accounts = account_partitions()
stripe_assets = build_stripe_assets(every_object(connect=True), one_step=True, accounts=accounts,
                                   partitions_def=daily_partitions)
# The finance models, per Connect account (every model groups by stripe_account).
finance_assets = build_finance_assets(account_column="stripe_account", stripe_objects=loaded_objects(stripe_assets))
by_day = [a for a in stripe_assets if isinstance(a.partitions_def, dg.MultiPartitionsDefinition)]
# The jobs run the platform's default load (as `connect`); every list stays selectable by key or group.
by_day_keys = selected_keys(by_day, CONNECT_DEFAULT_OBJECTS)

stripe_connect_daily = dg.define_asset_job(
    "stripe_connect_daily",
    selection=dg.AssetSelection.assets(*by_day_keys),
    partitions_def=by_day[0].partitions_def,
    description="Stripe objects of one Connect account created on one UTC day; backfills run ranges per account.",
)

defs = dg.Definitions(
    assets=[build_accounts_asset(accounts), *stripe_assets, *finance_assets],
    jobs=[stripe_connect_daily,
          build_incremental_job([a for a in stripe_assets if a not in by_day], CONNECT_DEFAULT_OBJECTS)],
    sensors=[build_accounts_sensor(accounts)],
    resources=connect_resources(),
    executor=default_executor(),
)
