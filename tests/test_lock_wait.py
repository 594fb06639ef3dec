"""One DuckDB file, several writers: a second writer waits its turn, and a bounded wait ends in one line.

Real processes throughout: a writer that holds the file's lock for some seconds (DuckDB lets one process
open a file read-write), and real `dagster asset materialize` runs against the emulator over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import SMALL, count

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))

# A real write that keeps the file locked, as a long load would: until told to finish, or for `seconds`.
HOLD = """
import os, sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE OR REPLACE TABLE main.long_write AS SELECT range AS n FROM range(200000)")
open(sys.argv[2], "w").write("locked")
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline and not os.path.exists(sys.argv[2] + ".finish"):
    time.sleep(0.05)
con.execute("INSERT INTO main.long_write VALUES (-1)")
time.sleep(1)
con.close()
"""


@pytest.fixture(scope="module")
def emulator():
    with StripeEmulator(scale=SMALL, seed=17) as emu:
        yield emu


def _hold(database: Path, seconds: float, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    script, ready = tmp_path / "hold.py", tmp_path / "locked"
    script.write_text(HOLD)
    holder = subprocess.Popen([sys.executable, str(script), str(database), str(ready), str(seconds)])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert holder.poll() is None and time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.05)
    return holder, Path(str(ready) + ".finish")


def _read_lines(proc: subprocess.Popen, into: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.extend(iter(proc.stdout.readline, "")), daemon=True)
    thread.start()
    return thread


def _materialize(emu, database: Path, tmp_path: Path, select: str, **env) -> subprocess.Popen:
    home = tmp_path / f"home-{select.replace('/', '-')}"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_"))}
    base.update(
        STRIPE_API_KEY=emu.api_key, STRIPE_API_BASE=emu.url, NILUS_DUCKDB_PATH=str(database),
        DAGSTER_HOME=str(home), PYTHONPATH=str(REPO), NILUS_SPOOL_DIR=str(tmp_path), **env,
    )
    return subprocess.Popen(
        [DAGSTER, "asset", "materialize", "-m", "nilus_stripe_assets.definitions", "--select", select],
        env=base, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_two_cli_runs_wait_for_a_long_write_and_both_succeed(emulator, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    holder, finish = _hold(database, 150, tmp_path)
    runs = {select: _materialize(emulator, database, tmp_path, select) for select in ("stripe/coupon", "stripe/tax_rate")}
    outputs: dict[str, list[str]] = {select: [] for select in runs}
    readers = [_read_lines(proc, outputs[select]) for select, proc in runs.items()]
    waiting = f"is locked by PID {holder.pid}"
    deadline = time.monotonic() + 120
    # The long write ends only once both runs are waiting for it: each must have met the lock.
    while not all(any(waiting in line for line in lines) for lines in outputs.values()):
        assert time.monotonic() < deadline and holder.poll() is None, {s: "".join(o)[-2000:] for s, o in outputs.items()}
        time.sleep(0.1)
    finish.touch()
    for proc in runs.values():
        proc.wait(timeout=180)
    for reader in readers:
        reader.join(timeout=10)
    assert holder.wait(timeout=60) == 0, "the long write was not disturbed"
    for select, proc in runs.items():
        assert proc.returncode == 0, "".join(outputs[select])[-3000:]
    assert count(str(database), "stripe.coupon") == emulator.counts()["coupon"]
    assert count(str(database), "stripe.tax_rate") == emulator.counts()["tax_rate"]
    assert count(str(database), "main.long_write") == 200_001


def test_a_bounded_wait_fails_with_one_line_naming_the_holder(emulator, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    holder, _ = _hold(database, 60, tmp_path)
    try:
        run = _materialize(emulator, database, tmp_path, "stripe/coupon", NILUS_DUCKDB_LOCK_WAIT_SECONDS="2")
        output = run.communicate(timeout=180)[0]
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode != 0
    lines = [line for line in output.splitlines() if f"write lock, held by PID {holder.pid}" in line]
    assert lines, output[-3000:]
    assert "NILUS_DUCKDB_LOCK_WAIT_SECONDS" in lines[0] and "hold.py" in lines[0]
    assert "IOException" not in output and "Could not set lock" not in output
