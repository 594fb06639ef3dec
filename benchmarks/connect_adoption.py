#!/usr/bin/env python
"""What adopting the rows loaded before Connect costs (`warehouse.Adoption`, issue 21), on both warehouses.

Every Connect write runs the adoption inside its transaction: `UPDATE … SET stripe_account = <platform>
WHERE stripe_account IS NULL` and, in PostgreSQL, a look at the table's key indexes (`Sink.index_key`).
Once per table it has work to do (the rows a single-account load wrote get the platform's id, and
PostgreSQL's unique index moves from `id` to `(stripe_account, id)`); on every later write it finds nothing.
This prints both, for a table of N rows (default 1,000,000) about as wide as a charge row (~600 bytes of
payload), in the same run:

    python benchmarks/connect_adoption.py
    python benchmarks/connect_adoption.py --rows 200000 --repeat 5

The table is built directly in SQL (the adoption reads only `stripe_account` and the index; the payload is
there so PostgreSQL's row store reads pages as wide as a real table's). PostgreSQL is a throwaway cluster
(tests/pg.py, durable settings) on 127.0.0.1; DuckDB a file in a temp folder. The load average is printed
with each figure: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402
import psycopg  # noqa: E402

from nilus_stripe_assets.warehouse.sinks import as_sink  # noqa: E402
from nilus_stripe_assets.warehouse.strategies import Adoption, TableRef, _adopt  # noqa: E402
from tests.pg import PostgresCluster  # noqa: E402

PLATFORM = "acct_1Platform"
TABLE = TableRef("stripe", "charge")
KEY = ("stripe_account", "id")
FILL = "repeat(md5(i::varchar), 19)"  # 608 characters, different per row


def _load() -> str:
    return "load {:.1f}/{:.1f}".format(*os.getloadavg()[:2])


def _build(sink, rows: int) -> None:
    """A single-account table of `rows` rows (indexed on `id` in PostgreSQL, as `create_table` makes it),
    then the column a Connect write adds: every row without an account."""
    sink.execute("CREATE SCHEMA IF NOT EXISTS stripe")
    sink.execute("DROP TABLE IF EXISTS stripe.charge")
    if sink.kind == "postgresql":
        sink.execute(f"CREATE TABLE stripe.charge AS SELECT 'ch_' || i AS id, {FILL.replace('::varchar', '::text')} "
                     f"AS payload FROM generate_series(1, {rows}) AS g(i)")
        sink.execute('CREATE UNIQUE INDEX "charge__id__key" ON stripe.charge (id)')
        sink.execute("ANALYZE stripe.charge")
    else:
        sink.execute(f"CREATE TABLE stripe.charge AS SELECT 'ch_' || i AS id, {FILL} AS payload "
                     f"FROM range(1, {rows} + 1) AS g(i)")
    sink.execute("ALTER TABLE stripe.charge ADD COLUMN stripe_account VARCHAR")


def _timed(sink) -> tuple[float, int]:
    started = time.perf_counter()
    with sink.transaction():  # what a Connect write adds: the key index checked (`_evolve`), then the adoption
        sink.index_key(TABLE, KEY)
        adopted = _adopt(sink, TABLE, Adoption("stripe_account", PLATFORM))
    return time.perf_counter() - started, adopted


def measure(name: str, sink, rows: int, repeat: int) -> None:
    _build(sink, rows)
    if sink.kind == "postgresql":
        sink.execute("ANALYZE stripe.charge")
    seconds, adopted = _timed(sink)
    print(f"{name:10} first Connect write: {adopted:,} rows adopted (+ key index) in {seconds:.2f} s  [{_load()}]")
    if sink.kind == "postgresql":
        sink.execute("ANALYZE stripe.charge")
    later = []
    for _ in range(repeat):
        seconds, adopted = _timed(sink)
        assert adopted == 0
        later.append(seconds)
    print(f"{name:10} every later write:   0 rows, median {statistics.median(later) * 1000:.1f} ms "
          f"(min {min(later) * 1000:.1f}, max {max(later) * 1000:.1f}, {repeat} writes)  [{_load()}]")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"{args.rows:,} rows, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="adoption-") as folder:
        con = duckdb.connect(os.path.join(folder, "warehouse.duckdb"))
        try:
            measure("DuckDB", as_sink(con), args.rows, args.repeat)
        finally:
            con.close()
    with PostgresCluster(settings={"fsync": "on", "full_page_writes": "on"}) as pg:
        with psycopg.connect(pg.create_database("adoption"), autocommit=True) as con:
            measure("PostgreSQL", as_sink(con), args.rows, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
