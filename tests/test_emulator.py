"""The bundled Stripe emulator, exercised over real HTTP with the real stripe SDK (and urllib where the SDK
would hide the wire format)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import stripe

from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.emulator import EmulatorClient, EmulatorError, StripeEmulator
from nilus_stripe_assets.emulator.data import DEFAULT_COUNTS, generate
from nilus_stripe_assets.emulator.model import EMBEDDED, EVENT_RETENTION_SECONDS, PARENT, PATH_TO_NAME

NOW = 1_767_225_600  # fixed data reference time: 2026-01-01 00:00 UTC (events are listed relative to real time)


@pytest.fixture(scope="module")
def emu():
    # Connected accounts: the catalog's `account` list and the parents of persons, capabilities, ...
    with StripeEmulator(seed=7, accounts=3) as e:
        yield e


@pytest.fixture
def fresh():
    with StripeEmulator(seed=3) as e:
        yield e


def sdk(emu, key=None) -> stripe.StripeClient:
    return stripe.StripeClient(key or emu.api_key, base_addresses={"api": emu.url}, max_network_retries=0)


def get(emu, path: str, key: str | None = "default", headers: dict | None = None):
    """(status, headers, parsed body) with plain urllib."""
    h = dict(headers or {})
    if key:
        h["Authorization"] = f"Bearer {emu.api_key if key == 'default' else key}"
    req = urllib.request.Request(emu.url + path, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def order_key(obj: dict, time_field: str = "created") -> tuple:
    return (-obj[time_field], tuple(-ord(c) for c in obj["id"]))


def unpaged(path: str) -> bool:
    """A list Stripe serves whole, without `limit` (an account's capabilities, report types)."""
    from nilus_stripe_assets.emulator.api import resolve
    from nilus_stripe_assets.emulator.model import accepted_params

    route = resolve("GET", path)
    return route is not None and "limit" not in (accepted_params(route.name) or {"limit"})


def walk(client, path: str, limit: int, **params) -> list[dict]:
    """Every page of a list endpoint with starting_after; checks list order within and across pages."""
    out, cursor = [], None
    while True:
        page = client.raw_request("get", path, limit=limit, starting_after=cursor, **params).data
        assert page["object"] == "list" and (len(page["data"]) <= limit or unpaged(path) and not page["has_more"])
        out += page["data"]
        if not page["has_more"]:
            break
        assert len(page["data"]) == limit
        cursor = page["data"][-1]["id"]
    # Lists are newest first by creation time: `created`, or the catalog's `created_field` (invoice items: `date`).
    name = PATH_TO_NAME.get(path)
    time_field = (CATALOG[name].created_field if name else None) or "created"
    if all(time_field in o for o in out):  # line items have no time of their own
        assert out == sorted(out, key=lambda o: order_key(o, time_field)), f"{path} not newest-first by (created, id)"
    return out


def walk_object(emu, client, name: str, limit: int) -> list[dict]:
    """All objects of `name` the way a loader reaches them (through the parent for child objects)."""
    o = CATALOG[name]
    if not o.parent:
        return walk(client, o.path, limit, **o.list_params)
    parent = CATALOG[o.parent.object]
    out = []
    for p in walk(client, parent.path, 100, **parent.list_params):
        if o.parent.embedded_field:  # first page embedded in the parent, then the child list
            embedded = p[o.parent.embedded_field]
            out += embedded["data"]
            if embedded["has_more"]:
                out += _rest(client, o, p["id"], embedded["data"][-1]["id"], limit)
        elif o.parent.param:  # /v1/balance_transactions?payout=…, for the parents that have the list
            if o.parent.lists_children_of(p):
                out += walk(client, o.parent.path_template, limit, **{o.parent.param: p["id"]})
        else:
            out += walk(client, o.parent.path_template.format(id=p["id"]), limit, **o.list_params)
    return out


def _rest(client, o, parent_id: str, cursor: str, limit: int) -> list[dict]:
    """The child list after the embedded first page."""
    out = []
    if o.parent.param:  # /v1/subscription_items?subscription=…
        path, params = o.parent.path_template, {o.parent.param: parent_id}
    else:  # /v1/invoices/{id}/lines
        path, params = o.parent.path_template.format(id=parent_id), {}
    while True:
        page = client.raw_request("get", path, limit=limit, starting_after=cursor, **params).data
        out += page["data"]
        if not page["has_more"]:
            return out
        cursor = page["data"][-1]["id"]


def expected_ids(emu, name: str) -> set[str]:
    table = emu.store.tables[name]
    if name == "event":
        since = time.time() - EVENT_RETENTION_SECONDS
        return {oid for c, oid in table.keys if c >= since}
    return set(table.data)


# ---- pagination ------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [100, 7])
@pytest.mark.parametrize("name", list(CATALOG))
def test_pagination_walks_every_object_once(emu, name, limit):
    objs = walk_object(emu, sdk(emu), name, limit)
    ids = [o["id"] for o in objs]
    assert len(ids) == len(set(ids)), "an object was served twice"
    assert set(ids) == expected_ids(emu, name)
    assert ids, f"{name} is empty"
    prefix = CATALOG[name].id_prefix
    assert all(i.startswith(prefix) for i in ids)
    # livemode where the class declares it (stripe.Refund, BalanceTransaction and SubscriptionItem do not)
    assert all(o.get("livemode", False) is False and o["object"] == stripe_type(name) for o in objs)


def stripe_type(name: str) -> str:
    from nilus_stripe_assets.source.catalog import STRIPE_OBJECT_TYPE

    return STRIPE_OBJECT_TYPE[name]


def test_ties_straddle_page_boundaries(emu):
    charges = walk(sdk(emu), "/v1/charges", 100)
    created = [c["created"] for c in charges]
    for limit in (7, 10, 100):
        straddling = [i for i in range(limit, len(created), limit) if created[i - 1] == created[i]]
        assert straddling, f"no tie across a limit={limit} page boundary"


def test_created_filters_split_into_disjoint_complete_halves(emu):
    client = sdk(emu)
    everything = walk(client, "/v1/charges", 100)
    mid = everything[len(everything) // 2]["created"]
    newer = walk(client, "/v1/charges", 100, created={"gte": mid})
    older = walk(client, "/v1/charges", 7, created={"lt": mid})
    assert {c["id"] for c in newer}.isdisjoint({c["id"] for c in older})
    assert newer + older == everything
    assert all(c["created"] >= mid for c in newer) and all(c["created"] < mid for c in older)
    exact = walk(client, "/v1/charges", 100, created=mid)
    assert exact and all(c["created"] == mid for c in exact)
    window = walk(client, "/v1/charges", 100, created={"gt": mid - 86400, "lte": mid})
    assert window == [c for c in everything if mid - 86400 < c["created"] <= mid]


def test_created_rejected_where_unsupported(emu):
    status, _, body = get(emu, "/v1/webhook_endpoints?created[gte]=1")
    assert status == 400 and body["error"]["param"] == "created"


def test_ending_before_returns_the_previous_page(emu):
    client = sdk(emu)
    first = client.raw_request("get", "/v1/charges", limit=7).data
    second = client.raw_request("get", "/v1/charges", limit=7, starting_after=first["data"][-1]["id"]).data
    back = client.raw_request("get", "/v1/charges", limit=7, ending_before=second["data"][0]["id"]).data
    assert back["data"] == first["data"] and back["has_more"] is False
    third = client.raw_request("get", "/v1/charges", limit=7, starting_after=second["data"][-1]["id"]).data
    back = client.raw_request("get", "/v1/charges", limit=7, ending_before=third["data"][0]["id"]).data
    assert back["data"] == second["data"] and back["has_more"] is True
    back = client.raw_request("get", "/v1/charges", limit=3, ending_before=third["data"][0]["id"]).data
    assert back["data"] == second["data"][-3:]


@pytest.mark.parametrize("limit", [0, 101, "x"])
def test_invalid_limit_is_400(emu, limit):
    with pytest.raises(stripe.InvalidRequestError) as e:
        sdk(emu).raw_request("get", "/v1/charges", limit=limit)
    assert e.value.http_status == 400 and e.value.code == "parameter_invalid_integer" and e.value.param == "limit"


def test_default_limit_and_unknown_cursor(emu):
    page = sdk(emu).raw_request("get", "/v1/customers").data
    assert len(page["data"]) == 10 and page["has_more"] and page["url"] == "/v1/customers"
    with pytest.raises(stripe.InvalidRequestError) as e:
        sdk(emu).raw_request("get", "/v1/charges", starting_after="ch_doesnotexist")
    assert e.value.http_status == 400 and e.value.code == "resource_missing"
    assert "No such charge: 'ch_doesnotexist'" in str(e.value)


def test_sdk_auto_paging(emu):
    charges = list(sdk(emu).v1.charges.list({"limit": 100}).auto_paging_iter())
    assert len(charges) == DEFAULT_COUNTS["charge"]


# ---- object specifics ------------------------------------------------------------------------------


def test_subscriptions_hide_canceled_unless_status_all(emu):
    client = sdk(emu)
    everything = walk(client, "/v1/subscriptions", 100, status="all")
    default = walk(client, "/v1/subscriptions", 100)
    canceled = walk(client, "/v1/subscriptions", 100, status="canceled")
    assert canceled and all(s["status"] == "canceled" for s in canceled)
    assert all(s["status"] != "canceled" for s in default)
    assert len(default) + len(canceled) == len(everything) == emu.counts()["subscription"]


def test_subscription_items_embedded_and_listed(emu):
    subs = walk(sdk(emu), "/v1/subscriptions", 100, status="all")
    big = [s for s in subs if s["items"]["has_more"]]
    assert big, "some subscriptions should have more than 10 items"
    for s in big:
        items = s["items"]
        assert len(items["data"]) == 10 and 11 <= items["total_count"] <= 15
        assert items["url"] == f"/v1/subscription_items?subscription={s['id']}"
        listed = walk(sdk(emu), "/v1/subscription_items", 100, subscription=s["id"])
        assert listed[:10] == items["data"] and len(listed) == items["total_count"]


def test_subscription_items_require_subscription(emu):
    status, _, body = get(emu, "/v1/subscription_items")
    assert status == 400
    assert body["error"]["code"] == "parameter_missing"
    assert body["error"]["message"] == "Missing required param: subscription."


def test_payment_methods_by_customer(emu):
    client = sdk(emu)
    assert client.raw_request("get", "/v1/payment_methods").data["data"] == []
    pm = next(iter(emu.store.tables["payment_method"].data))
    owner = json.loads(emu.store.tables["payment_method"].data[pm])["customer"]
    via_param = walk(client, "/v1/payment_methods", 100, customer=owner)
    via_path = walk(client, f"/v1/customers/{owner}/payment_methods", 100)
    assert via_param == via_path and pm in {p["id"] for p in via_path}
    assert all(p["customer"] == owner for p in via_path)
    per_customer = [len(walk(client, f"/v1/customers/{c}/payment_methods", 100))
                    for c in list(emu.store.tables["customer"].data)[:50]]
    assert sum(n <= 3 for n in per_customer) > 40
    status, _, _ = get(emu, "/v1/customers/cus_nope/payment_methods")
    assert status == 404


def test_events_filters(emu):
    client = sdk(emu)
    charges = walk(client, "/v1/events", 100, type="charge.*")
    assert charges and all(e["type"].startswith("charge.") for e in charges)
    assert all(e["data"]["object"]["object"] == "charge" for e in charges)
    exact = walk(client, "/v1/events", 100, type="customer.created")
    assert exact and all(e["type"] == "customer.created" for e in exact)
    both = walk(client, "/v1/events", 100, types=["customer.created", "invoiceitem.created"])
    assert {e["type"] for e in both} == {"customer.created", "invoiceitem.created"}
    assert len(both) == len(exact) + len(walk(client, "/v1/events", 100, type="invoiceitem.*"))
    assert walk(client, "/v1/events", 100, type="customer.subscription.*")
    status, _, body = get(emu, "/v1/events?type=charge.*&types[]=charge.created")
    assert status == 400
    event = charges[0]
    assert event["api_version"] and event["pending_webhooks"] == 0
    assert event["request"] == {"id": None, "idempotency_key": None} and event["id"].startswith("evt_")


def test_retrieve_every_object(emu):
    client = sdk(emu)
    for name, o in CATALOG.items():
        if "{id}" in o.path:  # line items: listed through their parent only, no retrieve endpoint
            continue
        oid = emu.store.tables[name].keys[0][1]
        got = client.raw_request("get", f"{o.path}/{oid}").data
        assert got["id"] == oid
    status, _, body = get(emu, "/v1/charges/ch_x")
    assert status == 404 and body["error"]["message"] == "No such charge: 'ch_x'"
    assert body["error"]["code"] == "resource_missing"


def test_stripe_shape(emu):
    client = sdk(emu)
    charge = client.raw_request("get", "/v1/charges", limit=1).data["data"][0]
    assert charge["customer"] in emu.store.tables["customer"].data
    assert {"billing_details", "outcome", "payment_method_details", "metadata"} <= charge.keys()
    invoice = client.raw_request("get", "/v1/invoices", limit=1).data["data"][0]
    assert invoice["lines"]["object"] == "list"
    price = client.raw_request("get", "/v1/prices", limit=100).data["data"]
    assert any(p["recurring"] for p in price) and all(p["product"].startswith("prod_") for p in price)
    refund = client.raw_request("get", "/v1/refunds", limit=1).data["data"][0]
    assert refund["charge"] in emu.store.tables["charge"].data
    coupons = client.raw_request("get", "/v1/coupons", limit=100).data["data"]
    assert all(c["id"].isalnum() and c["id"].isupper() is not None for c in coupons)
    customers = walk(client, "/v1/customers", 100)
    assert any(c["metadata"] for c in customers) and any(c["description"] is None for c in customers)


def test_data_is_deterministic():
    connected = ["acct_1Connected0001", "acct_1Connected0002"]  # the catalog's accounts and their children's parents
    a = generate(seed=5, now=NOW, connected=connected)
    b = generate(seed=5, now=NOW, connected=connected)
    c = generate(seed=6, now=NOW, connected=connected)
    assert a == b and a["charge"] != c["charge"]
    assert all(a[name] for name in CATALOG)
    assert all(NOW - 400 * 86400 <= r[0] < NOW for r in a["charge"])
    assert all(r[0] >= NOW - EVENT_RETENTION_SECONDS for r in a["event"])
    scaled = generate(scale=0.5, counts={"charge": 42}, now=NOW)
    assert len(scaled["charge"]) == 42 and len(scaled["invoice"]) == DEFAULT_COUNTS["invoice"] // 2


# ---- auth and errors -------------------------------------------------------------------------------


def test_wrong_key_is_401_and_masked(emu):
    key = "sk_test_secretSECRETsecret1234abcd"
    status, headers, body = get(emu, "/v1/charges", key=key)
    assert status == 401 and headers["Request-Id"].startswith("req_")
    message = body["error"]["message"]
    assert message.startswith("Invalid API Key provided: sk_test_*") and message.endswith("abcd")
    assert key not in json.dumps(body) and "secretSECRET" not in message
    assert body["error"]["type"] == "invalid_request_error"
    status, _, body = get(emu, "/v1/charges", key=None)
    assert status == 401
    with pytest.raises(stripe.AuthenticationError):
        sdk(emu, key).raw_request("get", "/v1/charges")


def test_accept_any_key_and_restricted_keys():
    rk = "rk_test_onlyCustomers1234wxyz"
    with StripeEmulator(counts={"charge": 5}, accept_any_key=True, restricted_keys={rk: {"customer"}}) as e:
        assert get(e, "/v1/charges", key="sk_live_anything123")[0] == 200
        assert get(e, "/v1/charges", key="pk_test_nope123")[0] == 401
        assert get(e, "/v1/customers", key=rk)[0] == 200
        status, _, body = get(e, "/v1/charges", key=rk)
        assert status == 403
        err = body["error"]
        assert err["code"] == "secret_key_required" and "rak_charge_read" in err["message"]
        assert err["message"].startswith("The provided key 'rk_test_*") and "wxyz'" in err["message"]
        assert rk not in err["message"]
        with pytest.raises(stripe.PermissionError):
            sdk(e, rk).raw_request("get", "/v1/charges")


def test_unknown_path_is_404(emu):
    status, _, body = get(emu, "/v1/chargez")
    assert status == 404
    assert body == {"error": {"message": "Unrecognized request URL (GET: /v1/chargez). Please see "
                                         "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                              "type": "invalid_request_error"}}


def test_rate_limits_and_faults():
    with StripeEmulator(counts={"charge": 5}, global_rate=3, rate_limit_should_retry=True) as e:
        statuses = [get(e, "/v1/charges") for _ in range(8)]
        limited = [s for s in statuses if s[0] == 429]
        assert limited and statuses[0][0] == 200
        _, headers, body = limited[0]
        assert headers["Stripe-Rate-Limited-Reason"] == "global-rate" and headers["Retry-After"] == "1"
        assert headers["Stripe-Should-Retry"] == "true"
        assert body["error"]["code"] == "rate_limit" and body["error"]["type"] == "invalid_request_error"
        assert e.stats()["total"]["429"] == len(limited)

        e.configure(global_rate=None, endpoint_rate=2, rate_limit_should_retry=None)
        statuses = [get(e, "/v1/customers")[0] for _ in range(4)] + [get(e, "/v1/charges")[0]]
        assert statuses[-1] == 200 and 429 in statuses[:4]
        _, headers, _ = get(e, "/v1/customers")
        assert headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate" and "Stripe-Should-Retry" not in headers

        e.configure(endpoint_rate=None, max_concurrency=1, latency_ms=300)
        results = []
        threads = [threading.Thread(target=lambda: results.append(get(e, "/v1/charges"))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        reasons = [h.get("Stripe-Rate-Limited-Reason") for s, h, _ in results if s == 429]
        assert "global-concurrency" in reasons and any(s == 200 for s, _, _ in results)

        e.configure(max_concurrency=None, latency_ms=0, error_rate=1.0)
        status, _, body = get(e, "/v1/charges")
        assert status == 500 and body == {"error": {"type": "api_error", "message": "An unknown error occurred"}}
        with pytest.raises(stripe.APIError):
            sdk(e).raw_request("get", "/v1/charges")


def test_latency(fresh):
    fresh.configure(latency_ms=150)
    t0 = time.perf_counter()
    assert get(fresh, "/v1/charges?limit=1")[0] == 200
    assert time.perf_counter() - t0 >= 0.15


def test_stats_count_requests_statuses_and_accounts(fresh):
    fresh.reset_stats()
    sdk(fresh).raw_request("get", "/v1/charges", limit=5, stripe_account="acct_123")
    get(fresh, "/v1/charges/ch_missing")
    get(fresh, "/v1/nope")
    get(fresh, "/v1/charges", key="sk_test_wrong")
    stats = fresh.stats()
    assert stats["total"]["requests"] == 4 and stats["total"]["objects"] == 5
    assert stats["endpoints"]["GET /v1/charges"]["200"] == 1
    assert stats["endpoints"]["GET /v1/charges"]["401"] == 1
    assert stats["endpoints"]["GET /v1/charges/:id"]["404"] == 1
    assert stats["accounts"] == {"acct_123": 1}
    assert "sk_test_wrong" not in json.dumps(stats)


# ---- mutations -------------------------------------------------------------------------------------


def test_mutations_show_in_lists_and_emit_events(fresh):
    client = sdk(fresh)
    charge = fresh.create("charge", amount=4242, description="fresh")
    assert charge["id"].startswith("ch_") and abs(charge["created"] - time.time()) < 5
    assert charge["customer"] in fresh.store.tables["customer"].data
    top = client.raw_request("get", "/v1/charges", limit=1).data["data"][0]
    assert top["id"] == charge["id"] and top["amount"] == 4242
    event = client.raw_request("get", "/v1/events", limit=1, type="charge.created").data["data"][0]
    assert event["data"]["object"]["id"] == charge["id"]

    fresh.update("charge", charge["id"], description="changed", metadata={"k": "v"})
    got = client.raw_request("get", f"/v1/charges/{charge['id']}").data
    assert got["description"] == "changed" and got["metadata"] == {"k": "v"} and got["amount"] == 4242
    event = client.raw_request("get", "/v1/events", limit=1, type="charge.updated").data["data"][0]
    assert event["data"]["previous_attributes"] == {"description": "fresh", "metadata": {}}

    item = fresh.create("invoice_item", amount=100)
    fresh.update("invoice_item", item["id"], amount=200)
    types = {e["type"] for e in walk(client, "/v1/events", 100, type="invoiceitem.*")}
    assert {"invoiceitem.created", "invoiceitem.updated"} <= types

    sub = walk(client, "/v1/subscriptions", 100)[0]  # not canceled
    fresh.update("subscription", sub["id"], status="canceled")
    ev = client.raw_request("get", "/v1/events", limit=1, type="customer.subscription.updated").data["data"][0]
    assert ev["data"]["object"]["id"] == sub["id"] and ev["data"]["previous_attributes"]["status"] == sub["status"]
    assert sub["id"] not in {s["id"] for s in walk(client, "/v1/subscriptions", 100)}

    si = fresh.create("subscription_item", subscription=sub["id"], quantity=3)
    events = client.raw_request("get", "/v1/events", limit=2, type="customer.subscription.updated").data["data"]
    # both events are from this second: find the one for the new item (ties are ordered by id)
    assert any(e["data"]["object"]["items"]["data"][0]["id"] == si["id"] for e in events)
    listed = walk(client, "/v1/subscription_items", 100, subscription=sub["id"])
    assert listed[0]["id"] == si["id"]


def test_delete_vanishes_and_emits_deleted(fresh):
    client = sdk(fresh)
    customers = walk(client, "/v1/customers", 100)
    victim = customers[len(customers) // 2]
    fresh.delete("customer", victim["id"])
    after = walk(client, "/v1/customers", 7)
    assert victim["id"] not in {c["id"] for c in after} and len(after) == len(customers) - 1
    assert client.raw_request("get", f"/v1/customers/{victim['id']}").data == {
        "id": victim["id"], "object": "customer", "deleted": True}
    event = client.raw_request("get", "/v1/events", limit=1, type="customer.deleted").data["data"][0]
    assert event["data"]["object"]["id"] == victim["id"]
    # a cursor on the deleted object still continues from its position
    rest = client.raw_request("get", "/v1/customers", limit=100, starting_after=victim["id"]).data["data"]
    assert rest == [c for c in customers if order_key(c) > order_key(victim)][:100]


def test_old_events_are_not_listed(fresh):
    old = fresh.create("event", created=int(time.time()) - EVENT_RETENTION_SECONDS - 60, type="charge.succeeded")
    listed = {e["id"] for e in walk(sdk(fresh), "/v1/events", 100)}
    assert old["id"] not in listed
    assert sdk(fresh).raw_request("get", f"/v1/events/{old['id']}").data["id"] == old["id"]


def test_emulator_client_control_routes(fresh):
    ctl = EmulatorClient(fresh.url)
    before = ctl.counts()
    cus = ctl.create("customer", email="a@b.c", name="Control Route")
    assert ctl.counts()["customer"] == before["customer"] + 1
    assert ctl.update("customer", cus["id"], name="Renamed")["name"] == "Renamed"
    assert ctl.delete("customer", cus["id"]) == {"id": cus["id"], "object": "customer", "deleted": True}
    assert ctl.counts()["customer"] == before["customer"]
    ctl.reset_stats()
    get(fresh, "/v1/charges?limit=3")
    assert ctl.stats()["total"]["objects"] == 3
    assert ctl.configure(error_rate=1.0)["error_rate"] == 1.0
    assert get(fresh, "/v1/charges")[0] == 500
    ctl.configure(error_rate=0.0)
    assert ctl.stats()["total"]["requests"] == 2  # control routes are not counted
    with pytest.raises(EmulatorError) as e:
        ctl.update("customer", "cus_missing", name="x")
    assert e.value.status == 404
    with pytest.raises(EmulatorError):
        ctl.configure(bogus=1)


def test_cli_serves_until_sigterm(tmp_path):
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "nilus_stripe_assets.emulator", "--port", "0", "--count",
                             "charge=30", "--scale", "0.1", "--ready-file", str(ready), "--latency-ms", "1"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Stripe emulator listening on http://127.0.0.1:") and "(key sk_test_emulator)" in line
        url = ready.read_text().strip()
        assert url in line
        ctl = EmulatorClient(url)
        assert ctl.counts()["charge"] == 30
        req = urllib.request.Request(url + "/v1/charges?limit=100", headers={"Authorization": "Bearer sk_test_emulator"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert len(json.loads(r.read())["data"]) == 30
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


# ---- shapes: exactly the fields stripe-python declares -------------------------------------------


def declared(sdk_class: str) -> set[str]:
    """The class's declared attributes, read from the SDK itself (minus its `_`-internals and OBJECT_NAME)."""
    from nilus_stripe_assets.source.sdk_shapes import sdk_class as resolve  # dotted: "checkout.Session"

    cls = resolve(sdk_class)
    names = set()
    for klass in cls.__mro__:
        names |= {k for k in vars(klass).get("__annotations__", {}) if not k.startswith("_")}
    return names - {"OBJECT_NAME"}


def live_fields(sdk_class: str) -> set[str]:
    """What Stripe sends for a live object: the declared set without `deleted`, which the SDK declares as
    `Optional[Literal[True]]` ("Always true for a deleted object"): Stripe sends it only in a deleted stub."""
    return declared(sdk_class) - {"deleted"}


@pytest.mark.parametrize("name", list(CATALOG))
def test_objects_have_exactly_the_sdk_field_set(emu, name):
    client = sdk(emu)
    objs = walk_object(emu, client, name, 100)
    want = live_fields(CATALOG[name].sdk_class)
    assert objs and all(set(o) == want for o in objs), (
        f"{name}: extra {sorted(set(objs[0]) - want)}, missing {sorted(want - set(objs[0]))}"
    )
    created = CATALOG[name].created_field
    assert created is None or all(isinstance(o[created], int) for o in objs)


def test_embedded_lists_and_event_payloads_have_the_sdk_field_sets(emu):
    client = sdk(emu)
    invoices = walk(client, "/v1/invoices", 100)
    assert all(set(line) == live_fields("InvoiceLineItem") for i in invoices for line in i["lines"]["data"])
    notes = walk(client, "/v1/credit_notes", 100)
    assert all(set(line) == live_fields("CreditNoteLineItem") for n in notes for line in n["lines"]["data"])
    events = walk(client, "/v1/events", 100)
    assert events and all(set(e) == declared("Event") for e in events)
    by_type = {o.sdk_class: o.name for o in CATALOG.values()}
    type_to_class = {stripe_type(name): CATALOG[name].sdk_class for name in CATALOG}
    for e in events:
        payload = e["data"]["object"]
        assert set(payload) == live_fields(type_to_class[payload["object"]]), e["type"]
    assert by_type  # every catalog class is a stripe-python class


def test_invoice_and_credit_note_lines_are_embedded_first_page_then_listed(emu):
    client = sdk(emu)
    for parent_path, total_field in [("/v1/invoices", "subtotal"), ("/v1/credit_notes", "subtotal")]:
        parents = walk(client, parent_path, 100)
        big = [p for p in parents if p["lines"]["has_more"]]
        assert big, f"some {parent_path} should have more than 10 lines"
        for p in parents:
            lines = p["lines"]
            assert lines["url"] == f"{parent_path}/{p['id']}/lines" and lines["total_count"] >= 1
            assert len(lines["data"]) == min(10, lines["total_count"])
            listed = walk(client, lines["url"], 100) if lines["has_more"] else lines["data"]
            assert listed[:10] == lines["data"] and len(listed) == lines["total_count"]
            assert p[total_field] == p["total"] == sum(line["amount"] for line in listed), "amounts add up"
    status, _, _ = get(emu, "/v1/invoices/in_nope/lines")
    assert status == 404


def test_data_obeys_stripes_rules(emu):
    """What Stripe enforces, so models built on the data give believable numbers."""
    client = sdk(emu)
    prices = {p["id"]: p for p in walk(client, "/v1/prices", 100)}
    for sub in walk(client, "/v1/subscriptions", 100, status="all"):
        assert sub["items"]["data"], "a subscription has at least one item"
        for item in sub["items"]["data"]:
            assert item["price"]["recurring"] and item["price"]["type"] == "recurring", "recurring prices only"
            assert item["price"] == prices[item["price"]["id"]]
            assert item["plan"]["id"] == item["price"]["id"] and item["plan"]["amount"] == item["price"]["unit_amount"]
    charges = {c["id"]: c for c in walk(client, "/v1/charges", 100)}
    refunds = walk(client, "/v1/refunds", 100)
    for refund in refunds:
        charge = charges[refund["charge"]]
        assert charge["status"] == "succeeded" and 0 < refund["amount"] <= charge["amount"]
    sources = {**charges, **{r["id"]: r for r in refunds}, **{p["id"]: p for p in walk(client, "/v1/payouts", 100)}}
    for txn in walk(client, "/v1/balance_transactions", 100):
        source = sources[txn["source"]]
        sign = 1 if txn["type"] == "charge" else -1
        assert txn["amount"] == sign * source["amount"] and txn["net"] == txn["amount"] - txn["fee"]
        assert txn["reporting_category"] == txn["type"] == source["object"]


def test_payout_balance_transactions_are_the_payouts_own_and_sum_to_it(emu):
    """`GET /v1/balance_transactions?payout=po_…` lists what an automatic payout paid out (the same objects
    as the account's list), whose net makes the payout; a manual payout is refused as Stripe refuses it."""
    client = sdk(emu)
    everything = {t["id"]: t for t in walk(client, "/v1/balance_transactions", 100)}
    itemized = 0
    for payout in walk(client, "/v1/payouts", 100):
        items = walk(client, "/v1/balance_transactions", 100, payout=payout["id"])
        assert all(everything[t["id"]] == t for t in items), "a payout lists the account's own balance transactions"
        if items:
            itemized += 1
            assert sum(t["net"] for t in items) == payout["amount"]
    assert itemized >= 3
    manual = emu.create("payout", automatic=False, status="paid", amount=500)
    status, _, body = get(emu, f"/v1/balance_transactions?payout={manual['id']}")
    assert status == 400 and "automatic" in body["error"]["message"]
    added = emu.create("payout_balance_transaction", payout=payout["id"], amount=700, fee=0, net=700, type="charge")
    assert [t["id"] for t in walk(client, "/v1/balance_transactions", 100, payout=payout["id"])][0] == added["id"]
    assert added["id"] in {t["id"] for t in walk(client, "/v1/balance_transactions", 100)}


def test_events_of_one_second_are_listed_newest_first_in_the_order_they_happened(fresh):
    ctl = EmulatorClient(fresh.url)
    ctl.freeze_clock(int(time.time()))
    cus = ctl.create("customer", name="zero")
    for i in range(1, 30):  # more than enough for ids in random order to come out of order
        ctl.update("customer", cus["id"], name=f"n{i}")
    ctl.delete("customer", cus["id"])
    ctl.freeze_clock(None)
    events = walk(sdk(fresh), "/v1/events", 7, type="customer.*")[:31]
    assert len({e["created"] for e in events}) == 1
    assert [e["data"]["object"].get("name") for e in events[1:]] == [f"n{i}" for i in range(29, 0, -1)] + ["zero"]
    assert events[0]["type"] == "customer.deleted" and events[-1]["type"] == "customer.created"


def test_events_of_an_account_on_an_older_api_version_carry_the_fields_where_that_version_had_them(fresh):
    client = sdk(fresh)
    invoice = next(i for i in walk(client, "/v1/invoices", 100) if i["parent"] and i["lines"]["data"])
    subscription = invoice["parent"]["subscription_details"]["subscription"]
    assert EmulatorClient(fresh.url).set_api_version("2024-12-18.acacia") == "2024-12-18.acacia"
    fresh.update("invoice", invoice["id"], description="changed")
    event = client.raw_request("get", "/v1/events", limit=1).data["data"][0]
    assert event["api_version"] == "2024-12-18.acacia"
    old = event["data"]["object"]
    assert "parent" not in old and old["subscription"] == subscription and old["paid"] == (old["status"] == "paid")
    assert "pricing" not in old["lines"]["data"][0] and "price" in old["lines"]["data"][0]
    # What a client reads stays in the version it pins (stripe-python's), as Stripe answers it.
    assert client.raw_request("get", f"/v1/invoices/{invoice['id']}").data["parent"] == invoice["parent"]
    assert fresh.set_api_version(None) == stripe.api_version
    fresh.update("invoice", invoice["id"], description="changed again")
    assert client.raw_request("get", "/v1/events", limit=1).data["data"][0]["data"]["object"]["parent"] == invoice["parent"]
    assert set(fresh.stats()["stripe_versions"]) == {stripe.api_version}  # the SDK sends its pinned version
