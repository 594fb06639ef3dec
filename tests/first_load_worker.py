"""One process of a concurrent first load into PostgreSQL, through the engine's own write path (no Dagster).

    python -m tests.first_load_worker URL TABLE WORKER ROWS GO_FILE [FIELD,FIELD…]

Stages ROWS objects (ids unique to WORKER) outside the warehouse, says it is ready (creates GO_FILE.readyN) and
waits for GO_FILE, so that every process of a round reaches its DDL at the same instant. It then does what a
step's first load does against an empty database: opens the request budget in PostgreSQL (which creates
`nilus_request_budget`) and reserves a slot on it, and applies the batch with an events cursor (which creates
schema `stripe`, the table with its unique index, and `stripe._nilus_state`). FIELDs are extra string fields of
every object: on a table that exists without them, every process adds those columns. Exit 0 on success; an
error is printed as one line and exits 1. Used by tests/test_postgres_concurrent_ddl.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import psycopg

from nilus_stripe_assets.reading.budget.base import BudgetSettings
from nilus_stripe_assets.reading.budget.postgres import PostgresRates
from nilus_stripe_assets.staging.spool import Spool
from nilus_stripe_assets.warehouse import strategies as warehouse
from nilus_stripe_assets.warehouse.strategies import ChangeSet, TableRef


def main(url: str, table: str, worker: int, rows: int, go_file: str, fields: str = "") -> None:
    folder = tempfile.mkdtemp(prefix=f"first-load-{worker}-")
    spool = Spool(directory=folder)
    extra = {name: f"{name} {worker}" for name in fields.split(",") if name}
    spool.write([{"id": f"{table}_{worker}_{n}", "object": table, "created": 1_700_000_000 + n,
                  "amount": n, "metadata": {"worker": worker}, **extra} for n in range(rows)])
    summary = spool.finish()
    changes = ChangeSet(files=[], state_key=f"events_cursor:stripe.{table}", cursor=1_700_000_000 + worker)
    prepared = warehouse.prepare(summary.files, changes=changes, fields=summary.fields, kinds=summary.kinds,
                                 directory=folder)
    con = psycopg.connect(url, autocommit=True)
    open(f"{go_file}.ready{worker}", "w").close()
    while not os.path.exists(go_file):
        time.sleep(0.002)
    budget = PostgresRates(url, "acct_fingerprint", BudgetSettings(global_rate=1000, endpoint_rate=1000,
                                                                   max_in_flight=4))
    budget.reserve(f"/v1/{table}s")
    budget.close()
    warehouse.apply(con, TableRef("stripe", table), prepared, "merge")
    prepared.cleanup()
    con.close()


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:])
    except Exception as exc:  # the test reports each process's failure as its one line
        print(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        sys.exit(1)
