"""A run of several objects (and, on a Connect platform, several accounts), planned from plain values.

The Dagster adapter turns its context into plain values (the selected objects, the `(account, window)`
slices of the run's partitions, the run options) and turns the outcomes back into materializations and
checks. Everything between is here, so a script or another orchestrator can run the same load:
- the platform's own id and an access check of each connected account (one request each), so an account
  that revoked the platform's access fails with one line and loads nothing, and the others still load;
- one plan per object and account (mode, strategy, window, cursors: `plan.py`); the platform's own lists
  (`platform_level`: connected accounts and their persons, capabilities and external accounts, application
  fees, transfers, country specs) only in the platform's slice, read once without Stripe-Account, since
  Stripe serves them to the platform and not per connected account;
- one API handle per object and account, so each object's request counters are its own, and one per
  account for the run's single `/v1/events` read;
- how many split workers each object gets, so a run over many accounts fills the pipe with accounts
  rather than with part-filled pages of each account's split.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Optional, Protocol, Sequence

from ..reading.fetch import Window
from ..source.catalog import StripeObject
from ..warehouse.strategies import TableRef
from .plan import ObjectPlan, RunOptions, plan_object
from .settings import check_environment

if TYPE_CHECKING:  # stripe-python loads when a run first makes a request
    from ..source.client import StripeApi
    from .load import Batch
    from .run import Outcome

RunSlice = tuple[Optional[str], Optional[Window]]  # (Connect account or None, created window or None)


class RunRefused(Exception):
    """The run cannot start: the key's own account could not be read, or a lone account is refused (one line)."""


class ApiSource(Protocol):
    """What the engine needs of the Stripe side (`StripeResource` is one): API handles on the shared budget."""

    workers_per_object: int
    max_in_flight: int

    @property
    def key_for_masking(self) -> Optional[str]: ...

    def get_api(self, stripe_account: Optional[str] = ...) -> "StripeApi": ...

    def platform_account_id(self) -> str: ...


@dataclass(frozen=True)
class ObjectTarget:
    """One selected object: the caller's handle for it, where it is written, and how."""

    key: Hashable
    object: StripeObject
    table: TableRef
    mode: str  # the object's default loading mode (run options may override it)
    strategy: Optional[str]
    partitioned: bool  # by `created` day: the slice's window applies


@dataclass
class RunPlan:
    plans: list[ObjectPlan]
    apis: dict  # plan.key -> StripeApi
    events_apis: dict  # account (None: the single account) -> StripeApi for the run's /v1/events read
    slices: list[RunSlice]
    refused: list[str]  # one line per account the platform may not read (it loads nothing)
    objects: int  # objects selected per account
    by_account: bool
    workers: int
    max_concurrent: int
    expected: dict = field(default_factory=dict)  # target key -> how many plans (accounts) load it
    platform: Optional[str] = None  # Connect: the platform's own account id
    platform_only: list[str] = field(default_factory=list)  # platform lists skipped in connected accounts' slices

    @property
    def accounts(self) -> Optional[list]:
        """The accounts the run is for (checks judge their rows); None when not partitioned by account."""
        return [account for account, _ in self.slices] if self.by_account else None

    def run(self, write: Callable[["Batch"], Any], *, spool_root: Optional[str], log,
            prepare: Optional[Callable[["Batch"], Any]] = None) -> Iterator["Outcome"]:
        """Fetch every plan concurrently and write each as soon as it is spooled (`run.run`)."""
        from .run import run  # the fetch engine, and stripe-python with it, load with the first run

        return run(self.plans, self.apis, write, workers=self.workers, spool_root=spool_root, log=log,
                   events_api=self.events_apis.get(None), events_apis=self.events_apis,
                   max_concurrent=self.max_concurrent, prepare=prepare)

    def failure(self, failures: Sequence[str]) -> Optional[str]:
        """The run's one failure message for its failed loads (and refused accounts), or None."""
        if not failures:
            return None
        denied = len(self.refused)
        total = len(self.plans) + denied * self.objects
        failed = len(failures) - denied + denied * self.objects
        if len(failures) == 1 and (total == 1 or denied):
            return failures[0]
        if not self.by_account:
            return (f"{len(failures)} of {len(self.plans)} Stripe objects failed "
                    f"({len(self.plans) - len(failures)} loaded and written):\n" + "\n".join(failures))
        return f"{failed} of {total} Stripe object loads failed ({total - failed} loaded and written):\n" + "\n".join(
            failures)


def _explained(call: Callable[[], Any], masked_key: Optional[str]):
    from ..source.errors import explain  # imported by a run (with stripe-python), not to load definitions

    try:
        return call()
    except Exception as exc:  # e.g. a wrong platform key: one line, before any object is read
        raise RunRefused(str(explain(exc, "account", masked_key))) from None


def plan_run(
    targets: Sequence[ObjectTarget],
    slices: Sequence[RunSlice],
    options: RunOptions,
    source: ApiSource,
    open_connection: Callable[[], AbstractContextManager],
    *,
    by_account: bool,
    log,
) -> RunPlan:
    """Plan a run of `targets` over `slices`. Cursors are read up front, on one warehouse connection opened
    only if a plan needs one. Raises `RunRefused` (one line) or `ConfigError` before any object is read."""
    from ..reading.accounts import access_problem

    check_environment()  # the engine's NILUS_* settings: a wrong one fails here, not after the whole fetch
    masked = source.key_for_masking
    platform = _explained(source.platform_account_id, masked) if by_account else None
    plans: list[ObjectPlan] = []
    apis: dict = {}
    events_apis: dict = {}
    refused: list[str] = []
    with ExitStack() as stack:
        opened: list = []

        def connect():
            if not opened:
                opened.append(stack.enter_context(open_connection()))
            return opened[0]

        for account, window in slices:
            # The platform's own data is read without Stripe-Account and stamped with its own id.
            sent = None if account == platform else account
            if sent is not None:
                problem = _explained(lambda: access_problem(source.get_api(stripe_account=sent), sent), masked)
                if problem:
                    if len(slices) > 1:  # said now; a lone account's failure is the run's
                        log.error(problem)
                    refused.append(problem)
                    continue
            handle = (lambda: source.get_api(stripe_account=sent)) if by_account else source.get_api
            if targets:
                events_apis[account] = handle()
            for target in targets:
                if by_account and target.object.platform_level and account != platform:
                    continue  # the platform's list: read in the platform's own slice, not per connected account
                plan = plan_object(
                    (target.key, account), target.object, target.table, default_mode=target.mode,
                    strategy=target.strategy, options=options, partition=window if target.partitioned else None,
                    connect=connect, account=account, platform=platform,
                )
                plans.append(plan)
                apis[plan.key] = handle()  # one handle each, so each object's request counters are its own
    platform_only = sorted({t.object.name for t in targets if by_account and t.object.platform_level}
                           if any(account != platform for account, _ in slices) else set())
    expected: dict = {}
    for plan in plans:
        expected[plan.key[0]] = expected.get(plan.key[0], 0) + 1
    # Accounts of one run load side by side: they, not a split of each account's range, fill the pipe
    # (splitting a small account into 8 pieces costs up to 8 part-filled pages each).
    workers = max(1, source.workers_per_object // max(1, len(apis) // max(1, len(targets))))
    return RunPlan(plans, apis, events_apis, list(slices), refused, len(targets), by_account, workers,
                   max_concurrent=max(len(targets), source.max_in_flight), expected=expected,
                   platform_only=platform_only, platform=platform)
