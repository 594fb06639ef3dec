"""Faults: HTTP 500s with exact row counts (faults), and a server that never answers (stall)."""

from __future__ import annotations

import json
import os
import shutil
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


def scenario_faults(a) -> list[dict]:
    records = []
    for i in range(a.repeat):
        case = Case("faults", f"run{i + 1}", ["--count", f"charge={a.charges}", "--error-rate", str(a.error_rate),
                                               "--global-rate", str(a.rate), "--endpoint-rate", str(a.rate),
                                               "--latency-ms", str(a.latency_ms), "--seed", str(42 + i)],
                    "stripe/charge", ["charge"],
                    stripe_config={"max_requests_per_second": a.rate, "max_requests_per_second_per_endpoint": a.rate,
                                   **(a.stripe_config or {})}, timeout=a.timeout, in_process=a.in_process, executor_config={} if a.multiprocess else None)
        r = materialize(case, a.keep, a.profile)
        exact = r["rows"] == r["expected"] and r["distinct"] == r["expected"]
        r["figures"] = {"exact": exact, "retries": r["assets"].get("charge", {}).get("retries")}
        save(r)
        print(base_line(r))
        print(f"    exact row count: {verdict(exact)}, green: {verdict(r['green'])}, "
              f"SDK-visible 5xx {r['assets'].get('charge', {}).get('server_errors_5xx')}")
        print_failure(r)
        records.append(r)
    ok = sum(1 for r in records if r["green"] and r["figures"]["exact"])
    print(f"[faults:summary] {ok}/{len(records)} runs green with exact row counts")
    return records

class BlackHole(threading.Thread):
    """A server that accepts connections and reads requests but never answers: a stalled upstream."""

    def __init__(self):
        super().__init__(daemon=True, name="black-hole")
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list = []

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.connections.append(conn)  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


def scenario_stall(a) -> list[dict]:
    """An upstream that accepts connections and never answers: time until the run fails, and its message."""
    workdir = Path(tempfile.mkdtemp(prefix="nilus-bench-stall-"))
    home = workdir / "dagster_home"
    write_instance_yaml(home, None)
    hole = BlackHole()
    hole.start()
    case = Case("stall", a.select.replace("/", "_"), [], a.select, [], stripe_config=dict(a.stripe_config or {}))
    config_path = workdir / "run_config.yaml"
    config_path.write_text(json.dumps(run_config(case, workdir), indent=2) + "\n")
    env = {**os.environ, **_pythonpath_env(), "STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": hole.url,
           "NILUS_DUCKDB_PATH": str(workdir / "warehouse.duckdb"), "DAGSTER_HOME": str(home),
           "NILUS_SPOOL_DIR": str(workdir), "PYTHONUNBUFFERED": "1"}
    argv = [dagster_cli(), "asset", "materialize", "-m", TARGET.module, "--select", a.select, "-c", str(config_path)]
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=a.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop_group(proc)
        output, _ = proc.communicate()
    wall = time.monotonic() - started
    hole.close()
    text = output.decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if "Could not connect to the Stripe API" in line]
    record = {"scenario": "stall", "label": case.label, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "git": git_revision(), "pythonpath": TARGET.pythonpath, "select": a.select,
              "run_config": run_config(case, workdir), "wall_seconds": round(wall, 1), "timed_out": timed_out,
              "returncode": proc.returncode, "connections": len(hole.connections),
              "message": lines[0][:400] if lines else None, "traceback_lines": text.count("Traceback")}
    shutil.rmtree(workdir, ignore_errors=True)
    save(record)
    print(f"[stall:{case.label}] {'TIMEOUT' if timed_out else f'rc={proc.returncode}'} after {wall:.1f}s, "
          f"{len(hole.connections)} connections accepted (never answered); target <= ~120 s: {verdict(wall <= 130)}")
    print(f"    message: {record['message']}")
    return [{**record, "green": proc.returncode != 0 and bool(lines)}]
