"""The production profile (examples/production/) against the test's PostgreSQL cluster: the instance's
storage, pools and run queue live in PostgreSQL, and the example code location runs one step per object in
its own process, every step pacing on the request budget in PostgreSQL. The package's `production` extra
installs the executors the example names, and the location loads with each of them (no cluster needed); a
failure prints as one line through the CLI, as with the repository's dagster.yaml; a first load of five
objects, one process each, into an empty PostgreSQL warehouse succeeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import importlib.metadata
import importlib.util
import re

import dagster as dg
import psycopg
import pytest

from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import query

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "production"
DG = str(Path(sys.executable).with_name("dg"))
BAD_KEY = "sk_test_NilusRevokedR8t2V6u4Nabcd"  # the emulator answers 401 to it


@pytest.fixture
def production_home(tmp_path, postgres, monkeypatch):
    """DAGSTER_HOME holding the example dagster.yaml, its DAGSTER_PG_* variables naming a fresh database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(EXAMPLE / "dagster.yaml", home / "dagster.yaml")
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    for variable, value in {"HOST": "127.0.0.1", "PORT": str(postgres.port), "DB": name, "USERNAME": "postgres",
                            "PASSWORD": ""}.items():  # the test cluster trusts local connections
        monkeypatch.setenv(f"DAGSTER_PG_{variable}", value)
    return home


def test_example_instance_keeps_storage_pools_and_run_queue_in_postgres(production_home):
    # Two instances from the same file stand for two machines.
    with dg.DagsterInstance.from_config(str(production_home)) as one, \
            dg.DagsterInstance.from_config(str(production_home)) as two:
        assert type(one.run_storage).__name__ == "PostgresRunStorage"
        assert type(one.event_log_storage).__name__ == "PostgresEventLogStorage"
        config = one.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 4
        assert config.run_queue_config.max_concurrent_runs == 4
        one.event_log_storage.set_concurrency_slots("stripe_api", 2)  # `dagster instance concurrency set`
        assert two.event_log_storage.get_concurrency_info("stripe_api").slot_count == 2


def test_example_location_runs_a_step_per_object_on_the_postgres_budget(production_home, postgres_url, tmp_path):
    with StripeEmulator(counts={"charge": 800, "customer": 500}, seed=3) as emu:
        env = {**os.environ, "DAGSTER_HOME": str(production_home), "STRIPE_API_KEY": emu.api_key,
               "STRIPE_API_BASE": emu.url, "NILUS_BUDGET_URL": postgres_url,
               "NILUS_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"), "NILUS_SPOOL_DIR": str(tmp_path)}
        env.pop("NILUS_STEP_EXECUTOR", None)
        done = subprocess.run(
            [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-f",
             str(EXAMPLE / "definitions.py"), "--select", "stripe/charge,stripe/customer"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert query(str(tmp_path / "warehouse.duckdb"), "SELECT count(*) FROM stripe.charge")[0][0] == 800
    assert query(str(tmp_path / "warehouse.duckdb"), "SELECT count(*) FROM stripe.customer")[0][0] == 500

    with dg.DagsterInstance.from_config(str(production_home)) as instance:
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        steps = {s.step_key for s in instance.get_run_step_stats(record.dagster_run.run_id)}
        assert {"stripe__charge", "stripe__customer"} <= steps  # one step, so one process, per object
        processes = {e.dagster_event.pid for e in instance.all_logs(record.dagster_run.run_id,
                                                                     of_type=dg.DagsterEventType.STEP_START)}
        assert len(processes) == 2
    with psycopg.connect(postgres_url) as con:
        scopes = [row[0] for row in con.execute("SELECT scope FROM nilus_request_budget ORDER BY scope")]
    assert scopes == ["", "/v1/charges", "/v1/customers"]  # both step processes paced on the shared rows


def test_production_extra_installs_both_executors_pinned_with_dagster():
    requires = importlib.metadata.requires("nilus_stripe_assets")
    dagster_release = importlib.metadata.version("dagster-postgres")  # the dagster-* line of dagster==1.13.27
    for package, extra in (("dagster-docker", "docker"), ("dagster-k8s", "k8s")):
        assert f'{package}=={dagster_release}; extra == "{extra}"' in requires
        assert importlib.metadata.version(package) == dagster_release
        assert f"{package.replace('-', '_')}=={dagster_release}" not in requires  # never without an extra
    production = [r for r in requires if r.endswith('extra == "production"')]
    assert any("nilus_stripe_assets[docker,k8s]" in r for r in production), production
    for package in ("dagster-docker", "dagster-k8s"):
        assert f"dagster=={importlib.metadata.version('dagster')}" in importlib.metadata.requires(package)


def _load_example(monkeypatch, executor: str):
    monkeypatch.setenv("NILUS_STEP_EXECUTOR", executor)
    spec = importlib.util.spec_from_file_location(f"production_{executor}", EXAMPLE / "definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("executor, name, package", [("k8s", "stripe_k8s", "dagster_k8s"),
                                                      ("docker", "stripe_docker", "dagster_docker")])
def test_example_location_loads_with_each_container_executor(monkeypatch, executor, name, package):
    module = _load_example(monkeypatch, executor)
    job = module.defs.resolve_implicit_global_asset_job_def()  # what a code server loads; no cluster needed
    assert job.executor_def.name == name
    assert job.executor_def.executor_creation_fn.__module__.startswith(package)
    resolved = job.executor_def.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    assert resolved.value["config"]["env_vars"] == module.STEP_ENV  # every step finds the key and databases


def test_example_multiprocess_steps_fork_from_a_loaded_server_and_take_run_config(monkeypatch):
    executor = _load_example(monkeypatch, "multiprocess").defs.resolve_implicit_global_asset_job_def().executor_def
    resolved = executor.config_schema.resolve_config({"config": {"max_concurrent": 3}})
    assert resolved.success, resolved.errors
    assert resolved.value["config"]["max_concurrent"] == 3
    assert "nilus_stripe_assets.dagster_adapter.defaults" in \
        resolved.value["config"]["start_method"]["forkserver"]["preload_modules"]


def _cli_env(home: Path, emu, tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_"))}
    env.update({"DAGSTER_HOME": str(home), "STRIPE_API_KEY": emu.api_key, "STRIPE_API_BASE": emu.url,
                "NILUS_SPOOL_DIR": str(tmp_path), "TMPDIR": str(tmp_path), **extra})
    return env


def test_example_failure_prints_one_line_through_the_cli(production_home, postgres_url, tmp_path):
    with StripeEmulator(counts={"charge": 50}, seed=3) as emu:
        env = _cli_env(production_home, emu, tmp_path, STRIPE_API_KEY=BAD_KEY, NILUS_BUDGET_URL=postgres_url,
                       NILUS_DUCKDB_PATH=str(tmp_path / "warehouse.duckdb"))
        done = subprocess.run([DG, "launch", "-f", str(EXAMPLE / "definitions.py"), "--assets", "stripe/charge"],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=300)
    assert done.returncode != 0
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    first = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - dagster - ERROR - ", "", lines[0])
    assert first.startswith("Stripe rejected the API key sk_test_…abcd (401 Invalid API Key) while loading 'charge'"), \
        done.stdout[-3000:]
    assert lines[1:] == ["Error: Materialization failed."], done.stdout[-3000:]  # the CLI's own last word
    assert BAD_KEY[8:-4] not in done.stdout


FIVE = {"charge": 700, "customer": 400, "refund": 150, "product": 120, "price": 160}


def test_example_first_load_of_five_objects_into_an_empty_postgres_warehouse(production_home, postgres, tmp_path):
    """The README's production location as an operator starts it: five objects, a process each, into a new
    database (issue 21: one run in three failed on `CREATE SCHEMA` racing between the steps)."""
    warehouse = postgres.create_database(f"warehouse_{uuid.uuid4().hex[:10]}")
    budget = postgres.create_database(f"budget_{uuid.uuid4().hex[:10]}")
    with StripeEmulator(counts=FIVE, seed=5) as emu:
        env = _cli_env(production_home, emu, tmp_path, NILUS_BUDGET_URL=budget, NILUS_WAREHOUSE_URL=warehouse)
        done = subprocess.run(
            [DG, "launch", "-f", str(EXAMPLE / "definitions.py"), "--assets", ",".join(f"stripe/{o}" for o in FIVE),
             "--config-json", '{"execution": {"config": {"max_concurrent": 5}}}'],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
        )
    assert done.returncode == 0, done.stdout[-4000:]
    with psycopg.connect(warehouse) as con:
        for name, expected in FIVE.items():
            assert con.execute(f"SELECT count(*), count(DISTINCT id) FROM stripe.{name}").fetchone() == (expected,) * 2
