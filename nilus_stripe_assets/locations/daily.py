"""The daily-partitioned code location: incremental loads and backfills over `created`.

`dagster asset materialize -m nilus_stripe_assets.daily --select stripe/charge --partition 2024-03-01`
loads exactly the charges created on 2024-03-01 (UTC) and writes only that slice. Ranges
(`--partition-range 2024-03-01...2024-03-30`, or a backfill in the UI) run as one run per asset
(`BackfillPolicy.single_run()`). Objects Stripe cannot filter by `created` (payment_method,
subscription_item, webhook_endpoint) stay unpartitioned here and are refreshed whole.

Same asset keys and tables as `nilus_stripe_assets.definitions`; load one location or the other in a
workspace, not both (see workspace.daily.yaml).
"""

import os
from datetime import date, datetime, timezone

import dagster as dg

from ..dagster_adapter.automation import build_incremental_job
from ..dagster_adapter.defaults import default_executor, default_resources
from ..dagster_adapter.factory import build_stripe_assets
from ..dagster_adapter.finance import build_finance_assets, loaded_objects
from ..source.catalog import DEFAULT_OBJECTS, every_object
from ..source.config import ConfigError

PARTITIONS_START_ENV = "NILUS_PARTITIONS_START"
DEFAULT_PARTITIONS_START = "2024-01-01"


def partitions_start() -> str:
    """$NILUS_PARTITIONS_START as YYYY-MM-DD (default 2024-01-01). Raises ConfigError (one line when the
    location loads) for anything else, or for a day after today, which would leave no partition to run."""
    text = os.environ.get(PARTITIONS_START_ENV, "").strip() or DEFAULT_PARTITIONS_START
    fix = f"set {PARTITIONS_START_ENV} to the first UTC day to load as YYYY-MM-DD, e.g. {DEFAULT_PARTITIONS_START}"
    try:
        start = date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{PARTITIONS_START_ENV}={text[:30]!r} is not a date; {fix}.") from None
    if len(text) != 10:
        raise ConfigError(f"{PARTITIONS_START_ENV}={text[:30]!r} is not written as YYYY-MM-DD; {fix}.")
    if start > datetime.now(timezone.utc).date():
        raise ConfigError(f"{PARTITIONS_START_ENV}={text} is in the future, so there is no day to load; {fix}.")
    return text


daily_partitions = dg.DailyPartitionsDefinition(start_date=partitions_start(), timezone="UTC", end_offset=0)

# One step for the objects Stripe filters by `created` (op `stripe_objects`), one for the others; every list
# of the catalog, the default load's in group `stripe` (see the main location).
stripe_assets = build_stripe_assets(every_object(), partitions_def=daily_partitions, one_step=True)
# The finance models read the Stripe tables whatever their partitions.
finance_assets = build_finance_assets(stripe_objects=loaded_objects(stripe_assets))
partitioned = [a for a in stripe_assets if a.partitions_def is not None]

stripe_daily = dg.define_asset_job(
    "stripe_daily",
    # partitioned by its assets' daily partitions; the default load's objects, as before
    selection=dg.AssetSelection.assets(*partitioned) & dg.AssetSelection.groups("stripe"),
    description="Stripe objects created on one UTC day (the partition); backfills run ranges in one run.",
)
stripe_daily_schedule = dg.build_schedule_from_partitioned_job(
    stripe_daily, hour_of_day=2, default_status=dg.DefaultScheduleStatus.STOPPED
)
incremental = build_incremental_job([a for a in stripe_assets if a.partitions_def is None], DEFAULT_OBJECTS)

defs = dg.Definitions(
    assets=[*stripe_assets, *finance_assets],
    jobs=[stripe_daily, incremental],
    schedules=[stripe_daily_schedule],
    resources=default_resources(),
    executor=default_executor(),
)
