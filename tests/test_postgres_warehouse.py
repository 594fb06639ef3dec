"""PostgreSQL chosen by configuration: the real CLI with NILUS_WAREHOUSE_URL, and the resource's one-line failures.

The strategy, check and finance tests run against both warehouses through the `warehouse` fixture
(test_assets, test_checks, test_finance, test_incremental); this file covers what only the PostgreSQL
choice has: the address from the environment in a real `dagster asset materialize`, and bad addresses.
"""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import psycopg
import pytest

from nilus_stripe_assets.dagster_adapter.duckdb_resource import WAREHOUSE_URL_ENV, WarehouseResource
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets

from .conftest import make_resources, materialize

DAGSTER = os.path.join(os.path.dirname(sys.executable), "dagster")


def _pg(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as con:
        return con.execute(sql).fetchall()


def test_cli_materialize_writes_to_postgres_when_the_url_is_set(shared_emulator, postgres_url, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    database = tmp_path / "untouched.duckdb"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_"))},
        "STRIPE_API_KEY": shared_emulator.api_key,
        "STRIPE_API_BASE": shared_emulator.url,
        "NILUS_DUCKDB_PATH": str(database),
        WAREHOUSE_URL_ENV: postgres_url,
        "DAGSTER_HOME": str(home),
    }
    select = "stripe/charge,stripe/balance_transaction,finance/daily_overview"
    done = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "nilus_stripe_assets.definitions", "--select", select],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    counts = shared_emulator.counts()
    assert _pg(postgres_url, "SELECT count(*), count(DISTINCT id) FROM stripe.charge") == [(counts["charge"],) * 2]
    assert _pg(postgres_url, "SELECT count(*) FROM stripe.balance_transaction") == [(counts["balance_transaction"],)]
    assert _pg(postgres_url, "SELECT count(*) > 0, sum(transactions) FROM finance.daily_overview") == [(True, counts["balance_transaction"])]
    types = dict(_pg(postgres_url, "SELECT column_name, data_type FROM information_schema.columns "
                                   "WHERE table_schema = 'stripe' AND table_name = 'charge'"))
    assert (types["billing_details"], types["created"], types["amount"]) == ("jsonb", "timestamp with time zone", "bigint")
    assert not database.exists(), "with NILUS_WAREHOUSE_URL set, the DuckDB file is not written"

    # The run's record: materializations and the checks judged in the step, against PostgreSQL.
    instance = dg.DagsterInstance.from_config(str(home))
    [run] = instance.get_runs()
    judged = {}
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        judged[evaluation.asset_key.path[-1], evaluation.check_name] = evaluation.passed
    assert judged[("charge", "id_unique")] and judged[("charge", "id_not_null")]
    assert judged[("daily_overview", "net_matches_balance_transactions")], "the finance model's check, in PostgreSQL"
    instance.dispose()


def test_an_address_that_is_not_postgresql_fails_with_one_line(shared_emulator, tmp_path, monkeypatch):
    monkeypatch.setenv(WAREHOUSE_URL_ENV, "mysql://nilus@db.internal/nilus")
    assets = build_stripe_assets(["coupon"])
    resources = make_resources(shared_emulator, str(tmp_path / "w.duckdb"))
    warehouse = WarehouseResource(database=str(tmp_path / "w.duckdb"))
    resources["duckdb"] = warehouse
    result = materialize(assets, resources, raise_on_error=False)
    # Checked when the warehouse resource starts (before any step, so before any Stripe request).
    failures = [e for e in result.all_events if e.event_type_value in ("STEP_FAILURE", "RESOURCE_INIT_FAILURE")]
    message = failures[0].event_specific_data.error.message
    assert "Failure: The warehouse address mysql://… is not a PostgreSQL URL; set NILUS_WAREHOUSE_URL" in message
    assert len(message.strip().splitlines()) == 1, message


def test_an_unreachable_server_fails_before_any_stripe_request(emulator, tmp_path):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://nilus:secret@127.0.0.1:{port}/nilus"
    assets = build_stripe_assets(["coupon"])
    resources = make_resources(emulator, str(tmp_path / "w.duckdb"))
    resources["duckdb"] = WarehouseResource(database=str(tmp_path / "w.duckdb"), url=url)
    result = materialize(assets, resources, raise_on_error=False)
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert f"Failure: Could not connect to the PostgreSQL warehouse at postgresql://nilus@127.0.0.1:{port}/nilus (" in message
    assert "secret" not in message and "WarehouseResource.url" in message
    assert emulator.stats()["total"]["requests"] == 0, "no Stripe request is spent before the warehouse is known to work"


@pytest.mark.parametrize("url", ["postgresql://nilus@127.0.0.1:notaport/nilus", "postgresql://nilus@[::1/nilus"])
def test_an_address_that_cannot_be_parsed_names_the_fix(url, tmp_path):
    resource = WarehouseResource(database=str(tmp_path / "w.duckdb"), url=url)
    with pytest.raises(dg.Failure) as failure:
        with resource.get_connection():
            pass
    text = str(failure.value.description)
    assert "postgresql://user@host:5432/db" in text or "Could not connect" in text, text
