"""The Dagster UI in a real browser: the asset catalog, a materialized asset's row count and its checks.

Materializes everything with the Dagster CLI against the emulator (as `nilus-stripe-demo` does), serves the
repository's workspace with `dagster-webserver`, and drives Debian's Chromium through Playwright. Screenshots
go to a temporary folder; to refresh the README's, run
`NILUS_SCREENSHOTS_DIR=docs/screenshots .venv/bin/python -m pytest tests/test_browser.py`. Skipped only when
/usr/bin/chromium is missing (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import sync_playwright

from nilus_stripe_assets.catalog import CATALOG
from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import query

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Stop the webserver we started, and the code server it started in its own session."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session's leftovers (its pgid is the webserver's pid)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    run_config = tmp / "run.yaml"
    run_config.write_text("execution:\n  config:\n    in_process: {}\n")
    database = str(tmp / "warehouse.duckdb")
    # Create the instance's SQLite storage once, before the CLI and the webserver both try to migrate it.
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    instance.get_asset_keys()
    instance.all_instigator_state()
    instance.dispose()
    with StripeEmulator(scale=0.1, seed=5) as emu:
        env = {
            **os.environ,
            "STRIPE_API_KEY": emu.api_key,
            "STRIPE_API_BASE": emu.url,
            "NILUS_DUCKDB_PATH": database,
            "DAGSTER_HOME": str(home),
        }
        port = free_port()
        log = open(tmp / "webserver.log", "wb")
        server = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            # The demo's command, while the webserver starts.
            load = subprocess.run(
                [str(BIN / "dagster"), "asset", "materialize", "-m", "nilus_stripe_assets.definitions",
                 "--select", "*", "-c", str(run_config)],
                cwd=tmp, env=env, capture_output=True, text=True, timeout=180,
            )
            assert load.returncode == 0, load.stderr[-3000:]
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(base + "/server_info", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                assert server.poll() is None, (tmp / "webserver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "dagster-webserver did not answer /server_info within 90 s"
                time.sleep(0.25)
            yield {"base": base, "database": database}
        finally:
            stop(server)
            log.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where screenshots go: a temporary folder, unless NILUS_SCREENSHOTS_DIR asks for the README's."""
    chosen = os.environ.get("NILUS_SCREENSHOTS_DIR")
    folder = Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(webserver):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1800})
            page = context.new_page()
            page.set_default_timeout(60_000)  # generous: CI machines may be busy
            # The UI greets a fresh instance on 127.0.0.1 with a newsletter dialog; mark it seen, as its Skip does.
            page.request.post(webserver["base"] + "/graphql", data={"query": "mutation { setNuxSeen }"})
            yield page
        finally:
            browser.close()


def test_asset_catalog_lists_every_stripe_asset(webserver, page, screenshots):
    page.goto(webserver["base"] + "/assets")
    page.locator("a[href='/assets/stripe/webhook_endpoint']").first.wait_for()
    # Wait for the statuses, not just the names: every asset was materialized by the CLI run.
    page.get_by_text("Materialized").first.wait_for()
    page.wait_for_function("() => !document.body.innerText.includes('Loading...')")
    hrefs = page.locator("a[href^='/assets/stripe/']").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    listed = {h.rsplit("/", 1)[-1] for h in hrefs if h.count("/") == 3}
    assert listed == set(CATALOG), sorted(set(CATALOG) ^ listed)
    for name in ("daily_net_volume", "mrr"):
        assert page.locator(f"a[href='/assets/finance/{name}']").count() >= 1, name
    assert "Never materialized" not in page.inner_text("body")
    page.screenshot(path=str(screenshots / "asset-catalog.png"))


def test_materialized_asset_shows_its_row_count_and_checks(webserver, page, screenshots):
    rows = query(webserver["database"], "SELECT count(*) FROM stripe.charge")[0][0]
    assert rows > 0
    page.goto(webserver["base"] + "/assets/stripe/charge")
    page.get_by_text("Row count", exact=True).wait_for()
    page.get_by_text("Latest check results", exact=True).wait_for()
    page.wait_for_function("() => /Row count\\s*\\n\\s*[\\d,]+/.test(document.body.innerText)")
    text = page.inner_text("body")
    shown = re.search(r"Row count\s*\n\s*([\d,]+)", text)
    assert shown and int(shown.group(1).replace(",", "")) == rows, text[:1500]
    assert "stripe.charge" in text  # table name (Storage)
    for field in ("rows_inserted", "requests", "rate_limited_429", "retries", "objects_per_second", "created_min"):
        assert field in text, field
    page.screenshot(path=str(screenshots / "asset-charge.png"))

    page.get_by_role("tab", name="Checks").click()
    for check in ("id_unique", "id_not_null", "no_stale_rows"):
        page.get_by_text(check, exact=True).first.wait_for()
    page.get_by_text("Passed").first.wait_for()
    assert "Failed" not in page.inner_text("body")
    page.screenshot(path=str(screenshots / "asset-charge-checks.png"))
