#!/usr/bin/env python
"""Requests of an incremental run of all 21 objects, after a full load and a few changes.

    python benchmarks/incremental_requests.py                       # 2,000 customers, 30 changes
    python benchmarks/incremental_requests.py --customers 2000 4000 # is the count independent of customers?
    python benchmarks/incremental_requests.py --event-version 2024-12-18.acacia  # the account's events in an
                                                                     # older API version: each changed object re-read

For each customer count: the bundled emulator (in this process, over real HTTP) with that many customers
(and 1.25 payment methods, 0.3 subscriptions each), a full load of every object into a fresh DuckDB file,
then 30 changes through the emulator's control API (10 customer updates, 5 payment methods attached,
5 payment methods updated, 5 subscriptions updated, 5 charges updated), then one `sync:incremental` run of
every object. Prints the incremental run's requests in total and per endpoint (the emulator's own count),
and checks that every change reached its table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
from dagster_duckdb import DuckDBResource  # noqa: E402

from nilus_stripe_assets.emulator import StripeEmulator  # noqa: E402
from nilus_stripe_assets.dagster_adapter.factory import ONE_STEP_NAME, build_stripe_assets  # noqa: E402
from nilus_stripe_assets.dagster_adapter.io_manager import StripeDuckDBIOManager  # noqa: E402
from nilus_stripe_assets.dagster_adapter.resources import StripeResource  # noqa: E402


def _resources(emu, database, budget_dir):
    warehouse = DuckDBResource(database=database)
    return {
        "stripe": StripeResource(api_key=emu.api_key, api_base=emu.url, budget_dir=budget_dir,
                                 max_requests_per_second=1000, max_requests_per_second_per_endpoint=1000),
        "duckdb": warehouse,
        "stripe_io_manager": StripeDuckDBIOManager(duckdb=warehouse),
    }


def _change(emu, rows):
    """30 changes; returns what each table must show afterwards."""
    customers, methods, subscriptions, charges = rows
    expect = []
    for i, cid in enumerate(customers[:10]):
        emu.update("customer", cid, description=f"changed-{i}")
        expect.append(("customer", cid, "description", f"changed-{i}"))
    for i in range(5):
        pm = emu.create("payment_method", customer=customers[-1 - i])
        expect.append(("payment_method", pm["id"], "customer", customers[-1 - i]))
    for i, pid in enumerate(methods[:5]):
        emu.update("payment_method", pid, metadata={"changed": str(i)})
        expect.append(("payment_method", pid, "metadata->>'$.changed'", str(i)))
    for i, sid in enumerate(subscriptions[:5]):
        emu.update("subscription", sid, description=f"changed-{i}")
        expect.append(("subscription", sid, "description", f"changed-{i}"))
    for i, chid in enumerate(charges[:5]):
        emu.update("charge", chid, description=f"changed-{i}")
        expect.append(("charge", chid, "description", f"changed-{i}"))
    return expect


def measure(customers: int, event_version=None) -> dict:
    counts = {"customer": customers, "payment_method": customers * 5 // 4, "subscription": customers * 3 // 10,
              "subscription_item": customers * 7 // 10}
    with tempfile.TemporaryDirectory(prefix="nilus-incr-") as tmp, StripeEmulator(counts=counts, seed=5) as emu:
        database = str(Path(tmp) / "warehouse.duckdb")
        resources = _resources(emu, database, tmp)
        assets = build_stripe_assets(one_step=True)
        instance = dg.DagsterInstance.ephemeral()
        started = time.perf_counter()
        assert dg.materialize(assets, resources=resources, instance=instance).success
        full_seconds = time.perf_counter() - started
        full_requests = emu.stats()["total"]["requests"]
        with duckdb.connect(database, read_only=True) as con:
            rows = [
                [r[0] for r in con.execute(f"SELECT id FROM stripe.{t} ORDER BY id LIMIT 20").fetchall()]
                for t in ("customer", "payment_method", "subscription", "charge")
            ]
        time.sleep(1.1)  # the changes' events fall after the full load's second
        emu.set_api_version(event_version)  # None: the pinned one
        expect = _change(emu, rows)
        emu.reset_stats()
        config = {"ops": {ONE_STEP_NAME: {"config": {"mode": "sync:incremental"}}}}
        started = time.perf_counter()
        assert dg.materialize(assets, resources=resources, run_config=config, instance=instance).success
        incremental_seconds = time.perf_counter() - started
        stats = emu.stats()
        missing = []
        with duckdb.connect(database, read_only=True) as con:
            for table, oid, column, value in expect:
                got = con.execute(f"SELECT {column} FROM stripe.{table} WHERE id = ?", [oid]).fetchone()
                if not got or str(got[0]) != value:
                    missing.append(f"{table} {oid} {column}={got}")
            foreign = con.execute("SELECT count(*) FROM stripe.customer WHERE object <> 'customer'").fetchone()[0]
    endpoints = {k: v["requests"] for k, v in sorted(stats["endpoints"].items()) if v["requests"]}
    return {
        "customers": customers, "full_requests": full_requests, "full_seconds": round(full_seconds, 1),
        "incremental_requests": stats["total"]["requests"], "incremental_seconds": round(incremental_seconds, 1),
        "endpoints": endpoints, "changes_missing": missing, "non_customers_in_customer": foreign,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, nargs="+", default=[2000])
    p.add_argument("--event-version", default=None, help="the account's API version, in which its events are rendered")
    a = p.parse_args(argv)
    for n in a.customers:
        r = measure(n, a.event_version)
        print(
            f"{r['customers']:>6} customers: full load {r['full_requests']} requests ({r['full_seconds']} s); "
            f"incremental run after 30 changes: {r['incremental_requests']} requests ({r['incremental_seconds']} s); "
            f"changes missing: {len(r['changes_missing'])}; non-customers in stripe.customer: {r['non_customers_in_customer']}"
        )
        for endpoint, n_req in r["endpoints"].items():
            print(f"        {n_req:>6}  {endpoint}")
        for line in r["changes_missing"][:10]:
            print(f"        missing: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
