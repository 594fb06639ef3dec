"""The spec's troubleshooting table, end to end: a real asset materialized against the emulator over HTTP
(or a non-Stripe server) fails its step with one clear line that names the cause and the fix, shows the
key only masked, and leaves what is already in DuckDB untouched."""

from __future__ import annotations

import http.server
import threading

import pytest

from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.dagster_adapter.resources import StripeResource

from .conftest import SMALL, make_resources, materialize, mode_config, query

FAILURE_PREFIX = "dagster._core.definitions.events.Failure: "
RESTRICTED = "rk_test_OnlyCustomers1234"


@pytest.fixture
def emu():
    with StripeEmulator(scale=SMALL, seed=3, restricted_keys={RESTRICTED: {"customer"}}) as emulator:
        yield emulator


def run(emu, tmp_path, object_name="charge", mode="sync", api_key=None, api_base=None, **stripe_kwargs):
    assets = build_stripe_assets([object_name])
    resources = make_resources(
        emu, str(tmp_path / "warehouse.duckdb"), api_key=api_key, budget_dir=str(tmp_path), **stripe_kwargs
    )
    if api_base is not None:  # another server than the emulator's root
        resources["stripe"] = StripeResource(api_key=api_key or emu.api_key, api_base=api_base, budget_dir=str(tmp_path))
    return materialize(assets, resources, mode_config(assets, mode), raise_on_error=False)


def failure_line(result, *secrets: str) -> str:
    """The step failure's message: exactly one line, no traceback, no raw secret anywhere in the run's events."""
    assert not result.success
    failures = result.get_step_failure_events()
    assert len(failures) == 1
    message = failures[0].step_failure_data.error.message
    line = message.strip()
    assert "\n" not in line, message
    assert "Traceback" not in line and 'File "' not in line
    assert line.startswith(FAILURE_PREFIX), line
    everything = "\n".join(str(event) for event in result.all_events)
    for secret in secrets:
        assert secret not in everything
        if len(secret) >= 20:  # not even partly: only the prefix and the last 4 characters may show
            assert secret[8:-4] not in everything
    return line[len(FAILURE_PREFIX):]


def requests_made(emu) -> int:
    return emu.stats()["total"]["requests"]


# --------------------------------------------------------------------------------------------------
# 401, 403
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, masked", [("sk_test_WrongKey0123456789wxyz", "sk_test_…wxyz"), ("sk_live_LiveKeyInTestMode5678", "sk_live_…5678")])
def test_401_names_the_masked_key_and_the_test_live_mix_up(emu, tmp_path, key, masked):
    line = failure_line(run(emu, tmp_path, api_key=key), key)
    assert line == (
        f"Stripe rejected the API key {masked} (401 Invalid API Key) while loading 'charge': it is wrong, revoked, "
        "expired, or for the other mode (test keys start sk_test_/rk_test_, live keys sk_live_/rk_live_). Issue a "
        "new key in Stripe Dashboard → Developers → API keys and set STRIPE_API_KEY."
    )
    assert emu.stats()["total"]["401"] == 1, "a 401 is not retried"


def test_403_names_the_missing_restricted_key_permission(emu, tmp_path):
    line = failure_line(run(emu, tmp_path, api_key=RESTRICTED), RESTRICTED)
    assert line.startswith(
        "Stripe refused to list 'charge' (403 Forbidden): the restricted key rk_test_…1234 lacks the 'Charges read' "
        "permission; Stripe asks for rak_charge_read. Edit the restricted key's permissions in Stripe Dashboard → "
        "Developers → API keys (grant Charges read) or use a secret (sk_) key."
    )
    # The same key may read what it was granted.
    assert run(emu, tmp_path, "customer", api_key=RESTRICTED).success


def test_403_for_a_child_object_names_the_parent_permission_too(emu, tmp_path):
    line = failure_line(
        run(emu, tmp_path, "subscription_item", api_key=RESTRICTED), RESTRICTED
    )
    assert "lacks the 'Subscriptions read' permission" in line and "(grant Subscriptions read)" in line


# --------------------------------------------------------------------------------------------------
# Keys that cannot work: rejected before any request
# --------------------------------------------------------------------------------------------------

UNUSABLE = [
    ("pk_test_PublishableKey12345678", "pk_test_…5678 is a publishable key, which cannot read data; use a secret (sk_) or restricted (rk_) key"),
    ("pk_live_PublishableKey12345678", "pk_live_…5678 is a publishable key"),
    ("sk_test_sh-rt", "The Stripe API key sk_test_… is malformed; expected sk_test_, sk_live_, rk_test_ or rk_live_"),
    ("sk_prod_ThisIsNotAMode12345678", "The Stripe API key …78 is malformed"),
    ("sk_test_Pasted Twice12345678", "contains whitespace (a copy-paste error?)"),
]


@pytest.mark.parametrize("key, expected", UNUSABLE, ids=[k for k, _ in UNUSABLE])
def test_unusable_keys_fail_before_any_request(emu, tmp_path, key, expected):
    line = failure_line(run(emu, tmp_path, api_key=key), key)
    assert expected in line
    assert requests_made(emu) == 0


# --------------------------------------------------------------------------------------------------
# 429 after the retry budget
# --------------------------------------------------------------------------------------------------


def test_429_with_should_retry_false_is_not_retried(emu, tmp_path):
    emu.configure(global_rate=0.01, rate_limit_should_retry=False)  # one request, then 429s that say "don't"
    line = failure_line(run(emu, tmp_path, max_rate_limit_retries=5), emu.api_key)
    assert line.startswith(
        "Stripe kept answering 429 Too Many Requests while loading 'charge' and Stripe said not to retry "
        "(Stripe-Should-Retry: false)"
    )
    stats = emu.stats()["total"]
    assert stats["200"] == 1 and stats["429"] == 1, "first page, then one 429 and no retry"


def test_429_after_the_retry_budget_suggests_the_budget_and_staggering(emu, tmp_path):
    emu.configure(global_rate=0.01)  # one request, then 429 (no Stripe-Should-Retry header) until the test ends
    line = failure_line(run(emu, tmp_path, max_rate_limit_retries=1, max_network_retries=0), emu.api_key)
    assert line.startswith(
        "Stripe kept answering 429 Too Many Requests while loading 'charge' and the retry budget is spent "
        "(Stripe allows about 25 requests/s per account in test mode). Lower max_requests_per_second on the "
        "Stripe resource, or stagger schedules and limit parallel loads with the stripe_api concurrency pool"
    )
    stats = emu.stats()["total"]
    assert stats["200"] == 1 and stats["429"] == 2, "first page, then one 429 and exactly one retry"


# --------------------------------------------------------------------------------------------------
# 404
# --------------------------------------------------------------------------------------------------


def test_404_from_a_stripe_api_at_a_wrong_path(emu, tmp_path):
    line = failure_line(run(emu, tmp_path, api_base=emu.url + "/bogus"))
    assert line.startswith(
        "No such resource for 'charge' (404 Not Found: Unrecognized request URL (GET: /bogus/v1/charges)). Use "
        "singular names from the supported objects table; if api_base is set, check that it points at the Stripe "
        "API (or its emulator), not another server"
    )


class _NotStripe(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body><h1>404 Not Found</h1></body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def not_stripe():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotStripe)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_404_from_a_server_that_is_not_stripe(emu, tmp_path, not_stripe):
    line = failure_line(run(emu, tmp_path, api_base=not_stripe))
    assert line == (
        "No such resource for 'charge' (404 Not Found, and the answer is not a Stripe error): the server at api_base "
        "does not serve /v1/charges: it is not the Stripe API, or a Stripe-compatible server without this list. "
        "Fix or drop api_base, or leave 'charge' out of the selection."
    )


class _CustomersOnly(_NotStripe):
    """Lists one customer like Stripe, and has nothing else (e.g. a Stripe-compatible server without the
    customer's payment methods)."""

    def do_GET(self):  # noqa: N802
        if not self.path.startswith("/v1/customers?"):
            return super().do_GET()
        body = (b'{"object": "list", "url": "/v1/customers", "has_more": false, "data": [{"id": "cus_1", '
                b'"object": "customer", "created": 1700000000}]}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_404_for_a_child_list_names_the_path_under_its_parent(emu, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CustomersOnly)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        line = failure_line(run(emu, tmp_path, "payment_method", api_base=f"http://127.0.0.1:{server.server_address[1]}"))
    finally:
        server.shutdown()
        server.server_close()
    # Not /v1/payment_methods, which without `customer` lists only Treasury payment methods and is not read.
    assert line.startswith(
        "No such resource for 'payment_method' (404 Not Found, and the answer is not a Stripe error): the server at "
        "api_base does not serve /v1/customers/{id}/payment_methods: it is not the Stripe API"
    ), line


# --------------------------------------------------------------------------------------------------
# Nothing already loaded is lost
# --------------------------------------------------------------------------------------------------


def test_failed_runs_leave_loaded_rows_and_the_cursor_intact(emu, tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    snapshot_sql = "SELECT id, amount, description FROM stripe.charge ORDER BY id"
    assert run(emu, tmp_path, mode="sync").success
    before = query(database, snapshot_sql)
    assert len(before) == emu.counts()["charge"]

    # Stripe changes; then loads fail part-way (429 after the newest page was fetched) and at once (401).
    changed = before[0][0]
    emu.update("charge", changed, description="changed in Stripe")
    new = emu.create("charge", amount=777)
    for mode in ("sync", "sync:incremental"):
        emu.configure(global_rate=0.01)  # refill: exactly one page gets through each time
        emu.reset_stats()
        line = failure_line(run(emu, tmp_path, mode=mode, max_rate_limit_retries=1, max_network_retries=0))
        assert "429 Too Many Requests" in line
        assert emu.stats()["total"]["200"] == 1, "the run failed part-way, after reading a page"
        assert query(database, snapshot_sql) == before, f"a failed {mode} run wrote rows"
    emu.configure(global_rate=None)
    assert "401 Invalid API Key" in failure_line(run(emu, tmp_path, api_key="sk_test_Revoked00000000abcd"))
    assert query(database, snapshot_sql) == before

    # The cursor did not move either: the next incremental run picks up both changes.
    assert run(emu, tmp_path, mode="sync:incremental").success
    assert len(query(database, snapshot_sql)) == len(before) + 1
    assert query(database, "SELECT description FROM stripe.charge WHERE id = ?", [changed]) == [("changed in Stripe",)]
    assert query(database, "SELECT amount FROM stripe.charge WHERE id = ?", [new["id"]]) == [(777,)]
