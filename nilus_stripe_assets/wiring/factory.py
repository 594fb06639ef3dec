"""One factory builds every Stripe asset from the catalog; a translator decides keys, groups and metadata.

Style follows dagster-dlt / dagster-sling: `build_stripe_assets(...)` plus a `StripeTranslator` whose
methods a user overrides to rename keys, regroup, or add tags, instead of subclassing assets.

Two shapes, one implementation (`_build`):
- `one_step=True` (what the bundled code locations use): like `@dlt_assets`, one `@multi_asset` with
  `can_subset=True` holds every object. A run loads the selected objects concurrently, one thread each, in
  one process that draws on one request budget, and each object is written as soon as its fetch ends.
  Under Dagster's multiprocess executor, one step per object costs a Python process each (~2.6 s of CPU to
  import Dagster), and 21 of them on 2 cores starved the fetches: 59-69 % of a 100 req/s budget against
  92 % in one step (benchmarks/README.md, finding 5).
- `one_step=False`: one asset (one step) per object, e.g. to run objects on different schedules or retry
  them separately.
"""


import os
import threading
import time
import warnings
from contextlib import ExitStack
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Iterator, Mapping, Optional, Sequence

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
from ..stripe_api import StripeApi
from ..warehouse import ChangeSet, Slice, TableRef, get_cursor, newest_created
from .checks import DEFAULT_MAX_AGE, StripeTableChecks
from .resources import StripeResource

POOL = "stripe_api"  # one Dagster concurrency pool for every Stripe asset; its limit is in dagster.yaml
IO_MANAGER_KEY = "stripe_io_manager"
DEFAULT_LOOKBACK_SECONDS = 600
ONE_STEP_NAME = "stripe_objects"


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

    mode: Optional[str] = None  # async | sync | sync:incremental; default: each asset's own
    # Per object, over `mode`, e.g. {"charge": "sync"}; only for the objects the run selects.
    modes: dict[str, str] = {}
    lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS  # sync:incremental re-reads this much before the cursor
    capture_changes: bool = True  # sync:incremental also applies updates/deletes from /v1/events


def run_mode(obj: StripeObject, mode: str) -> str:
    """Validate a mode given in run config with the same grammar as `source_table` suffixes."""
    return parse_source_table(obj.name if mode == "async" else f"{obj.name}:{mode}").mode


def _epoch(moment: datetime) -> int:
    return int(moment.astimezone(timezone.utc).timestamp())


@dataclass(frozen=True)
class _Target:
    """One object inside an assets definition: its key, table, strategy and checks."""

    pipeline: StripePipeline
    key: dg.AssetKey
    table: TableRef
    strategy: str
    partitioned: bool
    checks: Optional[StripeTableChecks]

    @property
    def object(self) -> StripeObject:
        return self.pipeline.object

    @property
    def output_name(self) -> str:
        return self.key.to_python_identifier()


@dataclass
class _Plan:
    """What one run does for one object, decided before any request (reads cursors from DuckDB)."""

    target: _Target
    mode: str
    strategy: str
    window: Window = Window()
    scope: Optional[Slice] = None
    incremental: bool = False
    keeps_events_cursor: bool = False
    events_cursor: Optional[int] = None
    capture_changes: bool = True
    notes: list[str] = field(default_factory=list)


def _target(
    pipeline: StripePipeline,
    translator: StripeTranslator,
    partitions_def: Optional[dg.PartitionsDefinition],
    with_checks: bool,
) -> _Target:
    obj = pipeline.object
    partitioned = partitions_def is not None and obj.supports_created
    # Validated now, at definition-load time, before any request is made.
    strategy = resolve_strategy(obj, pipeline.mode, pipeline.strategy, partitioned=partitioned)
    table = TableRef.parse(pipeline.dest_table or translator.get_table(obj))
    key = pipeline.key or translator.get_asset_key(obj)
    checks = (
        StripeTableChecks(key, obj, table, strategy, obj.merge_key, DEFAULT_MAX_AGE, TableRef(table.schema, "event"))
        if with_checks
        else None
    )
    return _Target(pipeline, key, table, strategy, partitioned, checks)


def _spec(target: _Target, translator: StripeTranslator, partitions_def, skippable: bool, io_manager_key: str) -> dg.AssetSpec:
    obj = target.object
    return dg.AssetSpec(
        key=target.key,
        group_name=translator.get_group_name(obj),
        description=translator.get_description(obj),
        kinds=translator.get_kinds(obj),
        owners=list(translator.get_owners(obj)),
        tags=dict(translator.get_tags(obj)),
        metadata={
            "dagster/table_name": str(target.table),
            "stripe/object": obj.name,
            "stripe/endpoint": obj.parent.path_template if obj.parent else obj.path,
            "strategy": target.strategy,
            "merge_key": obj.merge_key,
            "default_mode": target.pipeline.mode,
            "created_filter": obj.supports_created,
        },
        partitions_def=partitions_def if target.partitioned else None,
        automation_condition=translator.get_automation_condition(obj),
        skippable=skippable,
    ).with_io_manager_key(io_manager_key)


def _plan(target: _Target, config: StripeLoadConfig, context: dg.AssetExecutionContext, connect) -> _Plan:
    """`connect()` gives the warehouse connection; only incremental loads need it (to read their cursors)."""
    obj = target.object
    requested = config.modes.get(obj.name, config.mode)
    mode = target.pipeline.mode if requested is None else run_mode(obj, requested)
    strategy = resolve_strategy(obj, mode, target.pipeline.strategy, partitioned=target.partitioned)
    plan = _Plan(target, mode, strategy, capture_changes=config.capture_changes)
    # Unpartitioned merge/append loads of changing objects keep an events cursor; a partition is a
    # slice of history, and snapshots (replace) and the event stream itself have no changes to capture.
    plan.keeps_events_cursor = not target.partitioned and obj.name != "event" and strategy != "replace"
    plan.incremental = not target.partitioned and mode == "sync:incremental" and strategy != "replace"
    if target.partitioned:
        time_window = context.partition_time_window
        plan.window = Window(_epoch(time_window.start), _epoch(time_window.end))
        if strategy == "replace":
            plan.scope = Slice("created", plan.window.gte, plan.window.lt)
    elif plan.incremental:
        # Snapshot (replace) objects are refreshed whole; everything else resumes from the data.
        con = connect()
        cursor = newest_created(con, target.table) if obj.supports_created else None
        plan.events_cursor = get_cursor(con, target.table.schema, state_key(obj, str(target.table)))
        if cursor is not None:
            plan.window = Window(gte=max(0, cursor - config.lookback_seconds))
        elif obj.supports_created:
            plan.notes.append(f"No rows in {target.table} yet: this first incremental run loads everything.")
    return plan


def _fetch(plan: _Plan, api: StripeApi, workers: int, spool_root: Optional[str], log, cancel: threading.Event) -> Batch:
    """Read one object into a spool (plus its changes from /v1/events); raises stripe errors unchanged."""
    obj, table = plan.target.object, plan.target.table
    mode, window, notes = plan.mode, plan.window, list(plan.notes)
    capture = None
    if plan.incremental and plan.keeps_events_cursor and plan.capture_changes:
        now = int(time.time())
        # Rows but no cursor yet (e.g. loaded by partitions): read all the changes Stripe still has.
        since = plan.events_cursor
        if since is None and window.bounded:
            since = now - EVENT_RETENTION_SECONDS + 3600
        if since is not None:
            capture = capture_changes(api, obj, since, now, spool_root)
        if capture is not None and capture.expired:
            notes.append(
                f"Events cursor {since} is older than Stripe's 30-day event retention: changes since "
                f"then cannot all be read, so {obj.name} is reloaded in full."
            )
            log.warning(notes[-1])
            window, mode = Window(), "async"
    batch = extract(
        api, obj, mode, plan.strategy, table, window=window, scope=plan.scope,
        workers=workers, spool_root=spool_root, cancel=cancel,
    )
    if plan.keeps_events_cursor:
        # The events cursor is committed in the same transaction as the rows it describes.
        key = state_key(obj, str(table))
        if capture is not None and not capture.expired:
            batch.changes = ChangeSet(
                files=capture.files, state_key=key, cursor=capture.cursor, fields=capture.fields,
                kinds=capture.kinds,
            )
            batch.changes_dir = capture.spool_dir
            notes.append(f"change capture: {capture.events} events, {capture.objects} object states")
        elif not (plan.incremental and not plan.capture_changes):
            # A full read reflects every change made before it started.
            batch.changes = ChangeSet(files=[], state_key=key, cursor=batch.started_at)
    batch.notes.extend(notes)
    log.info(
        f"{obj.name}: {batch.spool.objects} objects in {batch.seconds:.1f}s "
        f"({batch.objects_per_second:.0f}/s), {int(batch.requests.get('requests', 0))} requests, mode {mode}"
    )
    return batch


def _load(
    context: dg.AssetExecutionContext,
    config: StripeLoadConfig,
    stripe: StripeResource,
    duckdb: DuckDBResource,
    targets: Mapping[dg.AssetKey, _Target],
) -> Iterator:
    """The body of every Stripe assets definition: fetch the selected objects concurrently, yield each
    batch as soon as it is spooled (the IO manager writes it), then that table's checks."""
    selected_checks: dict[dg.AssetKey, list[str]] = {}
    for check in context.selected_asset_check_keys:
        selected_checks.setdefault(check.asset_key, []).append(check.name)
    # Fan-out objects make one request per parent, the longest loads: start them first.
    chosen = sorted(
        (targets[k] for k in context.selected_asset_keys if k in targets),
        key=lambda t: (t.object.parent is None, t.object.name),
    )
    try:
        # Cursors are read up front, in this thread, on one connection opened only if a load needs one.
        with ExitStack() as stack:
            opened = []

            def connect():
                if not opened:
                    opened.append(stack.enter_context(duckdb.get_connection()))
                return opened[0]

            plans = [_plan(target, config, context, connect) for target in chosen]
    except ConfigError as exc:
        raise dg.Failure(description=str(exc)) from None
    apis: dict[dg.AssetKey, StripeApi] = {}
    if plans:
        try:
            for plan in plans:  # one handle each, so each object's request counters are its own
                apis[plan.target.key] = stripe.get_api()
        except ConfigError as exc:
            raise dg.Failure(description=str(exc)) from None

    def checks_of(target: _Target) -> Iterator[dg.AssetCheckResult]:
        names = selected_checks.pop(target.key, None)
        if target.checks is not None and names:
            with duckdb.get_connection() as con:
                yield from target.checks.evaluate(con, names)

    spool_root = os.environ.get("NILUS_SPOOL_DIR")
    workers = stripe.workers_per_object
    cancel = threading.Event()
    failures: list[str] = []
    pool = ThreadPoolExecutor(max_workers=max(1, len(plans)), thread_name_prefix="stripe-object")
    pending: dict[Future, _Plan] = {
        pool.submit(_fetch, plan, apis[plan.target.key], workers, spool_root, context.log, cancel): plan
        for plan in plans
    }
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                target = pending.pop(future).target
                try:
                    batch = future.result()
                except StripeError as exc:
                    # The other objects go on loading and are written; the step fails at the end.
                    message = str(explain(exc, target.object.name, apis[target.key].api_key))
                    context.log.error(message)
                    failures.append(message)
                    continue
                yield dg.Output(batch, output_name=target.output_name)  # written before its checks run
                yield from checks_of(target)
    finally:
        cancel.set()  # on an error or an interrupted run, stop the other fetches at their next page
        pool.shutdown(wait=True, cancel_futures=True)
    for target in targets.values():  # checks selected without their asset: judge the table as it is
        if target.key in selected_checks and target.key not in context.selected_asset_keys:
            yield from checks_of(target)
    if failures:
        loaded = len(plans) - len(failures)
        summary = f"{len(failures)} of {len(plans)} Stripe objects failed ({loaded} loaded and written):\n"
        raise dg.Failure(description=failures[0] if len(plans) == 1 else summary + "\n".join(failures))


def _build(
    pipelines: Sequence[StripePipeline],
    *,
    name: str,
    translator: StripeTranslator,
    partitions_def: Optional[dg.TimeWindowPartitionsDefinition],
    io_manager_key: str,
    with_checks: bool,
) -> dg.AssetsDefinition:
    targets = [_target(p, translator, partitions_def, with_checks) for p in pipelines]
    partitioned = any(t.partitioned for t in targets)
    if partitioned and not all(t.partitioned for t in targets):
        raise ConfigError(
            "Objects that Stripe cannot filter by `created` (payment_method, subscription_item, webhook_endpoint) "
            "cannot share a partitioned step; build them separately."
        )
    one = len(targets) == 1
    by_key = {t.key: t for t in targets}
    # BackfillPolicy is beta in Dagster 1.13; the single-run policy is what makes ranged backfills one run.
    warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

    @dg.multi_asset(
        name=name,
        specs=[_spec(t, translator, partitions_def, not one, io_manager_key) for t in targets],
        check_specs=[spec for t in targets if t.checks for spec in t.checks.specs()] or None,
        can_subset=not one,
        partitions_def=partitions_def if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        pool=POOL,
        # Fan-out objects make one request per parent: the longest steps of a full load. Starting them
        # first keeps them from ending last, alone (steps otherwise start alphabetically).
        op_tags={"dagster/priority": "10"} if any(t.object.parent for t in targets) else None,
    )
    def _stripe_assets(
        context: dg.AssetExecutionContext, config: StripeLoadConfig, stripe: StripeResource, duckdb: DuckDBResource
    ):
        yield from _load(context, config, stripe, duckdb, by_key)

    return _stripe_assets


def build_stripe_asset(
    pipeline: StripePipeline,
    *,
    translator: Optional[StripeTranslator] = None,
    partitions_def: Optional[dg.TimeWindowPartitionsDefinition] = None,
    io_manager_key: str = IO_MANAGER_KEY,
    with_checks: bool = True,
) -> dg.AssetsDefinition:
    """One Stripe asset in its own step (op `<key>`, e.g. `stripe__charge`). With `with_checks`, its table
    checks run in the same step, right after the write (a separate check step would cost one more process
    per table under the multiprocess executor)."""
    translator = translator or StripeTranslator()
    key = pipeline.key or translator.get_asset_key(pipeline.object)
    return _build(
        [pipeline], name=key.to_python_identifier(), translator=translator, partitions_def=partitions_def,
        io_manager_key=io_manager_key, with_checks=with_checks,
    )


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
    one_step: bool = False,
    name: str = ONE_STEP_NAME,
) -> list[dg.AssetsDefinition]:
    """The assets of the given catalog objects (all 21 by default).

    `one_step=False`: one assets definition (one step) per object. `one_step=True`: one subsettable
    multi-asset named `name` for all of them; with `partitions_def`, the objects Stripe cannot filter by
    `created` get a second, unpartitioned one (`<name>_unpartitioned`).
    """
    translator = translator or StripeTranslator()
    names = list(objects) if objects is not None else list(CATALOG)
    strategies, dest_tables = strategies or {}, dest_tables or {}
    pipelines = []
    for object_name in names:
        parsed = parse_source_table(object_name)
        pipelines.append(
            StripePipeline(
                object=parsed.object,
                mode=default_mode,
                strategy=strategies.get(parsed.object.name),
                dest_table=dest_tables.get(parsed.object.name),
            )
        )
    options = dict(translator=translator, partitions_def=partitions_def, io_manager_key=io_manager_key, with_checks=with_checks)
    if not one_step:
        return [build_stripe_asset(p, **options) for p in pipelines]
    by_time = [p for p in pipelines if partitions_def is not None and p.object.supports_created]
    whole = [p for p in pipelines if p not in by_time]
    groups = [(name, by_time), (f"{name}_unpartitioned" if by_time else name, whole)]
    return [_build(group, name=group_name, **options) for group_name, group in groups if group]


__all__ = [
    "ConfigError",
    "StripeLoadConfig",
    "StripePipeline",
    "StripeTranslator",
    "build_stripe_asset",
    "build_stripe_assets",
]
