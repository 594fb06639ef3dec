"""Against a Stripe-compatible server we did not write: localstripe (PyPI), a stateful fake Stripe.

Its objects are created through stripe-python, as an application would, so their shapes are localstripe's,
not our emulator's. It differs from Stripe where we must not rely on Stripe: it lists oldest first, answers
`created` filters with a 400 or a 500, and lacks some lists (prices, credit notes, ...). Every object it
lists must land exactly once, an incremental run must pick up a new object and an update, and an object
whose list it lacks must fail alone with its one line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import requests
import stripe

from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets

from .conftest import make_resources, materialize, mode_config, query
from .pg import _free_port

KEY = "sk_test_123"  # localstripe accepts any key; this short one (stripe-mock's) is fine off api.stripe.com
# What localstripe lists (GET) among the catalog's objects.
SERVED = ["customer", "charge", "refund", "payment_intent", "setup_intent", "invoice", "invoice_item",
          "invoice_line_item", "subscription", "subscription_item", "balance_transaction", "coupon", "tax_rate",
          "product", "event"]


@pytest.fixture(scope="module")
def localstripe():
    port = _free_port()
    # localstripe pickles its whole store to the fixed path /tmp/localstripe.pickle after every change (and
    # reads it back at start unless --from-scratch): parallel runs would share it, and it slows each write.
    launch = ("import sys; from localstripe import resources, server; "
              "resources.Store.dump_to_disk = lambda self: None; "
              f"sys.argv = ['localstripe', '--port', '{port}', '--from-scratch']; server.start()")
    server = subprocess.Popen([sys.executable, "-c", launch], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/v1/customers", auth=(KEY, ""), timeout=2)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("localstripe did not start (it is in the test extra: pip install -e '.[test]')")
            time.sleep(0.2)
    client = stripe.StripeClient(KEY, base_addresses={"api": url})
    _populate(client)
    yield SimpleNamespace(url=url, api_key=KEY), client
    server.terminate()
    server.wait(timeout=30)


def _populate(client: stripe.StripeClient) -> None:
    product = client.products.create(params={"name": "Gold"})
    plan = client.plans.create(params={"amount": 2000, "currency": "usd", "interval": "month", "product": product.id})
    client.coupons.create(params={"percent_off": 25, "duration": "once", "id": "SUMMER25"})
    client.tax_rates.create(params={"display_name": "VAT", "percentage": 20, "inclusive": False})
    for i in range(130):  # more than one page of 100 for customers and charges
        customer = client.customers.create(params={"email": f"u{i}@example.com", "metadata": {"i": str(i)}})
        method = client.payment_methods.create(params={"type": "card", "card": {
            "number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
        client.payment_methods.attach(method.id, params={"customer": customer.id})
        client.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
        charge = client.charges.create(params={"amount": 1000 + i, "currency": "usd", "customer": customer.id})
        if i % 5 == 0:
            client.refunds.create(params={"charge": charge.id, "amount": 100})
        if i % 6 == 0:
            client.subscriptions.create(params={"customer": customer.id, "items": [{"plan": plan.id}]})
        if i % 8 == 0:
            client.invoice_items.create(params={"customer": customer.id, "amount": 700, "currency": "usd"})
        if i % 9 == 0:
            client.payment_intents.create(params={"amount": 3000, "currency": "usd", "customer": customer.id})
            client.setup_intents.create(params={"customer": customer.id})


def _listed(url: str, path: str) -> list[dict]:
    """Everything localstripe lists at `path`, read with its own cursor (no filters)."""
    out, after = [], None
    while True:
        params = {"limit": 100, **({"starting_after": after} if after else {})}
        page = requests.get(f"{url}{path}", params=params, auth=(KEY, ""), timeout=30).json()
        out += page["data"]
        if not page.get("has_more") or not page["data"]:
            return out
        after = page["data"][-1]["id"]


def _expected_ids(url: str) -> dict[str, set[str]]:
    from nilus_stripe_assets.source.catalog import CATALOG

    ids = {}
    for name in SERVED:
        obj = CATALOG[name]
        if obj.parent is None:
            ids[name] = {o["id"] for o in _listed(url, obj.path)}
    ids["subscription_item"] = {i["id"] for s in _listed(url, "/v1/subscriptions") for i in s["items"]["data"]}
    ids["invoice_line_item"] = {line["id"] for inv in _listed(url, "/v1/invoices") for line in inv["lines"]["data"]}
    return ids


def test_every_object_localstripe_lists_lands_once_and_incremental_runs_follow_it(localstripe, warehouse_path):
    server, client = localstripe
    url = server.url
    assets = build_stripe_assets(SERVED, one_step=True)
    # One SDK retry: localstripe answers some filtered lists with a 500 every time; more only adds back-off.
    resources = make_resources(server, warehouse_path, max_network_retries=1)
    assert materialize(assets, resources, run_config=mode_config(assets, "async")).success
    expected = _expected_ids(url)
    assert len(expected["customer"]) == 130 and len(expected["charge"]) >= 130 and expected["subscription_item"]
    for name in SERVED:
        rows = query(warehouse_path, f"SELECT id FROM stripe.{name}")
        assert sorted(r[0] for r in rows) == sorted(expected[name]), name

    some = sorted(expected["customer"])[0]
    client.customers.update(some, params={"description": "changed on localstripe"})
    added = client.charges.create(params={"amount": 4242, "currency": "usd", "customer": some})
    assert materialize(assets, resources, run_config=mode_config(assets, "sync:incremental")).success
    assert query(warehouse_path, "SELECT description FROM stripe.customer WHERE id = ?", [some]) == [
        ("changed on localstripe",)]
    assert query(warehouse_path, "SELECT amount FROM stripe.charge WHERE id = ?", [added.id]) == [(4242,)]
    assert query(warehouse_path, "SELECT count(*) FROM stripe.charge")[0][0] == len(expected["charge"]) + 1


def test_a_list_localstripe_lacks_fails_alone_with_its_line(localstripe, warehouse_path):
    server, _ = localstripe
    assets = build_stripe_assets(["price", "coupon"], one_step=True)
    resources = make_resources(server, warehouse_path, max_network_retries=1)
    result = materialize(assets, resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert "No such resource for 'price' (404 Not Found, and the answer is not a Stripe error)" in failure
    assert "does not serve /v1/prices" in failure
    assert query(warehouse_path, "SELECT id FROM stripe.coupon") == [("SUMMER25",)]


def test_every_other_list_is_empty_and_explained_where_localstripe_lacks_it(localstripe, warehouse_path):
    """The lists beyond the default load, on a server that implements few of them: each list it does not serve
    (404) is an empty table with the server's answer in its metadata and one warning, never a failed object;
    the lists it serves load exactly. A 404 on a default table still fails it (the test above)."""
    from nilus_stripe_assets.source.catalog import DEFAULT_OBJECTS, every_object

    server, _ = localstripe
    others = [n for n in every_object() if n not in DEFAULT_OBJECTS]
    assets = build_stripe_assets([*others, "coupon"], one_step=True)
    resources = make_resources(server, warehouse_path, max_network_retries=1)
    result = materialize(assets, resources, raise_on_error=False)
    failures = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    # localstripe serves customers' tax ids but refuses Stripe's `limit` there (400 "Unexpected limit"): any
    # 400 other than "not set up" fails its object, alone, with its line; the other lists are written.
    assert len(failures) == 1 and f"1 of {len(others) + 1} Stripe objects failed" in failures[0], failures
    assert "Stripe rejected the request for 'tax_id' (400): Unexpected limit." in failures[0]
    metadata = {m.materialization.asset_key.path[-1]: m.materialization.metadata
                for m in result.get_asset_materialization_events()}
    assert set(metadata) == {*others, "coupon"} - {"tax_id"}
    missing = {name for name, meta in metadata.items() if "stripe/not_set_up" in meta}
    served = set(metadata) - missing
    assert "plan" in served and "coupon" in served and "issuing_card" in missing
    for name in missing:
        said = metadata[name]["stripe/not_set_up"].value
        assert "this server does not offer /v1/" in said and "\n" not in said and KEY not in said, (name, said)
        assert query(warehouse_path, f"SELECT count(*) FROM stripe.{name}") == [(0,)], name
    plans = {p["id"] for p in _listed(server.url, "/v1/plans")}
    assert plans and {i for (i,) in query(warehouse_path, "SELECT id FROM stripe.plan")} == plans
