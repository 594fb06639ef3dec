"""What one run does for each object, decided before any request: mode, strategy, window, cursors.

Dagster-free: the Dagster adapter passes the run config's values and, for a partitioned run, the partition's
`created` window; the warehouse is reached through `connect()`, opened only when an incremental object
needs its cursors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, Optional

from ..source.catalog import StripeObject
from ..reading.accounts import ACCOUNT_COLUMN
from ..reading.events import state_key
from ..source.config import parse_source_table, resolve_strategy
from ..reading.fetch import Window
from ..warehouse.strategies import Slice, TableRef, get_cursor, newest_created


def run_mode(obj: StripeObject, mode: str) -> str:
    """Validate a mode given in run config with the same grammar as `source_table` suffixes."""
    return parse_source_table(obj.name if mode == "async" else f"{obj.name}:{mode}").mode


@dataclass(frozen=True)
class RunOptions:
    """Per-run choices (the Dagster adapter fills them from run config)."""

    mode: Optional[str] = None  # for every object; None: each object's own default
    modes: Mapping[str, str] = field(default_factory=dict)  # per object, over `mode`
    lookback_seconds: int = 600  # sync:incremental re-reads this much before the newest stored `created`
    capture_changes: bool = True  # sync:incremental also applies updates/deletes from /v1/events


@dataclass
class ObjectPlan:
    """What one run does for one object."""

    key: Hashable  # the caller's handle for the object (the Dagster adapter uses the asset key)
    object: StripeObject
    table: TableRef
    mode: str
    strategy: str
    window: Window = Window()
    scope: Optional[Slice] = None  # partitioned replace: only this slice is swapped
    incremental: bool = False
    keeps_events_cursor: bool = False
    events_cursor: Optional[int] = None
    capture_changes: bool = True
    notes: list[str] = field(default_factory=list)
    account: Optional[str] = None  # Connect: the account whose rows this plan loads (stripe_account)
    # Connect: the platform's id. Rows the table holds without an account (loaded before Connect, by the
    # single-account location with the platform's key) are the platform's: the write adopts them.
    platform: Optional[str] = None

    @property
    def state_key(self) -> str:
        key = state_key(self.object, str(self.table))
        return f"{key}:{self.account}" if self.account else key


def plan_object(
    key: Hashable,
    obj: StripeObject,
    table: TableRef,
    *,
    default_mode: str,
    strategy: Optional[str],
    options: RunOptions,
    partition: Optional[Window],
    connect: Callable[[], Any],
    account: Optional[str] = None,
    platform: Optional[str] = None,
) -> ObjectPlan:
    """Plan one object. `strategy` is the pipeline's override (None: the spec's default); `partition` is
    the partition's `created` window when the object is loaded by partition; `account` the Connect account
    whose rows (and cursors) the load owns, in a table shared by many accounts. Raises `ConfigError`."""
    requested = options.modes.get(obj.name, options.mode)
    mode = default_mode if requested is None else run_mode(obj, requested)
    partitioned = partition is not None
    resolved = resolve_strategy(obj, mode, strategy, partitioned=partitioned)
    plan = ObjectPlan(key, obj, table, mode, resolved, capture_changes=options.capture_changes, account=account,
                      platform=platform)
    own_rows = Slice(None, equals=((ACCOUNT_COLUMN, account),)) if account else None
    # Unpartitioned merge/append loads of changing objects keep an events cursor; a partition is a
    # slice of history, and snapshots (replace) and the event stream itself have no changes to capture,
    # except the snapshots re-listed by parent (`Parent.relist_on`): events say which parents' to replace.
    by_parent = resolved == "replace" and bool(obj.relist_on)
    plan.keeps_events_cursor = not partitioned and obj.name != "event" and (resolved != "replace" or by_parent)
    plan.incremental = not partitioned and mode == "sync:incremental" and (resolved != "replace" or by_parent)
    if partition is not None:
        plan.window = partition
        if resolved == "replace":
            plan.scope = Slice(obj.created_field, partition.gte, partition.lt,
                               equals=own_rows.equals if own_rows else ())
    elif plan.incremental:
        # Snapshot (replace) objects are refreshed whole; everything else resumes from the data.
        con = connect()
        cursor = newest_created(con, table, obj.created_field, where=own_rows) if obj.supports_created else None
        plan.events_cursor = get_cursor(con, table.schema, plan.state_key)
        if cursor is not None:
            plan.window = Window(gte=max(0, cursor - options.lookback_seconds))
        elif obj.supports_created:
            plan.notes.append(f"No rows in {table} yet: this first incremental run loads everything.")
    if plan.scope is None and own_rows is not None and resolved == "replace":
        plan.scope = own_rows  # a snapshot of one account replaces that account's rows only
    return plan
