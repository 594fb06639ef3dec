"""Offline demo: start the bundled Stripe emulator, materialize every asset with the Dagster CLI, print rows.

`nilus-stripe-demo` needs no Stripe key and no internet. It runs the same command a user runs in CI,
`dg launch --assets '*' -m nilus_stripe_assets.definitions`, against the emulator.
"""

from __future__ import annotations

import argparse
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

# The instance's console settings, as in the repository's dagster.yaml (see wiring/console.py).
INSTANCE_SETTINGS = """telemetry:
  enabled: false
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
    (home / "dagster.yaml").write_text(INSTANCE_SETTINGS)
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
    parser.add_argument("--select", default="*", help="Dagster asset selection")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
