"""The Stripe key never reaches anything Dagster writes or prints.

Real `dagster asset materialize` processes (default multiprocess executor) against the emulator over HTTP,
with the key only in the environment, as in production: a successful and a failing run of the package's
code location, and a successful run of the example component project (whose address uses Dagster's
`{{ env.STRIPE_API_KEY }}` templating). Then the raw key is searched for in the CLI output, in the bytes of
every file the runs left (DAGSTER_HOME: run/event sqlite DBs, compute logs; TMPDIR; the warehouse), and in
what the instance stores compressed or structured: each run's config, job and execution plan snapshots and
event log entries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import SMALL, count

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
GOOD_KEY = "sk_test_NilusSecretQ7x5Z3w1Yv9GOOD"  # distinctive, accepted by the emulator
BAD_KEY = "sk_test_NilusRevokedR8t2V6u4Nabcd"  # well-formed, rejected (401)
BAD_MASKED = "sk_test_…abcd"
BAD_MASKED_JSON = json.dumps(BAD_MASKED)[1:-1]  # as stored in JSON: sk_test_\u2026abcd


def _fragments(key: str) -> list[bytes]:
    """The key and its secret middle (a masked key shows only the prefix and the last 4 characters)."""
    return [key.encode(), key[8:-4].encode()]


def _leaks(blob: bytes | str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [f.decode() for key in (GOOD_KEY, BAD_KEY) for f in _fragments(key) if f in data]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("secrets")
    home, tmp = root / "dagster_home", root / "tmp"
    home.mkdir()
    tmp.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    database = root / "warehouse.duckdb"
    outputs = {}
    with StripeEmulator(scale=SMALL, seed=13, api_keys=[GOOD_KEY]) as emu:
        base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_"))
        }
        base_env.update(
            STRIPE_API_BASE=emu.url,
            NILUS_DUCKDB_PATH=str(database),
            DAGSTER_HOME=str(home),
            TMPDIR=str(tmp),
            PYTHONPATH=str(REPO),
        )
        runs = {
            "ok": (GOOD_KEY, ["-m", "nilus_stripe_assets.definitions", "--select", "stripe/customer"]),
            "401": (BAD_KEY, ["-m", "nilus_stripe_assets.definitions", "--select", "stripe/customer"]),
            "component": (GOOD_KEY, ["-f", str(REPO / "examples" / "definitions.py"), "--select", "finance/stripe_customers"]),
        }
        for name, (key, args) in runs.items():
            proc = subprocess.run(
                [DAGSTER, "asset", "materialize", *args],
                env={**base_env, "STRIPE_API_KEY": key},
                cwd=root,
                capture_output=True,
                timeout=180,
            )
            outputs[name] = proc
        expected_customers = emu.counts()["customer"]
    return {"root": root, "home": home, "database": str(database), "outputs": outputs, "customers": expected_customers}


def test_the_runs_did_what_they_should(cli_runs):
    out = cli_runs["outputs"]
    assert out["ok"].returncode == 0, out["ok"].stderr.decode()[-2000:]
    assert out["component"].returncode == 0, out["component"].stderr.decode()[-2000:]
    assert out["401"].returncode != 0
    assert count(cli_runs["database"], "stripe.customer") == cli_runs["customers"]
    assert count(cli_runs["database"], "finance.stripe_customers") == cli_runs["customers"]
    # The failure is explained with the key masked.
    failed = out["401"].stdout.decode() + out["401"].stderr.decode()
    assert f"Stripe rejected the API key {BAD_MASKED} (401 Invalid API Key) while loading 'customer'" in failed


def test_no_key_in_cli_output(cli_runs):
    for name, proc in cli_runs["outputs"].items():
        assert _leaks(proc.stdout) == [], f"{name}: stdout"
        assert _leaks(proc.stderr) == [], f"{name}: stderr"


def test_no_key_in_any_file_the_runs_left(cli_runs):
    files = [p for p in cli_runs["root"].rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "runs.db" in names and any(p.suffix == ".err" for p in files), "event log DBs and compute logs exist"
    leaks = {str(p.relative_to(cli_runs["root"])): _leaks(p.read_bytes()) for p in files}
    assert {p: found for p, found in leaks.items() if found} == {}
    # The failure is in the run's event log DB, masked.
    assert any(BAD_MASKED_JSON.encode() in p.read_bytes() for p in files if p.suffix == ".db")


def test_no_key_in_run_config_snapshots_or_event_logs(cli_runs, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(cli_runs["home"]))
    instance = dg.DagsterInstance.get()
    try:
        runs = instance.get_runs()
        assert len(runs) == 3
        masked_seen = False
        for run in runs:
            assert _leaks(repr(run.run_config)) == [], run.run_id
            assert _leaks(repr(run.tags)) == [], run.run_id
            # Snapshots are stored compressed, so the byte search above cannot see into them.
            job_snapshot = instance.get_job_snapshot(run.job_snapshot_id)
            assert _leaks(dg.serialize_value(job_snapshot)) == [], run.run_id
            plan_snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            assert _leaks(dg.serialize_value(plan_snapshot)) == [], run.run_id
            for entry in instance.all_logs(run.run_id):
                serialized = dg.serialize_value(entry)
                assert _leaks(serialized) == [], (run.run_id, entry.dagster_event_type)
                masked_seen = masked_seen or BAD_MASKED_JSON in serialized
        assert masked_seen, "the failing run's events explain the 401 with the masked key"
        # The component's resource is configured with the placeholder, which is what the UI shows.
        component_run = next(r for r in runs if r.job_name == "__ASSET_JOB" and "finance" in repr(r.asset_selection))
        snapshot_text = dg.serialize_value(instance.get_job_snapshot(component_run.job_snapshot_id))
        assert "api_key={STRIPE_API_KEY}" in snapshot_text
    finally:
        instance.dispose()


# ---- Passwords in addresses, and a key written into run config (issue 20, item 5) ----------------------------
BUDGET_PASSWORD = "NilusBudgetPw41xQ"
WAREHOUSE_PASSWORD = "NilusWarehousePw52yR"
UNREACHABLE_PASSWORD = "NilusUnreachablePw63zS"
LITERAL_KEY = "sk_test_NilusLiteralRunConfig74wT"
RUN_CONFIG_KEY = "sk_test_NilusApiKeyRunConfig85uV"
RUN_CONFIG_PASSWORD = "NilusRunConfigPw96vW"
SECRETS = (BUDGET_PASSWORD, WAREHOUSE_PASSWORD, UNREACHABLE_PASSWORD)
WRITTEN = (LITERAL_KEY[8:-4], RUN_CONFIG_KEY[8:-4], RUN_CONFIG_PASSWORD)  # typed into run config: see below


@pytest.fixture(scope="module")
def secret_runs(tmp_path_factory):
    """Failing CLI runs in a fresh DAGSTER_HOME with the repository's logging settings (one-line failures)."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import yaml

    root = tmp_path_factory.mktemp("url_secrets")
    home = root / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, "python_logs": settings["python_logs"]}))
    dg.DagsterInstance.from_config(str(home)).dispose()  # created once: parallel first runs could race on its schema
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    runs = {
        "budget-unparsable": ({"NILUS_BUDGET_URL": f"postgresql://nilus:{BUDGET_PASSWORD}@[bad/nilus"}, None),
        "warehouse-unparsable": ({"NILUS_WAREHOUSE_URL": f"postgresql://nilus:{WAREHOUSE_PASSWORD}@[::1/nilus"}, None),
        "budget-unreachable": ({"NILUS_BUDGET_URL": f"postgresql://nilus:{UNREACHABLE_PASSWORD}@127.0.0.1:{closed}/nilus"}, None),
        "literal-key": ({}, {"resources": {"stripe": {"config": {"uri": f"stripe://?api_key={LITERAL_KEY}"}}}}),
        "api-key": ({}, {"resources": {"stripe": {"config": {"api_key": RUN_CONFIG_KEY}}}}),
        "warehouse-url": ({}, {"resources": {"duckdb": {"config": {
            "database": str(root / "w.duckdb"), "url": f"postgresql://nilus:{RUN_CONFIG_PASSWORD}@127.0.0.1:{closed}/n"}}}}),
    }
    with StripeEmulator(scale=SMALL, seed=13, api_keys=[GOOD_KEY]) as emu:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_"))}
        base_env.update(STRIPE_API_BASE=emu.url, STRIPE_API_KEY=GOOD_KEY, NILUS_DUCKDB_PATH=str(root / "w.duckdb"),
                        DAGSTER_HOME=str(home), TMPDIR=str(root))

        def run(name):
            env, config = runs[name]
            command = [DAGSTER, "asset", "materialize", "-m", "nilus_stripe_assets.definitions", "--select", "stripe/charge"]
            if config:
                command += ["--config-json", json.dumps(config)]
            return subprocess.run(command, env={**base_env, **env}, cwd=root, capture_output=True, text=True, timeout=240)

        with ThreadPoolExecutor(max_workers=3) as pool:
            outputs = dict(zip(runs, pool.map(run, runs)))
        requests = emu.stats()["total"]["requests"]
    return {"home": home, "outputs": outputs, "requests": requests}


def test_each_run_fails_with_one_masked_line_and_sends_no_request(secret_runs):
    expected = {
        "budget-unparsable": "The request budget address (an address that is not a PostgreSQL connection URL) cannot be parsed",
        "warehouse-unparsable": "The warehouse address in NILUS_WAREHOUSE_URL cannot be parsed",
        "budget-unreachable": "The request budget database postgresql://nilus@127.0.0.1:",
        "literal-key": "StripeResource.uri: the address contains the API key sk_test_…74wT itself",
        "api-key": "StripeResource.api_key: the run config holds the API key itself, which Dagster stores",
        "warehouse-url": "WarehouseResource.url: the run config holds an address with a password, which Dagster stores",
    }
    for name, proc in secret_runs["outputs"].items():
        assert proc.returncode != 0, name
        output = proc.stdout + proc.stderr
        assert expected[name] in output, (name, output[-2000:])
        assert "Traceback" not in output and "Stack Trace" not in output, (name, output[-2000:])
    assert secret_runs["requests"] == 0


def test_no_password_or_written_key_in_the_output_or_anything_dagster_stored(secret_runs):
    home = secret_runs["home"]
    for name, proc in secret_runs["outputs"].items():
        output = proc.stdout + proc.stderr
        assert [s for s in (*SECRETS, *WRITTEN) if s in output] == [], name
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any(p.suffix in (".err", ".out") for p in files)
    for path in files:
        data = path.read_bytes()
        assert [s for s in SECRETS if s.encode() in data] == [], path
        if path.name != "runs.db":  # see below
            assert [s for s in WRITTEN if s.encode() in data] == [], path
    # Dagster records a run's config as the user gave it (runs.db) before any code of the package runs; what
    # the package controls (every event, the failure, the logs) never holds the key.
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        runs = instance.get_runs()
        assert len(runs) == 6
        for run in runs:
            for entry in instance.all_logs(run.run_id):
                serialized = dg.serialize_value(entry)
                assert [s for s in (*SECRETS, *WRITTEN) if s in serialized] == [], entry.dagster_event_type
    finally:
        instance.dispose()
