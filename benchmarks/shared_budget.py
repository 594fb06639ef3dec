#!/usr/bin/env python
"""The request budget across machines: round-trip cost per request, and two `dagster asset materialize`
processes set up as on two machines against one account limited to 25 requests/s.

    python benchmarks/shared_budget.py                       # both parts, default sizes
    python benchmarks/shared_budget.py --objects 20000 --repeat 2
    python benchmarks/shared_budget.py --skip-pair           # only the round-trip cost

Part 1 reserves slots in a loop on each backend (files under flock; PostgreSQL over TCP on 127.0.0.1, a
throwaway cluster started with initdb/pg_ctl) and prints the time per reservation: what every request pays.
Part 2 starts the emulator (subprocess, `--global-rate 25 --endpoint-rate 25`, 200 ms latency) and runs
two CLI processes with separate DAGSTER_HOME, DuckDB, spool, temp and budget folders, one loading charges
and one customers, first with the PostgreSQL budget and then with the file budget; the emulator's counters
give the rate both reached together while both were sending, and the 429s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nilus_stripe_assets.reading.budget import BudgetSettings, RequestBudget  # noqa: E402
from run import Emulator, save_stamped  # noqa: E402
from tests.pg import PostgresCluster  # noqa: E402
from tests.two_machines import run_pair  # noqa: E402

RATE = 25
OBJECTS = ("charge", "customer")


def reservation_cost(budget: RequestBudget, calls: int, threads: int) -> dict:
    """Seconds per `reserve()` (one thread) or reservations/s (several threads) on one backend."""
    endpoints = ["/v1/charges", "/v1/customers", "/v1/invoices"]
    for i in range(50):  # warm up: connection, prepared statement, files created
        budget.rates.reserve(endpoints[i % 3])
    per_call: list[float] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        mine = []
        for i in range(n):
            started = time.perf_counter()
            budget.rates.reserve(endpoints[i % 3])
            mine.append(time.perf_counter() - started)
        with lock:
            per_call.extend(mine)

    began = time.perf_counter()
    pool = [threading.Thread(target=work, args=(calls // threads,)) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - began
    per_call.sort()
    return {"threads": threads, "calls": len(per_call), "per_second": round(len(per_call) / wall),
            "mean_ms": round(1000 * statistics.fmean(per_call), 3),
            "p50_ms": round(1000 * per_call[len(per_call) // 2], 3),
            "p99_ms": round(1000 * per_call[int(len(per_call) * 0.99)], 3)}


def part_round_trip(pg_url: str, calls: int) -> list[dict]:
    # Rates high enough that no reservation is in the far future; the cost does not depend on them.
    base = dict(global_rate=1e6, endpoint_rate=1e6, max_in_flight=32)
    records = []
    workdir = Path(tempfile.mkdtemp(prefix="nilus-bench-budget-"))
    try:
        for kind, settings in (("file", BudgetSettings(**base, state_dir=str(workdir))),
                               ("postgres", BudgetSettings(**base, state_url=pg_url))):
            budget = RequestBudget("bench_account", settings)
            try:
                for threads in (1, 8):
                    r = {"scenario": "budget-round-trip", "backend": kind, **reservation_cost(budget, calls, threads)}
                    print(f"[round-trip:{kind}] {r['threads']} thread(s): {r['mean_ms']:.3f} ms mean, "
                          f"{r['p50_ms']:.3f} ms p50, {r['p99_ms']:.3f} ms p99 per reservation; "
                          f"{r['per_second']:,} reservations/s")
                    records.append(r)
            finally:
                budget.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return records


def part_pair(pg_url: str, objects: int, latency_ms: float, timeout: float) -> list[dict]:
    records = []
    workdir = Path(tempfile.mkdtemp(prefix="nilus-bench-pair-"))
    emulator = Emulator(["--count", f"charge={objects}", "--count", f"customer={objects}", "--latency-ms",
                         str(latency_ms), "--global-rate", str(RATE), "--endpoint-rate", str(RATE)], workdir)
    try:
        for kind, url in (("postgres", pg_url), ("file", None)):
            r = run_pair(emulator.url, workdir / kind, OBJECTS, budget_url=url, timeout=timeout)
            exact = all(r.rows.get(o) == (objects, objects) for o in OBJECTS)
            record = {"scenario": "budget-two-machines", "backend": kind, "objects_each": objects,
                      "latency_ms": latency_ms, "together_rps": round(r.both_rate, 2),
                      "together_pct": round(100 * r.both_rate / RATE, 1), "window_seconds": round(r.both_seconds, 2),
                      "requests": r.requests, "r429": r.rejected, "returncodes": r.returncodes,
                      "machine_seconds": r.machine_seconds, "startup_seconds": r.startup_seconds,
                      "exit_seconds": r.exit_seconds, "rows": r.rows, "exact_rows": exact}
            print(f"[two-machines:{kind}] together {record['together_rps']} req/s = {record['together_pct']} % of "
                  f"{RATE} over {record['window_seconds']} s with both sending; {r.requests} requests, "
                  f"{r.rejected} 429s; CLI wall {r.machine_seconds} s (start-up to first request {r.startup_seconds} s, last "
                  f"request to exit {r.exit_seconds} s); rows exact: {exact}; exit {r.returncodes}")
            if kind == "postgres":
                ok = r.rejected == 0 and record["together_pct"] >= 90
                print(f"    target 0 429s and >= 90 % of {RATE} req/s: {'OK' if ok else 'MISSED'}")
            records.append(record)
    finally:
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=4000, help="reservations per round-trip measurement")
    p.add_argument("--objects", type=int, default=15000, help="charges and customers each (100 per request)")
    p.add_argument("--latency-ms", type=float, default=200)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--skip-pair", action="store_true")
    a = p.parse_args(argv)
    records = []
    # Durable settings (unlike the tests' cluster), so the cost is what a real server charges.
    with PostgresCluster(settings={"fsync": "on", "full_page_writes": "on"}) as pg:
        url = pg.create_database("budget")
        records += part_round_trip(url, a.calls)
        for _ in range(0 if a.skip_pair else a.repeat):
            records += part_pair(url, a.objects, a.latency_ms, a.timeout)
    save_stamped(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
