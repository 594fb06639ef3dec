"""`WarehouseResource`: dagster-duckdb's `DuckDBResource`, but a second writer waits its turn for the file.

dagster-duckdb retries `duckdb.connect` ten times with a short backoff (about 100 s in all, then a long
`IOException` traceback). A load that shares the file with another run instead waits as long as the other
needs, within `lock_wait_seconds`, and otherwise fails the step with one line naming the process that holds
the file (see `warehouse_lock`).
"""


from contextlib import contextmanager
from typing import Optional

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ..warehouse_lock import LOCK_WAIT_ENV, WarehouseLocked, connect


class WarehouseResource(DuckDBResource):
    lock_wait_seconds: Optional[float] = Field(
        default=None,
        description=f"How long to wait while another process writes to the file; default ${LOCK_WAIT_ENV}, else 1800.",
    )

    @contextmanager
    def get_connection(self):
        config = {"custom_user_agent": "dagster", **self.connection_config}
        try:
            con = connect(self.database, config, self.lock_wait_seconds, on_wait=dg.get_dagster_logger().info)
        except WarehouseLocked as exc:
            raise dg.Failure(description=str(exc)) from None
        try:
            yield con
        finally:
            con.close()
