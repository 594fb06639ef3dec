"""Offline demo: start the bundled Stripe emulator, materialize every asset with the Dagster CLI, print rows.

`nilus-stripe-demo` needs no Stripe key and no internet. It runs the same command a user runs in CI,
`dg launch --assets 'group:stripe or group:finance' -m nilus_stripe_assets.definitions` (the default
Stripe tables and the finance models; `--select '*'` for every list), against the emulator.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

EMULATOR_KEY = "sk_test_emulator"


def start_emulator(extra_args: list[str]) -> tuple[subprocess.Popen, str]:
    ready = Path(tempfile.mkdtemp(prefix="nilus-emulator-")) / "url"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nilus_stripe_assets.emulator", "--port", "0", "--ready-file", str(ready), *extra_args],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not ready.exists() or not ready.read_text().strip():
        if proc.poll() is not None:
            raise SystemExit(f"The Stripe emulator exited with code {proc.returncode} before listening.")
        if time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit("The Stripe emulator did not start within 120 s.")
        time.sleep(0.05)
    return proc, ready.read_text().strip()


def _dg() -> str:
    """The `dg` CLI of this interpreter's environment (works without activating the venv)."""
    beside = Path(sys.executable).with_name("dg")
    return str(beside) if beside.exists() else "dg"

# The instance's settings, as in the repository's dagster.yaml: its SQLite storage created under a file lock
# (dagster_adapter/instance_storage.py) and the console settings (dagster_adapter/console.py).
INSTANCE_SETTINGS = """telemetry:
  enabled: false
storage:
  custom:
    module: nilus_stripe_assets.dagster_adapter.instance_storage
    class: SqliteStorageCreatedOnce
    config:
      base_dir: {storage}
python_logs:
  python_log_level: INFO
  dagster_handler_config:
    handlers:
      failures_in_one_line:
        class: nilus_stripe_assets.dagster_adapter.console.FailuresInOneLine
"""


def dagster_home() -> str:
    """The repo's dagster.yaml when run from a checkout, else a private instance folder."""
    if Path("dagster.yaml").exists():
        return str(Path.cwd())
    home = Path(".dagster_home").resolve()
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_SETTINGS.format(storage=json.dumps(str(home / "storage"))))
    return str(home)


def row_counts(database: str) -> list[tuple[str, int]]:
    with duckdb.connect(database, read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY table_schema, table_name"
        ).fetchall()
        return [
            (f"{schema}.{name}", con.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0])
            for schema, name in tables
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="data/warehouse.duckdb", help="DuckDB file to load into")
    # The default load's tables and the finance models, as before issue 19 (every list: --select '*').
    parser.add_argument("--select", default="group:stripe or group:finance",
                        help="Dagster asset selection (default: the default Stripe tables and the finance models; "
                             "'*' loads every Stripe list)")
    parser.add_argument("--scale", default="1", help="emulator data volume multiplier")
    parser.add_argument(
        "--executor",
        choices=["in_process", "multiprocess"],
        default="in_process",
        help="in_process (default) is fastest for the demo's small data: one process instead of one per asset",
    )
    args = parser.parse_args(argv)

    database = str(Path(args.database).resolve())
    emulator, url = start_emulator(["--scale", args.scale])
    env = {
        **os.environ,
        "STRIPE_API_KEY": EMULATOR_KEY,
        "STRIPE_API_BASE": url,
        "NILUS_DUCKDB_PATH": database,
        "DAGSTER_HOME": dagster_home(),
    }
    print(f"Stripe emulator at {url}; loading into {database}", flush=True)
    run_config = Path(tempfile.mkdtemp(prefix="nilus-demo-")) / "run.yaml"
    run_config.write_text(f"execution:\n  config:\n    {args.executor}: {{}}\n")
    started = time.monotonic()
    try:
        result = subprocess.run(
            [_dg(), "launch", "--assets", args.select, "-m", "nilus_stripe_assets.definitions", "-c", str(run_config)],
            env=env,
        )
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        print(f"dg launch failed (exit {result.returncode}); see the log above.", file=sys.stderr)
        return result.returncode
    counts = row_counts(database)
    width = max(len(name) for name, _ in counts)
    print(f"\nLoaded in {elapsed:.1f}s:")
    for name, rows in counts:
        print(f"  {name:<{width}}  {rows:>8,}")
    print(f"  {'total':<{width}}  {sum(r for _, r in counts):>8,}")
    print(finance_summary(database))
    return 0


def finance_summary(database: str, months: int = 6) -> str:
    """A few figures of the finance models (empty when they were not built): the MRR report with its
    movements, the last 30 days of the daily overview, and how many payouts reconcile."""
    with duckdb.connect(database, read_only=True) as con:
        built = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'finance'").fetchall()}
        if not {"mrr_by_month", "daily_overview", "payouts"} <= built:
            return ""
        lines = ["", f"MRR by month (finance.mrr_by_month, last {months} months, major units):",
                 f"  {'month':<8} {'cur':<4} {'MRR':>11} {'new':>10} {'expansion':>10} {'contraction':>11} "
                 f"{'churned':>10} {'reactivated':>11} {'customers':>9}"]
        for month, cur, *figures, customers in con.execute(
            "SELECT strftime(month, '%Y-%m'), currency, mrr_major, new_mrr_major, expansion_mrr_major, "
            "contraction_mrr_major, churned_mrr_major, reactivation_mrr_major, customers FROM finance.mrr_by_month "
            f"WHERE month >= date_trunc('month', current_date) - INTERVAL '{months - 1} months' ORDER BY currency, month"
        ).fetchall():
            mrr, new, expansion, contraction, churned, reactivated = (f"{f:,.2f}" for f in figures)
            lines.append(f"  {month:<8} {cur:<4} {mrr:>11} {new:>10} {expansion:>10} {contraction:>11} {churned:>10} "
                         f"{reactivated:>11} {customers:>9}")
        for cur, sales, refunds, fees, net, payouts in con.execute(
            "SELECT currency, sum(sales_major), sum(refunds_major), sum(fees_major), sum(net_volume_major), "
            "sum(payouts_major) FROM finance.daily_overview WHERE day > current_date - 30 GROUP BY currency ORDER BY 1"
        ).fetchall():
            lines.append(f"Last 30 days ({cur}, finance.daily_overview): sales {sales:,.2f}, refunds {refunds:,.2f}, "
                         f"fees {fees:,.2f}, net volume {net:,.2f}, payouts {payouts:,.2f}")
        status = dict(con.execute("SELECT reconciliation, count(*) FROM finance.payouts GROUP BY 1").fetchall())
        lines.append("Payouts (finance.payouts): " + ", ".join(f"{n} {k}" for k, n in sorted(status.items())))
        return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
