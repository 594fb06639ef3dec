"""Every catalog object is served by the emulator as Stripe serves it (issue 19): exactly its stripe-python
class's fields, Stripe's list rules, child lists longer than a page, its events, and the "not set up" answer.

One emulator for the module (`emu`; tests that change data use `changing`), parametrized over the catalog:
not one server per object.
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request

import pytest

from nilus_stripe_assets.emulator import StripeEmulator, generic
from nilus_stripe_assets.emulator.builders import BUILDERS, ONLY_ON_DELETED, RandomContext
from nilus_stripe_assets.emulator.data import RANDOM_PARENT, SPAN_SECONDS, default_now
from nilus_stripe_assets.emulator.model import EMBEDDED, EMBEDDED_PAGE, OBJECT_TYPE, PARENT, PATH_TO_NAME
from nilus_stripe_assets.source import shapes
from nilus_stripe_assets.source.catalog import CATALOG

NOW = default_now()  # today: events are listed for the last 30 days of the real clock
CHILDREN = [name for name in CATALOG if name in PARENT]


@pytest.fixture(scope="module")
def emu():
    # Three connected accounts: the catalog's `account` list and the parents of persons, capabilities, ...
    with StripeEmulator(seed=19, now=NOW, accounts=3) as e:
        yield e


def get(emu, path: str, **params):
    """(status, parsed body) of a GET with the emulator's key, over plain HTTP (the wire format as sent)."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    req = urllib.request.Request(f"{emu.url}{path}{'?' + query if query else ''}",
                                 headers={"Authorization": f"Bearer {emu.api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def declared(name: str) -> list[str]:
    """The fields a live object of `name` carries: its SDK class's, in the SDK's order."""
    return [f for f in shapes.field_names(name) if f not in ONLY_ON_DELETED]


def list_path(name: str, parent_id: str | None = None) -> tuple[str, dict]:
    """(path, params) of the list of `name`; for a child, the list under `parent_id`."""
    o = CATALOG[name]
    if not o.parent:
        return o.path, dict(o.list_params)
    if "{id}" in o.parent.path_template:
        return o.parent.path_template.format(id=parent_id), dict(o.list_params)
    return o.parent.path_template, {o.parent.param: parent_id}


def busiest_parent(emu, child: str) -> tuple[str, int]:
    """(parent id, number of children) of the parent with the most children of `child`."""
    children = emu.store.tables[child].children
    parent, keys = max(children.items(), key=lambda kv: (len(kv[1]), kv[0] or ""))
    return parent, len(keys)


# ---- the generic builder ---------------------------------------------------------------------------


class _Context(RandomContext):
    def pick(self, name):
        return None

    def obj(self, name):
        return None


@pytest.mark.parametrize("sdk_class", sorted({o.sdk_class for o in CATALOG.values()}))
def test_generic_builder_renders_exactly_the_sdk_fields(sdk_class):
    """Any class, also those with a hand-written builder: exactly the declared fields, in order, reproducibly."""
    def render(seed):
        ctx = _Context(random.Random(seed))
        return [generic.render(sdk_class, ctx, "x_1", NOW - 86400, "/v1/x") for _ in range(30)]
    objs = render(1)
    names = [f.name for f in shapes.class_fields(sdk_class)]
    assert all(list(o) == names for o in objs)
    assert render(1) == objs and render(2) != objs
    # nullable fields are sometimes null, sometimes not: Stripe's objects are neither all-null nor all-set
    nullable = [f.name for f in shapes.class_fields(sdk_class) if f.nullable and f.type.kind != "object"]
    if len(nullable) >= 3:
        assert any(o[n] is None for o in objs for n in nullable) and any(o[n] is not None for o in objs for n in nullable)


# ---- every list ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_object_is_served_with_its_sdk_fields(emu, name):
    o = CATALOG[name]
    parent = busiest_parent(emu, name)[0] if name in PARENT else None
    path, params = list_path(name, parent)
    status, page = get(emu, path, limit=100, **params)
    assert status == 200, page
    assert page["data"], f"{name}: empty list"
    for obj in page["data"]:
        assert sorted(obj) == sorted(declared(name)), f"{name}: fields differ from stripe.{o.sdk_class}"
        assert obj["object"] == OBJECT_TYPE[name] and obj["id"].startswith(o.id_prefix)
        if o.created_field:
            assert NOW - SPAN_SECONDS <= obj[o.created_field] < NOW
        if name in PARENT and PARENT[name][1] in obj:
            assert obj[PARENT[name][1]] == parent
    if name not in BUILDERS:  # rendered by the generic builder: plausible, not a template of nulls
        assert any(v is not None for obj in page["data"] for k, v in obj.items() if k not in ("id", "object"))


@pytest.mark.parametrize("name", list(CATALOG))
def test_created_filter_only_where_the_list_takes_it(emu, name):
    parent = busiest_parent(emu, name)[0] if name in PARENT else None
    path, params = list_path(name, parent)
    status, body = get(emu, path, **params, **{"created[gte]": NOW - 86400})
    if CATALOG[name].supports_created:
        assert status == 200, body
    else:
        assert status == 400 and body["error"]["code"] == "parameter_unknown"
        assert body["error"]["param"] == "created"


# Fan-outs whose path is their own (`/v1/subscription_items?subscription=`), not another list's filter
# (`/v1/balance_transactions?payout=` is also the account's list).
@pytest.mark.parametrize("name", [n for n in CHILDREN if CATALOG[n].parent.param
                                  and PATH_TO_NAME.get(CATALOG[n].parent.path_template) == n])
def test_a_required_parent_parameter_is_required(emu, name):
    o = CATALOG[name]
    status, body = get(emu, o.parent.path_template)
    assert status == 400 and body["error"]["code"] == "parameter_missing" and body["error"]["param"] == o.parent.param


@pytest.mark.parametrize("name", [n for n in CHILDREN if n not in RANDOM_PARENT])  # (those keep their old seed)
def test_child_lists_run_past_one_page(emu, name):
    """Some parent holds more children than a page of 10; they page out exactly, newest first."""
    parent, n = busiest_parent(emu, name)
    assert n > EMBEDDED_PAGE, f"{name}: no parent with more than {EMBEDDED_PAGE} children"
    path, params = list_path(name, parent)
    seen, cursor = [], None
    while True:
        status, page = get(emu, path, limit=EMBEDDED_PAGE, **params, **({"starting_after": cursor} if cursor else {}))
        assert status == 200, page
        seen += [obj["id"] for obj in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert len(seen) == len(set(seen)) == n
    embedding = [(field, parent_name) for parent_name, pairs in EMBEDDED.items() for field, kid in pairs if kid == name]
    for field, parent_name in embedding:  # the parent embeds the first page, has_more beyond it
        status, body = get(emu, f"{CATALOG[parent_name].path}/{parent}")
        assert status == 200 and body[field]["has_more"] is True
        assert [c["id"] for c in body[field]["data"]] == seen[:EMBEDDED_PAGE]
