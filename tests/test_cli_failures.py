"""Every failure in the README's Troubleshooting tables, through the real CLI, as a user meets it.

Each case runs `dagster asset materialize` (the package's code location, or the example component project
with one attribute of its YAML changed) against the emulator or a server that answers like Stripe, with
the repository's `dagster.yaml` logging settings. The first line of output must be the documented message
(after Dagster's log-line prefix), and no traceback may be printed anywhere. A last test checks that the
cases cover every message row of the README's tables, so a new row needs a case here.

Dagster 1.13's CLI itself prints a two-line SupersessionWarning about `dagster asset materialize` (it
recommends `dg launch`) before any of this package's code runs; that notice is removed before the
first line is taken, and nothing else is.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from nilus_stripe_assets.emulator import StripeEmulator

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
README = REPO / "README.md"
RESTRICTED = "rk_test_OnlyCustomers1234"
CHARGES_ONLY = "rk_test_OnlyChargesNoEvents99"  # may list charges, not events
BAD_KEY = "sk_test_NilusRevokedR8t2V6u4Nabcd"
CODE_LOCATION = ["-m", "nilus_stripe_assets.definitions"]
CONNECT_LOCATION = ["-m", "nilus_stripe_assets.connect"]
REVOKED_ACCOUNT = "acct_1CliRevokedAcct00"  # connected to the "connect" emulator, its access revoked
NOTICE = re.compile(r"SupersessionWarning: Function `asset_materialize_command` is superseded")
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - dagster - [A-Z]+ - ")
COMPONENT = "Stripe pipeline 'stripe-customer-batch', "
FIRST = "Stripe pipeline 'stripe-charge-sync-incremental-batch', "  # the first pipeline fails first
# Both pipelines must share one address (one account per code location): address cases change both.
ADDRESSES = ("address: stripe://?api_key={STRIPE_API_KEY}", "address: stripe://?api_key={{ env.STRIPE_API_KEY }}")


def address(new: str) -> list:
    return [(old, f"address: {new}") for old in ADDRESSES]


@dataclass
class Case:
    doc: str  # the README row's message, as written there (between the first backticks)
    expected: str  # what the first line starts with
    key: str | None = "sk_test_emulator"
    server: str = "emulator"  # emulator | limited | refusing | failing | canned | closed
    path: str = ""  # appended to the server's URL as api_base
    select: str = "stripe/charge"
    stripe_config: dict = field(default_factory=dict)  # run config of the `stripe` resource
    step_config: dict = field(default_factory=dict)  # run config of the Stripe step (e.g. its mode)
    yaml_edits: list = field(default_factory=list)  # (old, new) in the example defs.yaml: the component project
    warehouse_sql: str = ""  # run on the warehouse file before the load
    env: dict = field(default_factory=dict)  # extra environment; "{closed}" is a port where nothing listens
    location: list = field(default_factory=lambda: CODE_LOCATION)
    partition: str = ""  # with the Connect location: an account, added to the instance's partitions first
    files: tuple = ()  # regular files to create in the case's folder first ("{work}" in env is that folder)
    read_only: str = ""  # a folder under the case's folder, mounted as a read-only filesystem for the run


CASES = {
    "401": Case(
        "Stripe rejected the API key sk_test_…abcd (401 Invalid API Key) while loading 'charge'",
        "Stripe rejected the API key sk_test_…abcd (401 Invalid API Key) while loading 'charge': it is wrong",
        key=BAD_KEY,
    ),
    "403-permission": Case(
        "Stripe refused to list 'charge' (403 Forbidden): the restricted key rk_test_…abcd lacks the 'Charges read' permission",
        "Stripe refused to list 'charge' (403 Forbidden): the restricted key rk_test_…1234 lacks the 'Charges read' "
        "permission",
        key=RESTRICTED,
    ),
    "403-account": Case(
        "Stripe refused access to the connected account … (403 Forbidden)",
        "Stripe refused access to the connected account while loading 'charge' (403 Forbidden)",
        server="canned", path="/403acct",
    ),
    "403-connected-account": Case(
        "Stripe refused access to connected account acct_… (403 Forbidden: …)",
        f"Stripe refused access to connected account {REVOKED_ACCOUNT} (403 Forbidden: The provided key "
        "'sk_test_…ator' does not have access to account",
        server="connect", location=CONNECT_LOCATION, partition=REVOKED_ACCOUNT,
    ),
    "404": Case(
        "No such resource for 'charge' (404 Not Found: …)",
        "No such resource for 'charge' (404 Not Found: Unrecognized request URL (GET: /bogus/v1/charges))",
        path="/bogus",
    ),
    "404-not-stripe": Case(
        "No such resource for 'charge' (404 Not Found, and the answer is not a Stripe error)",
        "No such resource for 'charge' (404 Not Found, and the answer is not a Stripe error)",
        server="canned", path="/404html",
    ),
    "404-missing": Case(
        "No such resource for 'charge' (404 resource_missing: …)",
        "No such resource for 'charge' (404 resource_missing: No such customer: 'cus_123')",
        server="canned", path="/404missing",
    ),
    "429-budget": Case(
        "Stripe kept answering 429 Too Many Requests … and the retry budget is spent",
        "Stripe kept answering 429 Too Many Requests while loading 'charge' and the retry budget is spent",
        server="limited", stripe_config={"max_rate_limit_retries": 1, "max_network_retries": 0},
    ),
    "429-refused": Case(
        "Stripe kept answering 429 Too Many Requests … and Stripe said not to retry (Stripe-Should-Retry: false)",
        "Stripe kept answering 429 Too Many Requests while loading 'charge' and Stripe said not to retry "
        "(Stripe-Should-Retry: false)",
        server="refusing",
    ),
    "403-events": Case(
        "Change capture for 'charge' reads /v1/events, and that failed: Stripe refused to list 'event' (403 Forbidden): "
        "… lacks the 'Events read' permission",
        "Change capture for 'charge' reads /v1/events, and that failed: Stripe refused to list 'event' (403 Forbidden)",
        key=CHARGES_ONLY, step_config={"mode": "sync:incremental"},
        # Rows already loaded: the incremental run reads the changes since then from /v1/events.
        warehouse_sql="CREATE SCHEMA stripe; CREATE TABLE stripe.charge AS SELECT 'ch_1' AS id, 'charge' AS object, "
        "now() AS created",
    ),
    "some-objects": Case(
        "N of M Stripe objects failed (K loaded and written):",
        "1 of 2 Stripe objects failed (1 loaded and written):",
        key=RESTRICTED, select="stripe/charge,stripe/customer",
    ),
    "500": Case(
        "Stripe answered 500 (server error) … even after retries",
        "Stripe answered 500 (server error) while loading 'charge', even after retries",
        server="failing", stripe_config={"max_network_retries": 0},
    ),
    "connect": Case(
        "Could not connect to the Stripe API at host:port …",
        "Could not connect to the Stripe API at 127.0.0.1:",
        server="closed", stripe_config={"max_network_retries": 0},
    ),
    "400": Case(
        "Stripe rejected the request for 'charge' (400, …)",
        "Stripe rejected the request for 'charge' (400, parameter_unknown, param created[gt])",
        server="canned", path="/400",
    ),
    "not-json": Case(
        "Loading 'charge' failed: JSONDecodeError: …",
        "Loading 'charge' failed: JSONDecodeError: ",
        server="cut",
    ),
    "write": Case(
        "Writing 'charge' into stripe.charge failed, so the table is unchanged: …",
        "Writing 'charge' into stripe.charge failed, so the table is unchanged: ",
        warehouse_sql="CREATE SCHEMA stripe; CREATE VIEW stripe.charge AS SELECT 1 AS id",
    ),
    # Configuration errors: the key, at run start.
    "publishable": Case(
        "sk_test_…abcd is a publishable key, which cannot read data",
        "pk_test_…5678 is a publishable key, which cannot read data",
        key="pk_test_PublishableKey12345678",
    ),
    "malformed": Case(
        "The Stripe API key sk_…abcd is malformed",
        "The Stripe API key sk_test_… is malformed",
        key="sk_test_sh-rt",
    ),
    "whitespace": Case(
        "contains whitespace",
        "The Stripe API key sk_test_…5678 contains whitespace",
        key="sk_test_Pasted Twice12345678",
    ),
    "empty-key": Case(
        "is empty", "The Stripe API key is empty; set STRIPE_API_KEY", key="   ",
    ),
    "no-key": Case("No Stripe API key configured", "No Stripe API key configured: set STRIPE_API_KEY", key=None),
    "env-unset": Case(
        "Environment variable X is not set (the stripe:// address reads api_key from {X})",
        "Environment variable NILUS_UNSET_KEY is not set (the stripe:// address reads api_key from "
        "{NILUS_UNSET_KEY})",
        yaml_edits=address("stripe://?api_key={NILUS_UNSET_KEY}"),
    ),
    # Configuration errors: the component's YAML, when definitions load.
    "source-table": Case(
        "No such resource 'charges'. Did you mean 'charge'? Valid objects: …",
        COMPONENT + "source.options.source_table: No such resource 'customers'. Did you mean 'customer'? Valid objects:",
        yaml_edits=[("source_table: customer", "source_table: customers")],
    ),
    "mode-incremental": Case(
        "Loading mode 'incremental' must be combined with 'sync': use 'charge:sync:incremental'",
        COMPONENT + "source.options.source_table: Loading mode 'incremental' must be combined with 'sync': use "
        "'customer:sync:incremental'",
        yaml_edits=[("source_table: customer", "source_table: customer:incremental")],
    ),
    "mode-unknown": Case(
        "Unknown loading mode 'x' in source_table 'charge:x'",
        COMPONENT + "source.options.source_table: Unknown loading mode 'x' in source_table 'customer:x'",
        yaml_edits=[("source_table: customer", "source_table: customer:x")],
    ),
    "source-table-empty": Case(
        "source_table is empty",
        COMPONENT + "source.options.source_table: source_table is empty",
        yaml_edits=[("source_table: customer", "source_table: ' '")],
    ),
    "source-table-no-object": Case(
        "has no object name before ':'",
        COMPONENT + "source.options.source_table: source_table ':sync' has no object name before ':'",
        yaml_edits=[("source_table: customer", "source_table: ':sync'")],
    ),
    "strategy-unknown": Case(
        "Unknown incremental_strategy 'x'; use one of: merge, replace, append.",
        COMPONENT + "sink.options.incremental_strategy: Unknown incremental_strategy 'upsert'; use one of: merge, "
        "replace, append.",
        yaml_edits=[("incremental_strategy: merge", "incremental_strategy: upsert")],
    ),
    "replace-incremental": Case(
        "replace with 'charge:sync:incremental' would swap the table for only the new rows",
        COMPONENT + "sink.options.incremental_strategy: replace with 'customer:sync:incremental' would swap the table "
        "for only the new rows",
        yaml_edits=[("source_table: customer\n", "source_table: customer:sync:incremental\n"),
                    ("incremental_strategy: merge", "incremental_strategy: replace")],
    ),
    "append-incremental": Case(
        "append for 'charge' in sync:incremental mode would duplicate rows",
        COMPONENT + "sink.options.incremental_strategy: append for 'customer' in sync:incremental mode would "
        "duplicate rows",
        yaml_edits=[("source_table: customer\n", "source_table: customer:sync:incremental\n"),
                    ("incremental_strategy: merge", "incremental_strategy: append")],
    ),
    "address-scheme": Case(
        "The Stripe source address must start with 'stripe://'",
        FIRST + "source.address: The Stripe source address must start with 'stripe://'",
        yaml_edits=address("https://api.stripe.com"),
    ),
    "address-host": Case(
        "must have no host or path",
        FIRST + "source.address: The stripe:// address must have no host or path",
        yaml_edits=address("stripe://api.stripe.com/?api_key={STRIPE_API_KEY}"),
    ),
    "address-invalid": Case(
        "is not a valid URI",
        FIRST + "source.address: The Stripe source address is not a valid URI",
        yaml_edits=address("'stripe://[::1?api_key={STRIPE_API_KEY}'"),
    ),
    "parameter-unknown": Case(
        "Unknown parameter 'x' in the stripe:// address",
        FIRST + "source.address: Unknown parameter 'apikey' in the stripe:// address",
        yaml_edits=address("stripe://?apikey={STRIPE_API_KEY}"),
    ),
    "parameter-twice": Case(
        "appears more than once",
        FIRST + "source.address: Parameter api_key appears more than once in the stripe:// address",
        yaml_edits=address("stripe://?api_key={STRIPE_API_KEY}&api_key={STRIPE_API_KEY}"),
    ),
    "parameter-empty": Case(
        "has no value",
        FIRST + "source.address: Parameter stripe_account in the stripe:// address has no value",
        yaml_edits=address("stripe://?api_key={STRIPE_API_KEY}&stripe_account="),
    ),
    "account": Case(
        "stripe_account 'x' is not a Stripe account id",
        FIRST + "source.address: stripe_account 'x' is not a Stripe account id",
        yaml_edits=address("stripe://?api_key={STRIPE_API_KEY}&stripe_account=x"),
    ),
    "api-base": Case(
        "api_base must be an http(s) URL …",
        FIRST + "source.address: api_base must be an http(s) URL",
        yaml_edits=address("stripe://?api_key={STRIPE_API_KEY}&api_base=ftp://x"),
    ),
    "literal-key": Case(
        "Stripe pipeline 'x', <attribute>: …",
        FIRST + "source.address: the address contains the API key sk_test_…9876 itself",
        yaml_edits=address("stripe://?api_key=sk_test_LiteralKeyInYaml9876"),
    ),
    "warehouse-url": Case(
        "The warehouse address mysql://… is not a PostgreSQL URL",
        "The warehouse address mysql://… is not a PostgreSQL URL; set NILUS_WAREHOUSE_URL",
        env={"NILUS_WAREHOUSE_URL": "mysql://nilus@db.internal/nilus"},
    ),
    "warehouse-unparsable": Case(
        "The warehouse address in NILUS_WAREHOUSE_URL cannot be parsed (…)",
        "The warehouse address in NILUS_WAREHOUSE_URL cannot be parsed (",
        env={"NILUS_WAREHOUSE_URL": "postgresql://nilus:NilusWarehousePassword99@[::1/nilus"},
    ),
    "warehouse-unreachable": Case(
        "Could not connect to the PostgreSQL warehouse at postgresql://user@host:port/db (…)",
        "Could not connect to the PostgreSQL warehouse at postgresql://nilus@127.0.0.1:{closed}/nilus (connection failed",
        env={"NILUS_WAREHOUSE_URL": "postgresql://nilus:NilusWarehousePassword99@127.0.0.1:{closed}/nilus"},
    ),
    # Configuration errors: settings, checked when the run (or the location) starts, before any request.
    **{
        f"stripe-{field}": Case(
            "StripeResource.<field> is <value>, but it must be …",
            f"StripeResource.{field} is {shown}, but it must be {rule}",
            stripe_config={field: value},
        )
        for field, value, shown, rule in [
            ("max_requests_per_second", -5, "-5", "greater than 0"),
            ("max_requests_per_second_per_endpoint", 0, "0", "greater than 0"),
            ("max_in_flight", 0, "0", "at least 1"),
            ("workers_per_object", 0, "0", "at least 1"),
            ("max_network_retries", -1, "-1", "at least 0"),
            ("max_rate_limit_retries", -1, "-1", "at least 0"),
            ("max_retry_seconds", -1, "-1", "at least 0"),
            ("request_timeout_seconds", 0, "0", "greater than 0"),
        ]
    },
    "stripe-rate-zero": Case(
        "StripeResource.<field> is <value>, but it must be …",
        "StripeResource.max_requests_per_second is 0, but it must be greater than 0",
        stripe_config={"max_requests_per_second": 0},
    ),
    "stripe-uri-literal-key": Case(
        "StripeResource.uri: the address contains the API key sk_test_…abcd itself …",
        "StripeResource.uri: the address contains the API key sk_test_…9876 itself, which Dagster would store",
        stripe_config={"uri": "stripe://?api_key=sk_test_LiteralKeyInYaml9876"},
    ),
    "api-key-in-run-config": Case(
        "StripeResource.api_key: the run config holds the API key itself …",
        "StripeResource.api_key: the run config holds the API key itself, which Dagster stores with the run and "
        "shows; give it as {env: STRIPE_API_KEY}",
        stripe_config={"api_key": "sk_test_RunConfigKeyInClear5544"},
    ),
    "budget-url": Case(
        "The request budget address mysql://… is not a PostgreSQL URL",
        "The request budget address mysql://… is not a PostgreSQL URL; set StripeResource.budget_url / NILUS_BUDGET_URL",
        env={"NILUS_BUDGET_URL": "mysql://nilus:NilusBudgetPassword77@db.internal/nilus"},
    ),
    "budget-url-unparsable": Case(
        "The request budget address … cannot be parsed (…)",
        "The request budget address (an address that is not a PostgreSQL connection URL) cannot be parsed (",
        env={"NILUS_BUDGET_URL": "postgresql://nilus:NilusBudgetPassword77@[bad/nilus"},
    ),
    "stripe-api-base": Case(
        "StripeResource.api_base: api_base must be an http(s) URL …",
        "StripeResource.api_base: api_base must be an http(s) URL",
        stripe_config={"api_base": "not-a-url"},
    ),
    "api-base-env": Case(
        "STRIPE_API_BASE must be an http(s) URL …",
        "STRIPE_API_BASE must be an http(s) URL",
        env={"STRIPE_API_BASE": "ftp://files.example.com"},
    ),
    "api-base-env-text": Case(
        "STRIPE_API_BASE must be an http(s) URL …",
        "STRIPE_API_BASE must be an http(s) URL",
        env={"STRIPE_API_BASE": "not-a-url"},
    ),
    "lookback": Case(
        "The run config's lookback_seconds is <value>, but it must be at least 0",
        "The run config's lookback_seconds is -5, but it must be at least 0",
        step_config={"lookback_seconds": -5},
    ),
    "modes-unknown": Case(
        "The run config's modes: No such resource 'chargex'. Did you mean 'charge'? …",
        "The run config's modes: No such resource 'chargex'. Did you mean 'charge'? Valid objects:",
        step_config={"modes": {"chargex": "sync"}},
    ),
    "modes-mode": Case(
        "The run config's modes: unknown loading mode 'x' for 'charge' …",
        "The run config's modes: unknown loading mode 'incremental' for 'charge'; use one of:",
        step_config={"modes": {"charge": "incremental"}},
    ),
    "duckdb-threads": Case(
        "NILUS_DUCKDB_THREADS='abc' is not a whole number >= 1",
        "NILUS_DUCKDB_THREADS='abc' is not a whole number >= 1",
        env={"NILUS_DUCKDB_THREADS": "abc"},
    ),
    "duckdb-memory": Case(
        "NILUS_DUCKDB_MEMORY_LIMIT='x' is not a memory size DuckDB accepts (…)",
        "NILUS_DUCKDB_MEMORY_LIMIT='lots' is not a memory size DuckDB accepts (",
        env={"NILUS_DUCKDB_MEMORY_LIMIT": "lots"},
    ),
    "lock-wait": Case(
        "NILUS_DUCKDB_LOCK_WAIT_SECONDS='x' is not a number of seconds",
        "NILUS_DUCKDB_LOCK_WAIT_SECONDS='soon' is not a number of seconds",
        env={"NILUS_DUCKDB_LOCK_WAIT_SECONDS": "soon"},
    ),
    "spool-min-free": Case(
        "NILUS_SPOOL_MIN_FREE_MB='x' is not a number of megabytes >= 0",
        "NILUS_SPOOL_MIN_FREE_MB='-5' is not a number of megabytes >= 0",
        env={"NILUS_SPOOL_MIN_FREE_MB": "-5"},
    ),
    "spool-dir": Case(
        "The spool folder … (NILUS_SPOOL_DIR) does not exist",
        "The spool folder {work}/no-such-folder (NILUS_SPOOL_DIR) does not exist",
        env={"NILUS_SPOOL_DIR": "{work}/no-such-folder"},
    ),
    "warehouse-under-file": Case(
        "The warehouse path … (NILUS_DUCKDB_PATH) is under …, which is a file, not a folder",
        "The warehouse path {work}/notes.txt/warehouse.duckdb (NILUS_DUCKDB_PATH) is under {work}/notes.txt, "
        "which is a file, not a folder",
        env={"NILUS_DUCKDB_PATH": "{work}/notes.txt/warehouse.duckdb"}, files=("notes.txt",),
    ),
    "warehouse-folder": Case(
        "The warehouse path … (NILUS_DUCKDB_PATH) is a folder, not a DuckDB file",
        "The warehouse path {work} (NILUS_DUCKDB_PATH) is a folder, not a DuckDB file",
        env={"NILUS_DUCKDB_PATH": "{work}"},
    ),
    "warehouse-read-only": Case(
        "The warehouse path … (NILUS_DUCKDB_PATH) cannot be written (…)",
        "The warehouse path {work}/frozen/warehouse.duckdb (NILUS_DUCKDB_PATH) cannot be written (",
        env={"NILUS_DUCKDB_PATH": "{work}/frozen/warehouse.duckdb"}, read_only="frozen",
    ),
    "partitions-start": Case(
        "NILUS_PARTITIONS_START='x' is not a date",
        "NILUS_PARTITIONS_START='2024-13-01' is not a date; set NILUS_PARTITIONS_START to the first UTC day",
        env={"NILUS_PARTITIONS_START": "2024-13-01"}, location=["-m", "nilus_stripe_assets.daily"],
        select="stripe/webhook_endpoint",
    ),
    "stripe-accounts": Case(
        "NILUS_STRIPE_ACCOUNTS: stripe_account 'x' is not a Stripe account id …",
        "NILUS_STRIPE_ACCOUNTS: stripe_account 'acct-2' is not a Stripe account id",
        env={"NILUS_STRIPE_ACCOUNTS": "acct_1Good,acct-2"}, location=CONNECT_LOCATION,
    ),
}

# Canned answers of a server that speaks like Stripe for the cases the emulator has no switch for.
CANNED = {
    "403acct": (403, {"error": {"type": "invalid_request_error", "message": (
        "The provided key 'sk_test_********ator' does not have access to account 'acct_9Zz' (or that account "
        "does not exist). Application access may have been revoked.")}}),
    "404html": (404, "<html><body><h1>404 Not Found</h1></body></html>"),
    "404missing": (404, {"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "customer",
                                   "message": "No such customer: 'cus_123'"}}),
    "400": (400, {"error": {"type": "invalid_request_error", "code": "parameter_unknown", "param": "created[gt]",
                            "message": "Received unknown parameter: created[gt]"}}),
}


class _Canned(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        status, body = CANNED[self.path.strip("/").split("/")[0]]
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
        self.send_header("Request-Id", "req_CliTest123")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _instance(home: Path) -> None:
    """A DAGSTER_HOME with the repository's logging settings (storage stays in `home`)."""
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    home.mkdir()
    (home / "dagster.yaml").write_text(
        yaml.safe_dump({"telemetry": {"enabled": False}, "python_logs": settings["python_logs"]})
    )


def _project(root: Path, case: Case) -> Path:
    project = root / "project"
    shutil.copytree(REPO / "examples", project, ignore=shutil.ignore_patterns("__pycache__"))
    defs = project / "nilus_pipelines" / "defs.yaml"
    text = defs.read_text()
    customer = text.index("name: stripe-customer-batch")  # other attributes: the second pipeline only
    head, tail = text[:customer], text[customer:]
    for old, new in case.yaml_edits:
        if old in ADDRESSES:
            head, tail = head.replace(old, new), tail.replace(old, new)
        else:
            assert old in tail, old
            tail = tail.replace(old, new, 1)
    defs.write_text(head + tail)
    return project / "definitions.py"


def _read_only(folder: Path, command: list) -> list:
    """`command` run with `folder` mounted as a read-only filesystem (a private mount namespace)."""
    folder.mkdir()
    mount = f"mount -t tmpfs -o ro tmpfs {shlex.quote(str(folder))} && exec \"$@\""
    return ["unshare", "-m", "sh", "-c", mount, "sh", *command]


def _can_mount() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True
    ).returncode == 0


CAN_MOUNT = _can_mount()


def _run(name: str, case: Case, root: Path, urls: dict) -> str:
    work = root / name
    work.mkdir()
    home = work / "dagster_home"
    _instance(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_"))}
    # A configuration error is found before any request: such a case talks to a server of its own path
    # (`/<case>/v1/…`), whose requests the last test counts (there must be none).
    base = urls["quiet"] + f"/{name}" if case.doc in CONFIGURATION_ERRORS else urls[case.server] + case.path
    env.update(DAGSTER_HOME=str(home), NILUS_DUCKDB_PATH=str(work / "warehouse.duckdb"), TMPDIR=str(work),
               STRIPE_API_BASE=base)
    if case.key is not None:
        env["STRIPE_API_KEY"] = case.key
    env.update({k: v.replace("{closed}", urls["closed_port"]).replace("{work}", str(work)) for k, v in case.env.items()})
    for name_of_file in case.files:
        (work / name_of_file).write_text("not a folder\n")
    if case.warehouse_sql:
        with duckdb.connect(str(work / "warehouse.duckdb")) as con:
            con.execute(case.warehouse_sql)
    target = ["-f", str(_project(work, case))] if case.yaml_edits else case.location
    select = "finance/stripe_customers" if case.yaml_edits else case.select
    command = [DAGSTER, "asset", "materialize", *target, "--select", select]
    if case.partition:
        instance = dg.DagsterInstance.from_config(str(home))
        instance.add_dynamic_partitions("stripe_accounts", [case.partition])
        instance.dispose()
        command += ["--partition", case.partition]
    config = {}
    if case.stripe_config:
        config["resources"] = {"stripe": {"config": case.stripe_config}}
    if case.step_config:
        config["ops"] = {"stripe_objects": {"config": case.step_config}}
    if config:
        command += ["--config-json", json.dumps(config)]
    if case.read_only:
        if not CAN_MOUNT:
            return NOT_RUN
        command = _read_only(work / case.read_only, command)
    proc = subprocess.run(command, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=240)
    assert proc.returncode != 0, proc.stdout[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_failures")
    canned = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    threading.Thread(target=canned.serve_forever, daemon=True).start()
    emulators = {
        "emulator": dict(),
        "limited": dict(global_rate=0.01),  # one request, then 429s without Stripe-Should-Retry
        "refusing": dict(global_rate=0.01, rate_limit_should_retry=False),
        "failing": dict(error_rate=1.0),
        "cut": dict(),
        "connect": dict(accounts=[REVOKED_ACCOUNT]),
        "quiet": dict(),  # configuration errors: must receive no request at all
    }
    started = {
        name: StripeEmulator(scale=0.5, seed=3, restricted_keys={RESTRICTED: {"customer"}, CHARGES_ONLY: {"charge"}},
                             **switches)
        for name, switches in emulators.items()
    }
    try:
        for emu in started.values():
            emu.start()
        started["cut"].configure(malformed=["GET /v1/charges"])  # answers cut in half: not JSON
        started["connect"].revoke(REVOKED_ACCOUNT)
        urls = {name: emu.url for name, emu in started.items()}
        urls["canned"] = f"http://127.0.0.1:{canned.server_address[1]}"
        urls["closed"] = f"http://127.0.0.1:{_closed_port()}"
        urls["closed_port"] = str(_closed_port())
        # Each case is a process that spends ~2 s importing Dagster: run a few at once.
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {name: pool.submit(_run, name, case, root, urls) for name, case in CASES.items()}
            results = {name: future.result() for name, future in futures.items()}
        results[QUIET_STATS] = started["quiet"].stats()["endpoints"]
        results[ROOT] = root
        yield results
    finally:
        for emu in started.values():
            emu.stop()
        canned.shutdown()
        canned.server_close()


def _lines(output: str) -> list[str]:
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if NOTICE.search(line):  # Dagster's own notice about its CLI, and the source line it quotes
            del lines[i : i + 2]
            break
    return [line for line in lines if line.strip()]


@pytest.mark.parametrize("name", list(CASES))
def test_first_line_is_the_documented_message_and_no_traceback(outputs, name):
    output = outputs[name]
    if output is NOT_RUN:
        pytest.skip("mounting a read-only filesystem needs `unshare -m` (root, or mount rights)")
    lines = _lines(output)
    assert lines, output
    if name == "some-objects":
        # The loaded object reports as it finishes and the failed one says why at once; the step's failure
        # then sums up with one line per failed object.
        failure = next(i for i, line in enumerate(lines) if "Stripe objects failed" in line)
        lines = lines[failure:]
        assert lines[1].startswith("Stripe refused to list 'charge' (403 Forbidden)"), lines
    first = LOG_PREFIX.sub("", lines[0])
    expected = CASES[name].expected
    if "{closed}" in expected:
        expected = expected.split("{closed}")[0]
    expected = expected.replace("{work}", str(outputs[ROOT] / name))
    assert first.startswith(expected), output[-3000:]
    assert "Traceback" not in output and "Stack Trace" not in output, output[-3000:]
    assert not re.search(r'^\s+File "', output, re.M), output[-3000:]
    assert "Warning" not in "\n".join(lines), output[-3000:]
    for secret in (BAD_KEY, RESTRICTED, CHARGES_ONLY, "PublishableKey12345678", "LiteralKeyInYaml9876", "NilusWarehousePassword99",
                   "NilusBudgetPassword77", "sk_test_RunConfigKeyInClear5544"):
        assert secret[8:-4] not in output


def _readme_messages(start: str = "## Troubleshooting", end: str = "Other symptoms:") -> set[str]:
    """The first backticked text of each message row in the Troubleshooting tables for errors (between
    `start` and `end`)."""
    text = README.read_text()
    section = text[text.index(start): text.index(end, text.index(start))]
    messages = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            cell = row.split("|")[1]
            messages.update(re.findall(r"`([^`]+)`", cell))
    return messages


CONFIGURATION_ERRORS = _readme_messages("Configuration errors, raised before any request", "Other symptoms:")
QUIET_STATS, ROOT = "(requests to the quiet server)", "(root)"
NOT_RUN = "(not run on this machine)"


def test_the_cases_cover_every_documented_message():
    documented = _readme_messages()
    covered = {case.doc for case in CASES.values()}
    assert documented - covered == set(), "README rows without a CLI case"
    assert covered - documented == set(), "cases whose message the README does not document"


def test_configuration_errors_send_no_request(outputs):
    """Every documented configuration error (the README's second table) is found before the first request."""
    configuration = [name for name, case in CASES.items() if case.doc in CONFIGURATION_ERRORS]
    assert len(configuration) > 30, configuration
    requested = {endpoint: row["requests"] for endpoint, row in outputs[QUIET_STATS].items()}
    assert requested == {}, requested
