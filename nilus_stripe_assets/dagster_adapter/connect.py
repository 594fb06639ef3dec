"""Connect platforms in Dagster: one partition per account, the account x day partitions, the accounts sensor.

The accounts dimension is a `DynamicPartitionsDefinition`: its keys are account ids (`acct_…`), the
platform's own id included, so a backfill, a re-run or a failure concerns one account. The sensor
(`SensorResult(dynamic_partitions_requests=...)`) and the `stripe_accounts` asset (from the command line:
`context.instance.add_dynamic_partitions`) add accounts as partitions with one rule: those listed in
`StripeResource.connected_accounts`, else every account `GET /v1/accounts` lists plus the platform
(`GET /v1/account`). Accounts that disappear keep their partition and their rows.
"""

from __future__ import annotations

from datetime import timezone
from typing import Optional

import dagster as dg

from ..reading.accounts import connected_account_ids
from ..reading.fetch import Window
from .resources import StripeResource

ACCOUNTS_PARTITIONS = "stripe_accounts"
ACCOUNT_DIMENSION, DAY_DIMENSION = "account", "day"

RunSlice = tuple[Optional[str], Optional[Window]]  # (Connect account, `created` window) one run loads


def account_partitions(name: str = ACCOUNTS_PARTITIONS) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=name)


def account_day_partitions(
    accounts: dg.DynamicPartitionsDefinition, days: dg.TimeWindowPartitionsDefinition
) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({ACCOUNT_DIMENSION: accounts, DAY_DIMENSION: days})


def accounts_dimension(partitions_def) -> Optional[dg.DynamicPartitionsDefinition]:
    """The accounts dimension of a step's partitions, or None for a single-account step."""
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return partitions_def
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        for dim in partitions_def.partitions_defs:
            if dim.name == ACCOUNT_DIMENSION:
                return dim.partitions_def
    return None


def _window(days: dg.TimeWindowPartitionsDefinition, keys) -> Window:
    windows = [days.time_window_for_partition_key(k) for k in keys]
    start = min(w.start for w in windows).astimezone(timezone.utc)
    end = max(w.end for w in windows).astimezone(timezone.utc)
    return Window(int(start.timestamp()), int(end.timestamp()))


def run_slices(context: dg.AssetExecutionContext, partitions_def) -> list[RunSlice]:
    """What one run loads: per account (if partitioned by account) the `created` window (if by day).

    A ranged run of account x day partitions holds one dimension fixed (Dagster builds such ranges), so
    each account's days are contiguous and become one window.
    """
    if partitions_def is None:
        return [(None, None)]
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        tw = context.partition_time_window
        return [(None, Window(int(tw.start.timestamp()), int(tw.end.timestamp())))]
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return [(key, None) for key in context.partition_keys]
    days = next(d.partitions_def for d in partitions_def.partitions_defs if d.name == DAY_DIMENSION)
    by_account: dict[str, list[str]] = {}
    for key in context.partition_keys:
        dims = partitions_def.get_partition_key_from_str(key).keys_by_dimension
        by_account.setdefault(dims[ACCOUNT_DIMENSION], []).append(dims[DAY_DIMENSION])
    return [(account, _window(days, day_keys)) for account, day_keys in by_account.items()]


def wanted_accounts(stripe: StripeResource) -> list[str]:
    """The configured accounts, else the platform plus every connected account Stripe lists."""
    if stripe.connected_accounts:
        return list(dict.fromkeys(stripe.connected_accounts))
    return [stripe.platform_account_id(), *connected_account_ids(stripe.get_api(stripe_account=None))]


def new_accounts(stripe: StripeResource, instance: dg.DagsterInstance, accounts: dg.DynamicPartitionsDefinition
                 ) -> tuple[list[str], list[str]]:
    """(every account wanted, those not yet a partition), in the order they will be added: the platform
    first, then the connected accounts as `GET /v1/accounts` lists them (newest first)."""
    from ..source.errors import explain  # with stripe-python: imported by a tick or a run, not to load definitions

    try:
        wanted = wanted_accounts(stripe)
    except Exception as exc:  # one line (key masked), not a traceback
        raise dg.Failure(description=str(explain(exc, "account", stripe.key_for_masking))) from None
    known = set(instance.get_dynamic_partitions(accounts.name))
    return wanted, [a for a in wanted if a not in known]


def build_accounts_asset(accounts: dg.DynamicPartitionsDefinition, key: str = ACCOUNTS_PARTITIONS) -> dg.AssetsDefinition:
    """An asset whose materialization adds the platform's accounts as partitions, with the sensor's rule.

    The command-line way to register accounts (`dg launch --assets stripe_accounts -m …connect`), for a
    fresh instance where no sensor has ticked yet. Its key is one part, outside `stripe/`, so that
    `key:"stripe/*"` still selects only the account-partitioned assets (a selection that mixed in an
    unpartitioned asset could not take `--partition`).
    """

    @dg.asset(
        key=key,
        group_name="stripe",
        kinds={"stripe"},
        description=f"The Stripe Connect accounts, added as partitions of `{accounts.name}`: those in "
        "StripeResource.connected_accounts (NILUS_STRIPE_ACCOUNTS), else the platform and every account "
        "GET /v1/accounts lists. Materialize it once before loading accounts from the command line.",
    )
    def _accounts_asset(context, stripe: StripeResource):  # no hint on context: this module defers annotations
        wanted, new = new_accounts(stripe, context.instance, accounts)
        if new:
            context.instance.add_dynamic_partitions(accounts.name, new)
            context.log.info(f"Added {len(new)} Stripe account(s) as partitions of {accounts.name}: {', '.join(new)}")
        else:
            context.log.info(f"No new Stripe accounts: all {len(wanted)} are partitions of {accounts.name} already.")
        known = context.instance.get_dynamic_partitions(accounts.name)
        return dg.MaterializeResult(metadata={
            "accounts": dg.MetadataValue.int(len(wanted)),
            "added": dg.MetadataValue.int(len(new)),
            "added_accounts": ", ".join(new),
            "partitions": dg.MetadataValue.int(len(known)),
            # In partition order, the order `--partition-range first...last` follows.
            "partition_keys": ", ".join(known),
        })

    return _accounts_asset


def build_accounts_sensor(
    accounts: dg.DynamicPartitionsDefinition,
    job: Optional[dg.UnresolvedAssetJobDefinition] = None,
    name: str = "stripe_accounts_sensor",
    minimum_interval_seconds: int = 300,
) -> dg.SensorDefinition:
    """Adds new accounts as partitions; with `job`, also requests a first load of each new account."""

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Adds Stripe Connect accounts (StripeResource.connected_accounts, else GET /v1/accounts and the "
        "platform) as partitions" + (", and loads each new one." if job else "."),
    )
    def _accounts_sensor(context: dg.SensorEvaluationContext, stripe: StripeResource):
        wanted, new = new_accounts(stripe, context.instance, accounts)
        if not new:
            return dg.SkipReason(f"No new Stripe accounts (all {len(wanted)} are partitions already).")
        context.log.info(f"Adding {len(new)} Stripe account(s) as partitions: {', '.join(new)}")
        return dg.SensorResult(
            dynamic_partitions_requests=[accounts.build_add_request(new)],
            run_requests=[dg.RunRequest(partition_key=a, run_key=f"first-load-{a}") for a in new] if job else None,
        )

    return _accounts_sensor
