"""nilus_stripe_assets.source.errors: real stripe-python exceptions (from a tiny local HTTP server) -> one clear,
scrubbed message."""

from __future__ import annotations

import http.server
import json
import pickle
import socket
import threading
import traceback

import pytest
import stripe

from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.source.errors import PERMISSIONS, ScrubbedStripeError, StripeLoadError, explain, scrub

KEY = "sk_test_51AbCdEfGh0123abcd"  # fake, well-formed
RKEY = "rk_live_51ZyXwVu9876wxyz"
OTHER_TOKEN = "sk_live_99OtherSecretToken42"

# path prefix -> (status, body, extra headers). Bodies mimic Stripe's; some echo raw keys like a sloppy
# proxy or emulator would, to prove scrubbing.
RESPONSES: dict[str, tuple[int, object]] = {
    "401": (401, {"error": {"message": "Invalid API Key provided: sk_test_********abcd", "type": "invalid_request_error"}}),
    "401raw": (401, {"error": {"message": f"Invalid API Key provided: {KEY} and {OTHER_TOKEN}", "type": "invalid_request_error"}}),
    "401rk": (401, {"error": {"message": f"Expired API Key provided: {RKEY}", "type": "invalid_request_error"}}),
    "403": (
        403,
        {
            "error": {
                "message": "The provided key 'rk_test_*********************abcd' does not have the required permissions "
                "for this endpoint on account 'acct_1Abc'. Having the 'rak_charge_read' permission would allow this "
                "request to continue.",
                "type": "invalid_request_error",
            }
        },
    ),
    "403plain": (403, {"error": {"message": "Forbidden", "type": "invalid_request_error"}}),
    "403acct": (
        403,
        {
            "error": {
                "message": "The provided key 'sk_test_********abcd' does not have access to account 'acct_9Zz' "
                "(or that account does not exist). Application access may have been revoked.",
                "type": "invalid_request_error",
            }
        },
    ),
    "404": (
        404,
        {
            "error": {
                "message": "Unrecognized request URL (GET: /v1/charges). Please see https://stripe.com/docs or we can "
                "help at https://support.stripe.com/.",
                "type": "invalid_request_error",
            }
        },
    ),
    "404missing": (
        404,
        {
            "error": {
                "code": "resource_missing",
                "message": "No such customer: 'cus_123'",
                "param": "customer",
                "type": "invalid_request_error",
            }
        },
    ),
    "404html": (404, "<html><body>Not Found</body></html>"),
    "429": (429, {"error": {"message": "Request rate limit exceeded.", "type": "invalid_request_error", "code": "rate_limit"}}),
    "500": (500, {"error": {"message": "An unknown error occurred", "type": "api_error"}}),
    "502html": (502, "<html>Bad Gateway</html>"),
    "400": (
        400,
        {
            "error": {
                "message": "Received unknown parameter: created[gt]",
                "param": "created[gt]",
                "code": "parameter_unknown",
                "type": "invalid_request_error",
            }
        },
    ),
}
REQUEST_ID = "req_TestAbc123"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        prefix = self.path.strip("/").split("/")[0]
        status, body = RESPONSES[prefix]
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
        if prefix != "401":  # one response without a request id
            self.send_header("Request-Id", REQUEST_ID)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server_url():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def _stripe_error(base: str, key: str = KEY) -> stripe.StripeError:
    client = stripe.StripeClient(key, base_addresses={"api": base}, max_network_retries=0)
    with pytest.raises(stripe.StripeError) as info:
        client.raw_request("get", "/v1/charges")
    return info.value


def _explained(server_url: str, prefix: str, object_name: str = "charge", key: str = KEY):
    exc = _stripe_error(f"{server_url}/{prefix}", key)
    return exc, explain(exc, object_name, key)


def _assert_clean(err: StripeLoadError, *secrets: str) -> str:
    text = str(err)
    assert "\n" not in text
    surfaces = [text, repr(err), *map(str, err.args), str(err.__cause__), repr(err.__cause__), *map(str, err.__cause__.args)]
    surfaces.append("".join(traceback.format_exception(err)))
    for secret in (KEY, RKEY, OTHER_TOKEN, KEY[8:], *secrets):
        for surface in surfaces:
            assert secret not in surface
    return text


CASES = [
    # prefix, object, exception type, kind, status, request id?, phrases
    (
        "401",
        "charge",
        stripe.AuthenticationError,
        "authentication",
        401,
        False,
        [
            "Stripe rejected the API key sk_test_…abcd (401 Invalid API Key)",
            "wrong, revoked",
            "for the other mode (test keys start sk_test_/rk_test_, live keys sk_live_/rk_live_)",
            "Issue a new key in Stripe Dashboard → Developers → API keys and set STRIPE_API_KEY.",
        ],
    ),
    ("401raw", "customer", stripe.AuthenticationError, "authentication", 401, True, ["sk_test_…abcd", "'customer'"]),
    (
        "403",
        "charge",
        stripe.PermissionError,
        "permission",
        403,
        True,
        [
            "Stripe refused to list 'charge' (403 Forbidden)",
            "lacks the 'Charges read' permission",
            "Stripe asks for rak_charge_read",
            "Edit the restricted key's permissions in Stripe Dashboard → Developers → API keys (grant Charges read)",
            "or use a secret (sk_) key",
        ],
    ),
    ("403plain", "invoice_item", stripe.PermissionError, "permission", 403, True, ["'Invoices read'", "grant Invoices read"]),
    (
        "403plain",
        "payment_method",
        stripe.PermissionError,
        "permission",
        403,
        True,
        ["'PaymentMethods read' (and 'Customers read')", "grant PaymentMethods read and Customers read"],
    ),
    ("403plain", "balance_transaction", stripe.PermissionError, "permission", 403, True, ["'Balance read'"]),
    ("403plain", "event", stripe.PermissionError, "permission", 403, True, ["'Events read'"]),
    ("403plain", "webhook_endpoint", stripe.PermissionError, "permission", 403, True, ["'Webhook Endpoints read'"]),
    ("403plain", "subscription_item", stripe.PermissionError, "permission", 403, True, ["'Subscriptions read'"]),
    (
        "403acct",
        "charge",
        stripe.PermissionError,
        "permission",
        403,
        True,
        ["refused access to the connected account", "stripe_account", "acct_"],
    ),
    (
        "404",
        "charge",
        stripe.InvalidRequestError,
        "not_found",
        404,
        True,
        [
            "No such resource for 'charge' (404 Not Found: Unrecognized request URL (GET: /v1/charges))",
            "Use singular names from the supported objects table",
            "api_base",
            "req_TestAbc123",
        ],
    ),
    ("404", "charges", stripe.InvalidRequestError, "not_found", 404, True, ["No such resource for 'charges'", "did you mean 'charge'?"]),
    (
        "404html",
        "charge",
        stripe.APIError,
        "not_found",
        404,
        False,  # stripe-python keeps no headers for non-JSON answers
        ["No such resource for 'charge' (404 Not Found, and the answer is not a Stripe error)", "not the Stripe API", "api_base"],
    ),
    (
        "404missing",
        "payment_method",
        stripe.InvalidRequestError,
        "not_found",
        404,
        True,
        ["No such resource for 'payment_method' (404 resource_missing: No such customer: 'cus_123')", "Re-run the load"],
    ),
    (
        "429",
        "charge",
        stripe.RateLimitError,
        "rate_limited",
        429,
        True,
        [
            "429 Too Many Requests",
            "retry budget is spent",
            "25 requests/s per account in test mode",
            "Lower max_requests_per_second on the Stripe resource",
            "stagger schedules",
            "stripe_api concurrency pool in dagster.yaml",
        ],
    ),
    (
        "500",
        "charge",
        stripe.APIError,
        "api_error",
        500,
        True,
        ["Stripe answered 500 (server error) while loading 'charge'", "after retries", "status.stripe.com", "request id req_TestAbc123"],
    ),
    ("502html", "charge", stripe.APIError, "api_error", 502, False, ["Stripe answered 502 (server error)", "status.stripe.com."]),
    (
        "400",
        "charge",
        stripe.InvalidRequestError,
        "invalid_request",
        400,
        True,
        ["Stripe rejected the request for 'charge' (400, parameter_unknown, param created[gt])", "Received unknown parameter", "req_TestAbc123"],
    ),
]


@pytest.mark.parametrize("prefix, obj, exc_type, kind, status, has_rid, phrases", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_explain_real_stripe_errors(server_url, prefix, obj, exc_type, kind, status, has_rid, phrases):
    exc, err = _explained(server_url, prefix, obj)
    assert type(exc) is exc_type
    assert isinstance(err, StripeLoadError)
    assert (err.kind, err.status, err.object_name) == (kind, status, obj)
    assert err.request_id == (REQUEST_ID if has_rid else None)
    text = _assert_clean(err)
    for phrase in phrases:
        assert phrase in text
    assert isinstance(err.__cause__, ScrubbedStripeError) and err.__suppress_context__
    assert err.__cause__.type_name == exc_type.__name__ and err.__cause__.http_status == status


def test_restricted_live_key_masked_and_rate_hint(server_url):
    _, err = _explained(server_url, "401rk", key=RKEY)
    text = _assert_clean(err)
    assert "rk_live_…wxyz" in text and "sk_test_" in text  # the hint names prefixes, not keys
    _, err = _explained(server_url, "429", key=RKEY)
    assert "100 requests/s per account in live mode" in _assert_clean(err)
    _, err = _explained(server_url, "403plain", key=RKEY)
    assert "the restricted key rk_live_…wxyz lacks" in _assert_clean(err)


def test_raw_key_echoed_by_server_is_scrubbed_everywhere(server_url):
    exc, err = _explained(server_url, "401raw")
    assert KEY in str(exc)  # the raw stripe error does carry it...
    _assert_clean(err)  # ...the explained one never does
    assert "sk_test_…abcd" in str(err.__cause__) and "sk_live_…ny42" not in str(err.__cause__)
    assert "sk_live_…en42" in str(err.__cause__)


def test_raised_plainly_inside_except_hides_raw_context(server_url):
    with pytest.raises(StripeLoadError) as info:
        try:
            stripe.StripeClient(KEY, base_addresses={"api": f"{server_url}/401raw"}, max_network_retries=0).raw_request(
                "get", "/v1/charges"
            )
        except stripe.StripeError as exc:
            raise explain(exc, "charge", KEY)
    rendered = "".join(traceback.format_exception(info.value))
    assert KEY not in rendered and "sk_test_…abcd" in rendered


def test_connection_error_names_host():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exc = _stripe_error(f"http://127.0.0.1:{port}")
    assert isinstance(exc, stripe.APIConnectionError)
    err = explain(exc, "customer", KEY)
    text = _assert_clean(err)
    assert (err.kind, err.status, err.request_id) == ("connection", None, None)
    assert f"Could not connect to the Stripe API at 127.0.0.1:{port} while loading 'customer' (connection refused)" in text
    assert "after retries" in text and "https://api.stripe.com" in text and "emulator" in text


def test_no_key_given():
    err = explain(stripe.AuthenticationError("No API key provided.", http_status=401), "charge", None)
    text = _assert_clean(err)
    assert err.kind == "authentication" and "Stripe received no valid API key (401)" in text and "STRIPE_API_KEY" in text


def test_non_stripe_exception_is_scrubbed():
    err = explain(ValueError(f"boom with {KEY}\nsecond line"), "refund", KEY)
    text = _assert_clean(err)
    assert err.kind == "unexpected" and err.status is None
    assert text == "Loading 'refund' failed: ValueError: boom with sk_test_…abcd second line"


def test_explain_is_idempotent_and_picklable(server_url):
    _, err = _explained(server_url, "429")
    assert explain(err, "charge", KEY) is err
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.kind, copy.status, copy.request_id, copy.object_name) == (
        str(err), err.kind, err.status, err.request_id, err.object_name
    )
    cause = pickle.loads(pickle.dumps(err.__cause__))
    assert str(cause) == str(err.__cause__)


def test_permission_table_covers_catalog():
    assert set(PERMISSIONS) == set(CATALOG)
    assert all(label.endswith(" read") for label in PERMISSIONS.values())
    assert PERMISSIONS["charge"] == "Charges read"


@pytest.mark.parametrize(
    "text, key, expected",
    [
        (f"key={KEY}", KEY, "key=sk_test_…abcd"),
        (f"key={KEY}", None, "key=sk_test_…abcd"),
        (f"a {RKEY} b {OTHER_TOKEN}", None, "a rk_live_…wxyz b sk_live_…en42"),
        ("Invalid API Key provided: sk_test_********abcd", None, "Invalid API Key provided: sk_test_…abcd"),
        ("pk_test_51AbCdEfGh0123abcd", None, "pk_test_…abcd"),
        ("weird-secret-value-123 in text", "weird-secret-value-123", "…23 in text"),
        ("nothing secret here", KEY, "nothing secret here"),
        (None, KEY, ""),
        (f"legacy sk_{'a1' * 12}", None, "legacy …a1"),
    ],
)
def test_scrub(text, key, expected):
    out = scrub(text, key)
    assert out == expected
    assert scrub(out, key) == out  # idempotent
