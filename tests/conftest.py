"""Shared fixtures: a real emulator over HTTP, a real DuckDB file, a real PostgreSQL cluster, Dagster in-process."""

from __future__ import annotations

import os
import signal
import uuid

import duckdb
import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.dagster_adapter.io_manager import StripeDuckDBIOManager
from nilus_stripe_assets.dagster_adapter.resources import StripeResource

from .pg import REQUIRE_ENV, PostgresCluster, PostgresUnavailable

def pytest_configure(config):
    # A CI timeout or `kill` sends SIGTERM, which would end pytest without teardown: as Ctrl-C, fixtures are
    # torn down (the PostgreSQL cluster is stopped and deleted).
    signal.signal(signal.SIGTERM, signal.default_int_handler)


# Small but multi-page: every object spans several 100-object pages somewhere, with ties on `created`.
SMALL = 0.5


@pytest.fixture(scope="session")
def shared_emulator():
    """Read-only emulator for tests that do not mutate data."""
    with StripeEmulator(scale=SMALL, seed=7) as emu:
        yield emu


@pytest.fixture
def emulator():
    """A private emulator for tests that add, update or delete objects."""
    with StripeEmulator(scale=SMALL, seed=11) as emu:
        yield emu


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL cluster for the session (initdb + pg_ctl on a free 127.0.0.1 port)."""
    try:
        cluster = PostgresCluster().start()
    except PostgresUnavailable as exc:
        if os.environ.get(REQUIRE_ENV):  # CI installs PostgreSQL: there, missing it is a failure
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres) -> str:
    """A fresh, empty database of the session's cluster, for one test."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def warehouse_path(tmp_path):
    return str(tmp_path / "warehouse.duckdb")


def make_resources(emu, database: str, api_key: str | None = None, **stripe_kwargs) -> dict:
    warehouse = DuckDBResource(database=database)
    return {
        "stripe": StripeResource(
            api_key=api_key or emu.api_key, api_base=emu.url, budget_dir=stripe_kwargs.pop("budget_dir", None), **stripe_kwargs
        ),
        "duckdb": warehouse,
        "stripe_io_manager": StripeDuckDBIOManager(duckdb=warehouse),
        "io_manager": StripeDuckDBIOManager(duckdb=warehouse),
    }


def materialize(assets, resources, run_config=None, raise_on_error=True, partition_key=None, instance=None):
    return dg.materialize(
        assets,
        resources=resources,
        run_config=run_config or {},
        raise_on_error=raise_on_error,
        partition_key=partition_key,
        instance=instance or dg.DagsterInstance.ephemeral(),
    )


def mode_config(assets, mode: str, **extra) -> dict:
    return {"ops": {a.op.name: {"config": {"mode": mode, **extra}} for a in assets}}


def query(database: str, sql: str, params=None):
    with duckdb.connect(database, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def count(database: str, table: str) -> int:
    return query(database, f"SELECT count(*) FROM {table}")[0][0]


class Warehouse:
    """One warehouse engine for Dagster-level tests: its resources (the package's own `WarehouseResource`,
    DuckDB file or PostgreSQL by `url`) and plain SQL reads/writes on it (`?` placeholders on both)."""

    def __init__(self, kind: str, database: str, url: str | None = None):
        self.kind, self.database, self.url = kind, database, url

    def resources(self, emu, api_key: str | None = None, **stripe_kwargs) -> dict:
        from nilus_stripe_assets.dagster_adapter.duckdb_resource import WarehouseResource

        resources = make_resources(emu, self.database, api_key, **stripe_kwargs)
        warehouse = WarehouseResource(database=self.database, url=self.url)
        resources.update(duckdb=warehouse, stripe_io_manager=StripeDuckDBIOManager(duckdb=warehouse),
                         io_manager=StripeDuckDBIOManager(duckdb=warehouse))
        return resources

    def _connect(self):
        if self.url:
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        return duckdb.connect(self.database)

    def query(self, sql: str, params=None) -> list[tuple]:
        with self._connect() as con:
            if self.url:
                return con.execute(sql.replace("?", "%s"), params or None).fetchall()
            return con.execute(sql, params or []).fetchall()

    def execute(self, sql: str, params=None) -> None:
        with self._connect() as con:
            con.execute(sql.replace("?", "%s") if self.url else sql, params or ([] if not self.url else None))

    def count(self, table: str) -> int:
        return self.query(f"SELECT count(*) FROM {table}")[0][0]

    def json_text(self, column: str, *path: str) -> str:
        if self.url:
            return f"({column} #>> '{{{','.join(path)}}}')"
        return f"{column}->>'$.{'.'.join(path)}'"

    def json_length(self, column: str, *path: str) -> str:
        if self.url:
            return f"jsonb_array_length({column} #> '{{{','.join(path)}}}')"
        return f"json_array_length({column}->'$.{'.'.join(path)}')"


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path) -> Warehouse:
    """The same Dagster-level test against the DuckDB file and against PostgreSQL (parametrized, not copied)."""
    database = str(tmp_path / "warehouse.duckdb")
    if request.param == "duckdb":
        return Warehouse("duckdb", database)
    return Warehouse("postgres", database, request.getfixturevalue("postgres_url"))
