"""The fixed cost of a run: time to the first request and from the last request to the step's end (fixed-cost)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from harness import *  # noqa: F401,F403 (the shared harness: Case, materialize, Emulator, ...)


FLOOR_MODULE = "floor_location"  # benchmarks/floor_location.py: Dagster alone, one asset making one request


def precompile(*folders: Path) -> None:
    """Write the bytecode of these source folders, as a user's first run does. A process started with
    PYTHONDONTWRITEBYTECODE=1 (set on this machine) would otherwise compile the package's ~40 modules from
    source on every run (~0.15 s of CPU), a cost no installed package pays twice; site-packages already
    hold their bytecode from `pip install`."""
    for folder in folders:
        subprocess.run([PY, "-m", "compileall", "-q", str(folder)], check=True, timeout=300)


def _fixed_cost_figures(r: dict) -> dict:
    series, started = r.pop("_endpoint_series", []), r.pop("_started", 0.0)
    started_wall = r.pop("_started_wall", 0.0)
    first = next((t for t, eps in series if _total(eps) > 0), None)
    last, prev = None, 0
    for t, eps in series:
        if _total(eps) > prev:
            last, prev = t, _total(eps)
    meta = r["assets"].get("charge", {})
    step_end = meta.get("step_ended_at")
    return {
        "first_request_seconds": round(first - started, 2) if first else None,
        # From inside the CLI: when its first connection starts, and the CPU it had used by then (what the
        # start costs on an idle core, read the same way under any load).
        "first_connect_seconds": r.get("first_connect_seconds"),
        "cpu_seconds_to_first_connect": r.get("cpu_seconds_to_first_connect"),
        "fetch_seconds": meta.get("fetch_seconds"),
        "after_last_request_seconds": round(r["wall_seconds"] - (last - started), 2) if last else None,
        "write_checks_metadata_seconds": (
            round(step_end - (started_wall + last - started), 2) if last and step_end else None
        ),
        "write_seconds": meta.get("write_seconds"),
        "wall_seconds": r["wall_seconds"],
    }


def _spread(values: list) -> str:
    values = sorted(v for v in values if v is not None)
    if not values:
        return "n/a"
    median = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    return f"{median:.2f} (min {values[0]:.2f}, max {values[-1]:.2f})"


def scenario_fixed_cost(a) -> list[dict]:
    """What a run costs besides fetching: 20,000 charges at Stripe's test-mode limit (25 req/s), the
    emulator's request counts and the CLI's CPU time sampled every 50 ms. Time to first request: command
    start to the first sample with a request. Write + checks + metadata: last request to the end of the
    step (DuckDB write, checks, materialization metadata). Targets: <= 2 s and <= 1 s.

    --baseline DIR runs a copy of the package from DIR (e.g. `git worktree add` of an older commit) and
    --floor a location of one asset that makes one request (Dagster alone), alternating with this tree,
    --repeat times each: before, after and Dagster's share in one run, under the same load."""
    global_override, global_module = TARGET.pythonpath, TARGET.module
    rate = 25
    variants = [("current", global_override, global_module)]
    if a.baseline:
        variants.insert(0, ("baseline", str(Path(a.baseline).resolve()), global_module))
    if a.floor:
        variants.insert(0, ("floor", str(REPO / "benchmarks"), FLOOR_MODULE))
    packages = {Path(path or REPO) / "nilus_stripe_assets" for name, path, _ in variants if name != "floor"}
    precompile(*packages, REPO / "benchmarks" / f"{FLOOR_MODULE}.py")
    records: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
    try:
        for _ in range(a.repeat):
            for name, path, module in variants:
                TARGET.pythonpath, TARGET.module = path, module
                label = f"{a.charges}ch-{rate}rps" + ("" if name == "current" else f"-{name}")
                case = Case("fixed-cost", label,
                            ["--count", f"charge={a.charges}", "--global-rate", str(rate), "--endpoint-rate", str(rate)],
                            "stripe/charge", ["charge"], stripe_config=dict(a.stripe_config or {}), timeout=a.timeout,
                            in_process=a.in_process, poll_interval=0.05, probe_first_connect=True)
                if name == "floor":  # no Stripe resource, no step config: Dagster's defaults
                    case.stripe_config, case.in_process = {}, False
                r = materialize(case, a.keep, a.profile, floor=name == "floor")
                r["variant"] = name
                f = r["figures"] = _fixed_cost_figures(r)
                save(r)
                records[name].append(r)
                print(f"[{name}] {base_line(r) if name != 'floor' else fmt_status(r)}")
                print(f"    first request after {f['first_request_seconds']}s (target <= 2: "
                      f"{verdict((f['first_request_seconds'] or 99) <= 2)}; first connection after "
                      f"{f['first_connect_seconds']}s, CLI CPU {f['cpu_seconds_to_first_connect']}s)"
                      + ("" if name == "floor" else
                         f"; fetch {f['fetch_seconds']}s; last request to step end {f['write_checks_metadata_seconds']}s "
                         f"(write {f['write_seconds']}s; target <= 1: {verdict((f['write_checks_metadata_seconds'] or 99) <= 1)}); "
                         f"last request to exit {f['after_last_request_seconds']}s; whole command {f['wall_seconds']}s"))
                print_failure(r)
    finally:
        TARGET.pythonpath, TARGET.module = global_override, global_module
    if a.repeat > 1 or len(variants) > 1:
        print(f"fixed-cost, {a.repeat} run(s) each, median (min, max); load average now {os.getloadavg()[0]:.1f}:")
        for name, rs in records.items():
            figures = [r["figures"] for r in rs]
            print(f"    {name:9} first request {_spread([f['first_request_seconds'] for f in figures])} s, "
                  f"first connection {_spread([f['first_connect_seconds'] for f in figures])} s, "
                  f"CLI CPU to it {_spread([f['cpu_seconds_to_first_connect'] for f in figures])} s"
                  + ("" if name == "floor" else
                     f", last request to step end {_spread([f['write_checks_metadata_seconds'] for f in figures])} s"))
    return [r for rs in records.values() for r in rs]
