"""The production profile (examples/production/) against the test's PostgreSQL cluster: the instance's
storage, pools and run queue live in PostgreSQL, and the example code location runs one step per object in
its own process, every step pacing on the request budget in PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import query

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "production"


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
