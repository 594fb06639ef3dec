#!/usr/bin/env python
"""Rows/s of the two warehouses' writes: a first load of N charges into an empty table, then a re-merge of
the same N charges into the full table, on DuckDB (`warehouse.write`) and PostgreSQL (`sinks.postgres.write`,
COPY into a jsonb stage, then INSERT … ON CONFLICT), in the same run, from the same spool.

    python benchmarks/sink_rows.py                 # 100,000 charges
    python benchmarks/sink_rows.py --charges 20000 --repeat 2

The charges are read once from the bundled emulator (in-process, no latency or limits) through the real
fetch path into a spool on disk, exactly as a load hands them to the IO manager. PostgreSQL is a
throwaway cluster (tests/pg.py, durable settings) on 127.0.0.1; DuckDB a file in a temp folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402
import psycopg  # noqa: E402

from nilus_stripe_assets import warehouse  # noqa: E402
from nilus_stripe_assets.budget import BudgetSettings, RequestBudget  # noqa: E402
from nilus_stripe_assets.catalog import CATALOG  # noqa: E402
from nilus_stripe_assets.emulator import StripeEmulator  # noqa: E402
from nilus_stripe_assets.load import extract  # noqa: E402
from nilus_stripe_assets.sinks import postgres as pg_sink  # noqa: E402
from nilus_stripe_assets.stripe_api import StripeApi  # noqa: E402
from nilus_stripe_assets.warehouse import TableRef  # noqa: E402
from run import RESULTS, git_revision  # noqa: E402
from tests.pg import PostgresCluster  # noqa: E402

TABLE = TableRef("stripe", "charge")


def spool_charges(charges: int, workdir: Path):
    with StripeEmulator(counts={"charge": charges}, seed=9) as emu:
        settings = BudgetSettings(global_rate=1e5, endpoint_rate=1e5, max_in_flight=16, state_dir=str(workdir / "budget"))
        api = StripeApi(emu.api_key, RequestBudget("bench", settings), api_base=emu.url)
        return extract(api, CATALOG["charge"], "async", "merge", TABLE, spool_root=str(workdir))


def timed(label: str, fn, rows: int) -> dict:
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    figures = {"step": label, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
               "inserted": result.inserted, "updated": result.updated, "rows": result.rows}
    print(f"    {label:<10} {seconds:6.2f} s  {rows / seconds:>9,.0f} rows/s  (inserted {result.inserted:,}, "
          f"updated {result.updated:,}, table {result.rows:,} rows)")
    return figures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--charges", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="nilus-bench-sinks-"))
    records = []
    try:
        started = time.perf_counter()
        batch = spool_charges(a.charges, workdir)
        size = sum(Path(f).stat().st_size for f in batch.spool.files)
        print(f"spooled {batch.spool.objects:,} charges ({size / 2**20:,.0f} MB NDJSON) in {time.perf_counter() - started:.1f} s")
        spool = batch.spool
        args = dict(files=spool.files, strategy="merge", state_at=batch.started_at, fields=spool.fields, kinds=spool.kinds)
        with PostgresCluster(settings={"fsync": "on", "full_page_writes": "on"}) as pg:
            for run in range(a.repeat):
                url = pg.create_database(f"sinks{run}")
                database = workdir / f"warehouse{run}.duckdb"
                for name, connect, write in (
                    ("duckdb", lambda: duckdb.connect(str(database)), warehouse.write),
                    ("postgres", lambda: psycopg.connect(url, autocommit=True), pg_sink.write),
                ):
                    print(f"[{name}] {spool.objects:,} charges")
                    with connect() as con:
                        first = timed("first load", lambda: write(con, TABLE, **args), spool.objects)
                        again = timed("re-merge", lambda: write(con, TABLE, **args), spool.objects)
                    records.append({"scenario": "sink-rows", "sink": name, "charges": spool.objects,
                                    "first_load": first, "re_merge": again})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        for r in records:
            f.write(json.dumps({**r, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_revision()}) + "\n")
    print(f"records appended to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
