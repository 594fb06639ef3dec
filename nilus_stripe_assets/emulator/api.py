"""Stripe's read API over the store: routing, list parameters (docs.stripe.com/api/pagination), responses.

Every catalog object gets `GET <path>` (list) and `GET <path>/{id}` (retrieve); child objects with a
nested path template also get that (`GET /v1/customers/{id}/payment_methods`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import parse_qsl, unquote

from ..source.catalog import CATALOG
from .errors import StripeError, api_error, invalid, no_such
from .accounts import ACCOUNT_PATHS
from .model import EVENT_RETENTION_SECONDS, OBJECT_TYPE, PARAM_CHILDREN, PARENT, PATH_TO_NAME, SAME_PATH, accepted_params
from .store import CursorMissing, Store

MAX_EVENT_TYPES = 20
_CREATED_OPS = {"gt", "gte", "lt", "lte"}


@dataclass(frozen=True)
class Route:
    kind: str  # "list" | "retrieve"
    name: str  # catalog object
    endpoint: str  # method + path with ids collapsed, as Stripe counts rate limits
    oid: Optional[str] = None  # retrieve: the id; list: the parent id from the path


_NESTED = [  # (regex, child name, endpoint) for child lists under their parent's path
    (re.compile("^" + re.escape(o.parent.path_template).replace(re.escape("{id}"), "([^/]+)") + "$"), name,
     "GET " + o.parent.path_template.replace("{id}", ":id"))
    for name, o in CATALOG.items()
    if o.parent and "{id}" in o.parent.path_template
]


def resolve(method: str, path: str) -> Optional[Route]:
    """The catalog route of a request, or None (`/v1/account` and `/v1/accounts` are `accounts.py`'s)."""
    if method != "GET" or path in ACCOUNT_PATHS:
        return None
    name = PATH_TO_NAME.get(path)
    if name:
        return Route("list", name, f"GET {path}")
    for pattern, child, endpoint in _NESTED:
        m = pattern.match(path)
        if m:
            return Route("list", child, endpoint, unquote(m.group(1)))
    head, _, tail = path.rpartition("/")
    name = PATH_TO_NAME.get(head)
    if name and tail:
        return Route("retrieve", name, f"GET {head}/:id", unquote(tail))
    return None


def parse_query(qs: str) -> dict:
    """Form-encoded params: `a[b]=1` -> {"a": {"b": "1"}}; `a[]=x`, `a[0]=x` or repeated `a` -> lists."""
    params: dict = {}
    for key, value in parse_qsl(qs, keep_blank_values=True):
        base, bracket, rest = key.partition("[")
        if not bracket:
            if base in params:
                prev = params[base]
                params[base] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                params[base] = value
            continue
        sub = rest.rstrip("]")
        if sub == "" or sub.isdigit():
            cur = params.setdefault(base, [])
            (cur if isinstance(cur, list) else params.setdefault(base + "[]", [])).append(value)
        else:
            cur = params.setdefault(base, {})
            if isinstance(cur, dict):
                cur[sub] = value
            else:
                params[base] = {sub: value}
    return params


def _int(value, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {value}", param, "parameter_invalid_integer") from None


def _limit(params: dict) -> int:
    if "limit" not in params:
        return 10
    limit = _int(params["limit"], "limit")
    if limit < 1:
        raise invalid("This value must be greater than or equal to 1.", "limit", "parameter_invalid_integer")
    if limit > 100:
        raise invalid("This value must be less than or equal to 100.", "limit", "parameter_invalid_integer")
    return limit


def _created_range(params: dict, name: str) -> tuple[Optional[int], Optional[int]]:
    """`created=<int>` or `created[gt|gte|lt|lte]` as an inclusive (gte, lte) range."""
    if "created" not in params:
        return None, None
    if not CATALOG[name].supports_created:
        raise invalid("Received unknown parameter: created", "created", "parameter_unknown")
    value = params["created"]
    if not isinstance(value, dict):
        exact = _int(value, "created")
        return exact, exact
    gte = lte = None
    for op, raw in value.items():
        if op not in _CREATED_OPS:
            raise invalid(f"Received unknown parameter: created[{op}]", f"created[{op}]", "parameter_unknown")
        v = _int(raw, f"created[{op}]")
        lo = v + 1 if op == "gt" else v if op == "gte" else None
        hi = v - 1 if op == "lt" else v if op == "lte" else None
        if lo is not None:
            gte = lo if gte is None else max(gte, lo)
        if hi is not None:
            lte = hi if lte is None else min(lte, hi)
    return gte, lte


Filter = tuple[Optional[Callable[[str], bool]], Optional[int]]  # (predicate on id, extra created lower bound)


def _subscription_filter(store: Store, params: dict) -> Filter:
    """Canceled subscriptions are hidden unless `status=all` (or `status=canceled`)."""
    status = params.get("status")
    attr = store.attr_of("subscription")
    if status == "all":
        return None, None
    if status:
        return (lambda oid: attr[oid] == status), None
    return (lambda oid: attr[oid] != "canceled"), None


def _event_filter(store: Store, params: dict) -> Filter:
    """`type` (exact or `prefix.*`) or `types[]` (up to 20); only events of the last 30 days are listed."""
    if "type" in params and "types" in params:
        raise invalid("You may only specify one of these parameters: type, types.", "types")
    wanted = params.get("types", params.get("type"))
    since = int(store.clock()) - EVENT_RETENTION_SECONDS
    if wanted is None:
        return None, since
    wanted = wanted if isinstance(wanted, list) else [wanted]
    if len(wanted) > MAX_EVENT_TYPES:
        raise invalid(f"Invalid array: types must contain at most {MAX_EVENT_TYPES} items.", "types")
    exact = {t for t in wanted if not t.endswith("*")}
    prefixes = tuple(t[:-1] for t in wanted if t.endswith("*"))
    attr = store.attr_of("event")
    return (lambda oid: attr[oid] in exact or (bool(prefixes) and attr[oid].startswith(prefixes))), since


def _ids_filter(store: Store, params: dict) -> Filter:
    """`ids[]`: only the objects with those ids (`ProductListParams.ids`)."""
    if "ids" not in params:
        return None, None
    wanted = params["ids"]
    wanted = frozenset(wanted if isinstance(wanted, list) else [wanted])
    return (lambda oid: oid in wanted), None


LIST_FILTERS: dict[str, Callable[[Store, dict], Filter]] = {
    "subscription": _subscription_filter,
    "event": _event_filter,
    **{name: _ids_filter for name, o in CATALOG.items() if o.list_by_ids},
}


def _list_body(items: list[bytes], has_more: bool, url: str) -> bytes:
    return b"".join([b'{"object":"list","data":[', b",".join(items), b'],"has_more":',
                     b"true" if has_more else b"false", b',"url":"', url.encode(), b'"}'])


_PAGINATION = frozenset({"limit", "starting_after", "ending_before"})
UNPAGED = 10**9  # a list without `limit` (an account's capabilities) answers every object at once


def _paged(name: str) -> bool:
    accepted = accepted_params(name)
    return accepted is None or "limit" in accepted


def _check_known(name: str, params: dict) -> None:
    """Stripe refuses a parameter the list does not take (the SDK's `*ListParams`, as the catalog has them)."""
    accepted = accepted_params(name)
    if accepted is None:  # the SDK does not say: every parameter is taken
        return
    for key in params:
        # Pagination parameters on a list that has none (report types, capabilities: every object at once)
        # are let through and ignored: whether Stripe refuses them there is not known to us.
        if key not in accepted and not (key in _PAGINATION and "limit" not in accepted):
            raise invalid(f"Received unknown parameter: {key}", key, "parameter_unknown")


def list_objects(store: Store, route: Route, params: dict, path: str, oldest_first: bool = False,
                 ignore_created: bool = False) -> tuple[bytes, int]:
    name = route.name
    if not (name in PARENT and route.oid is None and "{id}" in CATALOG[name].parent.path_template):
        # (a child read at another list's path, `/v1/payment_methods?customer=`, is not its SDK method's list)
        _check_known(name, params)
    limit = _limit(params) if _paged(name) else UNPAGED
    after, before = params.get("starting_after") or None, params.get("ending_before") or None
    if after and before:
        raise invalid("You may only specify one of these parameters: ending_before, starting_after.", "ending_before")
    gte, lte = _created_range(params, name)
    if ignore_created:  # validated as Stripe does, then ignored (a fault switch: other servers do this)
        gte = lte = None
    pred = None
    if name in LIST_FILTERS:
        pred, since = LIST_FILTERS[name](store, params)
        if since is not None:
            gte = since if gte is None else max(gte, since)
    parent = None
    if name in PARENT:
        parent_name, field = PARENT[name]
        param_required = bool(CATALOG[name].parent.param)
        if route.oid is not None:  # nested path: /v1/customers/{id}/payment_methods
            parent = route.oid
            if not store.exists(parent_name, parent):
                raise no_such(OBJECT_TYPE[parent_name], parent, status=404)
        else:
            parent = params.get(field) or None
            if parent is None:
                if param_required:
                    raise invalid(f"Missing required param: {field}.", field, "parameter_missing")
                return _list_body([], False, path), 0  # e.g. /v1/payment_methods lists Treasury ones only
            if not store.exists(parent_name, parent):
                raise no_such(OBJECT_TYPE[parent_name], parent, param=field)
            relation = CATALOG[name].parent
            if relation.only_if and not relation.lists_children_of(store.fields(parent_name, parent)):
                # Stripe's answer for a manual payout (it knows only automatic payouts' transactions).
                raise invalid("Balance transaction history can only be filtered on automatic transfers, not manual.",
                              field)
    try:
        items, has_more = store.list(name, limit, starting_after=after, ending_before=before, gte=gte, lte=lte,
                                     parent=parent, pred=pred, oldest_first=oldest_first)
    except CursorMissing as e:
        raise no_such(OBJECT_TYPE[name], str(e), param="starting_after" if after else "ending_before") from None
    return _list_body(items, has_more, path), len(items)


def retrieve(store: Store, route: Route) -> tuple[bytes, int]:
    body = store.retrieve(route.name, route.oid)
    if body is None:
        raise no_such(OBJECT_TYPE[route.name], route.oid, param="id", status=404)
    return body, 1


def handle(store: Store, route: Route, qs: str, path: str, oldest_first: bool = False,
           ignore_created: bool = False, reject_created: Optional[int] = None) -> tuple[bytes, int]:
    """(response body, objects served) for a resolved GET; raises StripeError."""
    if route.kind == "retrieve":
        return retrieve(store, route)
    query = parse_query(qs)
    for param, child in PARAM_CHILDREN.get(route.name, ()):
        if query.get(param):  # e.g. /v1/balance_transactions?payout=po_…: the payout's own list
            route = Route("list", child, route.endpoint)
            break
    if reject_created and "created" in query:
        if reject_created >= 500:
            raise api_error()
        raise invalid("Received unknown parameter: created", param="created")
    if route.name in SAME_PATH:  # the one child the parameters name (`object=card`), else all of them
        named = [c for c in SAME_PATH[route.name] if all(query.get(k) == v for k, v in CATALOG[c].list_params.items())]
        if len(named) != 1:
            return list_together(store, SAME_PATH[route.name], route, query, path)
        route = Route("list", named[0], route.endpoint, route.oid)
    return list_objects(store, route, query, path, oldest_first, ignore_created)


def list_together(store: Store, names: tuple[str, ...], route: Route, params: dict, path: str) -> tuple[bytes, int]:
    """One list of several children of a parent (an account's bank accounts and cards), in Stripe's order."""
    _check_known(names[0], params)
    limit = _limit(params) if _paged(names[0]) else UNPAGED
    after, before = params.get("starting_after") or None, params.get("ending_before") or None
    _created_range(params, names[0])  # refused where the list takes no created filter (the children's is one list)
    parent_name = PARENT[names[0]][0]
    if not store.exists(parent_name, route.oid):
        raise no_such(OBJECT_TYPE[parent_name], route.oid, status=404)
    try:
        items, has_more = store.list_merged(names, limit, route.oid, starting_after=after, ending_before=before)
    except CursorMissing as e:
        raise no_such(OBJECT_TYPE[names[0]], str(e), param="starting_after" if after else "ending_before") from None
    return _list_body(items, has_more, path), len(items)


__all__ = ["Route", "StripeError", "handle", "parse_query", "resolve"]
