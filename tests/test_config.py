"""nilus_stripe_assets.source.config: source_table, stripe:// address, API keys, write strategy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.source.config import (
    MODES,
    ConfigError,
    SourceTable,
    StripeURI,
    default_global_rate,
    key_mode,
    mask_key,
    parse_source_table,
    parse_stripe_uri,
    resolve_strategy,
    validate_api_key,
)

KEY = "sk_test_51AbCdEfGh0123abcd"  # fake, well-formed
RKEY = "rk_live_51ZyXwVu9876wxyz"
ENV = {"STRIPE_API_KEY": KEY, "EMPTY": "  ", "NEWLINE_KEY": KEY + "\n", "RK": RKEY}


def _assert_one_line_without(exc: BaseException, *secrets: str) -> str:
    text = str(exc)
    assert "\n" not in text and text == text.strip()
    for secret in secrets:
        assert secret not in text
        assert secret not in repr(exc)
        assert all(secret not in str(a) for a in exc.args)
    return text


def _raises(fn, *args, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kw)
    assert isinstance(info.value, ValueError)
    return _assert_one_line_without(info.value, KEY, RKEY, KEY.strip()[8:])


# ------------------------------------------------------------------------------------------------
# source_table


@pytest.mark.parametrize(
    "text, name, mode",
    [
        ("charge", "charge", "async"),
        ("  Charge  ", "charge", "async"),
        ("charge:sync", "charge", "sync"),
        ("CHARGE:SYNC", "charge", "sync"),
        (" invoice_item : sync : incremental ", "invoice_item", "sync:incremental"),
        ("event:sync:incremental", "event", "sync:incremental"),
        ("webhook_endpoint", "webhook_endpoint", "async"),
    ],
)
def test_parse_source_table_ok(text, name, mode):
    st = parse_source_table(text)
    assert isinstance(st, SourceTable)
    assert st.object is CATALOG[name]
    assert st.mode == mode and mode in MODES
    assert st.incremental == (mode == "sync:incremental")
    assert parse_source_table(str(st)) == st


def test_every_catalog_object_parses_in_every_mode():
    for name in CATALOG:
        assert parse_source_table(name).mode == "async"
        for mode in ("sync", "sync:incremental"):
            assert parse_source_table(f"{name}:{mode}") == SourceTable(CATALOG[name], mode)


@pytest.mark.parametrize(
    "text, suggestion",
    [
        ("charges", "charge"),
        ("invoiceitems", "invoice_item"),
        ("invoiceitem", "invoice_item"),
        ("invoice_items", "invoice_item"),
        ("PaymentIntents", "payment_intent"),
        ("paymentintent", "payment_intent"),
        ("tax_rates", "tax_rate"),
        ("balance-transactions", "balance_transaction"),
        ("subscription_items:sync", "subscription_item"),
        ("chrge", "charge"),
        ("custmer", "customer"),
        ("events:sync:incremental", "event"),
        ("webhook_endpoints", "webhook_endpoint"),
    ],
)
def test_unknown_object_suggests(text, suggestion):
    msg = _raises(parse_source_table, text)
    wrong = text.split(":")[0]
    assert msg.startswith(f"No such resource '{wrong}'. Did you mean '{suggestion}'? Valid objects: ")
    assert "balance_transaction, charge, coupon" in msg
    assert all(name in msg for name in CATALOG)


def test_unknown_object_without_suggestion():
    msg = _raises(parse_source_table, "zzzzqqq")
    assert msg.startswith("No such resource 'zzzzqqq'. Valid objects: balance_transaction, charge, ")
    assert "Did you mean" not in msg


@pytest.mark.parametrize(
    "text, phrases",
    [
        ("charge:incremental", ["'incremental' must be combined with 'sync'", "use 'charge:sync:incremental'"]),
        ("Charge : Incremental", ["must be combined with 'sync'", "'charge:sync:incremental'"]),
        ("charge:incremental:sync", ["must be combined with 'sync'", "'charge:sync:incremental'"]),
        (
            "charge:async",
            ["Unknown loading mode 'async'", "'charge' (async, the default)", "'charge:sync'", "'charge:sync:incremental'"],
        ),
        ("customer:full", ["Unknown loading mode 'full'", "'customer:sync:incremental'"]),
        ("charge:sync:incremental:x", ["Unknown loading mode 'sync:incremental:x'"]),
        ("charge:", ["Unknown loading mode ''"]),
        ("", ["source_table is empty", "charge"]),
        ("   ", ["source_table is empty"]),
        (":sync", ["has no object name", "<object>[:sync[:incremental]]"]),
    ],
)
def test_source_table_mode_errors(text, phrases):
    msg = _raises(parse_source_table, text)
    for phrase in phrases:
        assert phrase in msg


# ------------------------------------------------------------------------------------------------
# API keys


@pytest.mark.parametrize(
    "key, masked",
    [
        (KEY, "sk_test_…abcd"),
        (RKEY, "rk_live_…wxyz"),
        ("pk_test_abcdefgh1234", "pk_test_…1234"),
        ("sk_test_********abcd", "sk_test_…abcd"),  # Stripe's own masked form
        ("sk_test_abc", "sk_test_…"),
        ("hunter2hunter2hunter2", "…r2"),
        ("short", "***"),
        ("", "***"),
        (None, "***"),
        (" " + KEY + "\n", "sk_test_…abcd"),
    ],
)
def test_mask_key(key, masked):
    assert mask_key(key) == masked


@pytest.mark.parametrize("key, mode, rate", [(KEY, "test", 25), (RKEY, "live", 100), ("sk_live_abcdefgh", "live", 100)])
def test_key_mode_and_rate(key, mode, rate):
    validate_api_key(key)
    assert key_mode(key) == mode
    assert default_global_rate(key) == rate


def test_key_mode_of_garbage():
    msg = _raises(key_mode, "hunter2hunter2hunter2")
    assert "test or live" in msg and "…r2" in msg and "hunter2" not in msg


@pytest.mark.parametrize(
    "key, phrases",
    [
        ("", ["API key is empty", "STRIPE_API_KEY", "sk_test_"]),
        ("   ", ["API key is empty"]),
        (
            "pk_test_51AbCdEfGh0123abcd",
            ["pk_test_…abcd is a publishable key", "cannot read data", "use a secret (sk_) or restricted (rk_) key"],
        ),
        ("pk_live_51AbCdEfGh0123abcd", ["pk_live_…abcd is a publishable key"]),
        (KEY + "\n", ["sk_test_…abcd contains whitespace", "copy-paste"]),
        (" " + KEY, ["contains whitespace"]),
        ("sk_test_51AbCd EfGh0123abcd", ["contains whitespace"]),
        (
            "sk_test_abc",
            ["sk_test_… is malformed", "expected sk_test_, sk_live_, rk_test_ or rk_live_", "at least 8 letters or digits"],
        ),
        ("sk_prod_51AbCdEfGh0123abcd", ["is malformed", "…cd"]),
        ("sk_test_51AbCdEf-Gh0123abcd", ["sk_test_…abcd is malformed"]),
        ("whsec_51AbCdEfGh0123abcd", ["is malformed"]),
    ],
)
def test_validate_api_key_errors(key, phrases):
    msg = _raises(validate_api_key, key)
    for phrase in phrases:
        assert phrase in msg
    if len(key.strip()) > 8:
        assert key.strip() not in msg


# ------------------------------------------------------------------------------------------------
# stripe:// address


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("stripe://?api_key={STRIPE_API_KEY}", StripeURI(KEY, None, None)),
        ("  stripe://?api_key={STRIPE_API_KEY}  ", StripeURI(KEY, None, None)),
        ("STRIPE://?API_KEY={STRIPE_API_KEY}", StripeURI(KEY, None, None)),
        (f"stripe://?api_key={KEY}", StripeURI(KEY, None, None)),
        ("stripe:///?api_key={RK}", StripeURI(RKEY, None, None)),
        ("stripe://?api_key=sk_test_51AbCdEf%47h0123abcd", StripeURI("sk_test_51AbCdEfGh0123abcd", None, None)),
        (
            "stripe://?api_key={STRIPE_API_KEY}&stripe_account=acct_1A2b3C&api_base=http%3A%2F%2F127.0.0.1%3A12111%2F",
            StripeURI(KEY, "acct_1A2b3C", "http://127.0.0.1:12111"),
        ),
        ("stripe://?api_base=https://api.stripe.com/&api_key={STRIPE_API_KEY}", StripeURI(KEY, None, "https://api.stripe.com")),
        ("stripe://", StripeURI(None, None, None)),
        ("stripe://?", StripeURI(None, None, None)),
    ],
)
def test_parse_stripe_uri_ok(uri, expected):
    assert parse_stripe_uri(uri, ENV) == expected


def test_stripe_uri_repr_masks_key():
    parsed = parse_stripe_uri("stripe://?api_key={STRIPE_API_KEY}", ENV)
    assert KEY not in repr(parsed) and KEY not in str(parsed)
    assert "sk_test_…abcd" in repr(parsed)


def test_parse_stripe_uri_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("NILUS_TEST_STRIPE_KEY", RKEY)
    assert parse_stripe_uri("stripe://?api_key={NILUS_TEST_STRIPE_KEY}").api_key == RKEY


ACCEPTED = "accepted parameters: api_key, stripe_account, api_base"


@pytest.mark.parametrize(
    "uri, phrases",
    [
        ("", ["source address is empty", "stripe://?api_key="]),
        ("http://?api_key={STRIPE_API_KEY}", ["must start with 'stripe://' (got 'http:')", ACCEPTED]),
        ("stripe:?api_key={STRIPE_API_KEY}", ["must start with 'stripe://'", ACCEPTED]),
        ("api_key={STRIPE_API_KEY}", ["must start with 'stripe://'"]),
        (f"stripe://{KEY}", ["must have no host or path", "after '?'", ACCEPTED]),
        (f"stripe://?api_key={KEY}#frag", ["contains '#'"]),
        ("stripe://host/path?api_key={STRIPE_API_KEY}", ["must have no host or path"]),
        ("stripe://?apikey={STRIPE_API_KEY}", ["Unknown parameter 'apikey'", ACCEPTED]),
        (f"stripe://?{KEY}", ["Unknown parameter 'sk_test_…abcd'", ACCEPTED]),
        ("stripe://?api_key={STRIPE_API_KEY}&api_key={RK}", ["api_key appears more than once", "at most once"]),
        ("stripe://?api_key=a&API_KEY=b", ["api_key appears more than once"]),
        ("stripe://?api_key=", ["api_key in the stripe:// address has no value"]),
        ("stripe://?api_key", ["has no value"]),
        ("stripe://?api_key={MISSING_VAR}", ["Environment variable MISSING_VAR is not set", "{MISSING_VAR}", "export MISSING_VAR"]),
        ("stripe://?api_key={EMPTY}", ["Environment variable EMPTY is empty"]),
        ("stripe://?api_key={NEWLINE_KEY}", ["sk_test_…abcd contains whitespace"]),
        ("stripe://?api_key={{ env.STRIPE_API_KEY }}", ["unsupported placeholder", "{NAME}", "api_key={STRIPE_API_KEY}"]),
        ("stripe://?api_key=${STRIPE_API_KEY", ["unsupported placeholder"]),
        ("stripe://?api_key=pk_live_51AbCdEfGh0123abcd", ["publishable key", "cannot read data"]),
        ("stripe://?api_key=sk_test_x", ["is malformed"]),
        ("stripe://?api_key={STRIPE_API_KEY}&stripe_account=acc_123", ["stripe_account 'acc_123' is not a Stripe account id", "acct_"]),
        ("stripe://?stripe_account=acct_", ["is not a Stripe account id"]),
        ("stripe://?api_base=ftp://example.com", ["api_base must be an http(s) URL", "http://127.0.0.1:12111"]),
        ("stripe://?api_base=localhost:12111", ["api_base must be an http(s) URL"]),
        ("stripe://?api_base=http://user:pw@example.com", ["no credentials"]),
        ("stripe://?api_base=http://example.com:notaport", ["api_base must be an http(s) URL"]),
    ],
)
def test_parse_stripe_uri_errors(uri, phrases):
    msg = _raises(parse_stripe_uri, uri, ENV)
    for phrase in phrases:
        assert phrase in msg


def test_missing_variable_message_never_shows_other_values():
    msg = _raises(parse_stripe_uri, "stripe://?api_key={NOPE}", {"NOPE_NOT": KEY})
    assert "NOPE" in msg and KEY not in msg


# ------------------------------------------------------------------------------------------------
# write strategy


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_default_strategy_is_the_spec_default(name):
    obj = CATALOG[name]
    for mode in ("async", "sync"):
        assert resolve_strategy(obj, mode) == obj.strategy
    # Every object works in every mode with its default strategy (snapshots refresh whole when incremental;
    # a partitioned replace swaps only its slice).
    assert resolve_strategy(obj, "sync:incremental") == obj.strategy
    assert resolve_strategy(obj, "sync", partitioned=True) == obj.strategy


@pytest.mark.parametrize(
    "name, mode, override, partitioned, expected",
    [
        ("charge", "sync:incremental", "merge", False, "merge"),
        ("charge", "async", " MERGE ", False, "merge"),
        ("charge", "async", "replace", False, "replace"),
        ("charge", "sync", "append", False, "append"),  # snapshot history per run: allowed
        ("event", "sync:incremental", "append", False, "append"),
        ("event", "sync:incremental", "merge", False, "merge"),
        ("event", "async", "append", True, "append"),
        ("coupon", "sync:incremental", "merge", False, "merge"),
        ("tax_rate", "async", "merge", True, "merge"),
        ("webhook_endpoint", "sync", None, False, "replace"),
        ("coupon", "sync:incremental", None, False, "replace"),  # snapshot: refreshed whole
        ("customer", "async", "replace", True, "replace"),  # partition slice only
        ("tax_rate", "sync", None, True, "replace"),
        ("charge", "async", "", False, "merge"),
    ],
)
def test_resolve_strategy_allowed(name, mode, override, partitioned, expected):
    assert resolve_strategy(CATALOG[name], mode, override, partitioned) == expected


@pytest.mark.parametrize(
    "name, mode, override, partitioned, phrases",
    [
        ("charge", "async", "upsert", False, ["Unknown incremental_strategy 'upsert'", "merge, replace, append"]),
        ("charge", "weird", None, False, ["Unknown loading mode 'weird'", "async, sync, sync:incremental"]),
        (
            "charge",
            "sync:incremental",
            "replace",
            False,
            ["replace with 'charge:sync:incremental'", "would swap the table for only the new rows", "incremental_strategy: merge"],
        ),
        (
            "invoice",
            "sync:incremental",
            "replace",
            True,
            ["replace with 'invoice:sync:incremental'", "would swap the table for only the new rows", "merge"],
        ),
        (
            "charge",
            "sync:incremental",
            "append",
            False,
            ["append for 'charge' in sync:incremental mode would duplicate rows", "incremental_strategy: merge"],
        ),
        ("invoice", "sync", "append", True, ["append for 'invoice' in a partitioned load would duplicate rows", "merge"]),
        ("event", "sync:incremental", "replace", False, ["would swap the table"]),
    ],
)
def test_resolve_strategy_rejected(name, mode, override, partitioned, phrases):
    msg = _raises(resolve_strategy, CATALOG[name], mode, override, partitioned)
    for phrase in phrases:
        assert phrase in msg


def test_every_non_event_object_rejects_incremental_append():
    for name, obj in CATALOG.items():
        if name == "event":
            continue
        with pytest.raises(ConfigError, match="would duplicate rows"):
            resolve_strategy(obj, "sync:incremental", "append")


# ------------------------------------------------------------------------------------------------


def test_config_and_errors_do_not_import_dagster():
    code = (
        "import sys, nilus_stripe_assets.source.config, nilus_stripe_assets.source.errors; "
        "assert not any(m == 'dagster' or m.startswith('dagster') for m in sys.modules), 'dagster imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_short_keys_are_accepted_only_off_stripe():
    """stripe-mock documents `sk_test_123`; Stripe's own keys are long, so there a short key is a copy error."""
    for api_base in ("http://127.0.0.1:12111", "http://localhost:12111/"):
        validate_api_key("sk_test_123", api_base)
        validate_api_key("rk_live_x", api_base)
    for api_base in (None, "https://api.stripe.com", "https://api.stripe.com/"):
        assert "at least 8 letters or digits" in _raises(validate_api_key, "sk_test_123", api_base)
    assert "is malformed" in _raises(validate_api_key, "sk_test_", "http://127.0.0.1:12111")
    assert "is malformed" in _raises(validate_api_key, "sk_prod_123", "http://127.0.0.1:12111")
    assert parse_stripe_uri("stripe://?api_key=sk_test_123&api_base=http://127.0.0.1:12111").api_key == "sk_test_123"
    assert parse_stripe_uri("stripe://?api_key=sk_test_123", env={"STRIPE_API_BASE": "http://127.0.0.1:1"}).api_key
    assert "is malformed" in _raises(parse_stripe_uri, "stripe://?api_key=sk_test_123", {})
