"""No stall without a deadline: an upstream that accepts connections and never answers fails a load in
about `max_retry_seconds + request_timeout_seconds`, with the one-line connection message.

The emulator's `stall` switch is a real HTTP server that reads each request and never answers. Timeouts
are configured short here; the defaults (20 s per attempt, 60 s of retries) are measured in benchmarks/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import stripe

from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.source.errors import explain
from nilus_stripe_assets.dagster_adapter.resources import StripeResource

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


@pytest.fixture
def stalled():
    with StripeEmulator(counts={"charge": 10}, seed=3) as emu:
        emu.configure(stall=True)
        yield emu


def test_a_stalled_page_fails_within_its_retry_deadline(stalled, tmp_path):
    resource = StripeResource(api_key=stalled.api_key, api_base=stalled.url, budget_dir=str(tmp_path),
                              request_timeout_seconds=0.5, max_retry_seconds=1.5)
    api = resource.get_api()
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError) as info:
        api.list_page("/v1/charges", {"limit": 100})
    elapsed = time.monotonic() - started
    # Two attempts of 0.5 s and one SDK pause (≤ 0.5 s) fit in 1.5 s; the next pause would not. Counted
    # alone, the SDK's 6 retries would take 7 × 0.5 s + ~9 s of pauses.
    assert api.stats.connection_errors == 2 and elapsed < 4, (api.stats.as_dict(), elapsed)
    line = str(explain(info.value, "charge", stalled.api_key))
    port = stalled.url.rsplit(":", 1)[1]
    assert line.startswith(f"Could not connect to the Stripe API at 127.0.0.1:{port} while loading 'charge' (timed out)")
    assert "\n" not in line


def test_the_cli_fails_a_stalled_object_with_one_line(stalled, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = {"resources": {"stripe": {"config": {
        "api_key": {"env": "STRIPE_API_KEY"}, "budget_dir": str(tmp_path / "budget"),
        "request_timeout_seconds": 1, "max_retry_seconds": 2,
    }}}}
    (tmp_path / "run.yaml").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_"))}
    env.update(STRIPE_API_KEY=stalled.api_key, STRIPE_API_BASE=stalled.url, DAGSTER_HOME=str(home),
               NILUS_DUCKDB_PATH=str(tmp_path / "warehouse.duckdb"), NILUS_SPOOL_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    started = time.monotonic()
    proc = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "nilus_stripe_assets.definitions", "--select", "stripe/charge",
         "-c", str(tmp_path / "run.yaml")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    port = stalled.url.rsplit(":", 1)[1]
    lines = [line for line in output.splitlines() if "Could not connect to the Stripe API" in line]
    assert lines and all(f"at 127.0.0.1:{port} while loading 'charge' (timed out)" in line for line in lines), output[-3000:]
    assert elapsed < 60, elapsed  # start-up and a ~3 s deadline, not 7 attempts × 80 s
