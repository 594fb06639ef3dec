"""The spool on disk: compressed, bounded by a free-space check, and swept after dead runs (never live ones).

Real files and real processes: a spool owner that is killed with SIGKILL, one that stays alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import pytest

from nilus_stripe_assets.staging import disk as spool_disk
from nilus_stripe_assets.emulator.data import generate
from nilus_stripe_assets.staging.spool import Spool
from nilus_stripe_assets.staging.parquet import stage

OWNER = """
import sys, time
from nilus_stripe_assets.staging.spool import Spool
spool = Spool(directory=sys.argv[1])
spool.write([{"id": "ch_1", "created": 1}])
open(sys.argv[2], "w").write(str(spool.path))
time.sleep(120)
"""


def test_charges_spool_compressed_and_read_back_exactly(tmp_path):
    charges = [orjson.loads(record[2]) for record in generate(counts={"charge": 3000})["charge"]]
    spool = Spool(directory=str(tmp_path))
    for i in range(0, len(charges), 100):
        spool.write(charges[i : i + 100])
    summary = spool.finish()
    on_disk = sum(os.path.getsize(f) for f in summary.files)
    raw = sum(len(orjson.dumps(c)) for c in charges)
    assert all(f.endswith(".ndjson.zst") for f in summary.files)
    assert on_disk / len(charges) < 0.5 * 1024 and on_disk * 5 < raw, (on_disk, raw)
    staged = stage(summary.files, str(tmp_path), fields=summary.fields, kinds=summary.kinds)
    assert staged.rows == len(charges)
    spool.cleanup()
    assert not spool.path.exists()


def _owner(root, tmp_path, name):
    ready = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(root), str(ready)])
    deadline = time.monotonic() + 60
    while not ready.exists() or not ready.read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc, ready.read_text()


def test_spools_of_killed_runs_are_swept_and_live_ones_kept(tmp_path):
    root = tmp_path / "spool-root"
    root.mkdir()
    dead, dead_path = _owner(root, tmp_path, "dead")
    live, live_path = _owner(root, tmp_path, "live")
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        mine = Spool(directory=str(root))  # sweeps the root first
        assert not os.path.exists(dead_path), "a killed run's spool stays behind"
        assert os.path.exists(live_path), "a live run's spool was removed"
        assert spool_disk.sweep(str(root)) == []  # once per process and root
        assert mine.path.exists()
    finally:
        live.kill()
        live.wait()


def test_a_spool_folder_without_room_fails_before_the_load_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(spool_disk.MIN_FREE_ENV, str(10**12))  # a petabyte
    with pytest.raises(spool_disk.SpoolSpaceError) as failure:
        Spool(directory=str(tmp_path))
    message = str(failure.value)
    assert "\n" not in message and str(tmp_path) in message and "NILUS_SPOOL_DIR" in message
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("stripe-")]
    monkeypatch.setenv(spool_disk.MIN_FREE_ENV, "1")
    with pytest.raises(spool_disk.SpoolSpaceError, match=r"10,000,000,000,000 objects"):
        spool_disk.check_free(str(tmp_path), expected_objects=10**13)  # the estimate, when the count is known


FULL_DISK_LOAD = """
import sys
from nilus_stripe_assets.engine.load import extract
from nilus_stripe_assets.reading.budget import BudgetSettings, RequestBudget
from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.source.client import StripeApi
from nilus_stripe_assets.source.errors import explain
from nilus_stripe_assets.warehouse.strategies import TableRef

budget = RequestBudget("full-disk-test", BudgetSettings(global_rate=1000, endpoint_rate=1000, max_in_flight=8,
                                                          state_dir=sys.argv[3]))
api = StripeApi("sk_test_emulator", budget, api_base=sys.argv[1])
try:
    extract(api, CATALOG["charge"], "async", "merge", TableRef.parse("stripe.charge"), spool_root=sys.argv[2])
except Exception as exc:
    print(explain(exc, "charge"))
"""


@pytest.mark.skipif(
    subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
    reason="mounting a small filesystem needs `unshare -m` (root, or mount rights)",
)
def test_a_disk_that_fills_during_the_load_is_named_and_the_partial_spool_removed(tmp_path):
    """A 256 KB filesystem as the spool folder, 20,000 charges (~2.4 MB spooled): the read fails on the full
    disk with one line naming the folder, and nothing of the spool is left on that disk."""
    from nilus_stripe_assets.emulator import StripeEmulator

    folder = tmp_path / "small-disk"
    folder.mkdir()
    (tmp_path / "budget").mkdir()
    with StripeEmulator(counts={"charge": 20_000}, seed=5) as emu:
        script = (
            f"mount -t tmpfs -o size=256k tmpfs {folder} && {sys.executable} -c \"$0\" {emu.url} {folder} "
            f"{tmp_path / 'budget'}; echo LEFT:; ls -A {folder}"
        )
        env = {**os.environ, spool_disk.MIN_FREE_ENV: "0"}  # the room check at the start passes: the disk fills later
        proc = subprocess.run(["unshare", "-m", "sh", "-c", script, FULL_DISK_LOAD], env=env, capture_output=True,
                              text=True, timeout=300)
    output = proc.stdout.strip().splitlines()
    assert output[0].startswith(
        f"Loading 'charge' failed: The spool folder {folder} ran out of space while 'charge' was read"
    ), proc.stdout + proc.stderr[-2000:]
    assert "the partial spool was removed" in output[0] and "NILUS_SPOOL_DIR" in output[0]
    assert output[1:] == ["LEFT:"], output  # nothing left on the full disk
