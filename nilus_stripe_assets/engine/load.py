"""One object's load, without Dagster: fetch into a spool, then hand the batch to the warehouse writer.

The Dagster asset (Dagster adapter) calls `extract`, returns the `Batch` to the IO manager, which calls
`warehouse.write`. Benchmarks and tests can drive the same two steps directly.
"""

from __future__ import annotations

import errno
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

from ..reading.accounts import merge_key, tag
from ..source.catalog import StripeObject
from ..reading.fetch import ListOrderError, Window, fetch_object
from ..staging.columns import declared_columns
from ..staging.disk import SPOOL_DIR_ENV, SpoolSpaceError
from ..staging.spool import Spool, SpoolSummary
from ..staging.stream import ROTATE_OBJECTS, StreamedStaging
from ..warehouse.strategies import ChangeSet, Slice, TableRef

if TYPE_CHECKING:  # annotations only: stripe (and requests) load when a run first makes a request
    from ..source.client import StripeApi


def out_of_space(spool: Spool, obj: StripeObject, spooled: int) -> SpoolSpaceError:
    """The one line for a spool that filled its disk: which folder, and that the partial spool is gone."""
    return SpoolSpaceError(
        f"The spool folder {spool.path.parent} ran out of space while '{obj.name}' was read ({spooled:,} objects "
        f"spooled); the partial spool was removed. Free space there, or point {SPOOL_DIR_ENV} at a larger disk."
    )


class Cancelled(Exception):
    """The load was stopped from outside (another object's write failed, or the run was interrupted)."""


@dataclass
class Batch:
    """What an asset hands to the IO manager: spooled objects plus how to write them."""

    object: StripeObject
    mode: str
    strategy: str
    table: TableRef
    spool: SpoolSummary
    spool_dir: str
    window: Window
    scope: Optional[Slice]  # set for partitioned replace: only this slice is swapped
    seconds: float
    started_at: int  # epoch seconds when reading began: the rows' state is at least this new
    requests: dict = field(default_factory=dict)
    # Change capture applied in the same transaction (objects' newest states from events, deletions).
    changes: Optional[ChangeSet] = None
    changes_dir: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    account: Optional[str] = None  # Connect: every row carries it in `stripe_account`, part of the merge key
    platform: Optional[str] = None  # Connect: the platform's id, given to rows stored without an account
    prepared: Any = None  # the write's staged form, when the engine staged it in the fetch's thread
    # The spooled files staged while they were fetched (`staging.stream`), finished by `warehouse.prepare`.
    streamed: Optional[StreamedStaging] = None
    # Change capture: objects whose newest event was rendered in another API version, read again in the pinned one.
    reread_other_version: Optional[int] = None
    # Stripe's answer when the account does not use the object's product ("Your account is not set up to use
    # Issuing…"): the batch is empty and the table is written empty; a later run fills it once the product is on.
    not_set_up: Optional[str] = None

    @property
    def merge_key(self):
        return merge_key(self.object, self.account)

    @property
    def objects_per_second(self) -> float:
        return self.spool.objects / self.seconds if self.seconds > 0 else 0.0


def extract(
    api: StripeApi,
    obj: StripeObject,
    mode: str,
    strategy: str,
    table: TableRef,
    window: Window = Window(),
    scope: Optional[Slice] = None,
    workers: int = 8,
    spool_root: Optional[str] = None,
    cancel: Optional[threading.Event] = None,
    account: Optional[str] = None,
    parent_ids: Optional[Sequence[str]] = None,
) -> Batch:
    """Read `obj` from Stripe into a spool on disk (a child list: only the children of `parent_ids`, when
    given). Raises stripe errors unchanged (the caller explains them), and `Cancelled` at the next page once
    `cancel` is set."""
    fetch_mode = "sync" if mode.startswith("sync") else "async"
    started_at = int(time.time())

    def open_spool() -> tuple[Spool, StreamedStaging]:
        # Pages are staged as they arrive: the spool hands each thread's file on every ROTATE_OBJECTS objects.
        spool = Spool(directory=spool_root, prefix=f"stripe-{obj.name}-", time_field=obj.created_field)
        streamed = StreamedStaging(str(spool.path), merge_key(obj, account), started_at, declared_columns(obj.name))
        spool.hand_on(streamed.add, every=ROTATE_OBJECTS)
        return spool, streamed

    spool, streamed = open_spool()
    started = time.perf_counter()
    notes: list[str] = []
    not_set_up_message: Optional[str] = None
    try:
        def sink(objects):
            if cancel is not None and cancel.is_set():
                raise Cancelled(obj.name)
            written = spool.write(tag(objects, account) if account else objects)
            api.stats.add(objects=written)  # what the progress line counts: this object's rows, not its parents
            return written

        try:
            try:
                fetch_object(api, obj, fetch_mode, sink, window=window, workers=workers, notes=notes,
                             parent_ids=parent_ids)
            except ListOrderError as exc:
                # What the split read is incomplete: start over with one cursor, which is right in any order.
                notes.append(
                    f"{obj.name}: the async split was stopped because {exc}; it relies on Stripe's newest-first "
                    f"order and `created` filter, so {obj.name} was read again sequentially."
                )
                streamed.close()
                spool.finish()
                spool.cleanup()
                spool, streamed = open_spool()
                fetch_object(api, obj, "sync", sink, window=window, workers=workers, notes=notes,
                             parent_ids=parent_ids)
        except Exception as exc:
            from ..source.errors import not_offered, not_set_up  # with stripe-python, loaded by the first request

            refusal = not_set_up(exc, obj)  # Stripe's own words first, then a list not served at all
            missing = None if refusal else not_offered(exc, obj)
            refusal = refusal or missing
            if refusal is None:
                raise
            # The account does not use the product (or the list is not served): nothing to read, which is not a
            # failure. The table is written empty (created on a first load, unchanged by a merge), with Stripe's
            # words in its metadata.
            streamed.close()
            spool.discard()
            spool, streamed = open_spool()
            not_set_up_message = refusal
            notes.append(
                f"{obj.name}: the account does not use {obj.product}, so the table stays empty until it does "
                f"(Stripe: {refusal})" if missing is None else
                f"{obj.name}: {missing}, so the table stays empty until it does."
            )
    except BaseException as exc:
        streamed.close()
        spooled = spool.objects
        spool.discard()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise out_of_space(spool, obj, spooled) from None
        raise
    try:
        summary = spool.finish()
    except OSError as exc:  # the last bytes did not fit either
        streamed.close()
        spool.discard()
        if exc.errno == errno.ENOSPC:
            raise out_of_space(spool, obj, spool.objects) from None
        raise
    return Batch(
        object=obj,
        mode=mode,
        strategy=strategy,
        table=table,
        spool=summary,
        spool_dir=str(spool.path),
        window=window,
        scope=scope,
        seconds=time.perf_counter() - started,
        started_at=started_at,
        requests=api.stats.as_dict(),
        notes=notes,
        account=account,
        streamed=streamed,
        not_set_up=not_set_up_message,
    )
