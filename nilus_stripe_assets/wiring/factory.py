"""One factory builds every Stripe asset from the catalog; a translator decides keys, groups and metadata.

Style follows dagster-dlt / dagster-sling: `build_stripe_assets(...)` plus a `StripeTranslator` whose
methods a user overrides to rename keys, regroup, or add tags, instead of subclassing assets.
"""


import os
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping, Optional, Sequence

import dagster as dg
from stripe import StripeError
from dagster_duckdb import DuckDBResource

from ..catalog import CATALOG, StripeObject
from ..config import ConfigError, parse_source_table, resolve_strategy
from ..errors import explain
from ..fetch import Window
from ..changes import capture as capture_changes
from ..changes import EVENT_RETENTION_SECONDS, state_key
from ..load import Batch, extract
from ..warehouse import ChangeSet, Slice, TableRef, get_cursor, newest_created
from .checks import DEFAULT_MAX_AGE, StripeTableChecks
from .resources import StripeResource

POOL = "stripe_api"  # one Dagster concurrency pool for every Stripe asset; its limit is in dagster.yaml
IO_MANAGER_KEY = "stripe_io_manager"
DEFAULT_LOOKBACK_SECONDS = 600


class StripeTranslator:
    """Override any method to change how catalog objects become Dagster assets."""

    def get_asset_key(self, obj: StripeObject) -> dg.AssetKey:
        return dg.AssetKey(["stripe", obj.name])

    def get_group_name(self, obj: StripeObject) -> str:
        return "stripe"

    def get_table(self, obj: StripeObject) -> str:
        return f"stripe.{obj.table}"

    def get_description(self, obj: StripeObject) -> str:
        how = (
            f"through each {obj.parent.object}" if obj.parent else f"`GET {obj.path}`"
        )
        return (
            f"{obj.description} Stripe `{obj.name}` objects read {how}, written to DuckDB with the "
            f"`{obj.strategy}` strategy on `{obj.merge_key}`."
        )

    def get_kinds(self, obj: StripeObject) -> set[str]:
        return {"stripe", "duckdb"}

    def get_owners(self, obj: StripeObject) -> Sequence[str]:
        return ["team:data-engineering"]

    def get_tags(self, obj: StripeObject) -> Mapping[str, str]:
        return {"stripe/object": obj.name}

    def get_automation_condition(self, obj: StripeObject) -> Optional[dg.AutomationCondition]:
        return None


@dataclass(frozen=True)
class StripePipeline:
    """One source table → one destination table, as in the spec's pipeline YAML."""

    object: StripeObject
    mode: str = "async"
    strategy: Optional[str] = None  # None: the spec's default for the object
    dest_table: Optional[str] = None
    key: Optional[dg.AssetKey] = None

    @classmethod
    def from_source_table(cls, source_table: str, **kwargs) -> "StripePipeline":
        parsed = parse_source_table(source_table)
        return cls(object=parsed.object, mode=parsed.mode, **kwargs)


class StripeLoadConfig(dg.Config):
    """Per-run choices, editable in the Launchpad."""

    mode: Optional[str] = None  # async | sync | sync:incremental; default: the asset's own
    lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS  # sync:incremental re-reads this much before the cursor
    capture_changes: bool = True  # sync:incremental also applies updates/deletes from /v1/events


def run_mode(obj: StripeObject, mode: str) -> str:
    """Validate a mode given in run config with the same grammar as `source_table` suffixes."""
    return parse_source_table(obj.name if mode == "async" else f"{obj.name}:{mode}").mode


def _epoch(moment: datetime) -> int:
    return int(moment.astimezone(timezone.utc).timestamp())


def build_stripe_asset(
    pipeline: StripePipeline,
    *,
    translator: Optional[StripeTranslator] = None,
    partitions_def: Optional[dg.TimeWindowPartitionsDefinition] = None,
    io_manager_key: str = IO_MANAGER_KEY,
    with_checks: bool = True,
) -> dg.AssetsDefinition:
    """One Stripe asset. With `with_checks`, its table checks run in the asset's own step, right after the
    write (a separate check step would cost one more process per table under the multiprocess executor)."""
    translator = translator or StripeTranslator()
    obj = pipeline.object
    partitioned = partitions_def is not None and obj.supports_created
    # Validated now, at definition-load time, before any request is made.
    strategy = resolve_strategy(obj, pipeline.mode, pipeline.strategy, partitioned=partitioned)
    table = TableRef.parse(pipeline.dest_table or translator.get_table(obj))
    default_mode = pipeline.mode
    asset_key = pipeline.key or translator.get_asset_key(obj)
    table_checks = (
        StripeTableChecks(asset_key, obj, table, strategy, obj.merge_key, DEFAULT_MAX_AGE, TableRef(table.schema, "event"))
        if with_checks
        else None
    )

    # BackfillPolicy is beta in Dagster 1.13; the single-run policy is what makes ranged backfills one run.
    warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

    @dg.asset(
        key=asset_key,
        check_specs=table_checks.specs() if table_checks else None,
        group_name=translator.get_group_name(obj),
        description=translator.get_description(obj),
        kinds=translator.get_kinds(obj),
        owners=list(translator.get_owners(obj)),
        tags=dict(translator.get_tags(obj)),
        metadata={
            "dagster/table_name": str(table),
            "stripe/object": obj.name,
            "stripe/endpoint": obj.parent.path_template if obj.parent else obj.path,
            "strategy": strategy,
            "merge_key": obj.merge_key,
            "default_mode": default_mode,
            "created_filter": obj.supports_created,
        },
        io_manager_key=io_manager_key,
        partitions_def=partitions_def if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        automation_condition=translator.get_automation_condition(obj),
        pool=POOL,
        # Fan-out objects make one request per parent: the longest steps of a full load. Starting them
        # first keeps them from ending last, alone (steps otherwise start alphabetically).
        op_tags={"dagster/priority": "10"} if obj.parent is not None else None,
    )
    def _stripe_asset(
        context: dg.AssetExecutionContext, config: StripeLoadConfig, stripe: StripeResource, duckdb: DuckDBResource
    ):
        mode = default_mode if config.mode is None else run_mode(obj, config.mode)
        run_strategy = resolve_strategy(obj, mode, pipeline.strategy, partitioned=partitioned)
        window, scope, notes = Window(), None, []
        # Unpartitioned merge/append loads of changing objects keep an events cursor; a partition is a
        # slice of history, and snapshots (replace) and the event stream itself have no changes to capture.
        keeps_events_cursor = not partitioned and obj.name != "event" and run_strategy != "replace"
        incremental = not partitioned and mode == "sync:incremental" and run_strategy != "replace"
        events_cursor = None
        if partitioned:
            time_window = context.partition_time_window
            window = Window(_epoch(time_window.start), _epoch(time_window.end))
            if run_strategy == "replace":
                scope = Slice("created", window.gte, window.lt)
        elif incremental:
            # Snapshot (replace) objects are refreshed whole; everything else resumes from the data.
            with duckdb.get_connection() as con:
                cursor = newest_created(con, table) if obj.supports_created else None
                events_cursor = get_cursor(con, table.schema, state_key(obj, str(table)))
            if cursor is not None:
                window = Window(gte=max(0, cursor - config.lookback_seconds))
            elif obj.supports_created:
                notes.append(f"No rows in {table} yet: this first incremental run loads everything.")
        try:
            api = stripe.get_api()
        except ConfigError as exc:
            raise dg.Failure(description=str(exc)) from None
        spool_root = os.environ.get("NILUS_SPOOL_DIR")
        try:
            capture = None
            if incremental and keeps_events_cursor and config.capture_changes:
                now = int(time.time())
                # Rows but no cursor yet (e.g. loaded by partitions): read all the changes Stripe still has.
                since = events_cursor if events_cursor is not None else (now - EVENT_RETENTION_SECONDS + 3600 if window.bounded else None)
                if since is not None:
                    capture = capture_changes(api, obj, since, now, spool_root)
                if capture is not None and capture.expired:
                    notes.append(
                        f"Events cursor {since} is older than Stripe's 30-day event retention: changes since "
                        f"then cannot all be read, so {obj.name} is reloaded in full."
                    )
                    context.log.warning(notes[-1])
                    window, mode = Window(), "async"
            batch = extract(
                api, obj, mode, run_strategy, table, window=window, scope=scope,
                workers=stripe.max_in_flight, spool_root=spool_root,
            )
        except StripeError as exc:
            raise dg.Failure(description=str(explain(exc, obj.name, api.api_key))) from None
        if keeps_events_cursor:
            # The events cursor is committed in the same transaction as the rows it describes.
            key = state_key(obj, str(table))
            if capture is not None and not capture.expired:
                batch.changes = ChangeSet(files=capture.files, state_key=key, cursor=capture.cursor, fields=capture.fields)
                batch.changes_dir = capture.spool_dir
                notes.append(f"change capture: {capture.events} events, {capture.objects} object states")
            elif not (incremental and not config.capture_changes):
                # A full read reflects every change made before it started.
                batch.changes = ChangeSet(files=[], state_key=key, cursor=batch.started_at)
        batch.notes.extend(notes)
        context.log.info(
            f"{obj.name}: {batch.spool.objects} objects in {batch.seconds:.1f}s "
            f"({batch.objects_per_second:.0f}/s), {int(batch.requests.get('requests', 0))} requests, mode {mode}"
        )
        yield dg.Output(batch)  # the IO manager writes it before the checks below run
        if table_checks is not None:
            selected = [k.name for k in context.selected_asset_check_keys]
            with duckdb.get_connection() as con:
                yield from table_checks.evaluate(con, selected)

    return _stripe_asset


def build_stripe_assets(
    objects: Optional[Iterable[str]] = None,
    *,
    translator: Optional[StripeTranslator] = None,
    default_mode: str = "async",
    strategies: Optional[Mapping[str, str]] = None,
    dest_tables: Optional[Mapping[str, str]] = None,
    partitions_def: Optional[dg.TimeWindowPartitionsDefinition] = None,
    io_manager_key: str = IO_MANAGER_KEY,
    with_checks: bool = True,
) -> list[dg.AssetsDefinition]:
    """Build one asset per catalog object (all 21 by default)."""
    names = list(objects) if objects is not None else list(CATALOG)
    strategies, dest_tables = strategies or {}, dest_tables or {}
    assets = []
    for name in names:
        parsed = parse_source_table(name)
        pipeline = StripePipeline(
            object=parsed.object,
            mode=default_mode,
            strategy=strategies.get(parsed.object.name),
            dest_table=dest_tables.get(parsed.object.name),
        )
        assets.append(
            build_stripe_asset(
                pipeline, translator=translator, partitions_def=partitions_def, io_manager_key=io_manager_key,
                with_checks=with_checks,
            )
        )
    return assets


__all__ = [
    "ConfigError",
    "StripeLoadConfig",
    "StripePipeline",
    "StripeTranslator",
    "build_stripe_asset",
    "build_stripe_assets",
]
