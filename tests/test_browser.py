"""The Dagster UI in a real browser: the asset catalog, row counts, checks, freshness and the preview table.

Loads the Stripe assets with the Dagster CLI against the emulator in two runs, serves them with
`dagster-webserver`, runs `dagster-daemon` (whose freshness daemon judges every asset's freshness policy,
as in `dagster dev`), and drives Debian's Chromium through Playwright. The code location is
`tests/ui_location.py`: the package's assets, with a one-minute freshness policy on coupons.

- The first run loads only `stripe/charge` and `stripe/coupon`, before the events table exists: the
  charge's `no_stale_rows` check cannot judge and must show as skipped, not passed.
- The second run loads everything else. A minute after the first, the coupon table is older than its
  policy and must show as failed, while the charge, loaded at the same moment under the default policy
  (warn after 2 h, fail after a day), still passes.
- A materialization's `preview` metadata must render as a table (an HTML table with the columns' headers).

Screenshots go to a temporary folder; to refresh the README's, run
`NILUS_SCREENSHOTS_DIR=docs/screenshots .venv/bin/python -m pytest tests/test_browser.py`. Skipped only when
/usr/bin/chromium is missing (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
import runpy
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

from nilus_stripe_assets.source.catalog import DEFAULT_OBJECTS as CATALOG  # the default location's assets
from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import query
from .ui_location import SHORT_POLICY_OBJECT, STALE_AFTER

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
BIN = Path(sys.executable).parent
LOCATION = ROOT / "tests" / "ui_location.py"
FIRST_RUN = ["stripe/charge", f"stripe/{SHORT_POLICY_OBJECT}"]  # loaded before stripe.event exists
# The labels the UI gives a check's latest result and an asset's freshness (read under their headings).
CHECK_RESULTS = "Passed|Failed|Skipped|Warning|Errored|Error|Succeeded|Executing|Running"
FRESHNESS_STATES = "Passing|Passed|Warning|Warn|Failing|Failed|Unknown|Not evaluated"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Stop a webserver or daemon we started, and the code servers it started in its own session."""
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


def _launch(assets: list[str], cwd: Path, env: dict, run_config: Path) -> None:
    """`dg launch`, the README's command, on the test location."""
    load = subprocess.run(
        [str(BIN / "dg"), "launch", "--assets", ",".join(assets), "-f", str(LOCATION), "-c", str(run_config)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    assert load.returncode == 0, load.stderr[-3000:]


def _wait_for_server(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(base + "/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert server.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "dagster-webserver did not answer /server_info within 120 s"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    workspace = tmp / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_file:\n      relative_path: {LOCATION}\n      location_name: nilus_stripe_assets\n"
    )
    run_config = tmp / "run.yaml"
    run_config.write_text("execution:\n  config:\n    in_process: {}\n")
    database = str(tmp / "warehouse.duckdb")
    # Create the instance's SQLite storage once, before the CLI, the webserver and the daemon all try to migrate it.
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    instance.get_asset_keys()
    instance.all_instigator_state()
    instance.dispose()
    everything = sorted(
        key.to_user_string() for key in runpy.run_path(str(LOCATION))["defs"].resolve_asset_graph().get_all_asset_keys()
    )
    with StripeEmulator(scale=0.1, seed=5) as emu:
        env = {
            **os.environ,
            "STRIPE_API_KEY": emu.api_key,
            "STRIPE_API_BASE": emu.url,
            "NILUS_DUCKDB_PATH": database,
            "DAGSTER_HOME": str(home),
            # Dagster's freshness daemon judges every policy each 30 s by default; the test need not wait that long.
            "FRESHNESS_DAEMON_INTERVAL_SECONDS": "2",
        }
        port = free_port()
        logs = {name: open(tmp / f"{name}.log", "wb") for name in ("webserver", "daemon")}
        processes = []
        try:
            processes.append(subprocess.Popen(
                [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
                cwd=tmp, env=env, stdout=logs["webserver"], stderr=subprocess.STDOUT, start_new_session=True,
            ))
            # While the webserver starts: the first run, before the events table exists.
            _launch(FIRST_RUN, tmp, env, run_config)
            first_run_ended = time.time()
            _launch([key for key in everything if key not in FIRST_RUN], tmp, env, run_config)
            processes.append(subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                cwd=tmp, env=env, stdout=logs["daemon"], stderr=subprocess.STDOUT, start_new_session=True,
            ))
            base = f"http://127.0.0.1:{port}"
            _wait_for_server(base, processes[0], tmp / "webserver.log")
            yield {"base": base, "database": database, "first_run_ended": first_run_ended,
                   "daemon_log": tmp / "daemon.log"}
        finally:
            for process in reversed(processes):
                stop(process)
            for log in logs.values():
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
    for name in ("daily_overview", "mrr_by_month", "payout_reconciliation"):
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


def _check_status(page, check: str) -> str:
    """The status line under a check's name in the asset's Checks list (Succeeded, Failed, Skipped, ...)."""
    name = page.locator(f"[title='{check}']").first
    name.wait_for()
    return name.locator("xpath=following-sibling::span[1]").inner_text().strip()


def test_a_check_that_could_not_judge_shows_as_skipped(webserver, page, screenshots):
    # The first run loaded stripe.charge before any events: no_stale_rows had nothing to judge against.
    page.goto(webserver["base"] + "/assets/stripe/charge?view=checks")
    assert _check_status(page, "id_unique") == "Succeeded"  # the same selector on a check that judged
    assert _check_status(page, "no_stale_rows") == "Skipped"
    page.goto(webserver["base"] + "/assets/stripe/charge?view=checks&checkDetail=no_stale_rows")
    page.wait_for_function(f"() => /Evaluation result\\s*\\n\\s*({CHECK_RESULTS})\\b/.test(document.body.innerText)")
    result = re.search(rf"Evaluation result\s*\n\s*({CHECK_RESULTS})\b", page.inner_text("body")).group(1)
    assert result == "Skipped", result
    page.screenshot(path=str(screenshots / "asset-charge-check-skipped.png"))


def test_preview_metadata_renders_as_a_table(webserver, page, screenshots):
    columns = [
        name for name, kind in query(
            webserver["database"],
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'stripe' AND table_name = 'charge' ORDER BY ordinal_position",
        )
        if kind != "JSON" and name != "_loaded_at"
    ]
    page.goto(webserver["base"] + "/assets/stripe/charge?view=events")
    # The metadata row whose first cell is `preview`: its value must be a table element, not text.
    preview = page.locator("xpath=//tr[td[1][normalize-space()='preview']]/td[2]")
    preview.wait_for()
    table = preview.locator("table")
    assert table.count() == 1, preview.inner_html()[:2000]
    headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    assert headers and headers == columns[: len(headers)], (headers, columns)
    assert {"amount", "currency", "created"} <= set(headers)
    rows = table.locator("tbody tr")
    assert 0 < rows.count() <= 5
    newest = query(webserver["database"], "SELECT amount FROM stripe.charge ORDER BY created DESC, id LIMIT 1")[0][0]
    first_row = [c.strip() for c in rows.first.locator("td").all_inner_texts()]
    assert first_row[headers.index("amount")] == str(newest), first_row
    preview.screenshot(path=str(screenshots / "asset-charge-preview.png"))


def _freshness(page, base: str, asset: str) -> str:
    """The asset page's freshness state (Passing, Warning, Failed, ...), as Dagster's freshness daemon left it."""
    page.goto(f"{base}/assets/{asset}")
    page.wait_for_function(f"() => /Freshness policy\\s*\\n\\s*({FRESHNESS_STATES})\\b/.test(document.body.innerText)")
    return re.search(rf"Freshness policy\s*\n\s*({FRESHNESS_STATES})\b", page.inner_text("body")).group(1)


def test_a_table_older_than_its_freshness_policy_shows_as_failed(webserver, page, screenshots):
    # The coupon table was loaded by the first run; its policy fails it one minute later. The daemon
    # judges every 2 s; the page shows its latest judgement.
    time.sleep(max(0.0, webserver["first_run_ended"] + STALE_AFTER.total_seconds() + 3 - time.time()))
    deadline = time.monotonic() + 120
    while (state := _freshness(page, webserver["base"], f"stripe/{SHORT_POLICY_OBJECT}")) != "Failed":
        assert time.monotonic() < deadline, (
            f"freshness of stripe/{SHORT_POLICY_OBJECT} still {state}; daemon log:\n"
            + webserver["daemon_log"].read_text()[-2000:]
        )
        time.sleep(2)
    assert "Fails if more than a minute since last materialization" in page.inner_text("body")
    page.screenshot(path=str(screenshots / "asset-coupon-stale.png"))
    # Loaded in the same run, under the default policy (warn after 2 h, fail after a day): still fresh.
    assert _freshness(page, webserver["base"], "stripe/charge") == "Passing"
