"""`WarehouseResource`: where the Stripe tables go. A DuckDB file by default, PostgreSQL when configured.

For the file it is dagster-duckdb's `DuckDBResource`, but a second writer waits its turn: dagster-duckdb
retries `duckdb.connect` ten times with a short backoff (about 100 s in all, then a long `IOException`
traceback). A load that shares the file with another run instead waits as long as the other needs, within
`lock_wait_seconds`, and otherwise fails the step with one line naming the process that holds the file
(see `warehouse_lock`).

With `url` (or `NILUS_WAREHOUSE_URL`, read when a run starts, like `StripeResource.budget_url`) set to
`postgresql://…`, `get_connection` yields a psycopg connection instead, and every writer, check and model
works through the same `Sink` interface (`open_sink`). A bad address or an unreachable server fails the
step with one line.
"""


import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ..source.config import ConfigError
from ..warehouse.sinks import Sink, as_sink, is_postgres_url
from ..warehouse.lock import LOCK_WAIT_ENV, WarehouseLocked, check_database_path, connect, lock_wait_seconds
from .validation import refused_in_one_line, secret_written_in_run_config

WAREHOUSE_URL_ENV = "NILUS_WAREHOUSE_URL"
DUCKDB_PATH_ENV = "NILUS_DUCKDB_PATH"


class WarehouseResource(DuckDBResource):
    lock_wait_seconds: Optional[float] = Field(
        default=None,
        ge=0,
        description=f"How long to wait while another process writes to the file; default ${LOCK_WAIT_ENV}, else 1800.",
    )
    url: Optional[str] = Field(
        default=None,
        description=f"postgresql://user@host:5432/db: write to PostgreSQL instead of the DuckDB file (default: "
        f"${WAREHOUSE_URL_ENV}, else the file in `database`). Use EnvVar('{WAREHOUSE_URL_ENV}') if it holds a password.",
    )

    _refused_in_one_line = refused_in_one_line("WarehouseResource.")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """The warehouse settings, checked when a run starts and before any request (one line each):
        the address kind, the lock wait, and that the DuckDB file can be written."""
        if secret_written_in_run_config(context, ("url",)):
            raise dg.Failure(
                description=f"WarehouseResource.url: the run config holds an address with a password, which Dagster "
                f"stores with the run and shows; give it as {{env: {WAREHOUSE_URL_ENV}}} (or leave it out: "
                f"{WAREHOUSE_URL_ENV} is read when the run starts), and delete this run or change the password.",
                allow_retries=False,
            )
        try:
            if self.resolved_url is None:
                lock_wait_seconds(self.lock_wait_seconds)
                check_database_path(self.database, self._database_setting())
        except ConfigError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None

    def _database_setting(self) -> str:
        """Where the file's path came from, for messages: the variable, or the resource (a component's sink)."""
        from_env = os.environ.get(DUCKDB_PATH_ENV, "").strip()
        if from_env and Path(from_env).expanduser().resolve() == Path(self.database).expanduser().resolve():
            return DUCKDB_PATH_ENV
        return "sink.address / WarehouseResource.database"

    @property
    def resolved_url(self) -> Optional[str]:
        """The PostgreSQL address, or None for the DuckDB file. Raises ConfigError for another kind of address."""
        # Read at run time, like the key: run config that replaces this resource's config keeps the env.
        url = (self.url or os.environ.get(WAREHOUSE_URL_ENV) or "").strip()
        if not url:
            return None
        if not is_postgres_url(url):
            scheme = url.split("://", 1)[0] + "://…" if "://" in url else repr(url[:40])
            raise ConfigError(
                f"The warehouse address {scheme} is not a PostgreSQL URL; set {WAREHOUSE_URL_ENV} (or "
                f"WarehouseResource.url) to postgresql://user@host:5432/db, or unset it to use the DuckDB file."
            )
        return url

    @property
    def kind(self) -> str:
        return "postgresql" if self.resolved_url else "duckdb"

    @contextmanager
    def get_connection(self):
        url = self.resolved_url
        if url:
            from ..warehouse.sinks.postgres import WarehouseUnavailable, connect as pg_connect

            source = "WarehouseResource.url" if self.url else WAREHOUSE_URL_ENV
            try:
                con = pg_connect(url, source)
            except WarehouseUnavailable as exc:
                raise dg.Failure(description=str(exc)) from None
        else:
            config = {"custom_user_agent": "dagster", **self.connection_config}
            try:
                con = connect(self.database, config, self.lock_wait_seconds, on_wait=dg.get_dagster_logger().info)
            except WarehouseLocked as exc:
                raise dg.Failure(description=str(exc)) from None
            except ConfigError as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from None
        try:
            yield con
        finally:
            con.close()


@contextmanager
def open_sink(resource: DuckDBResource) -> Iterator[Sink]:
    """The warehouse behind a resource as a `Sink`: a `WarehouseResource` (DuckDB or PostgreSQL), or any
    `DuckDBResource` a user passes."""
    with resource.get_connection() as con:
        yield as_sink(con)


def check_warehouse(resource: DuckDBResource) -> None:
    """Fail at once, with one line, when a configured PostgreSQL warehouse is unusable (before any request
    to Stripe is spent). The DuckDB file is not opened here: that would hold its lock during the load."""
    if isinstance(resource, WarehouseResource):
        try:
            url = resource.resolved_url
        except ConfigError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        if url:
            with resource.get_connection():
                pass
