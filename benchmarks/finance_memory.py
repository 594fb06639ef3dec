#!/usr/bin/env python
"""Peak memory of the finance models against the Stripe load's, at 1M and 10M balance transactions.

    .venv/bin/python benchmarks/finance_memory.py                        # 1M
    .venv/bin/python benchmarks/finance_memory.py --sizes 1000000,10000000

Per size, one emulator (balance transactions generated lazily from their index: `--count
balance_transaction=N --lazy balance_transaction`; the other tables the models read at the emulator's default
size) and one DuckDB file, then two runs of the real CLI, each its own process tree:
1. the load: `dagster asset materialize --select <the Stripe tables the models read>`;
2. the finance run: `dagster asset materialize --select 'group:finance'` (every model and its checks).
Figures per run: wall seconds, peak RSS of the dagster process tree (sampled every 50 ms), the DuckDB spill
folder's peak size, and the 1-minute load average at its end (the machine is shared). Target: the finance run's
peak ≤ 1.3 × the load's. Prints a table; appends JSON records to results/latest.jsonl.

Before (issue 22): the pandas models peaked at 1,520 MB after a 316 MB load of 1M balance transactions (4.8 ×).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as bench  # noqa: E402  (emulator subprocess, memory sampler, instance reader)
from scale import DiskSampler  # noqa: E402

MB = 1024 * 1024
TARGET_RATIO = 1.3
STRIPE_TABLES = ["balance_transaction", "charge", "refund", "payout", "payout_balance_transaction", "customer",
                 "subscription", "subscription_item", "price", "invoice", "invoice_line_item"]


def cli(workdir: Path, emulator: bench.Emulator, label: str, select: str, timeout: float) -> dict:
    home, database = workdir / "home", workdir / "warehouse.duckdb"
    bench.write_instance_yaml(home, None)
    config = {"resources": {"stripe": {"config": {
        "api_key": {"env": "STRIPE_API_KEY"}, "budget_dir": str(workdir / "budget"),
        "max_requests_per_second": 10000, "max_requests_per_second_per_endpoint": 10000}}}}
    config_path = workdir / "run_config.yaml"
    config_path.write_text(json.dumps(config))
    env = {**os.environ, "STRIPE_API_KEY": bench.API_KEY, "STRIPE_API_BASE": emulator.url,
           "NILUS_DUCKDB_PATH": str(database), "DAGSTER_HOME": str(home), "NILUS_SPOOL_DIR": str(workdir / "spool"),
           "PYTHONUNBUFFERED": "1"}
    (workdir / "spool").mkdir(exist_ok=True)
    argv = [bench.dagster_cli(), "asset", "materialize", "-m", "nilus_stripe_assets.definitions", "--select", select,
            "-c", str(config_path)]
    spill = DiskSampler([Path(str(database) + ".tmp")])
    with open(workdir / f"dagster-{label}.log", "wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        memory = bench.TreeMemorySampler(proc.pid)
        memory.start()
        spill.start()
        try:
            returncode = proc.wait(timeout=timeout)
        except BaseException:
            bench._stop_group(proc)
            raise
        finally:
            memory.stop()
            spill.stop()
    if returncode != 0:  # the failure's own lines, not a traceback of ours
        tail = (workdir / f"dagster-{label}.log").read_text(errors="replace").strip().splitlines()[-5:]
        print("\n".join(f"{'':>10} {label} failed: {line}" for line in tail), flush=True)
    return {"label": label, "green": returncode == 0, "wall_seconds": round(time.monotonic() - started, 1),
            "peak_rss_mb": round(memory.peak_rss / MB), "peak_spill_mb": round(spill.peak / MB),
            "loadavg_1m": round(os.getloadavg()[0], 1)}


def rows_of(database: Path) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'finance' ORDER BY 1").fetchall()]
        out = {f"finance.{n}": con.execute(f'SELECT count(*) FROM finance."{n}"').fetchone()[0] for n in names}
        if con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'stripe' "
                       "AND table_name = 'balance_transaction'").fetchone()[0]:
            out["stripe.balance_transaction"] = con.execute("SELECT count(*) FROM stripe.balance_transaction").fetchone()[0]
        return out


def measure(size: int, timeout: float, keep: bool) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix=f"nilus-finance-{size}-"))
    emulator = bench.Emulator(["--count", f"balance_transaction={size}", "--lazy", "balance_transaction"], workdir)
    try:
        load = cli(workdir, emulator, "load", ",".join(f"stripe/{t}" for t in STRIPE_TABLES), timeout)
        print(row(size, load), flush=True)
        finance = cli(workdir, emulator, "finance", "group:finance", timeout)
        finance["ratio_to_load"] = round(finance["peak_rss_mb"] / load["peak_rss_mb"], 2) if load["peak_rss_mb"] else None
        print(row(size, finance), flush=True)
        counts = rows_of(workdir / "warehouse.duckdb")
        print(f"{'':>10} rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), flush=True)
        return [{"size": size, **load}, {"size": size, **finance, "rows": counts}]
    finally:
        emulator.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


HEADER = f"{'bal. txns':>10} {'run':<8} {'ok':<3} {'wall s':>7} {'RSS MB':>7} {'spill MB':>8} {'× load':>6} {'load':>5}"


def row(size: int, r: dict) -> str:
    ratio = r.get("ratio_to_load")
    return (f"{size:>10,} {r['label']:<8} {'yes' if r['green'] else 'NO':<3} {r['wall_seconds']:>7} "
            f"{r['peak_rss_mb']:>7} {r['peak_spill_mb']:>8} {ratio if ratio is not None else '':>6} {r['loadavg_1m']:>5}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000000")
    p.add_argument("--timeout", type=float, default=7200)
    p.add_argument("--keep", action="store_true", help="keep each size's temp folder")
    a = p.parse_args(argv)
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared)", flush=True)
    print(HEADER, flush=True)
    records = []
    for size in (int(s) for s in a.sizes.split(",")):
        records += measure(size, a.timeout, a.keep)
    finance = [r for r in records if r["label"] == "finance"]
    met = all(r["green"] and r["ratio_to_load"] is not None and r["ratio_to_load"] <= TARGET_RATIO for r in finance)
    ratios = ", ".join(f"{r['size']:,}: {r['ratio_to_load']} ×" for r in finance)
    print(f"target finance peak ≤ {TARGET_RATIO} × load peak: {'met' if met else 'MISSED'} ({ratios})")
    bench.save_stamped(records)
    return 0 if all(r["green"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
