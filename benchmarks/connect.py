#!/usr/bin/env python
"""Connect platforms: N connected accounts x M charges each, through the emulator, in one CLI run.

    python benchmarks/connect.py                          # 50 accounts x 2,000 charges, both budget rules
    python benchmarks/connect.py --accounts 10 --charges 500 --budget platform

The emulator starts as a subprocess (`--accounts N --account-count charge=M`, no latency, no server-side
limits) and every account's data is generated before the clock starts. A private DAGSTER_HOME holds the
N accounts as dynamic partitions (`stripe_accounts`), and one `dagster asset materialize -m
nilus_stripe_assets.connect --select stripe/charge --partition-range first...last` loads them all in one
run (single-run backfill policy), with the test key's 25 requests/s budget:
- `platform`: requests sent with Stripe-Account draw on the platform's budget (the default rule);
- `account`: each account has its own budget (`connect_budget: account`).
Printed per rule: wall time, requests (from the emulator's counters, also per account), rows per account
(from DuckDB, checked against M, with duplicates), and the floor the budget sets. Appends one JSON record
per rule to benchmarks/results/latest.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402

from run import API_KEY, RESULTS, Emulator, dagster_cli, git_revision, write_instance_yaml  # noqa: E402

RATE = 25  # a test key's global budget: every page of every account waits for it under the platform rule


def run_once(accounts: int, charges: int, budget: str, timeout: float, keep: bool = False) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"nilus-bench-connect-{budget}-"))
    home, database = workdir / "dagster_home", workdir / "warehouse.duckdb"
    write_instance_yaml(home, None)
    (workdir / "spool").mkdir()
    emulator = Emulator(["--scale", "0.01", "--accounts", str(accounts), "--account-count", f"charge={charges}",
                         "--account-scale", "0.01"], workdir)
    try:
        ids = emulator.client.accounts()["connected"]
        generated = time.monotonic()
        for account in ids:  # generate each account's data now, not inside the timed run
            assert emulator.client.counts(account)["charge"] == charges
        generated = time.monotonic() - generated
        instance = dg.DagsterInstance.from_config(str(home))
        instance.add_dynamic_partitions("stripe_accounts", ids)
        instance.dispose()
        config = {"resources": {"stripe": {"config": {"connect_budget": budget, "budget_dir": str(workdir / "budget")}}}}
        (workdir / "run.yaml").write_text(json.dumps(config))
        env = {**os.environ, "STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": emulator.url,
               "NILUS_DUCKDB_PATH": str(database), "DAGSTER_HOME": str(home), "NILUS_SPOOL_DIR": str(workdir / "spool")}
        argv = [dagster_cli(), "asset", "materialize", "-m", "nilus_stripe_assets.connect", "--select", "stripe/charge",
                "--partition-range", f"{ids[0]}...{ids[-1]}", "-c", str(workdir / "run.yaml")]
        emulator.client.reset_stats()
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        done = subprocess.run(argv, env=env, cwd=workdir, capture_output=True, text=True, timeout=timeout)
        wall = time.monotonic() - started
        stats = emulator.client.stats()
        (workdir / "dagster.log").write_text(done.stdout + done.stderr)
        fetch_ends = [line for line in done.stderr.splitlines() if "charge: " in line and " objects in " in line]
        if done.returncode != 0:
            raise RuntimeError(f"the run failed ({done.returncode}); log in {workdir}:\n{done.stderr[-3000:]}")
        with duckdb.connect(str(database), read_only=True) as con:
            rows = dict(con.execute("SELECT stripe_account, count(*) FROM stripe.charge GROUP BY 1").fetchall())
            distinct = con.execute("SELECT count(DISTINCT (stripe_account, id)) FROM stripe.charge").fetchone()[0]
        requests = stats["total"]["requests"]
        per_account = stats["accounts"]
        record = {
            "scenario": "connect", "label": budget, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_revision(),
            "accounts": accounts, "charges_per_account": charges, "wall_seconds": round(wall, 2),
            "requests": requests, "requests_429": stats["total"].get("429", 0),
            "requests_per_account": sorted(set(per_account.values())),
            "rows_total": sum(rows.values()), "rows_per_account_min": min(rows.values()),
            "rows_per_account_max": max(rows.values()), "accounts_loaded": len(rows),
            "duplicates": sum(rows.values()) - distinct,
            "accounts_short": sorted(a for a in ids if rows.get(a) != charges),
            "objects_per_second": round(sum(rows.values()) / wall, 1),
            "budget_floor_seconds": round(requests / RATE, 1) if budget == "platform" else None,
            "emulator_generation_seconds": round(generated, 1),
            "fetches_logged": len(fetch_ends),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # 2 cores: above 2 is contention
        }
        (workdir / "rows.json").write_text(json.dumps(rows, indent=1))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(record) + "\n")
        return {**record, "rows": rows}
    finally:
        emulator.stop()
        if keep:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=50)
    p.add_argument("--charges", type=int, default=2000)
    p.add_argument("--budget", choices=["platform", "account", "both"], default="both")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--keep", action="store_true", help="keep the work folder (dagster.log, warehouse, rows.json)")
    a = p.parse_args()
    for budget in (["platform", "account"] if a.budget == "both" else [a.budget]):
        r = run_once(a.accounts, a.charges, budget, a.timeout, a.keep)
        floor = f" (budget floor {r['budget_floor_seconds']} s at {RATE} req/s)" if r["budget_floor_seconds"] else ""
        print(f"connect {budget:8s} {r['accounts']} accounts x {r['charges_per_account']} charges: "
              f"{r['wall_seconds']} s wall{floor}, {r['requests']} requests ({r['requests_429']} 429s), "
              f"{r['rows_total']} rows = {r['objects_per_second']} rows/s, duplicates {r['duplicates']}, "
              f"load average {r['load_average'][0]} -> {r['load_average'][1]}")
        print(f"  requests per account: {r['requests_per_account']}; rows per account: min {r['rows_per_account_min']}, "
              f"max {r['rows_per_account_max']}, {r['accounts_loaded']} accounts, short: {r['accounts_short'] or 'none'}")
        print("  rows per account: " + ", ".join(f"{k}={v}" for k, v in sorted(r["rows"].items())))


if __name__ == "__main__":
    main()
