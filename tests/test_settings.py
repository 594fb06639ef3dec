"""Every setting is checked before the first request, and a wrong one is one line naming it and the fix.

In-process, without a server: the resources and the run config refuse out-of-range values as Dagster builds
them (a `dg.Failure` whose description is the line), and each variable's parser says what is wrong with it.
`tests/test_cli_failures.py` runs the same mistakes through the real CLI and counts the requests (none).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from nilus_stripe_assets.dagster_adapter.duckdb_resource import WarehouseResource
from nilus_stripe_assets.dagster_adapter.factory import StripeLoadConfig
from nilus_stripe_assets.dagster_adapter.resources import StripeResource
from nilus_stripe_assets.engine.settings import check_environment
from nilus_stripe_assets.source.config import ConfigError
from nilus_stripe_assets.staging import disk
from nilus_stripe_assets.staging.parquet import MEMORY_LIMIT_ENV, THREADS_ENV
from nilus_stripe_assets.warehouse.lock import LOCK_WAIT_ENV, check_database_path, lock_wait_seconds

REPO = Path(__file__).resolve().parents[1]

OUT_OF_RANGE = [
    ("max_requests_per_second", 0, "greater than 0"),
    ("max_requests_per_second", -5, "greater than 0"),
    ("max_requests_per_second_per_endpoint", 0, "greater than 0"),
    ("max_in_flight", 0, "at least 1"),
    ("workers_per_object", 0, "at least 1"),
    ("max_network_retries", -1, "at least 0"),
    ("max_rate_limit_retries", -1, "at least 0"),
    ("max_retry_seconds", -1, "at least 0"),
    ("request_timeout_seconds", 0, "greater than 0"),
]


def _refused(build) -> str:
    with pytest.raises(dg.Failure) as failure:
        build()
    text = failure.value.description
    assert "\n" not in text and "Traceback" not in text, text
    assert failure.value.allow_retries is False
    return text


@pytest.mark.parametrize("field,value,rule", OUT_OF_RANGE)
def test_stripe_resource_refuses_each_out_of_range_field_in_one_line(field, value, rule):
    text = _refused(lambda: StripeResource(**{field: value}))
    assert text.startswith(f"StripeResource.{field} is {value}"), text  # -5 or -5.0: as the field's type has it
    assert f"but it must be {rule}; set it to such a value or leave it out" in text, text


def test_stripe_resource_defaults_and_edges_are_accepted():
    StripeResource()
    StripeResource(max_in_flight=1, workers_per_object=1, max_network_retries=0, max_rate_limit_retries=0,
                   max_retry_seconds=0, request_timeout_seconds=0.5, max_requests_per_second=0.1,
                   api_base="http://127.0.0.1:12111", stripe_account="acct_1A", connect_budget="account")


@pytest.mark.parametrize("fields,expected", [
    ({"api_base": "ftp://files.example.com"}, "StripeResource.api_base: api_base must be an http(s) URL"),
    ({"api_base": "http://user:SecretPw1@host"}, "StripeResource.api_base: api_base must be an http(s) URL"),
    ({"stripe_account": "acc_1"}, "StripeResource.stripe_account: stripe_account 'acc_1' is not a Stripe account id"),
    ({"connected_accounts": ["acct_1", "x"]}, "StripeResource.connected_accounts: stripe_account 'x' is not"),
    ({"connect_budget": "shared"}, "StripeResource.connect_budget: 'shared' is not one of platform, account"),
    ({"uri": "stripe://?api_key=sk_test_LiteralKeyInRunConfig42"},
     "StripeResource.uri: the address contains the API key sk_test_…ig42 itself"),
])
def test_stripe_resource_refuses_wrong_text_settings_without_echoing_them(fields, expected):
    text = _refused(lambda: StripeResource(**fields))
    assert text.startswith(expected), text
    assert "SecretPw1" not in text and "LiteralKeyInRunConfig" not in text


def test_stripe_resource_checks_its_environment_when_a_run_starts(monkeypatch):
    resource = StripeResource()
    monkeypatch.setenv("STRIPE_API_BASE", "not-a-url")
    with pytest.raises(ConfigError, match=r"^STRIPE_API_BASE must be an http\(s\) URL"):
        resource.check_environment()
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:1")
    resource.check_environment()
    StripeResource(api_base="http://127.0.0.1:2").check_environment()  # the field wins over the variable


@pytest.mark.parametrize("config,expected", [
    ({"lookback_seconds": -5}, "The run config's lookback_seconds is -5, but it must be at least 0"),
    ({"modes": {"chargex": "sync"}}, "The run config's modes: No such resource 'chargex'. Did you mean 'charge'?"),
    ({"modes": {"charges": "sync"}}, "The run config's modes: No such resource 'charges'. Did you mean 'charge'?"),
    ({"modes": {"charge": "fast"}}, "The run config's modes: unknown loading mode 'fast' for 'charge'"),
    ({"mode": "incremental"}, "The run config's mode: unknown loading mode 'incremental'"),
])
def test_run_config_is_checked_with_the_closest_object_named(config, expected):
    assert _refused(lambda: StripeLoadConfig(**config)).startswith(expected)


def test_run_config_accepts_what_the_readme_shows():
    StripeLoadConfig(mode="sync:incremental", modes={"coupon": "sync"}, lookback_seconds=0, capture_changes=False)


def test_warehouse_lock_wait_and_path(tmp_path, monkeypatch):
    assert _refused(lambda: WarehouseResource(database=str(tmp_path / "w.duckdb"), lock_wait_seconds=-1)).startswith(
        "WarehouseResource.lock_wait_seconds is -1, but it must be at least 0")
    for bad in ("soon", "-5", "nan", "inf"):
        monkeypatch.setenv(LOCK_WAIT_ENV, bad)
        with pytest.raises(ConfigError, match=f"^{LOCK_WAIT_ENV}="):
            lock_wait_seconds()
    monkeypatch.setenv(LOCK_WAIT_ENV, "0")
    assert lock_wait_seconds() == 0.0

    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(ConfigError, match=r"is under .*notes\.txt, which is a file, not a folder"):
        check_database_path(str(tmp_path / "notes.txt" / "sub" / "w.duckdb"), "NILUS_DUCKDB_PATH")
    with pytest.raises(ConfigError, match=r"is a folder, not a DuckDB file"):
        check_database_path(str(tmp_path), "NILUS_DUCKDB_PATH")
    nested = tmp_path / "new" / "folder" / "w.duckdb"
    check_database_path(str(nested), "NILUS_DUCKDB_PATH")  # fine: the folders are created, no file left behind
    assert nested.parent.is_dir() and list(nested.parent.iterdir()) == []


@pytest.mark.parametrize("variable,value,expected", [
    (THREADS_ENV, "abc", "NILUS_DUCKDB_THREADS='abc' is not a whole number >= 1"),
    (THREADS_ENV, "0", "NILUS_DUCKDB_THREADS='0' is not a whole number >= 1"),
    (MEMORY_LIMIT_ENV, "lots", "NILUS_DUCKDB_MEMORY_LIMIT='lots' is not a memory size DuckDB accepts"),
    (MEMORY_LIMIT_ENV, "512", "NILUS_DUCKDB_MEMORY_LIMIT='512' is not a memory size DuckDB accepts"),
    (MEMORY_LIMIT_ENV, "1GB'; SELECT 1; --", "NILUS_DUCKDB_MEMORY_LIMIT="),
    (disk.MIN_FREE_ENV, "-5", "NILUS_SPOOL_MIN_FREE_MB='-5' is not a number of megabytes >= 0"),
    (disk.MIN_FREE_ENV, "lots", "NILUS_SPOOL_MIN_FREE_MB='lots' is not a number of megabytes >= 0"),
    (disk.SPOOL_DIR_ENV, "/no/such/folder", "The spool folder /no/such/folder (NILUS_SPOOL_DIR) does not exist"),
])
def test_engine_variables_are_checked_before_the_run(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as failure:
        check_environment()
    assert str(failure.value).startswith(expected), str(failure.value)


def test_engine_variables_accept_good_values(monkeypatch, tmp_path):
    for variable, value in ((THREADS_ENV, "2"), (MEMORY_LIMIT_ENV, "512MB"), (disk.MIN_FREE_ENV, "0"),
                            (disk.SPOOL_DIR_ENV, str(tmp_path))):
        monkeypatch.setenv(variable, value)
    assert check_environment() == str(tmp_path)


def test_loading_definitions_creates_no_folder_and_survives_a_path_under_a_file(tmp_path):
    """Definitions load without touching the disk; the path is judged (in one line) when a run starts."""
    (tmp_path / "notes.txt").write_text("a file")
    env = {**os.environ, "NILUS_DUCKDB_PATH": str(tmp_path / "notes.txt" / "warehouse.duckdb")}
    code = "import nilus_stripe_assets.definitions as d; print(len(list(d.defs.assets)))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    env["NILUS_DUCKDB_PATH"] = str(tmp_path / "not" / "yet" / "warehouse.duckdb")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "not").exists()


def test_the_warehouse_path_message_names_where_the_path_came_from(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("a file")
    under_file = str(tmp_path / "notes.txt" / "w.duckdb")
    monkeypatch.setenv("NILUS_DUCKDB_PATH", under_file)
    assert WarehouseResource(database=under_file)._database_setting() == "NILUS_DUCKDB_PATH"
    # A component's sink.address gives the resource another file: the variable is not to blame.
    other = WarehouseResource(database=str(tmp_path / "notes.txt" / "sink.duckdb"))
    with pytest.raises(ConfigError, match=r"\(sink\.address / WarehouseResource\.database\) is under"):
        check_database_path(other.database, other._database_setting())


def test_a_refused_setting_is_one_line_under_the_multiprocess_executor_too(tmp_path):
    """There the resource fails in the step's child process, and the run's failure only quotes it."""
    import yaml

    home = tmp_path / "home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, "python_logs": settings["python_logs"]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), STRIPE_API_KEY="sk_test_emulator", STRIPE_API_BASE="http://127.0.0.1:9",
               NILUS_DUCKDB_PATH=str(tmp_path / "w.duckdb"))
    config = {"execution": {"config": {"multiprocess": {}}}, "resources": {"stripe": {"config": {"max_in_flight": 0}}}}
    dg_cli = str(Path(sys.executable).with_name("dg"))
    proc = subprocess.run([dg_cli, "launch", "--assets", "stripe/charge", "-m", "nilus_stripe_assets.definitions",
                           "--config-json", __import__("json").dumps(config)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output and "Stack Trace" not in output, output[-3000:]
    errors = [line.split(" - dagster - ERROR - ", 1)[1] for line in output.splitlines() if " - dagster - ERROR - " in line]
    assert errors == ["StripeResource.max_in_flight is 0, but it must be at least 1; set it to such a value or leave "
                      "it out (the default is 32)."], output[-3000:]


def test_empty_optional_text_settings_still_mean_not_set():
    resource = StripeResource(api_base="", stripe_account=" ")
    assert resource.api_base is None and resource.stripe_account is None
