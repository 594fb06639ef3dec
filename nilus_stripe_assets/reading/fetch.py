"""The fetch engine: how one catalog object's list is read from Stripe.

- `sync`: one cursor, `limit=100` + `starting_after`, newest first, in order.
- `async`: the `created` range is split into disjoint half-open intervals that are paged concurrently. A
  task that sees `has_more` while workers are idle hands the older part of its interval to new tasks (one
  per idle worker, about PAGES_PER_TASK pages each, estimated from the page's density; halves near the
  end) and keeps paging the newer part with `starting_after`, so nearly every request returns a full
  page and objects that share one `created` second are read exactly once (the cursor, not the clock,
  separates them).
- objects without a top-level list (payment methods through customers, subscription items through
  subscriptions) fan out over their parents.

The split relies on Stripe's documented order (newest first by creation time) and on the `created`
filter: a server that lists oldest first, or ignores the filter, would make the cursor skip the newest
second's objects or read pieces twice. Every page of the split is therefore checked before it is used
(creation times falling along the page and from one page of a cursor to the next, inside the requested
range) and the first page that breaks
this raises `ListOrderError`; the caller then reads the list again sequentially, which a cursor makes
correct in any order. Sequential reads with a range keep only objects inside it. A Stripe-compatible server
that rejects the `created` filter itself (a 400 or a lasting 500 to a filtered request, as localstripe answers) is read without it,
sequentially, keeping only the objects inside the range: slower, but complete.

Objects go to a `sink` (normally a `Spool`) as pages arrive; nothing is accumulated here.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence


from ..source.catalog import CATALOG, StripeObject
if TYPE_CHECKING:  # annotations only: stripe (and requests) load when a run first makes a request
    from ..source.client import StripeApi

PAGE_LIMIT = 100  # Stripe's maximum page size
# An async task hands off the older part of its interval once it holds about this many pages; larger
# tasks mean fewer part-filled last pages (requests), smaller ones mean more parallelism. Near the end,
# when few tasks are left, they split in halves instead, so the last pages do not trail one by one.
PAGES_PER_TASK = 64
TAIL_MIN_PAGES = 4  # a task splits in the tail only if each half would still hold a couple of pages

Sink = Callable[[Sequence[dict]], Any]


class ListOrderError(Exception):
    """A page broke what the async split relies on: newest first by creation time, within the range asked."""


def rejects_created(exc: BaseException) -> bool:
    """A 400 invalid_request_error to a request with a `created` filter. Stripe accepts `created` on every
    list the catalog marks `supports_created`, but servers that speak Stripe's protocol may not: localstripe
    answers "Unexpected created", or a bare "Bad request" for two bounds. The caller then reads once without
    the filter, and reports this error if that fails too, so a 400 for another reason still surfaces. Not
    when Stripe says the account does not use the product: that is the answer with or without the filter."""
    import stripe  # stripe-python loads with the first request, not with the definitions that import Window

    from ..source.errors import NOT_SET_UP_WORDS

    return (isinstance(exc, stripe.InvalidRequestError) and exc.http_status == 400
            and not NOT_SET_UP_WORDS.search(str(exc.user_message or exc)))


def may_fail_on_created(exc: BaseException) -> bool:
    """A rejection of the filter, or a server error that retries did not cure (localstripe answers 500 on
    `created` for some lists): either way one read without the filter is worth trying."""
    import stripe

    return rejects_created(exc) or (isinstance(exc, stripe.APIError) and (exc.http_status or 0) >= 500)


@dataclass(frozen=True)
class Window:
    """A half-open interval [gte, lt) over `created` (epoch seconds); None means unbounded."""

    gte: Optional[int] = None
    lt: Optional[int] = None

    def params(self) -> dict:
        created = {}
        if self.gte is not None:
            created["gte"] = self.gte
        if self.lt is not None:
            created["lt"] = self.lt
        return {"created": created} if created else {}

    @property
    def bounded(self) -> bool:
        return self.gte is not None or self.lt is not None

    def excludes(self, value: Any) -> bool:
        """True for an integer time outside the interval (anything else cannot be judged)."""
        if not isinstance(value, int):
            return False
        return (self.gte is not None and value < self.gte) or (self.lt is not None and value >= self.lt)


def iter_pages(api: StripeApi, path: str, params: dict, starting_after: Optional[str] = None) -> Iterator[list]:
    """Sequential pagination over one list, newest first."""
    while True:
        query = {**params, "limit": PAGE_LIMIT}
        if starting_after:
            query["starting_after"] = starting_after
        page = api.list_page(path, query)
        data = page.get("data") or []
        if data:
            yield data
        if not page.get("has_more") or not data:
            return
        starting_after = data[-1]["id"]


def iter_pages_created(api: StripeApi, path: str, params: dict) -> Iterator[list]:
    """`iter_pages`, except that a server rejecting the `created` filter on the first request is read again
    without it: the caller keeps only the objects inside its range (as it must for servers that ignore it)."""
    import stripe

    pages = iter_pages(api, path, params)
    try:
        first = next(pages, None)
    except stripe.StripeError as exc:
        if "created" not in params or not may_fail_on_created(exc):
            raise
        pages = iter_pages(api, path, {k: v for k, v in params.items() if k != "created"})
        try:
            first = next(pages, None)
        except stripe.StripeError:
            raise exc from None  # the filter was not the problem: report what the filtered read got
    if first is not None:
        yield first
        yield from pages


def fetch_sequential(api: StripeApi, path: str, params: dict, sink: Sink) -> None:
    for data in iter_pages(api, path, params):
        sink(data)


def fetch_in_window(
    api: StripeApi, path: str, params: dict, window: Window, sink: Sink, time_field: str, notes: list[str]
) -> None:
    """Sequential read of `window`, keeping only objects inside it (a server may ignore the filter)."""
    if not window.bounded:
        fetch_sequential(api, path, params, sink)
        return
    outside = 0
    for data in iter_pages_created(api, path, {**params, **window.params()}):
        inside = [o for o in data if not window.excludes(o.get(time_field))]
        outside += len(data) - len(inside)
        if inside:
            sink(inside)
    if outside:
        notes.append(
            f"{path} returned {outside} objects outside the requested `created` range "
            f"[{window.gte}, {window.lt}) (the server did not apply the filter); they were left out."
        )


def order_problem(
    data: Sequence[dict], window: Window, time_field: str = "created", after: Optional[int] = None
) -> Optional[str]:
    """What in this page breaks the split's assumptions (None if nothing): newest first, inside `window`.
    `after`: the oldest time on the previous page of the same cursor, which this page may not exceed."""
    previous = after
    for i, obj in enumerate(data):
        value = obj.get(time_field)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"an object without an integer `{time_field}` ({obj.get('id')!r})"
        if window.excludes(value):
            return f"`{time_field}` {value} outside the requested range [{window.gte}, {window.lt})"
        if previous is not None and value > previous:
            where = "within a page" if i else "across pages"
            return f"`{time_field}` rising {where} ({previous}, then {value}): not newest first"
        previous = value
    return None


@dataclass(frozen=True)
class _Task:
    gte: Optional[int]
    lt: Optional[int]
    starting_after: Optional[str] = None
    # The oldest time on the previous page of this cursor: the next page must not start newer than that.
    after_time: Optional[int] = None

    def params(self) -> dict:
        query = Window(self.gte, self.lt).params()
        query["limit"] = PAGE_LIMIT
        if self.starting_after:
            query["starting_after"] = self.starting_after
        return query


def _next_tasks(task: _Task, data: Sequence[dict], idle: int, tail: bool, time_field: str = "created") -> list[_Task]:
    """After a page that has more: continue the newer part with the cursor and, if `idle` workers wait,
    hand the older part off in pieces (of PAGES_PER_TASK pages, or halves in the `tail`). `time_field` is
    the field the `created[...]` filter applies to (the catalog's `created_field`: `date` for invoice items)."""
    last = data[-1]
    oldest = int(last[time_field])
    # Everything not yet read lies in [task.gte, oldest]; ties on `oldest` are behind the cursor. The cursor
    # keeps the task's upper bound all the same: narrowing it to `oldest` would change nothing on a newest-
    # first list, but on a list that rises it would filter out exactly the objects that show it.
    keep_going = _Task(task.gte, task.lt, last["id"], oldest)
    floor = task.gte if task.gte is not None else 0
    if idle <= 0 or oldest <= floor:
        return [keep_going]
    seconds_per_page = max(1, int(data[0][time_field]) - oldest + 1) * PAGE_LIMIT / len(data)
    pages_left = (oldest - floor) / seconds_per_page
    if pages_left >= 1.5 * PAGES_PER_TASK:
        chunk = int(PAGES_PER_TASK * seconds_per_page)
    elif tail and pages_left >= TAIL_MIN_PAGES:
        chunk = (oldest - floor) // 2
    else:
        return [keep_going]
    # Cut points, newest first: this task keeps [cuts[0], oldest]; each idle worker gets one piece, and the
    # last piece takes everything older (it splits again when it runs, if workers are still idle).
    cuts = []
    edge = oldest - chunk
    while edge > floor and len(cuts) < idle and (not cuts or edge - floor >= chunk // 2):
        cuts.append(edge)
        edge -= chunk
    if not cuts:
        return [keep_going]
    tasks = [_Task(cuts[0], task.lt, last["id"], oldest)]
    for newer, older in zip(cuts, cuts[1:] + [None]):
        tasks.append(_Task(task.gte if older is None else older, newer))
    return tasks


def fetch_split(
    api: StripeApi, path: str, params: dict, window: Window, sink: Sink, workers: int, time_field: str = "created"
) -> None:
    """Concurrent read of one `created`-filterable list whose objects hold that time in `time_field`; see the
    module docstring. Raises ListOrderError (after the running pages end) when a page is not newest first
    or not inside its range."""
    import stripe

    def run(task: _Task) -> tuple[list, bool]:
        try:
            page = api.list_page(path, {**params, **task.params()})
        except stripe.StripeError as exc:
            if may_fail_on_created(exc) and "created" in task.params():
                what = "rejected" if rejects_created(exc) else f"answered {exc.http_status} to"
                raise ListOrderError(f"{path} {what} the `created` filter ({exc.user_message or exc})") from exc
            raise
        data = page.get("data") or []
        problem = order_problem(data, Window(task.gte, task.lt), time_field, after=task.after_time)
        if problem:
            raise ListOrderError(f"{path} {problem}")
        if data:
            sink(data)
        return data, bool(page.get("has_more"))

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stripe-split")
    pending: dict[Future, _Task] = {}
    try:
        first = _Task(window.gte, window.lt)
        pending[pool.submit(run, first)] = first
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                data, has_more = future.result()
                if not data or not has_more:
                    continue
                # `pending` no longer holds this task: it counts the other running tasks.
                idle = workers - len(pending) - 1
                for nxt in _next_tasks(task, data, idle=idle, tail=len(pending) < workers // 2, time_field=time_field):
                    pending[pool.submit(run, nxt)] = nxt
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


def fetch_children(api: StripeApi, obj: StripeObject, mode: str, sink: Sink, workers: int,
                   parents_window: Window = Window(), parent_ids: Optional[Sequence[str]] = None) -> None:
    """Fan out over the parent list (parents created in `parents_window` where the parent's list filters on
    `created`; only `parent_ids` when given, without listing the parents): each parent's children,
    concurrently unless mode is sync."""
    relation = obj.parent
    assert relation is not None
    parent = CATALOG[relation.object]

    column = relation.id_column

    def children_of(parent_obj: dict) -> None:
        if not relation.lists_children_of(parent_obj):  # e.g. a manual payout: Stripe itemizes automatic ones only
            return
        parent_id = parent_obj["id"]

        def sink_children(children: Sequence[dict]) -> None:
            for child in children:  # the parent's id as a column, declared by the child's class or not
                child[column] = parent_id
            sink(children)

        start_after = None
        if relation.embedded_field:
            embedded = parent_obj.get(relation.embedded_field) or {}
            first = embedded.get("data") or []
            if first:
                sink_children(first)
            if not embedded.get("has_more"):
                return
            start_after = first[-1]["id"] if first else None
        if relation.param:
            path, params = relation.path_template, {**obj.list_params, relation.param: parent_id}
        else:
            # The child's own parameters too: a connected account's external accounts are asked for by `object`.
            path, params = relation.path_template.format(id=parent_id), dict(obj.list_params)
        for data in iter_pages(api, path, params, starting_after=start_after):
            sink_children(data)

    parent_params = dict(parent.list_params)
    if parent.supports_created:
        parent_params.update(parents_window.params())

    def list_parents(on_parents: Callable[[Sequence[dict]], Any]) -> None:
        if parent_ids is None:
            fetch_sequential(api, parent.path, parent_params, on_parents)
        else:
            on_parents([{"id": parent_id} for parent_id in parent_ids])

    if mode == "sync" or workers <= 1:
        list_parents(lambda parents: [children_of(p) for p in parents])
        return

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stripe-children")
    slots = threading.BoundedSemaphore(workers * 4)  # bound the queue: parents are not kept in memory
    errors: list[BaseException] = []

    def on_done(future: Future) -> None:
        slots.release()
        if future.exception() is not None:
            errors.append(future.exception())

    def on_parents(parents: Sequence[dict]) -> None:
        for parent_obj in parents:
            if errors:
                raise errors[0]
            slots.acquire()
            future = pool.submit(children_of, parent_obj)
            future.add_done_callback(on_done)

    try:
        # Parents are listed in this thread, in order, so the child pool gets all the workers.
        list_parents(on_parents)
    finally:
        pool.shutdown(wait=True)
    if errors:
        raise errors[0]


def fetch_object(
    api: StripeApi, obj: StripeObject, mode: str, sink: Sink, window: Window = Window(), workers: int = 8,
    notes: Optional[list[str]] = None, parent_ids: Optional[Sequence[str]] = None,
) -> None:
    """Read every object of one catalog entry within `window` (ignored where Stripe cannot filter on it).

    In async mode this raises ListOrderError when the server's list breaks the split's assumptions; the
    pages already given to `sink` are then incomplete, and the caller reads again with mode "sync".
    Anything worth a warning is appended to `notes`."""
    notes = [] if notes is None else notes
    if obj.parent is not None:
        fetch_children(api, obj, mode, sink, workers, parents_window=window, parent_ids=parent_ids)
        return
    params = dict(obj.list_params)
    if not obj.supports_created:
        fetch_sequential(api, obj.path, params, sink)
    elif mode == "async" and obj.created_field:
        fetch_split(api, obj.path, params, window, sink, workers, time_field=obj.created_field)
    else:
        fetch_in_window(api, obj.path, params, window, sink, obj.created_field or "created", notes)
