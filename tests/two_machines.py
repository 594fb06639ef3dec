"""Two `dagster asset materialize` processes set up as if on two machines, against one emulated account.

Each "machine" has its own DAGSTER_HOME, DuckDB file, spool, temp and budget folders, and loads a different
object. They share only the Stripe account (one emulator that limits it to `--global-rate`) and, if given,
the request budget's PostgreSQL URL. While they run, the emulator's per-endpoint counters are sampled, so
the rate both reach *together* is measured over the window in which both were sending requests.
Used by tests/test_shared_budget.py (small) and benchmarks/shared_budget.py (large).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.emulator.client import EmulatorClient

API_KEY = "sk_test_emulator"


def dagster_cli() -> str:
    return str(Path(sys.executable).with_name("dagster"))


@dataclass
class Machine:
    object: str
    proc: subprocess.Popen
    log: Path
    started: float
    seconds: float = 0.0


@dataclass
class PairResult:
    returncodes: dict[str, int]
    requests: int
    rejected: int  # 429s
    both_seconds: float  # the window in which both machines were sending
    both_requests: int
    machine_seconds: dict[str, float] = field(default_factory=dict)
    # per object: seconds from process start to its first request, and from its last request to exit
    startup_seconds: dict[str, float] = field(default_factory=dict)
    exit_seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # object -> (rows, distinct ids) in its DuckDB
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def both_rate(self) -> float:
        return self.both_requests / self.both_seconds if self.both_seconds > 0 else 0.0

    def summary(self, ceiling: float) -> str:
        return (f"{self.both_rate:.1f} req/s together = {100 * self.both_rate / ceiling:.1f} % of {ceiling:g} "
                f"over {self.both_seconds:.1f} s with both sending; {self.requests} requests, {self.rejected} 429s; "
                f"exit codes {self.returncodes}")


def start_machine(name: str, obj: str, workdir: Path, api_base: str, budget_url: Optional[str]) -> Machine:
    root = workdir / name
    home = root / "dagster_home"
    for folder in (home, root / "spool", root / "tmp", root / "budget"):
        folder.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    stripe = {"api_key": {"env": "STRIPE_API_KEY"}, "budget_dir": str(root / "budget")}
    config = root / "run_config.yaml"
    config.write_text(json.dumps({"resources": {"stripe": {"config": stripe}}}))  # JSON is YAML
    env = {**os.environ, "STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": api_base, "DAGSTER_HOME": str(home),
           "NILUS_DUCKDB_PATH": str(root / "warehouse.duckdb"), "NILUS_SPOOL_DIR": str(root / "spool"),
           "TMPDIR": str(root / "tmp")}
    env.pop("NILUS_BUDGET_URL", None)
    if budget_url:
        env["NILUS_BUDGET_URL"] = budget_url
    log = root / "dagster.log"
    argv = [dagster_cli(), "asset", "materialize", "-m", "nilus_stripe_assets.definitions",
            "--select", f"stripe/{obj}", "-c", str(config)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    return Machine(obj, proc, log, time.monotonic())


def table_rows(database: Path, obj: str) -> tuple[int, int]:
    import duckdb

    if not database.exists():
        return (0, 0)
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(f'SELECT count(*), count(DISTINCT id) FROM stripe."{obj}"').fetchone()


def endpoint_of(obj: str) -> str:
    return f"GET {CATALOG[obj].path}"


def run_pair(api_base: str, workdir: Path, objects: tuple[str, str], budget_url: Optional[str],
             timeout: float = 180.0, interval: float = 0.05) -> PairResult:
    """Start both machines at once, sample the emulator until both exit, and measure the shared window."""
    client = EmulatorClient(api_base)
    client.reset_stats()
    machines = [start_machine(f"machine{i + 1}", obj, workdir, api_base, budget_url) for i, obj in enumerate(objects)]
    series: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout
    try:
        while any(m.proc.poll() is None for m in machines):
            series.append((time.monotonic(), client.stats()["endpoints"]))
            for m in machines:
                if m.proc.poll() is not None and not m.seconds:
                    m.seconds = time.monotonic() - m.started
            if time.monotonic() > deadline:
                raise TimeoutError(f"the two dagster processes did not finish within {timeout:.0f} s")
            time.sleep(interval)
    finally:
        for m in machines:
            if m.proc.poll() is None:
                m.proc.kill()
            m.proc.wait()
    series.append((time.monotonic(), client.stats()["endpoints"]))
    final = series[-1][1]
    for m in machines:
        m.seconds = m.seconds or time.monotonic() - m.started

    def sent(eps: dict, obj: str) -> int:
        return int(eps.get(endpoint_of(obj), {}).get("requests", 0))

    # Both are sending from the first sample in which the later one has started, until the first sample in
    # which the earlier one has sent its last request.
    first, last = {}, {}
    for m in machines:
        if sent(final, m.object):
            first[m.object] = next(t for t, eps in series if sent(eps, m.object) > 0)
            last[m.object] = next(t for t, eps in series if sent(eps, m.object) == sent(final, m.object))
    begin = end = 0.0
    if len(first) == len(machines):
        begin, end = max(first.values()), min(last.values())
    total = lambda eps: sum(int(row.get("requests", 0)) for row in eps.values())  # noqa: E731
    at = lambda when: next(eps for t, eps in series if t >= when)  # noqa: E731
    both_requests = total(at(end)) - total(at(begin)) if end > begin else 0
    return PairResult(
        returncodes={m.object: m.proc.returncode for m in machines},
        requests=total(final),
        rejected=sum(int(row.get("429", 0)) for row in final.values()),
        both_seconds=max(0.0, end - begin),
        both_requests=both_requests,
        machine_seconds={m.object: round(m.seconds, 1) for m in machines},
        startup_seconds={m.object: round(first[m.object] - m.started, 1) for m in machines if m.object in first},
        exit_seconds={m.object: round(m.started + m.seconds - last[m.object], 1) for m in machines if m.object in last},
        rows={m.object: table_rows(m.log.parent / "warehouse.duckdb", m.object) for m in machines},
        logs={m.object: m.log.read_text(errors="replace")[-3000:] for m in machines},
    )
