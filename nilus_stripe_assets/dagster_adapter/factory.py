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
import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import dagster as dg
from dagster_duckdb import DuckDBResource

from ..source.catalog import CATALOG, DEFAULT_OBJECTS, StripeObject
from pydantic import Field, field_validator

from ..source.config import MODES, ConfigError, parse_source_table, resolve_strategy, unknown_object
from ..reading.accounts import ACCOUNT_COLUMN
from ..engine.plan import RunOptions, run_mode  # noqa: F401 (run_mode: public since the first version)
from ..warehouse.strategies import TableRef
from .checks import StripeTableChecks
from .connect import account_day_partitions, accounts_dimension, run_slices
from .freshness import default_freshness_policy
from .duckdb_resource import check_warehouse
from .io_manager import declared_schema, describe, prepare_batch, write_batch
from .resources import StripeResource
from .validation import refused_in_one_line

POOL = "stripe_api"  # one Dagster concurrency pool for every Stripe asset; its limit is in dagster.yaml
IO_MANAGER_KEY = "stripe_io_manager"
DEFAULT_LOOKBACK_SECONDS = 600
ONE_STEP_NAME = "stripe_objects"


@dataclass(frozen=True)
class StripeTranslatorData:
    """What the translator knows about one asset: the catalog object, where it is written, and how."""

    object: StripeObject
    table: TableRef  # destination table (`get_table`, or the pipeline's `dest_table`)
    strategy: str  # merge | replace | append, already validated against the mode
    mode: str  # the asset's default loading mode
    sink: str = "duckdb"  # the warehouse kind the table lives in
    account: Optional[str] = None  # the Connect account (acct_…) when the asset is for one account
    # Connect, every account in one table: the column naming each row's account (part of the merge key)
    account_column: Optional[str] = None
    partitions_def: Optional[dg.PartitionsDefinition] = None  # the asset's: by day, account, or account x day


class StripeTranslator:
    """Decides how catalog objects become Dagster assets.

    The seam is `get_asset_spec(data)`, as in dagster-dlt's and dagster-sling's translators: override it and
    start from `super().get_asset_spec(data).replace_attributes(...)`. The per-attribute methods below
    (`get_asset_key`, `get_group_name`, ...) are what the default `get_asset_spec` is built from, so existing
    overrides of them keep working. `dagster/table_name` in the spec's metadata is the table the asset is
    written to.
    """

    def get_asset_spec(self, data: StripeTranslatorData) -> dg.AssetSpec:
        obj = data.object
        return dg.AssetSpec(
            key=self.get_asset_key(obj),
            group_name=self.get_group_name(obj),
            description=self.get_description(obj),
            kinds=self.get_kinds(obj),
            owners=list(self.get_owners(obj)),
            tags=dict(self.get_tags(obj)),
            metadata={
                "dagster/table_name": str(data.table),
                "stripe/object": obj.name,
                "stripe/endpoint": obj.parent.path_template if obj.parent else obj.path,
                "strategy": data.strategy,
                "merge_key": ", ".join(([data.account_column] if data.account_column else []) + list(obj.key_columns)),
                **({"stripe/account_column": data.account_column} if data.account_column else {}),
                "default_mode": data.mode,
                "created_filter": obj.supports_created,
                # Known from stripe-python's classes: the UI's Columns tab is filled before a first load.
                "dagster/column_schema": declared_schema(obj, data.account_column),
            },
            automation_condition=self.get_automation_condition(obj),
            freshness_policy=self.get_freshness_policy(obj),
        )

    def get_asset_key(self, obj: StripeObject) -> dg.AssetKey:
        return dg.AssetKey(["stripe", obj.name])

    def get_group_name(self, obj: StripeObject) -> str:
        """`stripe` for the tables of the default load (the spec's objects and their line tables), the
        product area for the other lists (`stripe_billing`, `stripe_issuing`, ...), so the UI stays navigable
        and `stripe_full_load` (group `stripe`) stays what it was."""
        return "stripe" if obj.default_load else f"stripe_{obj.group}"

    def get_table(self, obj: StripeObject) -> str:
        return f"stripe.{obj.table}"

    def get_description(self, obj: StripeObject) -> str:
        how = (
            f"through each {obj.parent.object}" if obj.parent else f"`GET {obj.path}`"
        )
        return (
            f"{obj.description} Stripe `{obj.name}` objects read {how}, written to DuckDB with the "
            f"`{obj.strategy}` strategy on `{', '.join(obj.key_columns)}`."
        )

    def get_kinds(self, obj: StripeObject) -> set[str]:
        return {"stripe", "duckdb"}

    def get_owners(self, obj: StripeObject) -> Sequence[str]:
        return ["team:data-engineering"]

    def get_tags(self, obj: StripeObject) -> Mapping[str, str]:
        return {"stripe/object": obj.name}

    def get_automation_condition(self, obj: StripeObject) -> Optional[dg.AutomationCondition]:
        return None

    def get_freshness_policy(self, obj: StripeObject) -> Optional[dg.FreshnessPolicy]:
        """Dagster's freshness policy for the object's table (see `freshness.py` for the default)."""
        return default_freshness_policy(obj)


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
    """Per-run choices, editable in the Launchpad. Checked when the step starts, before any request."""

    mode: Optional[str] = None  # async | sync | sync:incremental; default: each asset's own
    # Per object, over `mode`, e.g. {"charge": "sync"}; only for the objects the run selects.
    modes: dict[str, str] = {}
    lookback_seconds: int = Field(default=DEFAULT_LOOKBACK_SECONDS, ge=0)  # sync:incremental re-reads this much
    capture_changes: bool = True  # sync:incremental also applies updates/deletes from /v1/events

    _refused_in_one_line = refused_in_one_line("The run config's ")

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value not in MODES:
            raise ConfigError(f"unknown loading mode '{value[:40]}'; use one of: {', '.join(MODES)}.")
        return value

    @field_validator("modes")
    @classmethod
    def _known_objects_and_modes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, mode in value.items():
            if name not in CATALOG:  # a typo would otherwise be ignored and the object load in its default mode
                raise unknown_object(name)
            if mode not in MODES:
                raise ConfigError(f"unknown loading mode '{str(mode)[:40]}' for '{name}'; use one of: {', '.join(MODES)}.")
        return value


@dataclass(frozen=True)
class _Target:
    """One object inside an assets definition: its key, table, strategy and checks."""

    pipeline: StripePipeline
    key: dg.AssetKey
    table: TableRef
    strategy: str
    partitioned: bool  # by `created` day
    checks: Optional[StripeTableChecks]
    spec: dg.AssetSpec  # from the translator; the factory adds partitions, skippability and the IO manager
    partitions_def: Optional[dg.PartitionsDefinition] = None  # day, account, or account x day

    @property
    def object(self) -> StripeObject:
        return self.pipeline.object

    @property
    def output_name(self) -> str:
        return self.key.to_python_identifier()


def _target(
    pipeline: StripePipeline,
    translator: StripeTranslator,
    partitions_def: Optional[dg.PartitionsDefinition],
    with_checks: bool,
    accounts: Optional[dg.DynamicPartitionsDefinition] = None,
) -> _Target:
    obj = pipeline.object
    partitioned = partitions_def is not None and obj.supports_created
    if accounts is not None:  # Connect: each account is a partition, by day too where Stripe filters by `created`
        own = account_day_partitions(accounts, partitions_def) if partitioned else accounts
    else:
        own = partitions_def if partitioned else None
    # Validated now, at definition-load time, before any request is made.
    strategy = resolve_strategy(obj, pipeline.mode, pipeline.strategy, partitioned=partitioned)
    data = StripeTranslatorData(
        object=obj, table=TableRef.parse(pipeline.dest_table or translator.get_table(obj)), strategy=strategy,
        mode=pipeline.mode, account_column=ACCOUNT_COLUMN if accounts is not None else None, partitions_def=own,
    )
    spec = translator.get_asset_spec(data)
    if pipeline.key is not None:  # a pipeline's own key (the component's) wins over the translator's
        spec = spec.replace_attributes(key=pipeline.key)
    table = TableRef.parse(str(spec.metadata.get("dagster/table_name", data.table)))
    # Changes are judged against the events where the stripe/event asset writes them.
    events = TableRef.parse(translator.get_table(CATALOG["event"]))
    checks = (
        StripeTableChecks(spec.key, obj, table, strategy, obj.merge_key, events, account_column=data.account_column)
        if with_checks
        else None
    )
    return _Target(pipeline, spec.key, table, strategy, partitioned, checks, spec, own)


def _spec(target: _Target, partitions_def, skippable: bool, io_manager_key: str) -> dg.AssetSpec:
    return target.spec.replace_attributes(
        partitions_def=target.partitions_def,
        skippable=skippable,
        metadata={**target.spec.metadata, "dagster/table_name": str(target.table)},
    ).with_io_manager_key(io_manager_key)


def _load(
    context: dg.AssetExecutionContext,
    config: StripeLoadConfig,
    stripe: StripeResource,
    duckdb: DuckDBResource,
    targets: Mapping[dg.AssetKey, _Target],
    partitions_def: Optional[dg.PartitionsDefinition] = None,
) -> Iterator:
    """The body of every Stripe assets definition. It only adapts: the run's selection and partitions become
    plain values for the engine (`engine/run_plan.py` plans and runs the load), and the engine's outcomes
    become a materialization and that table's checks per written object, and one failure at the end for the
    rest (on a Connect platform, also for accounts that refused access)."""
    from ..engine.run_plan import ObjectTarget, RunRefused, plan_run  # the engine loads with the first run

    selected_checks: dict[dg.AssetKey, list[str]] = {}
    for check in context.selected_asset_check_keys:
        selected_checks.setdefault(check.asset_key, []).append(check.name)
    chosen = [targets[k] for k in context.selected_asset_keys if k in targets]
    check_warehouse(duckdb)  # a configured PostgreSQL warehouse that is unusable fails before any request
    by_account = accounts_dimension(partitions_def) is not None
    try:
        plan = plan_run(
            [ObjectTarget(t.key, t.object, t.table, t.pipeline.mode, t.pipeline.strategy, t.partitioned)
             for t in chosen],
            run_slices(context, partitions_def),
            RunOptions(config.mode, dict(config.modes), config.lookback_seconds, config.capture_changes),
            stripe, duckdb.get_connection, by_account=by_account, log=context.log,
        )
    except ConfigError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except RunRefused as exc:
        raise dg.Failure(description=str(exc)) from None
    failures: list[str] = list(plan.refused)
    if plan.platform_only:  # not materialized for a connected account's partition: said, not silent
        context.log.info(f"{', '.join(plan.platform_only)}: the platform's own lists, loaded in the platform's "
                         f"partition ({plan.platform}), not per connected account.")

    def checks_of(target: _Target) -> Iterator[dg.AssetCheckResult]:
        names = selected_checks.pop(target.key, None)
        if target.checks is not None and names:
            with duckdb.get_connection() as con:
                # Connect: a run's checks judge the rows of the accounts (partitions) it ran for.
                yield from target.checks.evaluate(con, names, context.log.info, accounts=plan.accounts)

    finished: dict[dg.AssetKey, list] = {}
    # While the run's events are still loading, a table's checks wait for them: no_stale_rows judges
    # against the events this run writes.
    events_loading = any(p.object.name == "event" for p in plan.plans)
    waiting: list[_Target] = []
    outcomes = plan.run(lambda batch: write_batch(duckdb, batch), spool_root=os.environ.get("NILUS_SPOOL_DIR"),
                        log=context.log, prepare=prepare_batch)
    for outcome in outcomes:
        asset_key, account = outcome.plan.key
        if not outcome.ok:
            # The other objects go on loading and are written; the step fails at the end.
            error = f"{account}: {outcome.error}" if by_account else outcome.error
            if len(plan.plans) > 1:  # said now, as it happens; a lone object's failure is the step's
                context.log.error(error)
            failures.append(error)
        else:
            context.log.info((f"{account}: " if by_account else "") + describe(outcome.batch, outcome.written))
        done = finished.setdefault(asset_key, [])
        done.append(outcome)
        # A table is materialized once every account of the run has loaded into it.
        if len(done) < plan.expected[asset_key] or not all(o.ok for o in done):
            continue
        target = targets[asset_key]
        # Written in the step, not by an IO manager on Output: a failed write then fails only its object.
        yield dg.MaterializeResult(asset_key=target.key, metadata=_metadata(done, by_account))
        if events_loading and target.object.name != "event":
            waiting.append(target)
            continue
        if target.object.name == "event":
            events_loading = False
            for earlier in waiting:
                yield from checks_of(earlier)
            waiting.clear()
        yield from checks_of(target)
    for target in waiting:  # the events object failed: judge what can be judged
        yield from checks_of(target)
    for target in targets.values():  # checks selected without their asset: judge the table as it is
        if target.key in selected_checks and target.key not in context.selected_asset_keys:
            yield from checks_of(target)
    message = plan.failure(failures)
    if message:
        raise dg.Failure(description=message)


def _metadata(outcomes: list, by_account: bool) -> dict:
    """One materialization's metadata; for a run over several accounts, the counts summed over them."""
    metadata = dict(outcomes[-1].written)
    if not by_account:
        return metadata
    for name in ("objects_fetched", "rows_inserted", "rows_updated", "rows_deleted", "rows_unchanged", "requests",
                 "rate_limited_429", "server_errors_5xx", "retries", "account_rows", "reread_other_version"):
        if name in metadata:
            metadata[name] = sum(int(o.written.get(name, 0)) for o in outcomes)
    adopted = sum(int(o.written.get("rows_adopted", 0)) for o in outcomes)  # by whichever account wrote first
    if adopted:
        metadata["rows_adopted"] = adopted
    metadata["stripe_accounts"] = ", ".join(str(o.plan.account) for o in outcomes)
    return metadata


def _build(
    pipelines: Sequence[StripePipeline],
    *,
    name: str,
    translator: StripeTranslator,
    partitions_def: Optional[dg.TimeWindowPartitionsDefinition],
    io_manager_key: str,
    with_checks: bool,
    accounts: Optional[dg.DynamicPartitionsDefinition] = None,
) -> dg.AssetsDefinition:
    targets = [_target(p, translator, partitions_def, with_checks, accounts) for p in pipelines]
    partitioned = any(t.partitioned for t in targets)
    group_partitions = targets[0].partitions_def
    if partitioned and not all(t.partitioned for t in targets):
        raise ConfigError(
            "Objects that Stripe cannot filter by `created` ("
            + ", ".join(t.object.name for t in targets if not t.object.supports_created)
            + ") cannot share a partitioned step; build them separately."
        )
    one = len(targets) == 1
    by_key = {t.key: t for t in targets}
    # BackfillPolicy is beta in Dagster 1.13; the single-run policy is what makes ranged backfills one run.
    warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

    @dg.multi_asset(
        name=name,
        # A platform list (Connect) yields nothing in a connected account's partition: it is skippable there.
        specs=[_spec(t, partitions_def, not one or (accounts is not None and t.object.platform_level), io_manager_key)
               for t in targets],
        check_specs=[spec for t in targets if t.checks for spec in t.checks.specs()] or None,
        can_subset=True,  # also lets a check that cannot judge yield nothing (shown as skipped)
        partitions_def=group_partitions,
        # Ranges (of days, or of accounts) run as one run: one process start for a year or 1,000 accounts.
        backfill_policy=dg.BackfillPolicy.single_run() if group_partitions is not None else None,
        pool=POOL,
        # Fan-out objects make one request per parent: the longest steps of a full load. Starting them
        # first keeps them from ending last, alone (steps otherwise start alphabetically).
        op_tags={"dagster/priority": "10"} if any(t.object.parent for t in targets) else None,
    )
    def _stripe_assets(
        context: dg.AssetExecutionContext, config: StripeLoadConfig, stripe: StripeResource, duckdb: DuckDBResource
    ):
        yield from _load(context, config, stripe, duckdb, by_key, group_partitions)

    return _stripe_assets


def build_stripe_asset(
    pipeline: StripePipeline,
    *,
    translator: Optional[StripeTranslator] = None,
    partitions_def: Optional[dg.TimeWindowPartitionsDefinition] = None,
    io_manager_key: str = IO_MANAGER_KEY,
    with_checks: bool = True,
    accounts: Optional[dg.DynamicPartitionsDefinition] = None,
) -> dg.AssetsDefinition:
    """One Stripe asset in its own step (op `<key>`, e.g. `stripe__charge`). With `with_checks`, its table
    checks run in the same step, right after the write (a separate check step would cost one more process
    per table under the multiprocess executor)."""
    translator = translator or StripeTranslator()
    key = _target(pipeline, translator, partitions_def, with_checks=False).key
    return _build(
        [pipeline], name=key.to_python_identifier(), translator=translator, partitions_def=partitions_def,
        io_manager_key=io_manager_key, with_checks=with_checks, accounts=accounts,
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
    accounts: Optional[dg.DynamicPartitionsDefinition] = None,
) -> list[dg.AssetsDefinition]:
    """The assets of the given catalog objects (by default the 24 of the default load, `DEFAULT_OBJECTS`).

    `one_step=False`: one assets definition (one step) per object. `one_step=True`: one subsettable
    multi-asset named `name` for all of them; with `partitions_def`, the objects Stripe cannot filter by
    `created` get a second, unpartitioned one (`<name>_unpartitioned`).

    `accounts` (Connect, see `dagster_adapter/connect.py`): each account is a partition; with `partitions_def` the
    objects filtered by `created` are partitioned by account x day. Rows carry `stripe_account`. The
    platform's own lists (`platform_level`: connected accounts and their persons, capabilities and external
    accounts, application fees, transfers, country specs) are partitioned alike, so that one selection and
    one `--partition` cover every asset, but they are read, without Stripe-Account, only in the platform's
    own partition (its account id); a connected account's partition skips them.
    """
    translator = translator or StripeTranslator()
    names = list(objects) if objects is not None else list(DEFAULT_OBJECTS)
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
    options = dict(translator=translator, partitions_def=partitions_def, io_manager_key=io_manager_key,
                   with_checks=with_checks, accounts=accounts)
    if not one_step:
        return [build_stripe_asset(p, **options) for p in pipelines]
    by_time = [p for p in pipelines if partitions_def is not None and p.object.supports_created]
    whole = [p for p in pipelines if p not in by_time]
    steps = [(name, by_time), (f"{name}_unpartitioned" if by_time else name, whole)]
    built = [_build(part, name=step_name, **options) for step_name, part in steps if part]
    return built


__all__ = [
    "ConfigError",
    "StripeLoadConfig",
    "StripePipeline",
    "StripeTranslator",
    "StripeTranslatorData",
    "build_stripe_asset",
    "build_stripe_assets",
]
