"""A run of planned objects, without Dagster: fetch them concurrently, write each one as soon as it is
spooled, and keep every failure to the object it happened in.

`run()` yields one `Outcome` per object, in the order fetches finish. Writes happen in the caller's
thread, one at a time (DuckDB has one writer; the cursors table is shared by every object). Any exception
while fetching or writing one object (a Stripe error, a `KeyError` on an unexpected shape, bad JSON, a
DuckDB error) becomes that object's one-line `error`; the other objects go on and are written.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable, Iterator, Mapping, Optional, Sequence

from ..reading.events import EVENT_RETENTION_SECONDS, Capture, EventStream
from ..source.config import _one_line
from ..source.errors import explain, scrub
from ..staging import disk as spool_disk
from ..staging.parquet import SLOTS as STAGING_SLOTS
from ..reading.fetch import Window
from .load import Batch, extract
from .plan import ObjectPlan
from ..staging.spool import Spool, SpoolSummary
from ..warehouse.strategies import ChangeSet, Slice

if TYPE_CHECKING:  # annotations only: stripe (and requests) load when a run first makes a request
    from ..source.client import StripeApi

PROGRESS_SECONDS = 15.0  # how often a running load logs each object still loading


@dataclass
class Outcome:
    plan: ObjectPlan
    batch: Optional[Batch] = None
    written: Any = None  # what the caller's `write` returned
    error: Optional[str] = None  # one line naming the object and the cause

    @property
    def ok(self) -> bool:
        return self.error is None


def write_failure(plan: ObjectPlan, exc: BaseException, api_key: Optional[str] = None) -> str:
    text = _one_line(scrub(str(exc), api_key)) or "(no message)"
    if len(text) > 240:
        text = text[:239] + "…"
    return (
        f"Writing '{plan.object.name}' into {plan.table} failed, so the table is unchanged: "
        f"{type(exc).__name__}: {text}"
    )


class EventsReadFailed(Exception):
    """The run's one /v1/events read failed; every object waiting on it fails with this cause."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def _spooled(plan: ObjectPlan, spool: SpoolSummary, spool_dir: str, seconds: float, started_at: int,
             requests: dict) -> Batch:
    return Batch(
        object=plan.object, mode=plan.mode, strategy=plan.strategy, table=plan.table, spool=spool,
        spool_dir=spool_dir, window=plan.window, scope=plan.scope, seconds=seconds, started_at=started_at,
        requests=requests, account=plan.account,
    )


def _nothing_listed(plan: ObjectPlan, spool_root: Optional[str], api: StripeApi) -> Batch:
    """An empty batch: the object's changes all come from events, so its list is not read."""
    spool = Spool(directory=spool_root, prefix=f"stripe-{plan.object.name}-")
    return _spooled(plan, spool.finish(), str(spool.path), 0.0, int(time.time()), api.stats.as_dict())


class _RunStream:
    """The run's one /v1/events read: who subscribes, and the read itself (started once, awaited by many)."""

    def __init__(self, plans: Sequence[ObjectPlan], api: StripeApi, spool_root: Optional[str],
                 account: Optional[str] = None):
        now = int(time.time())
        self.stream = EventStream(api, now, spool_root, account=account)
        self.api = api
        self.captures: dict[Hashable, Capture] = {}
        self.event_table: Optional[ObjectPlan] = None
        self.event_rows_dir: Optional[str] = None
        for plan in plans:
            if plan.object.name == "event" and plan.incremental:
                # The event table is the stream itself: filled from the same read.
                self.event_table = plan
                self.event_rows_dir = self.stream.keep_events(plan.window.gte)
            elif plan.incremental and plan.keeps_events_cursor and plan.capture_changes:
                # Rows but no cursor yet (e.g. loaded by partitions): read all the changes Stripe still has.
                since = plan.events_cursor
                if since is None and plan.window.bounded:
                    since = now - EVENT_RETENTION_SECONDS + 3600
                if since is not None:
                    self.captures[plan.key] = self.stream.subscribe(plan.object, since)
        self.future: Optional[Future] = None

    def start(self, pool: ThreadPoolExecutor) -> None:
        if self.stream.needed:
            self.future = pool.submit(self.stream.read)

    def wait(self) -> None:
        assert self.future is not None
        try:
            self.future.result()
        except Exception as exc:
            raise EventsReadFailed(exc) from None

    def event_batch(self, plan: ObjectPlan) -> Batch:
        self.wait()
        stream = self.stream
        batch = _spooled(plan, stream.event_rows, self.event_rows_dir, stream.seconds, stream.started_at,
                         self.api.stats.as_dict())
        batch.notes.extend(plan.notes)
        batch.notes.append(f"read with the run's change capture: one /v1/events read of {stream.events} events")
        return batch

    def note(self, capture: Capture) -> str:
        return (
            f"change capture: {capture.events} of the run's {self.stream.events} events, {capture.objects} object "
            f"states (one /v1/events read for every object, {int(self.api.stats.requests)} requests)"
        )


# Beyond this many parents named by events, one IN list is unwieldy and a re-read of every parent's list
# costs about as much: read the whole snapshot instead.
MAX_RELISTED_PARENTS = 10_000


def _relisted(plan: ObjectPlan, api: StripeApi, workers: int, spool_root: Optional[str], cancel: threading.Event,
              stream: _RunStream, capture: Capture, notes: list[str]) -> Batch:
    """Children no event carries, re-listed for the parents the run's events name (`Parent.relist_on`): a
    customer's balance transactions after its `customer.*` events. Only those parents' rows are replaced;
    a deleted parent's list is gone, so its rows stay as they were."""
    obj = plan.object
    stream.wait()  # the parents come from the events read
    parents: Optional[list[str]] = sorted(capture.parents - capture.gone)
    scope = plan.scope
    if len(parents) > MAX_RELISTED_PARENTS:
        notes.append(f"{obj.name}: {len(parents)} {obj.parent.object}s changed, so every list was read again")
        parents = None  # every parent's list, the whole snapshot replaced
    else:
        own = plan.scope.equals if plan.scope is not None else ()
        scope = Slice(None, equals=own, among=(obj.parent.id_column, tuple(parents)))
        notes.append(f"{obj.name}: the lists of the {len(parents)} {obj.parent.object}(s) named by the run's "
                     f"events read again; only their rows replaced")
    return extract(api, obj, plan.mode, plan.strategy, plan.table, scope=scope, workers=workers,
                   spool_root=spool_root, cancel=cancel, account=plan.account, parent_ids=parents)


def fetch(plan: ObjectPlan, api: StripeApi, workers: int, spool_root: Optional[str], log,
          cancel: threading.Event, stream: _RunStream) -> Batch:
    """Read one object into a spool and attach its changes from the run's event stream; raises errors
    unchanged (`EventsReadFailed` when the shared events read failed)."""
    if plan is stream.event_table:
        return stream.event_batch(plan)
    obj, table = plan.object, plan.table
    mode, window, notes = plan.mode, plan.window, list(plan.notes)
    capture = stream.captures.get(plan.key)
    if capture is not None and capture.expired:
        notes.append(
            f"Events cursor {capture.since} is older than Stripe's 30-day event retention: changes since "
            f"then cannot all be read, so {obj.name} is reloaded in full."
        )
        log.warning(notes[-1])
        window, mode, capture = Window(), "async", None
    if capture is not None and obj.parent is not None and obj.parent.relist_days:
        # No event carries these children (a payout's balance transactions): the recent parents' lists again.
        window = Window(gte=int(time.time()) - obj.parent.relist_days * 86400)
        notes.append(f"{obj.name}: the lists of the {obj.parent.object}s created in the last "
                     f"{obj.parent.relist_days} days (no event carries them)")
        batch = extract(api, obj, mode, plan.strategy, table, window=window, scope=plan.scope, workers=workers,
                        spool_root=spool_root, cancel=cancel, account=plan.account)
    elif capture is not None and obj.relist_on:
        batch = _relisted(plan, api, workers, spool_root, cancel, stream, capture, notes)
    elif capture is not None and obj.parent is not None:
        # Children without a `created` filter (payment methods, subscription items) would need one request
        # per parent to list; their changes all arrive as events, so a request count independent of the
        # number of parents.
        batch = _nothing_listed(plan, spool_root, api)
        notes.append(f"{obj.name}: no list read, every change comes from events")
    else:
        batch = extract(
            api, obj, mode, plan.strategy, table, window=window, scope=plan.scope,
            workers=workers, spool_root=spool_root, cancel=cancel, account=plan.account,
        )
        for note in batch.notes:  # what the fetch itself found worth a warning (e.g. a server's list order)
            log.warning(note)
    try:
        if plan.keeps_events_cursor:
            # The events cursor is committed in the same transaction as the rows it describes.
            if capture is not None:
                stream.wait()
                # In this object's thread, on its own handle: a failed re-read is this object's failure.
                stream.stream.complete(capture, api)
                batch.requests = api.stats.as_dict()
                batch.reread_other_version = capture.reread_other_version
                if capture.reread_other_version:
                    notes.append(
                        f"{capture.reread_other_version} {obj.name} object(s) whose newest event was rendered in "
                        f"another API version were read again in {stream.stream.version}"
                    )
                batch.changes = ChangeSet(
                    files=capture.files, state_key=plan.state_key, cursor=capture.cursor, fields=capture.fields,
                    kinds=capture.kinds,
                )
                batch.changes_dir = capture.spool_dir
                notes.append(stream.note(capture))
            elif not (plan.incremental and not plan.capture_changes):
                # A full read reflects every change made before it started.
                batch.changes = ChangeSet(files=[], state_key=plan.state_key, cursor=batch.started_at)
    except BaseException:
        discard(batch)
        raise
    batch.notes.extend(notes)  # the caller logs one line per object once it is written
    return batch


def _failure(plan: ObjectPlan, exc: BaseException, api_key: Optional[str]) -> str:
    if isinstance(exc, EventsReadFailed):
        # Name /v1/events and its permission (Events read), not the object's own.
        return (
            f"Change capture for '{plan.object.name}' reads /v1/events, and that failed: "
            f"{explain(exc.cause, 'event', api_key)}"
        )
    return str(explain(exc, plan.object.name, api_key))


def _fetch_and_stage(plan, api, workers, spool_root, log, cancel, stream, prepare) -> Batch:
    batch = fetch(plan, api, workers, spool_root, log, cancel, stream)
    batch.platform = plan.platform
    if prepare is not None and not cancel.is_set():
        if batch.streamed is not None:
            # Its last pieces take staging slots of their own: never wait for them while holding one.
            batch.streamed.wait()
        with STAGING_SLOTS:
            try:
                batch.prepared = prepare(batch)
            except Exception:  # the write stages again and reports the failure as that object's write failure
                batch.prepared = None
    return batch


def discard(batch: Batch) -> None:
    """Remove a batch's spooled files (after its write, or when it will never be written)."""
    if batch.streamed is not None:
        batch.streamed.close()
    spool_disk.remove(batch.spool_dir)
    if batch.changes_dir:
        spool_disk.remove(batch.changes_dir)


def log_progress(log, plans: Iterable[ObjectPlan], apis: Mapping[Hashable, StripeApi], elapsed: float) -> None:
    """One line per object still loading, so a long load is not silent for minutes."""
    for plan in plans:
        stats = apis[plan.key].stats
        rate = stats.objects / elapsed if elapsed > 0 else 0.0
        log.info(
            f"{plan.object.name}: {stats.objects:,} objects so far, {stats.requests:,} requests, "
            f"{rate:,.0f} objects/s"
        )


def run(
    plans: Sequence[ObjectPlan],
    apis: Mapping[Hashable, StripeApi],
    write: Callable[[Batch], Any],
    *,
    workers: int,
    spool_root: Optional[str],
    log,
    events_api: Optional[StripeApi] = None,
    max_concurrent: Optional[int] = None,
    events_apis: Optional[Mapping[Optional[str], StripeApi]] = None,
    prepare: Optional[Callable[[Batch], Any]] = None,
) -> Iterator[Outcome]:
    """Fetch `plans` concurrently (one thread each, at most `max_concurrent` at once; `apis[plan.key]` each)
    and `write` each batch in this thread as soon as it is spooled. Objects that capture changes share one
    /v1/events read per account (through `events_apis[plan.account]`, or `events_api` for plans without an
    account; they count their requests apart). `prepare` (optional) stages a batch in its fetch's thread,
    so only the part of a write that needs the warehouse is serialized. Closing the generator stops the
    fetches still running."""
    # Fan-out objects make one request per parent, the longest loads: start them first.
    ordered = sorted(plans, key=lambda p: (p.object.parent is None, p.object.name))
    cancel = threading.Event()
    streams = _streams(ordered, apis, events_api, events_apis or {}, spool_root)
    # The objects' threads, plus one for each events read that some of them wait for (submitted first, so
    # a read never waits behind the objects waiting for it).
    objects_at_once = max(1, min(len(ordered), max_concurrent or len(ordered)))
    pool = ThreadPoolExecutor(max_workers=objects_at_once + len(streams), thread_name_prefix="stripe-object")
    for stream in streams.values():
        stream.start(pool)
    pending: dict[Future, ObjectPlan] = {
        pool.submit(_fetch_and_stage, plan, apis[plan.key], workers, spool_root, log, cancel, streams[plan.account],
                    prepare): plan
        for plan in ordered
    }
    started = last_progress = time.monotonic()
    try:
        while pending:
            done, _ = wait(pending, timeout=PROGRESS_SECONDS, return_when=FIRST_COMPLETED)
            if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                last_progress = time.monotonic()
                log_progress(log, pending.values(), apis, last_progress - started)
            for future in done:
                plan = pending.pop(future)
                api_key = apis[plan.key].api_key
                try:
                    batch = future.result()
                except Exception as exc:  # any cause, not only Stripe's: the other objects go on
                    yield Outcome(plan, error=_failure(plan, exc, api_key))
                    continue
                try:
                    written = write(batch)
                except Exception as exc:
                    yield Outcome(plan, batch, error=write_failure(plan, exc, api_key))
                    continue
                finally:
                    discard(batch)
                yield Outcome(plan, batch, written)
    finally:
        cancel.set()  # on an interrupted run, stop the other fetches at their next page
        pool.shutdown(wait=True, cancel_futures=True)
        for future in pending:  # fetched but never written: drop the spools
            if future.done() and not future.cancelled() and future.exception() is None:
                discard(future.result())
        for stream in streams.values():
            stream.stream.cleanup()  # change spools of objects that failed


def _streams(
    plans: Sequence[ObjectPlan], apis: Mapping[Hashable, StripeApi], events_api: Optional[StripeApi],
    events_apis: Mapping[Optional[str], StripeApi], spool_root: Optional[str],
) -> dict[Optional[str], _RunStream]:
    """One events read per Connect account of the run (one for a single-account run): each account's
    events are listed with its own `Stripe-Account`."""
    by_account: dict[Optional[str], list[ObjectPlan]] = {}
    for plan in plans:
        by_account.setdefault(plan.account, []).append(plan)
    return {
        account: _RunStream(
            group, events_apis.get(account) or (events_api if account is None else None) or apis[group[0].key],
            spool_root, account,
        )
        for account, group in by_account.items()
    }
