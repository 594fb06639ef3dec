"""Connect from the command line on a fresh Dagster instance: the README's sequence, command by command.

A platform's accounts are dynamic partitions: until something adds them, `dg launch --partition acct_…`
fails with Dagster's `DagsterInvalidSubsetError`. Materializing the asset `stripe_accounts` adds them (the
accounts sensor's rule, without a daemon or the UI), after which the README's `--partition` and
`--partition-range` commands load exactly each account's rows. Runs against the emulator as a platform with
connected accounts (`StripeEmulator(accounts=N)`), on a new `DAGSTER_HOME`, through `dg launch`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.emulator.model import ACCOUNT_ID

from .conftest import query

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACCOUNTS = 3
CHARGES_PER_ACCOUNT = 150  # two pages each


def _home(tmp_path: Path) -> Path:
    """A new DAGSTER_HOME with the repository's console settings (INFO lines, failures in one line)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(
        yaml.safe_dump({"telemetry": {"enabled": False}, "python_logs": settings["python_logs"]})
    )
    return home


def _partitions(home: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_dynamic_partitions("stripe_accounts"))


def test_accounts_registered_from_the_command_line_then_loaded_by_partition_and_range(tmp_path):
    with StripeEmulator(scale=0.02, seed=21, accounts=ACCOUNTS, account_counts={"charge": CHARGES_PER_ACCOUNT},
                        account_scale=0.02) as emu:
        home = _home(tmp_path)
        database = tmp_path / "warehouse.duckdb"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "NILUS_", "DAGSTER_"))}
        env.update(DAGSTER_HOME=str(home), NILUS_DUCKDB_PATH=str(database), NILUS_SPOOL_DIR=str(tmp_path),
                   STRIPE_API_KEY=emu.api_key, STRIPE_API_BASE=emu.url)

        def dg_launch(*args: str) -> tuple[int, str]:
            done = subprocess.run([str(BIN / "dg"), "launch", *args, "-m", "nilus_stripe_assets.connect"], env=env,
                                  cwd=tmp_path, capture_output=True, text=True, timeout=300)
            return done.returncode, done.stdout + done.stderr

        everything = ("--assets", 'key:"stripe/*"')  # every list: every asset is partitioned by account
        load = ("--job", "stripe_connect_load")  # the README's: the default tables and the platform's Connect lists

        # A fresh instance knows no account: Dagster refuses the partition (what issue 21 met).
        code, output = dg_launch(*everything, "--partition", ACCOUNT_ID)
        assert code != 0 and "DagsterInvalidSubsetError" in output

        code, output = dg_launch("--assets", "stripe_accounts")
        assert code == 0, output[-3000:]
        # The platform first, then the connected accounts as GET /v1/accounts lists them (newest first).
        expected = [ACCOUNT_ID, *reversed(emu.account_ids)]
        assert _partitions(home) == expected
        assert f"Added {ACCOUNTS + 1} Stripe account(s) as partitions of stripe_accounts: {', '.join(expected)}" in output

        code, output = dg_launch(*load, "--partition", ACCOUNT_ID)
        assert code == 0, output[-3000:]
        code, output = dg_launch(*load, "--partition-range", f"{expected[1]}...{expected[-1]}")
        assert code == 0, output[-3000:]
        # A connected account's partition skips the platform's lists, and says so.
        assert "the platform's own lists, loaded in the platform's partition" in output
        # Every list of one connected account: one selection, one partition, though the platform's lists are in it.
        code, output = dg_launch(*everything, "--partition", expected[1])
        assert code == 0, output[-3000:]

        rows = dict(query(str(database), "SELECT stripe_account, count(*) FROM stripe.charge GROUP BY 1"))
        assert rows == {ACCOUNT_ID: emu.counts()["charge"], **{a: CHARGES_PER_ACCOUNT for a in emu.account_ids}}
        assert query(str(database), "SELECT count(*) - count(DISTINCT (stripe_account, id)) FROM stripe.customer") == [(0,)]
        # The platform's lists were read once, without Stripe-Account, and carry the platform's id.
        for name in ("account", "transfer", "application_fee", "country_spec"):
            assert dict(query(str(database), f"SELECT stripe_account, count(*) FROM stripe.{name} GROUP BY 1")) == {
                ACCOUNT_ID: emu.counts()[name]}, name
        assert sorted(i for (i,) in query(str(database), "SELECT id FROM stripe.account")) == sorted(emu.account_ids)
        # A connected account's lists of every product: its charges are there (a second time, merged: no copies).
        assert query(str(database), "SELECT count(*) FROM stripe.charge WHERE stripe_account = ?", [expected[1]]) == [
            (CHARGES_PER_ACCOUNT,)]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            assert len(runs) == 4  # accounts, one partition, one range (one run), everything; none for the refusal
            range_run = next(r for r in runs if r.tags.get("dagster/asset_partition_range_start"))
            assert range_run.tags["dagster/asset_partition_range_end"] == expected[-1]
            # The platform's lists are materialized in the platform's partition only.
            assert instance.get_materialized_partitions(dg.AssetKey(["stripe", "transfer"])) == {ACCOUNT_ID}
            assert instance.get_materialized_partitions(dg.AssetKey(["stripe", "charge"])) == set(expected)
            # Every run's key checks on the tables passed (each run judges its own accounts' rows).
            for name in ("charge", "customer"):
                for check in ("id_not_null", "id_unique"):
                    key = dg.AssetCheckKey(dg.AssetKey(["stripe", name]), check)
                    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
                    assert [h.status.value for h in history] == ["SUCCEEDED"] * 3, (key, history)

        # Registering again adds nothing and changes no partition.
        code, output = dg_launch("--assets", "stripe_accounts")
        assert code == 0 and f"all {ACCOUNTS + 1} are partitions of stripe_accounts already" in output
        assert _partitions(home) == expected

