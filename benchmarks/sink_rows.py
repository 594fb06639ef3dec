#!/usr/bin/env python
"""Rows/s of the two warehouses' writes through the one sink interface, in the same run, from the same spool:
a first load of N charges into an empty table, a re-merge of the same N charges (unchanged), and a re-merge
where 1 % of them changed, on DuckDB and on PostgreSQL (`warehouse.apply` over `warehouse/sinks/duckdb.py` and
`warehouse/sinks/postgres.py`).

    python benchmarks/sink_rows.py                 # 100,000 charges
    python benchmarks/sink_rows.py --charges 20000 --repeat 2

The charges are read once from the bundled emulator (in-process, no latency or limits) through the real
fetch path into a spool on disk, exactly as a load hands them to the IO manager; the 1 % changed spool is
the same objects with every 100th charge's `description` changed. Each spool is staged once (typed, hashed
Parquet: `warehouse.prepare`, the same for both sinks, timed apart), then applied to each warehouse; the
figures are the apply (the part that differs) and the whole write (staging + apply). PostgreSQL is a
throwaway cluster (tests/pg.py, durable settings) on 127.0.0.1; DuckDB a file in a temp folder. The load
average is printed with each figure: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402
import orjson  # noqa: E402
import psycopg  # noqa: E402
import zstandard  # noqa: E402

from nilus_stripe_assets.warehouse import strategies as warehouse  # noqa: E402
from nilus_stripe_assets.reading.budget import BudgetSettings, RequestBudget  # noqa: E402
from nilus_stripe_assets.source.catalog import CATALOG  # noqa: E402
from nilus_stripe_assets.staging.columns import declared_columns  # noqa: E402
from nilus_stripe_assets.emulator import StripeEmulator  # noqa: E402
from nilus_stripe_assets.engine.load import extract  # noqa: E402
from nilus_stripe_assets.staging.spool import CONTENT_HASH, Spool  # noqa: E402
from nilus_stripe_assets.source.client import StripeApi  # noqa: E402
from nilus_stripe_assets.warehouse.strategies import TableRef  # noqa: E402
from run import save_stamped  # noqa: E402
from tests.pg import PostgresCluster  # noqa: E402

TABLE = TableRef("stripe", "charge")


def spool_charges(charges: int, workdir: Path):
    with StripeEmulator(counts={"charge": charges}, seed=9) as emu:
        settings = BudgetSettings(global_rate=1e5, endpoint_rate=1e5, max_in_flight=16, state_dir=str(workdir / "budget"))
        api = StripeApi(emu.api_key, RequestBudget("bench", settings), api_base=emu.url)
        return extract(api, CATALOG["charge"], "async", "merge", TABLE, spool_root=str(workdir))


def changed_copy(spool, workdir: Path, every: int = 100):
    """The same objects, every `every`-th one with a new `description`: a re-load where 1 % changed."""
    out = Spool(directory=str(workdir), prefix="changed-")
    page, n = [], 0
    for path in spool.files:
        with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as f:
            for line in f.read().splitlines():
                obj = orjson.loads(line)
                obj.pop(CONTENT_HASH, None)
                if n % every == 0:
                    obj["description"] = f"changed {n}"
                n += 1
                page.append(obj)
                if len(page) == 1000:
                    out.write(page)
                    page = []
    out.write(page)
    return out.finish()


def load() -> str:
    return "load {:.1f}/{:.1f}".format(*os.getloadavg()[:2])


def staged(spool, state_at: int, workdir: Path):
    started = time.perf_counter()
    prepared = warehouse.prepare(spool.files, state_at=state_at, fields=spool.fields, kinds=spool.kinds,
                                 directory=str(workdir), declared=declared_columns("charge"))
    return prepared, time.perf_counter() - started


def timed(sink: str, label: str, con, prepared, staging: float, rows: int) -> dict:
    started = time.perf_counter()
    result = warehouse.apply(con, TABLE, prepared, "merge")
    seconds = time.perf_counter() - started
    whole = seconds + staging
    figures = {"step": label, "apply_seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
               "write_seconds": round(whole, 2), "write_rows_per_second": round(rows / whole),
               "inserted": result.inserted, "updated": result.updated, "unchanged": result.unchanged,
               "rows": result.rows, "loadavg": [round(x, 1) for x in os.getloadavg()]}
    print(f"  {sink:<9} {label:<18} apply {seconds:6.2f} s = {rows / seconds:>8,.0f} rows/s | with staging "
          f"{whole:6.2f} s = {rows / whole:>7,.0f} rows/s | inserted {result.inserted:,}, updated {result.updated:,}, "
          f"unchanged {result.unchanged:,} | {load()}")
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
        print(f"spooled {batch.spool.objects:,} charges ({size / 2**20:,.0f} MB zstd NDJSON) in "
              f"{time.perf_counter() - started:.1f} s; {load()}")
        changed = changed_copy(batch.spool, workdir)
        rows = batch.spool.objects
        with PostgresCluster(settings={"fsync": "on", "full_page_writes": "on"}) as pg:
            for run in range(a.repeat):
                # Staged once per spool and run, applied to both: the staging is the same code for both sinks.
                steps = []
                for label, spool, state_at in (("first load", batch.spool, batch.started_at),
                                               ("re-merge unchanged", batch.spool, batch.started_at + 1),
                                               ("re-merge 1% changed", changed, batch.started_at + 2)):
                    prepared, seconds = staged(spool, state_at, workdir)
                    print(f"  staged {label}: {seconds:.2f} s ({rows / seconds:,.0f} rows/s); {load()}")
                    steps.append((label, prepared, seconds))
                url = pg.create_database(f"sinks{run}")
                database = workdir / f"warehouse{run}.duckdb"
                for name, connect in (("duckdb", lambda: duckdb.connect(str(database))),
                                      ("postgres", lambda: psycopg.connect(url, autocommit=True))):
                    with connect() as con:
                        figures = [timed(name, label, con, prepared, seconds, rows) for label, prepared, seconds in steps]
                    records.append({"scenario": "sink-rows", "sink": name, "charges": rows, "steps": figures})
                for _, prepared, _ in steps:
                    prepared.cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    save_stamped(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
