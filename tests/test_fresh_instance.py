"""Many CLI runs started at once on a fresh DAGSTER_HOME all succeed (issue 21, item 5).

Dagster creates an instance's SQLite storage (runs, event index, schedules) the first time a process opens
the instance, with no lock between processes: several processes doing it at once can stamp the
`alembic_version` table twice, and from then on every command fails with `Version table 'alembic_version'
has more than one head present` (dagster-io/dagster#27390). The repository's `dagster.yaml` (the README's
`DAGSTER_HOME=$PWD`) therefore creates that storage under a file lock; a home without it is created once with
`dagster instance migrate` before fanning out, as the README says. Each case starts its runs at the same
instant, through `dg launch`, and then checks every run's record and every table's rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import query

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OBJECTS = {"charge": 120, "customer": 80, "refund": 30, "product": 40, "price": 50, "coupon": 20}


def _fan_out(home: Path, emu, tmp_path: Path, objects: dict[str, int], monkeypatch) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), STRIPE_API_KEY=emu.api_key, STRIPE_API_BASE=emu.url, TMPDIR=str(tmp_path),
               NILUS_DUCKDB_PATH=str(tmp_path / "warehouse.duckdb"), NILUS_SPOOL_DIR=str(tmp_path))
    runs = {
        name: subprocess.Popen([str(BIN / "dg"), "launch", "--assets", f"stripe/{name}", "-m",
                                "nilus_stripe_assets.definitions"], env=env, cwd=home, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        for name in objects
    }
    outputs = {name: run.communicate(timeout=600)[0] for name, run in runs.items()}
    failed = {name: out[-1500:] for name, out in outputs.items() if runs[name].returncode != 0}
    assert not failed, "\n\n".join(f"{name}:\n{out}" for name, out in failed.items())

    monkeypatch.chdir(home)  # the repository's storage folder is relative to the working directory
    with dg.DagsterInstance.from_config(str(home)) as instance:
        statuses = [record.dagster_run.status for record in instance.get_run_records()]
    assert statuses == [dg.DagsterRunStatus.SUCCESS] * len(objects)
    for name, expected in objects.items():
        assert query(str(tmp_path / "warehouse.duckdb"), f"SELECT count(*) FROM stripe.{name}")[0][0] == expected


def test_runs_at_once_on_a_fresh_home_with_the_repository_settings(tmp_path, monkeypatch):
    home = tmp_path / "home"  # as a fresh checkout with DAGSTER_HOME=$PWD: dagster.yaml, no storage yet
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with StripeEmulator(counts=OBJECTS, seed=7) as emu:
        _fan_out(home, emu, tmp_path, OBJECTS, monkeypatch)
    assert (home / ".dagster_home" / "storage" / "history" / "runs.db").exists()


def test_runs_at_once_on_a_bare_home_after_instance_migrate(tmp_path, monkeypatch):
    home = tmp_path / "home"  # any DAGSTER_HOME: Dagster's default settings
    home.mkdir()
    done = subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env={**os.environ, "DAGSTER_HOME": str(home)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    objects = dict(list(OBJECTS.items())[:3])
    with StripeEmulator(counts=objects, seed=7) as emu:
        _fan_out(home, emu, tmp_path, objects, monkeypatch)
