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
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping, Optional, Sequence

from .changes import EVENT_RETENTION_SECONDS
from .changes import capture as capture_changes
from .config import _one_line
from .errors import explain, scrub
from .fetch import Window
from . import spool_disk
from .load import Batch, extract
from .plan import ObjectPlan
from .stripe_api import StripeApi
from .warehouse import ChangeSet

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


def fetch(plan: ObjectPlan, api: StripeApi, workers: int, spool_root: Optional[str], log,
          cancel: threading.Event) -> Batch:
    """Read one object into a spool (plus its changes from /v1/events); raises errors unchanged."""
    obj, table = plan.object, plan.table
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
    try:
        batch = extract(
            api, obj, mode, plan.strategy, table, window=window, scope=plan.scope,
            workers=workers, spool_root=spool_root, cancel=cancel,
        )
    except BaseException:
        if capture is not None and capture.spool_dir:
            spool_disk.remove(capture.spool_dir)  # the change capture is of no use without its rows
        raise
    for note in batch.notes:  # what the fetch itself found worth a warning (e.g. a server's list order)
        log.warning(note)
    if plan.keeps_events_cursor:
        # The events cursor is committed in the same transaction as the rows it describes.
        if capture is not None and not capture.expired:
            batch.changes = ChangeSet(
                files=capture.files, state_key=plan.state_key, cursor=capture.cursor, fields=capture.fields,
                kinds=capture.kinds,
            )
            batch.changes_dir = capture.spool_dir
            notes.append(f"change capture: {capture.events} events, {capture.objects} object states")
        elif not (plan.incremental and not plan.capture_changes):
            # A full read reflects every change made before it started.
            batch.changes = ChangeSet(files=[], state_key=plan.state_key, cursor=batch.started_at)
    batch.notes.extend(notes)  # the caller logs one line per object once it is written
    return batch


def discard(batch: Batch) -> None:
    """Remove a batch's spooled files (after its write, or when it will never be written)."""
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
) -> Iterator[Outcome]:
    """Fetch `plans` concurrently (one thread each, `apis[plan.key]` each) and `write` each batch in this
    thread as soon as it is spooled. Closing the generator stops the fetches still running."""
    # Fan-out objects make one request per parent, the longest loads: start them first.
    ordered = sorted(plans, key=lambda p: (p.object.parent is None, p.object.name))
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, len(ordered)), thread_name_prefix="stripe-object")
    pending: dict[Future, ObjectPlan] = {
        pool.submit(fetch, plan, apis[plan.key], workers, spool_root, log, cancel): plan for plan in ordered
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
                    yield Outcome(plan, error=str(explain(exc, plan.object.name, api_key)))
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
