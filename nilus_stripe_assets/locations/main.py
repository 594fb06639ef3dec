"""The code location: `dg launch --job stripe_full_load -m nilus_stripe_assets.definitions`.

Every Stripe list the catalog reads (`source/catalog.py`, 100+) as assets `stripe/<object>`, unpartitioned,
each loading in the mode chosen by run config (`async` by default). The 24 tables of the default load (the
spec's 21, the invoice / credit-note lines, a payout's balance transactions) are in group `stripe`; the other
lists in one group per product area (`stripe_billing`, `stripe_connect`, `stripe_issuing`, ...). They share one
step (op `stripe_objects`): a run loads the selected objects concurrently in one process, on one request
budget. `stripe_full_load` (group `stripe`), the hourly `stripe_incremental` and the events sensor run the
default load, as before; `stripe_everything` loads every list (lists of products the account has not set up
are written empty, see README). Runs use the in-process executor unless run config picks
`execution: {config: {multiprocess: {}}}`. The daily-partitioned variant lives in `nilus_stripe_assets.daily`.
"""

import dagster as dg

from ..dagster_adapter.automation import build_events_sensor, build_incremental_job, build_incremental_schedule
from ..dagster_adapter.defaults import default_executor, default_resources
from ..dagster_adapter.factory import build_stripe_assets
from ..dagster_adapter.finance import build_finance_assets, loaded_objects
from ..source.catalog import DEFAULT_OBJECTS, every_object

stripe_assets = build_stripe_assets(every_object(), one_step=True)
# Each Stripe asset checks its own table in its own step (id unique/not null, freshness, stale rows);
# the finance models read the Stripe tables.
finance_assets = build_finance_assets(stripe_objects=loaded_objects(stripe_assets))

stripe_full_load = dg.define_asset_job(
    "stripe_full_load",
    selection=dg.AssetSelection.groups("stripe"),
    description="Load the default Stripe tables (group stripe) into DuckDB (async mode by default).",
)
stripe_everything = dg.define_asset_job(
    "stripe_everything",
    selection=dg.AssetSelection.assets(*stripe_assets),
    description="Load every Stripe list the catalog reads (lists of products the account has not set up are "
                "written empty).",
)

stripe_incremental = build_incremental_job(stripe_assets, DEFAULT_OBJECTS)

defs = dg.Definitions(
    assets=[*stripe_assets, *finance_assets],
    jobs=[stripe_full_load, stripe_everything, stripe_incremental],
    schedules=[build_incremental_schedule(stripe_incremental)],
    sensors=[build_events_sensor(stripe_assets, stripe_incremental, objects=DEFAULT_OBJECTS)],
    resources=default_resources(),
    executor=default_executor(),
)
