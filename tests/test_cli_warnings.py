"""A normal load from the shell prints no warning.

`dg launch`, the README's command, runs the package's code location against the emulator with the
repository's `dagster.yaml` logging settings: no line of its output may name a warning (Dagster's
BetaWarning, PreviewWarning or SupersessionWarning, or any warning of this package or its libraries).

The older `dagster asset materialize` still works and prints exactly one: its CLI's notice that the command
is superseded by `dg launch`, raised before any code of a location is imported (so no package can filter
it). The second test pins that nothing else joins it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WARNING = re.compile(r"\w*Warning\b")
CLI_NOTICE = re.compile(r"SupersessionWarning: Function `asset_materialize_command` is superseded")


def _load(tmp_path: Path, emulator, command: list[str]) -> tuple[str, Path]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(
        yaml.safe_dump({"telemetry": {"enabled": False}, "python_logs": settings["python_logs"]})
    )
    database = tmp_path / "warehouse.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_", "PYTHONWARNINGS"))}
    env.update(DAGSTER_HOME=str(home), NILUS_DUCKDB_PATH=str(database), NILUS_SPOOL_DIR=str(tmp_path),
               STRIPE_API_KEY=emulator.api_key, STRIPE_API_BASE=emulator.url)
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output, database


def _charges(database: Path) -> int:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute("SELECT count(*) FROM stripe.charge").fetchone()[0]


def test_dg_launch_prints_no_warning(tmp_path, shared_emulator):
    output, database = _load(tmp_path, shared_emulator, [
        str(BIN / "dg"), "launch", "--assets", "stripe/charge", "-m", "nilus_stripe_assets.definitions",
    ])
    assert _charges(database) > 0
    assert "charge: " in output  # the load's own line was printed: the output is the run's
    warnings = [line for line in output.splitlines() if WARNING.search(line)]
    assert not warnings, "\n".join(warnings)


def test_dagster_asset_materialize_prints_only_its_cli_notice(tmp_path, shared_emulator):
    output, database = _load(tmp_path, shared_emulator, [
        str(BIN / "dagster"), "asset", "materialize", "--select", "stripe/charge", "-m", "nilus_stripe_assets.definitions",
    ])
    assert _charges(database) > 0
    warnings = [line for line in output.splitlines() if WARNING.search(line)]
    assert len(warnings) == 1 and CLI_NOTICE.search(warnings[0]), "\n".join(warnings)


@pytest.mark.parametrize("module", ["nilus_stripe_assets.definitions", "nilus_stripe_assets.daily"])
def test_loading_a_location_warns_about_nothing(module):
    """Every warning category shown (`-W error` turns the first into a failure), as a code server loads it."""
    probe = f"import {module} as location; location.defs.get_repository_def()"
    result = subprocess.run([sys.executable, "-W", "error", "-c", probe], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"})
    assert result.returncode == 0, result.stderr[-3000:]
