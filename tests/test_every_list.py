"""Every catalog object is served by the emulator as Stripe serves it (issue 19): exactly its stripe-python
class's fields, Stripe's list rules, child lists longer than a page, its events, and the "not set up" answer.

One emulator for the module (`emu`; tests that change data use `changing`), parametrized over the catalog:
not one server per object.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request

import dagster as dg
import pytest

from nilus_stripe_assets.dagster_adapter.factory import ONE_STEP_NAME, build_stripe_assets
from nilus_stripe_assets.emulator import EmulatorClient, EmulatorError, StripeEmulator, generic
from nilus_stripe_assets.emulator.builders import BUILDERS, ONLY_ON_DELETED, RandomContext
from nilus_stripe_assets.emulator.data import RANDOM_PARENT, SPAN_SECONDS, default_now
from nilus_stripe_assets.emulator.model import ACCOUNT, EMBEDDED, EVENT_RETENTION_SECONDS, EMBEDDED_PAGE, OBJECT_TYPE, PARENT, PATH_TO_NAME
from nilus_stripe_assets.emulator.model import PRODUCT, PRODUCTS, SAME_PATH, accepted_params, event_type
from nilus_stripe_assets.source import shapes
from nilus_stripe_assets.source.catalog import CATALOG

from .conftest import make_resources, materialize, query

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
    return o.parent.path_template, {**o.list_params, o.parent.param: parent_id}


def paging(name: str, limit: int, cursor: str | None = None) -> dict:
    """`limit` and `starting_after` where the list takes them (an account's capabilities come all at once)."""
    if "limit" not in accepted_params(name):
        return {}
    return {"limit": limit, **({"starting_after": cursor} if cursor else {})}


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
    status, page = get(emu, path, **paging(name, 100), **params)
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
@pytest.mark.parametrize("name", [n for n in CATALOG if n != ACCOUNT])  # (/v1/accounts: accounts.py's own list)
def test_a_parameter_the_list_does_not_take_is_refused(emu, name):
    """Stripe's 400 `parameter_unknown` for anything its `*ListParams` lack; what they have is taken."""
    parent = busiest_parent(emu, name)[0] if name in PARENT else None
    path, params = list_path(name, parent)
    status, body = get(emu, path, **params, nilus_bogus="1")
    assert (status, body["error"]["code"], body["error"]["param"]) == (400, "parameter_unknown", "nilus_bogus")
    assert body["error"]["message"] == "Received unknown parameter: nilus_bogus"
    assert get(emu, path, **params, **{"expand[]": "data.id"})[0] == 200  # every list takes expand


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
        status, page = get(emu, path, **paging(name, EMBEDDED_PAGE, cursor), **params)
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


def test_children_sharing_a_path_are_one_list_without_their_parameter(emu):
    """An account's external accounts: bank accounts and cards, each alone with `object=`, together without."""
    groups = {SAME_PATH[n] for n in SAME_PATH}
    assert groups or not any(o.parent and o.parent.path_template.endswith("/external_accounts")
                             for o in CATALOG.values())
    for group in groups:
        parent = busiest_parent(emu, group[0])[0]
        path = CATALOG[group[0]].parent.path_template.format(id=parent)
        mine = {n: set(get_all(emu, path, **CATALOG[n].list_params)) for n in group}
        together = get_all(emu, path)
        assert set(together) == set().union(*mine.values()) and len(together) == sum(map(len, mine.values()))
        assert all(mine.values()), f"{group}: a parent without some kind of child"


def get_all(emu, path: str, **params) -> list[str]:
    """Ids of every page of a list, 5 at a time, checked newest first."""
    ids, cursor, last = [], None, None
    while True:
        status, page = get(emu, path, limit=5, **params, **({"starting_after": cursor} if cursor else {}))
        assert status == 200, page
        ids += [o["id"] for o in page["data"]]
        if not page["has_more"]:
            return ids
        cursor = page["data"][-1]["id"]


# ---- not set up --------------------------------------------------------------------------------------


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_product_not_set_up_answers_stripes_400(emu, product):
    mine = [n for n in CATALOG if PRODUCT.get(n) == product]
    other = next(n for n in CATALOG if n not in PRODUCT and n not in PARENT)
    before = {n: list_first(emu, n) for n in mine}
    emu.configure(not_set_up=[product.upper()])
    try:
        for name in mine:
            path, params = list_path(name, before[name][1])
            status, body = get(emu, path, **params)
            assert status == 400 and set(body["error"]) == {"message", "type"}, body
            assert body["error"]["type"] == "invalid_request_error"
            assert ("not set up to use " + product in body["error"]["message"]
                    or f"Have you onboarded to {product}?" in body["error"]["message"]), body
        assert get(emu, CATALOG[other].path)[0] == 200  # the rest of the account answers
    finally:
        emu.configure(not_set_up=[])
    assert all(list_first(emu, n)[0] == 200 for n in mine)


def list_first(emu, name: str) -> tuple[int, str | None]:
    """(status of the first page, the parent it was read under)."""
    parent = busiest_parent(emu, name)[0] if name in PARENT and emu.store.tables[name].children else None
    if name in PARENT and parent is None:
        parent = next(iter(emu.store.tables[PARENT[name][0]].data), None)
    path, params = list_path(name, parent)
    return get(emu, path, **params)[0], parent


def test_issuings_answer_is_stripes_word_for_word(emu):
    if "Issuing" not in PRODUCTS:
        pytest.fail("the catalog has no Issuing objects")
    emu.configure(not_set_up="issuing")
    try:
        status, body = get(emu, "/v1/issuing/cards")
    finally:
        emu.configure(not_set_up=[])
    assert (status, body) == (400, {"error": {
        "message": "Your account is not set up to use Issuing. Please visit https://dashboard.stripe.com/issuing/overview "
                   "to get started.", "type": "invalid_request_error"}})


def test_not_set_up_through_the_control_route_and_the_cli(emu, tmp_path):
    client = EmulatorClient(emu.url)
    assert client.configure(not_set_up=["Treasury"])["not_set_up"] == ["treasury"]
    try:
        status, body = get(emu, "/v1/treasury/financial_accounts")
        assert status == 400 and "Have you onboarded to Treasury?" in body["error"]["message"]
        with pytest.raises(EmulatorError) as bad:
            client.configure(not_set_up=["Issuingg"])
        assert bad.value.status == 400 and "Issuing" in bad.value.payload["error"]["message"]
    finally:
        client.configure(not_set_up=[])
    run = subprocess.run([sys.executable, "-m", "nilus_stripe_assets.emulator", "--port", "0", "--not-set-up", "issuingg"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0 and "unknown products ['issuingg']" in run.stderr


# ---- changes and their events ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def changing():
    with StripeEmulator(seed=23, scale=0.5, accounts=2) as e:
        yield e


GENERIC_WITH_EVENTS = [n for n in CATALOG if n not in BUILDERS and n not in PARENT and event_type(n, "created")]


@pytest.mark.parametrize("name", GENERIC_WITH_EVENTS)
def test_created_updated_deleted_objects_and_their_events(changing, name):
    o = CATALOG[name]
    client = EmulatorClient(changing.url)
    made = client.create(name)
    assert sorted(made) == sorted(declared(name)) and made["object"] == OBJECT_TYPE[name]
    assert made["id"] in set(get_all(changing, o.path, **o.list_params))
    changed = client.update(name, made["id"], metadata={"changed": "yes"})
    assert changed["metadata"] == {"changed": "yes"}
    kinds = ["created", "updated"]
    if o.deletable and name not in (ACCOUNT,):
        assert client.delete(name, made["id"])["deleted"] is True
        assert made["id"] not in set(get_all(changing, o.path, **o.list_params))
        kinds.append("deleted")
    status, page = get(changing, "/v1/events", limit=100)
    mine = [e for e in page["data"] if e["data"]["object"]["id"] == made["id"]]
    wanted = [event_type(name, k) for k in kinds if event_type(name, k)]
    assert sorted(e["type"] for e in mine) == sorted(wanted)
    assert all(t in o.event_types for t in wanted) and all(e["data"]["object"]["object"] == OBJECT_TYPE[name] for e in mine)


# ---- every object through Dagster, into a DuckDB file ------------------------------------------------

# What the main code location loads: every catalog object but the Connect locations' own children.
LOADABLE = [n for n, o in CATALOG.items() if not getattr(o, "connect_only", False)]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def expected_ids(emu, name: str) -> set[str]:
    table = emu.store.tables[name]
    if name == "event":  # Stripe lists the last 30 days
        since = time.time() - EVENT_RETENTION_SECONDS
        return {oid for c, oid in table.keys if c >= since}
    return set(table.data)


def load_everything(emu, database: str, mode: str | None = None, instance=None):
    # Without asset checks: this is about what is loaded (the checks have their own tests), and 100 objects'
    # checks would double the module's time on 2 shared cores.
    assets = build_stripe_assets(LOADABLE, one_step=True, with_checks=False)
    config = {**QUIET, **({"ops": {ONE_STEP_NAME: {"config": {"mode": mode}}}} if mode else {})}
    resources = make_resources(emu, database, max_requests_per_second=1000, max_requests_per_second_per_endpoint=1000)
    return materialize(assets, resources, config, raise_on_error=False, instance=instance)


def failures(result) -> list[str]:
    return [e.step_failure_data.error.message for e in result.get_step_failure_events()]


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    """One account through three runs: first without any product an account must set up first (a plain
    account), then with all of them (its full load), then an incremental run after changes."""
    with StripeEmulator(seed=29, scale=0.2, accounts=2, not_set_up=PRODUCTS) as e:
        yield e, str(tmp_path_factory.mktemp("every") / "warehouse.duckdb"), dg.DagsterInstance.ephemeral()


@pytest.fixture(scope="module")
def plain(account):
    emu, database, instance = account
    return load_everything(emu, database, instance=instance)


def test_a_plain_accounts_load_of_everything_is_green(account, plain):
    emu, database, _ = account
    assert plain.success, failures(plain)
    metadata = {e.asset_key.path[-1]: e.materialization.metadata for e in plain.get_asset_materialization_events()}
    assert set(metadata) == set(LOADABLE)
    for name in LOADABLE:
        rows = query(database, f"SELECT count(*) FROM stripe.{name}")[0][0]
        if name in PRODUCT:  # empty, and the metadata says why in Stripe's words
            assert rows == 0, name
            text = " ".join(str(v.value) for v in metadata[name].values())
            assert "not set up to use" in text or "Have you onboarded to" in text, (name, text)
        else:
            assert rows == len(expected_ids(emu, name)), name


@pytest.fixture(scope="module")
def loaded(account, plain):
    """The products switched on: the next full load fills their tables."""
    emu, database, instance = account
    emu.configure(not_set_up=[])
    result = load_everything(emu, database, instance=instance)
    assert result.success, failures(result)
    return result


@pytest.mark.parametrize("name", LOADABLE)
def test_a_load_of_everything_is_exact_table_by_table(account, loaded, name):
    emu, database, _ = account
    ids = [r[0] for r in query(database, f"SELECT id FROM stripe.{name}")]
    assert len(ids) == len(set(ids)), f"{name}: duplicated rows"
    assert set(ids) == expected_ids(emu, name), f"{name}: {len(ids)} rows, emulator {len(expected_ids(emu, name))}"
    assert ids, f"{name}: nothing to compare"
    columns = {r[0] for r in query(database, "SELECT column_name FROM information_schema.columns "
                                             f"WHERE table_schema = 'stripe' AND table_name = '{name}'")}
    assert set(declared(name)) <= columns, f"{name}: SDK fields missing as columns"
    if name in PARENT:  # every child row has its parent's id
        column = CATALOG[name].parent.id_column
        assert dict(query(database, f"SELECT id, {column} FROM stripe.{name}")) == emu.store.tables[name].attr


@pytest.fixture(scope="module")
def changed(account, loaded):
    """~10 of issue 19's objects changed (updates, and deletes where Stripe deletes), then an incremental run."""
    emu, database, instance = account
    time.sleep(1.1)  # the changes' events fall after the full load's second
    names = [n for n in LOADABLE if n not in BUILDERS and n not in PARENT and event_type(n, "updated")][:10]
    updated, deleted = [], []
    for name in names:
        ids = sorted(expected_ids(emu, name))
        emu.update(name, ids[0], metadata={"changed": "yes"})
        updated.append((name, ids[0]))
        if CATALOG[name].deletable and event_type(name, "deleted") and len(ids) > 1:
            emu.delete(name, ids[1])
            deleted.append((name, ids[1]))
    emu.reset_stats()
    return load_everything(emu, database, mode="sync:incremental", instance=instance), updated, deleted


def test_an_incremental_run_brings_updates_and_deletes_of_the_new_objects(account, changed):
    emu, database, _ = account
    result, updated, deleted = changed
    assert result.success, failures(result)
    assert len(updated) == 10 and deleted
    for name, oid in updated:
        assert query(database, f"SELECT metadata->>'$.changed' FROM stripe.{name} WHERE id = ?", [oid]) == [("yes",)], name
    for name, oid in deleted:  # flagged (merge), or gone from the snapshot (replace)
        assert query(database, f"SELECT is_deleted FROM stripe.{name} WHERE id = ?", [oid]) in ([(True,)], []), name
    assert emu.stats()["endpoints"]["GET /v1/events"]["requests"] <= 2  # one read of the event stream (and its pages)
