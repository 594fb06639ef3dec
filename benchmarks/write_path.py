#!/usr/bin/env python
"""The write path alone at sizes the emulator cannot hold in memory: spool -> stage -> apply, no HTTP.

    python benchmarks/write_path.py --sizes 1000000,10000000

The bundled emulator keeps every object in memory (~2 GB per million charges while generating), so 10M
charges do not fit next to other work on a 24 GB machine. This benchmark measures what this package does
with them once fetched: 100k charges from the emulator's generator are spooled again and again, each copy
with its own ids, through the real `Spool` (compressed, hashed, field kinds recorded), to N objects. Then,
each in a fresh process (so its peak RSS is the write's own): a first load into an empty DuckDB file and a
re-load of the same spool (nothing changed), with `warehouse.prepare` (staging, no lock) and
`warehouse.apply` (the warehouse transaction). Prints write seconds, lock seconds, peak RSS, peak disk
(spool + staging + DuckDB spill) and the warehouse size.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MB = 1024 * 1024


def spool_charges(n: int, root: Path) -> dict:
    import orjson

    from nilus_stripe_assets.emulator.data import generate
    from nilus_stripe_assets.staging.spool import Spool

    base = [orjson.loads(record[2]) for record in generate(counts={"charge": min(n, 100_000)})["charge"]]
    spool = Spool(directory=str(root))
    started, written, copy = time.perf_counter(), 0, 0
    while written < n:
        for i in range(0, len(base), 100):
            page = base[i : min(i + 100, i + n - written)]
            if copy:
                page = [{**c, "id": f"{c['id']}x{copy}"} for c in page]
            spool.write(page)
            written += len(page)
            if written >= n:
                break
        copy += 1
    summary = spool.finish()
    return {"files": summary.files, "fields": summary.fields, "kinds": {k: sorted(v) for k, v in summary.kinds.items()},
            "objects": summary.objects, "spool_seconds": round(time.perf_counter() - started, 1),
            "spool_bytes": sum(os.path.getsize(f) for f in summary.files)}


def write_once(spec: dict, database: str, stage_root: str) -> dict:
    """One write in this process: prepare (no warehouse), then apply (warehouse locked)."""
    import duckdb

    from nilus_stripe_assets.warehouse.strategies import TableRef, apply, prepare

    started, cpu = time.perf_counter(), time.process_time()
    prepared = prepare(spec["files"], "id", state_at=int(time.time()), fields=spec["fields"],
                       kinds={k: set(v) for k, v in spec["kinds"].items()}, directory=stage_root)
    staged, staged_cpu = time.perf_counter(), time.process_time()
    try:
        with duckdb.connect(database) as con:
            result = apply(con, TableRef("stripe", "charge"), prepared, "merge")
    finally:
        prepared.cleanup()
    done, done_cpu = time.perf_counter(), time.process_time()
    # This process's own peak (VmHWM starts afresh at exec; ru_maxrss would include the forking parent's).
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    return {"write_seconds": round(done - started, 1), "lock_seconds": round(done - staged, 1), "peak_rss_mb": peak // 1024,
            "cpu_seconds": round(done_cpu - cpu, 1), "lock_cpu_seconds": round(done_cpu - staged_cpu, 1),
            "inserted": result.inserted, "updated": result.updated, "unchanged": result.unchanged, "rows": result.rows}


def _disk(paths: list[Path]) -> int:
    total = 0
    for root in paths:
        for folder, _, files in os.walk(root):
            for name in files:
                try:
                    total += os.stat(os.path.join(folder, name)).st_blocks * 512
                except OSError:
                    pass
    return total


def measured_write(spec_path: Path, database: Path, stage_root: Path) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--write-one", str(spec_path), str(database), str(stage_root)],
                            stdout=subprocess.PIPE, text=True)
    peak_disk, spec = 0, json.loads(spec_path.read_text())
    roots = [stage_root, Path(str(database) + ".tmp")]
    done = threading.Event()

    def sample():
        nonlocal peak_disk
        while not done.wait(0.25):
            peak_disk = max(peak_disk, _disk(roots))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, _ = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    out = json.loads(proc.stdout.read())
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {**out, "green": proc.returncode == 0,
            "peak_disk_mb": round((peak_disk + spec["spool_bytes"]) / MB),
            "disk_bytes_per_object": round((peak_disk + spec["spool_bytes"]) / spec["objects"]),
            "warehouse_mb": round(os.path.getsize(database) / MB)}


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--write-one":
        spec_path, database, stage_root = sys.argv[2:5]
        out = write_once(json.loads(Path(spec_path).read_text()), database, stage_root)
        print(f"    (write CPU {out['cpu_seconds']} s, of which {out['lock_cpu_seconds']} s applying)", file=sys.stderr)
        print(json.dumps(out))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000000")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args(argv)
    print(f"{'objects':>11} {'run':<7} {'write s':>7} {'lock s':>6} {'CPU s':>5} {'RSS MB':>6} {'disk MB':>7} {'B/obj':>5} "
          f"{'DB MB':>6} {'ins/upd/unch':>26}  (spool: s, MB)", flush=True)
    for n in (int(s) for s in a.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"nilus-write-{n}-"))
        try:
            spec = spool_charges(n, work / "spool" if (work / "spool").mkdir() is None else work)
            spec_path = work / "spec.json"
            spec_path.write_text(json.dumps(spec))
            (work / "stage").mkdir()
            for label in ("first", "reload"):
                r = measured_write(spec_path, work / "warehouse.duckdb", work / "stage")
                counts = f"{r['inserted']}/{r['updated']}/{r['unchanged']}"
                print(f"{n:>11,} {label:<7} {r['write_seconds']:>7} {r['lock_seconds']:>6} {r['cpu_seconds']:>5} {r['peak_rss_mb']:>6} "
                      f"{r['peak_disk_mb']:>7} {r['disk_bytes_per_object']:>5} {r['warehouse_mb']:>6} {counts:>26}  "
                      f"({spec['spool_seconds']} s, {spec['spool_bytes'] // MB} MB)", flush=True)
        finally:
            if not a.keep:
                shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
