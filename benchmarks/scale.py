#!/usr/bin/env python
"""Large accounts: first load, full re-load and a re-load with 1 % changed, at several sizes.

    python benchmarks/scale.py                      # 100k and 1M charges
    python benchmarks/scale.py --sizes 100000,1000000,3000000 --plot benchmarks/scale.png
    python benchmarks/scale.py --rate 100 --alternate /path/to/old/checkout --repeat 2   # first loads, old vs new

Per size, one emulator (0 ms latency, no limits, StripeResource budget raised; charges generated lazily from
their index, so 10M fit in ~50 MB: `--lazy charge`, see the README's emulator section) and one DuckDB file:
1. first load: `dagster asset materialize --select stripe/charge` (default mode, async) into an empty file;
2. re-load: the same command again, nothing changed;
3. re-load after 1 % of the charges were updated in the emulator (`description`, through its control route).
Each run is the real CLI (see run.py for the shared machinery). Figures per run: wall seconds and objects/s
of the whole command, fetch seconds, write seconds (staging + applying, from the asset's metadata) and the
part of it that held the warehouse lock, peak RSS of the dagster process tree, peak temporary disk (everything
under NILUS_SPOOL_DIR: spooled pages, staged Parquet, staging spill; plus the warehouse's own DuckDB spill
folder), warehouse file size, the exact inserted / updated / unchanged counts, the emulator's peak RSS and
the 1-minute load average at the end of each run (the machine is shared). Prints a table; appends JSON
records to results/latest.jsonl.

`--rate N` limits the emulator to N requests/s (global and per endpoint) and sets the budget to N, as a live
account's 100 req/s would. `--alternate DIR` measures first loads only, each into a new DuckDB file,
alternating this package with the one in DIR (e.g. a worktree of an older commit, put first on the
PYTHONPATH), `--repeat` times each, against the same emulator; it adds the time from the last request to the
command's exit and the ratio of the whole command to (fetch + 5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (benchmarks/run.py: emulator, sampler, instance readers)

MB = 1024 * 1024


class DiskSampler(threading.Thread):
    """Peak bytes under some folders together, sampled every `interval` s (files come and go while we walk)."""

    def __init__(self, roots: list[Path], interval: float = 0.25):
        super().__init__(daemon=True)
        self.roots, self.interval, self.peak = roots, interval, 0
        self._halt = threading.Event()

    def _size(self) -> int:
        total = 0
        for folder, _, files in (walked for root in self.roots for walked in os.walk(root)):
            for name in files:
                try:
                    total += os.stat(os.path.join(folder, name)).st_blocks * 512
                except OSError:
                    pass
        return total

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.peak = max(self.peak, self._size())

    def stop(self) -> None:
        self._halt.set()
        self.join()


def load(emulator: bench.Emulator, workdir: Path, label: str, timeout: float, rate: float = 10000,
         database: Optional[Path] = None) -> dict:
    emulator_memory = bench.TreeMemorySampler(emulator.proc.pid, interval=0.5)
    emulator_memory.start()
    requests = bench.StatsPoller(emulator.client, interval=0.25)
    requests.start()
    try:
        record = _load(emulator, workdir, label, timeout, rate, database or workdir / "warehouse.duckdb")
    finally:
        emulator_memory.stop()
        requests.stop()
    # The last request's time: the last sample whose request count grew (the poller's clock is ours).
    totals = [(t, bench._total(endpoints)) for t, endpoints in requests.series]
    last = next((t for (t, n), (_, before) in zip(reversed(totals), reversed(totals[:-1])) if n > before), None)
    tail = round(record.pop("_exited") - last, 1) if last is not None else None
    # Peak RSS while pages still arrived (up to the last request) and after (staging's rest, apply, checks).
    timeline, sampled_from = record.pop("_rss_timeline"), record.pop("_rss_started")
    fetching = [rss for t, rss, _ in timeline if last is not None and sampled_from + t <= last]
    after = [rss for t, rss, _ in timeline if last is None or sampled_from + t > last]
    record["peak_rss_fetching_mb"] = round(max(fetching, default=0) / MB)
    record["peak_rss_after_mb"] = round(max(after, default=0) / MB)
    peak_at = max(timeline, key=lambda sample: sample[1], default=(None,))[0]
    record["peak_rss_seconds_after_last_request"] = (
        round(sampled_from + peak_at - last, 1) if peak_at is not None and last is not None else None)
    fetch = record["fetch_seconds"]
    return record | {"emulator_rss_mb": round(emulator_memory.peak_rss / MB), "last_request_to_exit_seconds": tail,
                     "wall_over_fetch_plus_5": round(record["wall_seconds"] / (fetch + 5), 3) if fetch else None}


def _load(emulator: bench.Emulator, workdir: Path, label: str, timeout: float, rate: float, database: Path) -> dict:
    home, spool = workdir / f"home-{label}", workdir / "spool"
    bench.write_instance_yaml(home, None)
    spool.mkdir(exist_ok=True)
    config = {"resources": {"stripe": {"config": {
        "api_key": {"env": "STRIPE_API_KEY"}, "budget_dir": str(workdir / f"budget-{label}"),
        "max_requests_per_second": rate, "max_requests_per_second_per_endpoint": rate}}}}
    config_path = workdir / "run_config.yaml"
    config_path.write_text(json.dumps(config))
    env = {**os.environ, **bench._pythonpath_env(), "STRIPE_API_KEY": bench.API_KEY, "STRIPE_API_BASE": emulator.url,
           "NILUS_DUCKDB_PATH": str(database), "DAGSTER_HOME": str(home), "NILUS_SPOOL_DIR": str(spool),
           "PYTHONUNBUFFERED": "1"}
    argv = [bench.dagster_cli(), "asset", "materialize", "-m", bench.TARGET.module, "--select", "stripe/charge",
            "-c", str(config_path)]
    disk = DiskSampler([spool, Path(str(database) + ".tmp")])  # the spool folder and DuckDB's spill folder
    with open(workdir / f"dagster-{label}.log", "wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        memory = bench.TreeMemorySampler(proc.pid)
        memory.start()
        disk.start()
        try:
            returncode = proc.wait(timeout=timeout)
        except BaseException:
            bench._stop_group(proc)
            raise
        finally:
            memory.stop()
            disk.stop()
        exited = time.monotonic()
        wall = exited - started
    meta = bench.read_instance(home, ["charge"])["assets"].get("charge", {})
    objects = int(meta.get("objects_fetched") or 0)
    return {
        "label": label, "green": returncode == 0, "wall_seconds": round(wall, 1),
        "objects": objects, "objects_per_second": round(objects / wall) if wall else 0,
        "fetch_seconds": meta.get("fetch_seconds"), "write_seconds": meta.get("write_seconds"),
        "lock_seconds": meta.get("lock_seconds"),
        "peak_rss_mb": round(memory.peak_rss / MB), "peak_spool_mb": round(disk.peak / MB),
        "spool_bytes_per_object": round(disk.peak / objects) if objects else None,
        "warehouse_mb": round(os.path.getsize(database) / MB) if database.exists() else None,
        "inserted": meta.get("rows_inserted"), "updated": meta.get("rows_updated"), "unchanged": meta.get("rows_unchanged"),
        "loadavg_1m": round(os.getloadavg()[0], 1), "_exited": exited,
        "_rss_timeline": memory.timeline, "_rss_started": memory.started,
    }


def change_one_percent(emulator: bench.Emulator, database: Path) -> int:
    """Every 100th charge by id gets a new description (through the control route, 4 connections)."""
    import duckdb

    with duckdb.connect(str(database), read_only=True) as con:
        ids = [r[0] for r in con.execute(
            "SELECT id FROM stripe.charge QUALIFY row_number() OVER (ORDER BY id) % 100 = 1").fetchall()]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda oid: emulator.client.update("charge", oid, description=f"changed {oid}"), ids))
    return len(ids)


def measure(size: int, timeout: float, keep: bool, rate: float = 10000) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix=f"nilus-scale-{size}-"))
    limits = ["--global-rate", str(rate), "--endpoint-rate", str(rate)] if rate < 10000 else []
    emulator = bench.Emulator(["--count", f"charge={size}", "--lazy", "charge", *limits], workdir, timeout=180)
    records = []
    try:
        for label in ("first", "reload"):
            records.append({"size": size, **load(emulator, workdir, label, timeout, rate)})
            print(row(records[-1]), flush=True)
        started = time.monotonic()
        changed = change_one_percent(emulator, workdir / "warehouse.duckdb")
        print(f"{'':>10} ({changed:,} charges changed in {time.monotonic() - started:.0f} s)", flush=True)
        records.append({"size": size, "changed": changed, **load(emulator, workdir, "reload-1%", timeout, rate)})
        print(row(records[-1]), flush=True)
    finally:
        emulator.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return records


def alternate(size: int, rate: float, baseline: str, repeat: int, timeout: float, keep: bool) -> list[dict]:
    """First loads only, each into a new DuckDB file: this package and the one in `baseline`, alternating
    (new, old, then old, new, ...) so drifts of the shared machine's load fall on both alike."""
    workdir = Path(tempfile.mkdtemp(prefix=f"nilus-alternate-{size}-"))
    limits = ["--global-rate", str(rate), "--endpoint-rate", str(rate)] if rate < 10000 else []
    emulator = bench.Emulator(["--count", f"charge={size}", "--lazy", "charge", *limits], workdir, timeout=180)
    own = bench.TARGET.pythonpath
    records = []
    try:
        for i in range(repeat):
            for package in (("new", "old") if i % 2 == 0 else ("old", "new")):
                bench.TARGET.pythonpath = baseline if package == "old" else own
                label = f"first-{package}-{i + 1}"
                database = workdir / f"warehouse-{label}.duckdb"
                records.append({"size": size, "package": package, "rate": rate,
                                **load(emulator, workdir, label, timeout, rate, database)})
                print(row(records[-1]), flush=True)
                database.unlink(missing_ok=True)
    finally:
        bench.TARGET.pythonpath = own
        emulator.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return records


HEADER = (f"{'charges':>10} {'run':<13} {'ok':<3} {'wall s':>7} {'obj/s':>7} {'fetch s':>7} {'write s':>7} "
          f"{'lock s':>6} {'RSS MB':>6} {'spool MB':>8} {'B/obj':>6} {'DB MB':>6} {'ins/upd/unch':>24} {'emu MB':>6} {'load':>5} "
          f"{'tail s':>6} {'wall/(fetch+5)':>14} {'RSS fetching/after':>18}")


def row(r: dict) -> str:
    counts = f"{r['inserted']}/{r['updated']}/{r['unchanged']}"
    return (f"{r['size']:>10,} {r['label']:<13} {'yes' if r['green'] else 'NO':<3} {r['wall_seconds']:>7} "
            f"{r['objects_per_second']:>7,} {r['fetch_seconds']!s:>7} {r['write_seconds']!s:>7} {r['lock_seconds']!s:>6} "
            f"{r['peak_rss_mb']:>6} {r['peak_spool_mb']:>8} {r['spool_bytes_per_object']!s:>6} "
            f"{r['warehouse_mb']!s:>6} {counts:>24} {r['emulator_rss_mb']:>6} {r['loadavg_1m']:>5} "
            f"{r.get('last_request_to_exit_seconds')!s:>6} {r.get('wall_over_fetch_plus_5')!s:>14} "
            f"{str(r.get('peak_rss_fetching_mb')) + ' / ' + str(r.get('peak_rss_after_mb')):>18}")


def plot(records: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for label in ("first", "reload", "reload-1%"):
        rs = [r for r in records if r["label"] == label]
        sizes = [r["size"] for r in rs]
        for ax, key in zip(axes, ("write_seconds", "peak_rss_mb", "peak_spool_mb")):
            ax.plot(sizes, [r[key] for r in rs], marker="o", label=label)
            ax.set_xscale("log")
            ax.set_title(key.replace("_", " "))
            ax.set_xlabel("charges")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--keep", action="store_true", help="keep each size's temp folder")
    p.add_argument("--plot", help="write a PNG of write seconds, peak RSS and peak spool disk per size")
    p.add_argument("--pythonpath", help="measure the package in this folder (e.g. a scratch copy) instead")
    p.add_argument("--rate", type=float, default=10000, help="emulator limit and budget, requests/s (default: unlimited)")
    p.add_argument("--alternate", metavar="DIR", help="first loads only, alternating with the package in DIR")
    p.add_argument("--repeat", type=int, default=1, help="with --alternate: runs of each package per size")
    a = p.parse_args(argv)
    bench.TARGET.pythonpath = str(Path(a.pythonpath).resolve()) if a.pythonpath else None
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared)", flush=True)
    print(HEADER, flush=True)
    records = []
    for size in (int(s) for s in a.sizes.split(",")):
        if a.alternate:
            records += alternate(size, a.rate, str(Path(a.alternate).resolve()), a.repeat, a.timeout, a.keep)
        else:
            records += measure(size, a.timeout, a.keep, a.rate)
    for r in records:
        bench.save({"scenario": "scale", "git": bench.git_revision(), **r})
    firsts = [r for r in records if r["label"] == "first" and r["green"]]
    if len(firsts) > 1:
        ratio = max(r["peak_rss_mb"] for r in firsts) / min(r["peak_rss_mb"] for r in firsts)
        print(f"peak RSS of first loads, largest / smallest size: {ratio:.2f}x (target <= 1.3x)")
    if a.plot:
        plot(records, a.plot)
    return 0 if all(r["green"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
