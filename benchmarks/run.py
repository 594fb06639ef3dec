#!/usr/bin/env python
"""Benchmarks for nilus_stripe_assets: the real `dagster asset materialize` CLI against the bundled emulator.

    python benchmarks/run.py async-rate      # 100k charges, 200 ms latency, 25 req/s: rate-limit efficiency
    python benchmarks/run.py all-objects     # all 23 objects at once, 100 req/s global / 25 per endpoint
    python benchmarks/run.py throughput      # 200k charges, no latency, no limits: end-to-end objects/s
    python benchmarks/run.py memory          # peak RSS of the process tree at 10 / 20k / 200k charges
    python benchmarks/run.py faults          # 5 % HTTP 500s at 10 req/s, exact row counts, 3 runs
    python benchmarks/run.py all             # every scenario once, in that order

Every run: the emulator starts as a subprocess on 127.0.0.1 (port 0, --ready-file), the CLI runs with a
private DAGSTER_HOME (telemetry off, the repo's `concurrency: pools` block), a private DuckDB file, spool
and budget folders, and run config from a YAML file. Peak RSS of the whole dagster process tree is sampled
from /proc every 50 ms; the emulator's request statistics are polled every 0.5 s. Afterwards the DuckDB
tables are checked against the emulator's counts (missing / duplicated ids) and one line of figures is
printed and one JSON record appended to benchmarks/results/latest.jsonl. These are benchmarks, not tests:
they print figures, and every run is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "latest.jsonl"
PY = sys.executable
API_KEY = "sk_test_emulator"
PAGE = 100
MB = 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

sys.path.insert(0, str(REPO))  # the package is installed editable; this makes a plain checkout work too
from nilus_stripe_assets.source.catalog import CATALOG  # noqa: E402
from nilus_stripe_assets.emulator.client import EmulatorClient  # noqa: E402


# ------------------------------------------------------------------------------------------------------
# Process-tree memory sampling (/proc, Linux)
# ------------------------------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree_pids(root: int) -> list[int]:
    children = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeMemorySampler(threading.Thread):
    """Peak of the summed RSS over a process and all its descendants, sampled every `interval` s (PSS less often)."""

    def __init__(self, root: int, interval: float = 0.05, pss_every: int = 0):
        super().__init__(daemon=True, name="rss-sampler")
        # Reading smaps_rollup walks the page tables under the target's mmap lock (~15 ms for a 1 GB process);
        # at every 50 ms sample it slowed DuckDB's write by ~60 %, so PSS is opt-in and read less often.
        self.root, self.interval, self.pss_every = root, interval, pss_every
        self.stop_event = threading.Event()
        self.peak_rss = self.peak_pss = self.peak_single_rss = self.peak_procs = self.samples = 0
        self.started = time.monotonic()
        self.timeline: list[tuple[float, int, int]] = []  # (seconds since start, tree RSS, largest process RSS)
        self.peak_at = 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            pids = tree_pids(self.root)
            rss = [_rss(p) for p in pids]
            if sum(rss) > self.peak_rss:
                self.peak_rss, self.peak_at = sum(rss), time.monotonic() - self.started
            self.timeline.append((time.monotonic() - self.started, sum(rss), max(rss, default=0)))
            self.peak_single_rss = max(self.peak_single_rss, max(rss, default=0))
            if self.pss_every and self.samples % self.pss_every == 0:
                self.peak_pss = max(self.peak_pss, sum(_pss(p) for p in pids))
            self.peak_procs = max(self.peak_procs, sum(1 for r in rss if r))
            self.samples += 1
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)

    def coarse_timeline(self, step: float = 0.5) -> list[tuple[float, float, float]]:
        """Max tree RSS and max single-process RSS (MB) per `step` seconds."""
        buckets: dict[int, tuple[int, int]] = {}
        for t, tree, single in self.timeline:
            k = int(t / step)
            old = buckets.get(k, (0, 0))
            buckets[k] = (max(old[0], tree), max(old[1], single))
        return [(round(k * step, 1), round(v[0] / MB), round(v[1] / MB)) for k, v in sorted(buckets.items())]


# ------------------------------------------------------------------------------------------------------
# Emulator subprocess and its statistics
# ------------------------------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (its reaped children not included)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


MODULE = "nilus_stripe_assets.definitions"  # --module: another code location (e.g. a prototype in --pythonpath)
PYTHONPATH_OVERRIDE: Optional[str] = None  # --pythonpath: try an engine change from a scratch copy of the package


def _pythonpath_env() -> dict:
    if not PYTHONPATH_OVERRIDE:
        return {}
    return {"PYTHONPATH": os.pathsep.join(p for p in (PYTHONPATH_OVERRIDE, os.environ.get("PYTHONPATH")) if p)}


class Emulator:
    def __init__(self, args: list[str], workdir: Path, timeout: float = 180):
        ready = workdir / "emulator.url"
        self.log = open(workdir / "emulator.log", "wb")
        self.argv = [PY, "-m", "nilus_stripe_assets.emulator", "--port", "0", "--ready-file", str(ready),
                     "--accept-any-key", *args]
        started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir,
                                     env={**os.environ, **_pythonpath_env()})
        while not (ready.exists() and ready.read_text().strip()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"emulator exited with {self.proc.returncode}; see {workdir / 'emulator.log'}")
            if time.monotonic() - started > timeout:
                self.stop()
                raise RuntimeError(f"emulator not ready within {timeout:.0f} s")
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - started
        self.url = ready.read_text().strip()
        self.client = EmulatorClient(self.url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class StatsPoller(threading.Thread):
    """Per-endpoint request counts over time: [(monotonic t, {endpoint: {requests, 429, 500, ...}})]."""

    def __init__(self, client: EmulatorClient, interval: float = 0.5):
        super().__init__(daemon=True, name="stats-poller")
        self.client, self.interval = client, interval
        self.stop_event = threading.Event()
        self.series: list[tuple[float, dict]] = []

    def sample(self) -> None:
        try:
            self.series.append((time.monotonic(), self.client.stats()["endpoints"]))
        except Exception:  # a missed sample only coarsens the series
            pass

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)
        self.sample()


def _total(endpoints: dict, key: str = "requests") -> int:
    return sum(int(row.get(key, 0)) for row in endpoints.values())


def api_phase(series: list[tuple[float, dict]]) -> dict:
    """First to last sample in which requests were made: duration and mean rate."""
    first = last = None
    prev = 0
    for t, eps in series:
        n = _total(eps)
        if n > prev:
            if first is None:
                first = (t, prev)
            last = (t, n)
        prev = n
    if first is None or last is None or last[0] <= first[0]:
        return {"api_seconds": 0.0, "api_requests_per_second": 0.0}
    # The first request happened somewhere in the interval before `first`; count from the sample before it.
    seconds = last[0] - first[0]
    return {"api_seconds": round(seconds, 2), "api_requests_per_second": round((last[1] - first[1]) / seconds, 1)}


def busy_window(series: list[tuple[float, dict]], min_endpoints: int) -> dict:
    """Requests/s while at least `min_endpoints` endpoints still had requests to make.

    An endpoint has work left at time t while its cumulative request count is below its final count
    (known after the run). With 25 req/s per endpoint, 4 endpoints with work left can fill 100 req/s, so
    this is the window in which the global ceiling is reachable at all.
    """
    if len(series) < 2:
        return {}
    final = series[-1][1]
    seconds = requests = rejected = 0.0
    prev_t, prev = series[0]
    started = False
    for t, eps in series[1:]:
        dt = t - prev_t
        delta = _total(eps) - _total(prev)
        started = started or _total(eps) > 0
        remaining = sum(1 for ep, row in final.items() if int(prev.get(ep, {}).get("requests", 0)) < int(row["requests"]))
        if started and remaining >= min_endpoints and dt > 0:
            seconds += dt
            requests += delta
            rejected += _total(eps, "429") - _total(prev, "429")
        prev_t, prev = t, eps
    return {
        "busy_seconds": round(seconds, 1),
        "busy_requests": int(requests),
        "busy_requests_per_second": round(requests / seconds, 1) if seconds else 0.0,
        "busy_429": int(rejected),
    }


# ------------------------------------------------------------------------------------------------------
# One materialization
# ------------------------------------------------------------------------------------------------------


def repo_pools_block() -> dict:
    """The `concurrency: pools` block of the repo's dagster.yaml (the fallback mirrors it)."""
    try:
        import yaml

        config = yaml.safe_load((REPO / "dagster.yaml").read_text()) or {}
        pools = (config.get("concurrency") or {}).get("pools")
        if pools:
            return dict(pools)
    except Exception:
        pass
    return {"default_limit": 4, "granularity": "op"}


def write_instance_yaml(home: Path, pool_limit: Optional[int]) -> dict:
    pools = repo_pools_block()
    if pool_limit is not None:
        pools["default_limit"] = pool_limit
    home.mkdir(parents=True, exist_ok=True)
    config = {"telemetry": {"enabled": False}, "concurrency": {"pools": pools}}
    (home / "dagster.yaml").write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return pools


def git_revision() -> str:
    """HEAD plus the package files that differ from it (others edit the working tree concurrently)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "nilus_stripe_assets"], cwd=REPO,
                                 capture_output=True, text=True, timeout=10).stdout.split("\n")
        changed = [line[3:] for line in changed if line.strip() and not line[3:].endswith(".pyc")]
        return head + (f" +changes: {', '.join(changed)}" if changed else "")
    except Exception:
        return "unknown"


@dataclass
class Case:
    scenario: str
    label: str
    emulator_args: list[str]
    select: str
    objects: list[str]  # catalog names whose tables are checked
    stripe_config: dict = field(default_factory=dict)  # StripeResource fields set by run config
    # None: the code location's default executor (in-process); else the multiprocess executor's config,
    # e.g. {} or {"max_concurrent": N}
    executor_config: Optional[dict] = None
    in_process: bool = False
    pool_limit: Optional[int] = None
    timeout: float = 600
    poll_stats: bool = True
    poll_interval: float = 0.5  # seconds between emulator stats samples
    pss_every: int = 0  # read PSS every Nth RSS sample (0: never; reading smaps_rollup slows the target)
    op_config: dict = field(default_factory=dict)  # config of the Stripe step, e.g. {"mode": "sync"}
    probe_first_connect: bool = False  # note wall and CPU time at the CLI's first connection (FIRST_CONNECT_PROBE)


def run_config(case: Case, workdir: Path) -> dict:
    # Run config for a resource replaces the config given in code as a whole (the per-field default of
    # `api_key` is None), so the EnvVar is repeated here or the key would be lost.
    stripe = {"api_key": {"env": "STRIPE_API_KEY"}, "budget_dir": str(workdir / "budget"), **case.stripe_config}
    config: dict = {"resources": {"stripe": {"config": stripe}}}
    if case.op_config:
        config["ops"] = {"stripe_objects": {"config": dict(case.op_config)}}
    if case.in_process:
        config["execution"] = {"config": {"in_process": {}}}
    elif case.executor_config is not None:
        config["execution"] = {"config": {"multiprocess": dict(case.executor_config)}}
    return config


def read_instance(home: Path, objects: list[str]) -> dict:
    """Run status and timing plus each asset's materialization metadata, from the run's own instance."""
    import dagster as dg

    out: dict = {"run_status": None, "assets": {}}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(limit=1)
        if not records:
            return out
        record = records[0]
        out["run_status"] = record.dagster_run.status.value
        if record.start_time and record.end_time:
            out["run_seconds"] = round(record.end_time - record.start_time, 2)
        steps = instance.get_run_step_stats(record.dagster_run.run_id)
        spans = [(s.start_time, s.end_time) for s in steps if s.start_time and s.end_time]
        if spans:
            out["steps_seconds"] = round(max(e for _, e in spans) - min(s for s, _ in spans), 2)
            out["step_seconds_sum"] = round(sum(e - s for s, e in spans), 2)
        for name in objects:
            event = instance.get_latest_materialization_event(dg.AssetKey(["stripe", name]))
            if event is None or event.asset_materialization is None:
                continue
            meta = {}
            for key, value in event.asset_materialization.metadata.items():
                raw = getattr(value, "value", value)
                if isinstance(raw, (int, float, str)) and key != "preview":
                    meta[key] = raw
            # The step that loaded it: its own (`one_step=False`) or the shared `stripe_objects` step.
            step = next((s for s in steps if s.step_key in (f"stripe__{name}", "stripe_objects")), None)
            if step and step.start_time and step.end_time:
                meta["step_seconds"] = round(step.end_time - step.start_time, 2)
                meta["step_ended_at"] = step.end_time
                if record.start_time:
                    meta["step_started_after_run_start"] = round(step.start_time - record.start_time, 2)
            out["assets"][name] = meta
    return out


def listable_events(emulator: "Emulator") -> int:
    """Events the list API returns now (it hides events older than 30 days by the wall clock, while the
    emulator's counts include every seeded event since midnight UTC minus 30 days). Run after the stats are
    read: faults are switched off first, so this walk neither waits nor fails."""
    import urllib.request

    emulator.client.configure(latency_ms=0, global_rate=None, endpoint_rate=None, max_concurrency=None, error_rate=0.0)
    count, cursor = 0, None
    while True:
        url = f"{emulator.url}/v1/events?limit=100" + (f"&starting_after={cursor}" if cursor else "")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_KEY}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.loads(response.read())
        data = page.get("data") or []
        count += len(data)
        if not page.get("has_more") or not data:
            return count
        cursor = data[-1]["id"]


def check_tables(database: Path, objects: list[str], expected: dict[str, int]) -> dict:
    import duckdb

    per_object, rows_total, distinct_total, missing, duplicated = {}, 0, 0, 0, 0
    con = duckdb.connect(str(database), read_only=True) if database.exists() else None
    try:
        for name in objects:
            rows = distinct = 0
            if con is not None:
                try:
                    rows, distinct = con.execute(f'SELECT count(*), count(DISTINCT id) FROM stripe."{name}"').fetchone()
                except Exception:
                    pass
            want = int(expected.get(name, 0))
            per_object[name] = {"expected": want, "rows": rows, "distinct": distinct}
            rows_total += rows
            distinct_total += distinct
            missing += max(0, want - distinct)
            duplicated += rows - distinct
    finally:
        if con is not None:
            con.close()
    return {"expected": sum(int(expected.get(n, 0)) for n in objects), "rows": rows_total,
            "distinct": distinct_total, "missing": missing, "duplicated": duplicated, "per_object": per_object}


def dagster_cli() -> str:
    candidate = Path(PY).with_name("dagster")
    return str(candidate) if candidate.exists() else (shutil.which("dagster") or "dagster")


# Written as `sitecustomize.py` into a folder on the CLI's PYTHONPATH when a case sets `probe_first_connect`:
# an audit hook (no change to the code under test) notes the wall clock and the process's CPU time (all its
# threads) at the first connection to the emulator's port. The emulator's stats, polled from outside, see a
# request only at the next sample; the probe sees the moment it starts.
FIRST_CONNECT_PROBE = """
import json, os, sys, time

_port, _out = int(os.environ["NILUS_BENCH_PROBE_PORT"]), os.environ["NILUS_BENCH_PROBE_FILE"]


def _first_connect(event, args):
    global _port
    if _port and event == "socket.connect" and isinstance(args[1], tuple) and args[1][1] == _port:
        _port = 0
        with open(_out, "w") as f:
            json.dump({"wall": time.time(), "cpu": time.process_time()}, f)


sys.addaudithook(_first_connect)
"""


def _probe_env(workdir: Path, emulator_url: str) -> dict:
    folder = workdir / "probe"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(FIRST_CONNECT_PROBE)
    paths = [str(folder), _pythonpath_env().get("PYTHONPATH") or os.environ.get("PYTHONPATH")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "NILUS_BENCH_PROBE_PORT": emulator_url.rsplit(":", 1)[1].strip("/"),
            "NILUS_BENCH_PROBE_FILE": str(workdir / "first_connect.json")}


def materialize(case: Case, keep: bool = False, profile: Optional[str] = None, floor: bool = False) -> dict:
    """Run one case end to end; return its record (also appended to latest.jsonl)."""
    if case.in_process and not case.label.endswith("inproc"):
        case.label += "-inproc"
    workdir = Path(tempfile.mkdtemp(prefix=f"nilus-bench-{case.scenario}-"))
    home, database = workdir / "dagster_home", workdir / "warehouse.duckdb"
    pools = write_instance_yaml(home, case.pool_limit)
    config_path = workdir / "run_config.yaml"
    config = {} if floor else run_config(case, workdir)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    (workdir / "spool").mkdir()
    emulator = Emulator(case.emulator_args, workdir)
    record: dict = {"scenario": case.scenario, "label": case.label, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "git": git_revision(), "cpus": os.cpu_count(), "select": case.select,
                    "emulator_args": case.emulator_args, "run_config": config, "pools": pools,
                    "emulator_startup_seconds": round(emulator.startup_seconds, 2),
                    "pythonpath": PYTHONPATH_OVERRIDE, "module": MODULE,
                    "executor": "multiprocess" if case.executor_config is not None else "in_process"}
    log_path = workdir / "dagster.log"
    try:
        expected = emulator.client.counts()
        emulator.client.reset_stats()
        env = {**os.environ, **_pythonpath_env(), "STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": emulator.url,
               "NILUS_DUCKDB_PATH": str(database), "DAGSTER_HOME": str(home), "NILUS_SPOOL_DIR": str(workdir / "spool"),
               "PYTHONUNBUFFERED": "1"}
        if case.probe_first_connect:
            env.update(_probe_env(workdir, emulator.url))
        argv = [dagster_cli(), "asset", "materialize", "-m", MODULE,
                "--select", case.select, "-c", str(config_path)]
        record["command"] = " ".join(argv)
        if profile:  # py-spy samples every process of the tree; collapsed stacks for flame graphs / grep
            Path(profile).mkdir(parents=True, exist_ok=True)
            out = Path(profile).resolve() / f"{case.scenario}-{case.label}.txt"
            argv = [str(Path(PY).with_name("py-spy")), "record", "--subprocesses", "--format", "raw", "--rate", "100",
                    "--nonblocking", "-o", str(out), "--", *argv]
            record["profile"] = str(out)
        poller = StatsPoller(emulator.client, case.poll_interval) if case.poll_stats else None
        load_before = os.getloadavg()[0]
        emu_cpu_before, tree_cpu_before = _cpu_seconds(emulator.proc.pid), _children_cpu()
        with open(log_path, "wb") as log:
            started, started_wall = time.monotonic(), time.time()
            proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            sampler = TreeMemorySampler(proc.pid, pss_every=case.pss_every)
            sampler.start()
            if poller:
                poller.start()
            timed_out = False
            try:
                returncode = proc.wait(timeout=case.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                returncode = _stop_group(proc)
            except BaseException:  # Ctrl-C: never leave a dagster tree behind
                _stop_group(proc)
                raise
            wall = time.monotonic() - started
            sampler.stop()
            if poller:
                poller.stop()
        # The CLI waits for its step processes, so reaping it brings the whole tree's CPU time into ours.
        tree_cpu, emu_cpu = _children_cpu() - tree_cpu_before, _cpu_seconds(emulator.proc.pid) - emu_cpu_before
        stats = emulator.client.stats()["total"]
        if "event" in case.objects:
            expected = {**expected, "event": listable_events(emulator)}
        tables = check_tables(database, case.objects, expected)
        instance = read_instance(home, case.objects)
        green = returncode == 0 and not timed_out and instance.get("run_status") == "SUCCESS"
        record.update({
            "green": green, "returncode": returncode, "timed_out": timed_out,
            "wall_seconds": round(wall, 2),
            "cpu_seconds_dagster": round(tree_cpu, 1), "cpu_seconds_emulator": round(emu_cpu, 1),
            "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "objects_per_second": round(tables["distinct"] / wall, 1) if wall else 0.0,
            "requests": int(stats.get("requests", 0)), "r429": int(stats.get("429", 0)), "r500": int(stats.get("500", 0)),
            "objects_served": int(stats.get("objects", 0)),
            "peak_rss_mb": round(sampler.peak_rss / MB, 1), "peak_pss_mb": round(sampler.peak_pss / MB, 1),
            "peak_single_rss_mb": round(sampler.peak_single_rss / MB, 1), "peak_processes": sampler.peak_procs,
            "rss_samples": sampler.samples, "peak_rss_at_seconds": round(sampler.peak_at, 2),
            "rss_timeline_mb": sampler.coarse_timeline(),
            **{k: tables[k] for k in ("expected", "rows", "distinct", "missing", "duplicated")},
            "tables": tables["per_object"],
            **{k: v for k, v in instance.items() if k != "assets"},
            "assets": instance["assets"],
        })
        if poller:
            record["series"] = [(round(t - started, 2), _total(eps), _total(eps, "429")) for t, eps in poller.series]
            record.update(api_phase(poller.series))
            record["_endpoint_series"] = poller.series  # used by scenario reports, dropped before saving
            record["_started"] = started
            record["_started_wall"] = started_wall
        probe = workdir / "first_connect.json"
        if probe.exists():
            seen = json.loads(probe.read_text())
            record["first_connect_seconds"] = round(seen["wall"] - started_wall, 2)
            record["cpu_seconds_to_first_connect"] = round(seen["cpu"], 2)
        if not green:
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            record["log_tail"] = tail
    finally:
        emulator.stop()
        if keep:
            record["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return record


def _stop_group(proc: subprocess.Popen) -> Optional[int]:
    """End the CLI's own process group (it was started in a new session): SIGTERM, then SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    return proc.returncode


def save(record: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in record.items() if not k.startswith("_")}
    with open(RESULTS, "a") as f:
        f.write(json.dumps(clean, default=str) + "\n")


def save_stamped(records: list[dict]) -> None:
    """Append records with the time and revision they were measured at, and say where they went."""
    stamp = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_revision()}
    for record in records:
        save({**record, **stamp})
    print(f"records appended to {RESULTS.relative_to(REPO)}")


def fmt_status(record: dict) -> str:
    if record.get("green"):
        return "green"
    return "TIMEOUT" if record.get("timed_out") else f"FAILED(rc={record.get('returncode')}, {record.get('run_status')})"


def base_line(r: dict) -> str:
    pss = f" (PSS {r['peak_pss_mb']:,.0f} MB)" if r.get("peak_pss_mb") else ""
    return (f"[{r['scenario']}:{r['label']}] {fmt_status(r)} wall {r['wall_seconds']:.1f}s, "
            f"{r['distinct']:,}/{r['expected']:,} objects ({r['objects_per_second']:,.0f} obj/s), "
            f"missing {r['missing']}, duplicated {r['duplicated']}, requests {r['requests']:,} "
            f"(429: {r['r429']}, 500: {r['r500']}), peak tree RSS {r['peak_rss_mb']:,.0f} MB{pss}, "
            f"{r['peak_processes']} procs; CPU dagster {r['cpu_seconds_dagster']:.0f}s, emulator "
            f"{r['cpu_seconds_emulator']:.0f}s, load {r['loadavg_1m_before']:.1f}")


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def print_failure(r: dict) -> None:
    if not r.get("green") and r.get("log_tail"):
        print("    last lines of the dagster log:")
        for line in r["log_tail"]:
            print("    | " + line[:200])


# ------------------------------------------------------------------------------------------------------
# Scenarios
# ------------------------------------------------------------------------------------------------------


def scenario_async_rate(a) -> list[dict]:
    rate, latency = 25, a.latency_ms
    case = Case("async-rate", f"{a.charges}ch-{latency:g}ms-{rate}rps",
                ["--count", f"charge={a.charges}", "--latency-ms", str(latency), "--global-rate", str(rate),
                 "--endpoint-rate", str(rate)],
                "stripe/charge", ["charge"], stripe_config=dict(a.stripe_config or {}), timeout=a.timeout,
                in_process=a.in_process, executor_config={} if a.multiprocess else None)
    r = materialize(case, a.keep, a.profile)
    ceiling = rate * PAGE  # one endpoint at 25 req/s, 100 objects a page
    meta = r["assets"].get("charge", {})
    fetch_ops = float(meta.get("objects_per_second", 0) or 0)
    min_requests = -(-a.charges // PAGE)
    r["figures"] = {
        "ceiling_objects_per_second": ceiling,
        "command_pct_of_ceiling": round(100 * r["objects_per_second"] / ceiling, 1),
        "fetch_objects_per_second": fetch_ops,
        "fetch_seconds": meta.get("fetch_seconds"),
        "fetch_pct_of_ceiling": round(100 * fetch_ops / ceiling, 1),
        "request_overhead_pct": round(100 * (r["requests"] - min_requests) / min_requests, 2),
        "ideal_fetch_seconds": round(min_requests / rate, 1),
    }
    f = r["figures"]
    save(r)
    print(base_line(r))
    print(f"    whole command {r['objects_per_second']:,.0f} obj/s = {f['command_pct_of_ceiling']}% of {ceiling:,} "
          f"(target >= 90%: {verdict(f['command_pct_of_ceiling'] >= 90)}); fetch phase {fetch_ops:,.0f} obj/s = "
          f"{f['fetch_pct_of_ceiling']}% in {f['fetch_seconds']}s (ideal {f['ideal_fetch_seconds']}s); "
          f"run {r.get('run_seconds')}s, step {meta.get('step_seconds')}s")
    print(f"    requests {r['requests']:,} (target <= 1,050: {verdict(r['requests'] <= 1050)}; minimum {min_requests:,}), "
          f"0 missing/duplicated: {verdict(r['missing'] == 0 and r['duplicated'] == 0)}, green: {verdict(r['green'])}")
    print_failure(r)
    return [r]


ALL_OBJECTS_COUNTS = {  # on top of --scale: real volume for the big lists
    "charge": 40000, "balance_transaction": 30000, "payment_intent": 20000, "invoice": 20000, "customer": 1000,
}


def scenario_all_objects(a) -> list[dict]:
    records = []
    counts = [f"{k}={v}" for k, v in ALL_OBJECTS_COUNTS.items()] if not a.no_extra_counts else []
    emulator_args = ["--scale", str(a.scale), "--latency-ms", str(a.latency_ms), "--global-rate", "100",
                     "--endpoint-rate", "25"]
    for c in counts:
        emulator_args += ["--count", c]
    for variant in a.variants.split(","):
        # "default" = the location's default executor (in-process), "inproc" = in-process named in run
        # config, "mp" = multiprocess, "mp2" = max_concurrent 2, "mp8p8" = max_concurrent 8 with pool limit 8
        variant = variant.strip()
        in_process = variant == "inproc"
        max_concurrent, pool = None, None
        if variant.startswith("mp"):
            spec = variant.removeprefix("mp")
            mc, _, pl = spec.partition("p")
            max_concurrent = int(mc) if mc else None
            pool = int(pl) if pl else None
        case = Case("all-objects", variant, emulator_args, "group:stripe", list(CATALOG),
                    stripe_config={"max_requests_per_second": 100, **(a.stripe_config or {})},
                    executor_config=({"max_concurrent": max_concurrent} if max_concurrent else {})
                    if variant.startswith("mp") else None,
                    in_process=in_process, pool_limit=pool, timeout=a.timeout)
        r = materialize(case, a.keep, a.profile)
        busy = busy_window(r.get("_endpoint_series", []), min_endpoints=4)
        fetch = [m.get("fetch_seconds", 0) for m in r["assets"].values()]
        r["figures"] = {
            **busy,
            "busy_pct_of_global": round(busy.get("busy_requests_per_second", 0), 1),  # global ceiling is 100/s
            "pct_429": round(100 * r["r429"] / r["requests"], 2) if r["requests"] else 0.0,
            "api_requests_per_second": r.get("api_requests_per_second"),
            "fetch_seconds_sum": round(sum(float(x or 0) for x in fetch), 1),
            "max_concurrent": max_concurrent, "pool_limit": pool or r["pools"].get("default_limit"),
        }
        f = r["figures"]
        save(r)
        print(base_line(r))
        print(f"    busy window (>= 4 endpoints with requests left): {f.get('busy_requests_per_second', 0):.1f} req/s "
              f"= {f['busy_pct_of_global']}% of 100 over {f.get('busy_seconds', 0)}s (target >= 80%: "
              f"{verdict(f['busy_pct_of_global'] >= 80)}); whole API phase {r.get('api_requests_per_second')} req/s "
              f"over {r.get('api_seconds')}s; 429s {r['r429']} = {f['pct_429']}% (target < 1%: {verdict(f['pct_429'] < 1)}); "
              f"run {r.get('run_seconds')}s, step time sum {r.get('step_seconds_sum')}s")
        print_failure(r)
        records.append(r)
    return records


def _no_limit_config(a) -> dict:
    return {"max_requests_per_second": 10000, "max_requests_per_second_per_endpoint": 10000, **(a.stripe_config or {})}


def scenario_throughput(a) -> list[dict]:
    case = Case("throughput", f"{a.charges}ch-nolimit", ["--count", f"charge={a.charges}"], "stripe/charge", ["charge"],
                stripe_config=_no_limit_config(a), timeout=a.timeout, in_process=a.in_process, executor_config={} if a.multiprocess else None)
    r = materialize(case, a.keep, a.profile)
    meta = r["assets"].get("charge", {})
    wall_ex_start = r["wall_seconds"]
    r["figures"] = {
        "fetch_seconds": meta.get("fetch_seconds"), "fetch_objects_per_second": meta.get("objects_per_second"),
        "step_seconds": meta.get("step_seconds"), "run_seconds": r.get("run_seconds"),
        "write_and_overhead_seconds": round(float(meta.get("step_seconds") or 0) - float(meta.get("fetch_seconds") or 0), 2),
        "startup_seconds": round(wall_ex_start - float(r.get("run_seconds") or 0), 2),
    }
    f = r["figures"]
    save(r)
    print(base_line(r))
    print(f"    end to end {r['objects_per_second']:,.0f} obj/s (target >= 6,000: {verdict(r['objects_per_second'] >= 6000)}); "
          f"fetch {f['fetch_objects_per_second']} obj/s in {f['fetch_seconds']}s; step {f['step_seconds']}s "
          f"(write + step overhead {f['write_and_overhead_seconds']}s); run {f['run_seconds']}s; "
          f"CLI start/teardown {f['startup_seconds']}s")
    print_failure(r)
    return [r]


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
    global PYTHONPATH_OVERRIDE, MODULE
    global_override, global_module = PYTHONPATH_OVERRIDE, MODULE
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
                PYTHONPATH_OVERRIDE, MODULE = path, module
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
        PYTHONPATH_OVERRIDE, MODULE = global_override, global_module
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


def scenario_memory(a) -> list[dict]:
    records = []
    sizes = [int(x) for x in a.sizes.split(",")]
    for n in sizes:
        case = Case("memory", f"{n}ch", ["--count", f"charge={n}"], "stripe/charge", ["charge"],
                    stripe_config=_no_limit_config(a), timeout=a.timeout, pss_every=a.pss_every,
                    in_process=a.in_process, executor_config={} if a.multiprocess else None)
        r = materialize(case, a.keep, a.profile)
        save(r)
        print(base_line(r))
        print(f"    peak process: {r['peak_single_rss_mb']:,.0f} MB RSS")
        print_failure(r)
        records.append(r)
    by = {int(r["label"].split("ch")[0]): r for r in records}
    base, small, big = by.get(sizes[0]), by.get(sizes[1]) if len(sizes) > 1 else None, by.get(sizes[-1])
    if base and small and big and all(r["green"] for r in (base, small, big)):
        ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
        added = big["peak_rss_mb"] - base["peak_rss_mb"]
        summary = {"scenario": "memory", "label": "summary", "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "git": git_revision(), "ratio_big_small": round(ratio, 3), "added_over_baseline_mb": round(added, 1),
                   "added_pss_over_baseline_mb": round(big["peak_pss_mb"] - base["peak_pss_mb"], 1),
                   "sizes": sizes}
        save(summary)
        print(f"[memory:summary] {sizes[-1]:,} vs {sizes[1]:,} charges: {ratio:.2f}x peak tree RSS "
              f"(target <= 1.3x: {verdict(ratio <= 1.3)}); {sizes[-1]:,} charges add {added:,.0f} MB RSS "
              f"({summary['added_pss_over_baseline_mb']:,.0f} MB PSS) over the {sizes[0]}-charge baseline "
              f"(target <= 150 MB: {verdict(added <= 150)})")
    return records


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


def scenario_concurrency(a) -> list[dict]:
    """Stripe's concurrency limiter: the emulator answers 429 (global-concurrency) above N requests in flight."""
    records = []
    args = ["--count", f"charge={a.charges}", "--max-concurrency", str(a.max_concurrency), "--latency-ms",
            str(a.latency_ms)]
    for mode in a.modes.split(","):
        case = Case("concurrency", f"{a.charges}ch-{mode}-c{a.max_concurrency}-{a.latency_ms:g}ms", args,
                    "stripe/charge", ["charge"], stripe_config=dict(a.stripe_config or {}), timeout=a.timeout,
                    op_config={"mode": mode}, in_process=a.in_process, executor_config={} if a.multiprocess else None)
        r = materialize(case, a.keep, a.profile)
        meta = r["assets"].get("charge", {})
        r["figures"] = {"mode": mode, "pct_429": round(100 * r["r429"] / r["requests"], 2) if r["requests"] else 0.0,
                        "fetch_seconds": meta.get("fetch_seconds")}
        save(r)
        print(base_line(r))
        print(f"    {mode}: wall {r['wall_seconds']:.1f}s, fetch {meta.get('fetch_seconds')}s, 429s {r['r429']} = "
              f"{r['figures']['pct_429']}% of requests (target < 5%: {verdict(r['figures']['pct_429'] < 5)})")
        print_failure(r)
        records.append(r)
    by_mode = {r["figures"]["mode"]: r for r in records}
    if "async" in by_mode and "sync" in by_mode:
        fast, slow = by_mode["async"]["wall_seconds"], by_mode["sync"]["wall_seconds"]
        print(f"[concurrency:summary] async {fast:.1f}s vs sync {slow:.1f}s "
              f"(target: async never slower: {verdict(fast <= slow)})")
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
    argv = [dagster_cli(), "asset", "materialize", "-m", MODULE, "--select", a.select, "-c", str(config_path)]
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
              "git": git_revision(), "pythonpath": PYTHONPATH_OVERRIDE, "select": a.select,
              "run_config": run_config(case, workdir), "wall_seconds": round(wall, 1), "timed_out": timed_out,
              "returncode": proc.returncode, "connections": len(hole.connections),
              "message": lines[0][:400] if lines else None, "traceback_lines": text.count("Traceback")}
    shutil.rmtree(workdir, ignore_errors=True)
    save(record)
    print(f"[stall:{case.label}] {'TIMEOUT' if timed_out else f'rc={proc.returncode}'} after {wall:.1f}s, "
          f"{len(hole.connections)} connections accepted (never answered); target <= ~120 s: {verdict(wall <= 130)}")
    print(f"    message: {record['message']}")
    return [{**record, "green": proc.returncode != 0 and bool(lines)}]


SCENARIOS = {
    "async-rate": scenario_async_rate,
    "all-objects": scenario_all_objects,
    "throughput": scenario_throughput,
    "memory": scenario_memory,
    "faults": scenario_faults,
    "concurrency": scenario_concurrency,
    "stall": scenario_stall,
    "fixed-cost": scenario_fixed_cost,
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="keep each run's temp folder (logs, DuckDB file)")
    p.add_argument("--profile", metavar="DIR", default=None,
                   help="run the CLI under `py-spy record --subprocesses` and write collapsed stacks to DIR")
    p.add_argument("--in-process", action="store_true",
                   help="single-asset scenarios: run config names the in_process executor (the location's default)")
    p.add_argument("--multiprocess", action="store_true",
                   help="single-asset scenarios: run config selects the multiprocess executor (a process per step)")
    p.add_argument("--repeat-all", type=int, default=1, metavar="N", help="run the scenario N times")
    p.add_argument("--pythonpath", default=None, metavar="DIR",
                   help="prepend DIR to PYTHONPATH of the emulator and the CLI (a scratch copy of the package)")
    p.add_argument("--module", default=MODULE, help="code location module for `dagster asset materialize -m`")
    p.add_argument("--stripe-config", type=json.loads, default=None,
                   help='extra StripeResource fields as JSON, e.g. \'{"max_in_flight": 16}\'')
    sub = p.add_subparsers(dest="scenario", required=True)

    s = sub.add_parser("async-rate", help="100k charges, 200 ms latency, 25 req/s: %% of the 2,500 obj/s ceiling")
    s.add_argument("--charges", type=int, default=100_000)
    s.add_argument("--latency-ms", type=float, default=200)
    s.add_argument("--timeout", type=float, default=300)

    s = sub.add_parser("all-objects", help="all 23 objects, 100 req/s global, 25 per endpoint")
    s.add_argument("--scale", type=float, default=20)
    s.add_argument("--no-extra-counts", action="store_true", help=f"only --scale, not {ALL_OBJECTS_COUNTS}")
    s.add_argument("--latency-ms", type=float, default=200)
    s.add_argument("--variants", default="default",
                   help="comma list: default = the location's executor (in-process), mp = multiprocess, "
                        "mpN = multiprocess max_concurrent N, mpNpM also sets the pool limit to M, "
                        "inproc = in-process named in run config")
    s.add_argument("--timeout", type=float, default=600)

    s = sub.add_parser("throughput", help="no latency, no limits: end-to-end objects/s")
    s.add_argument("--charges", type=int, default=200_000)
    s.add_argument("--timeout", type=float, default=300)

    s = sub.add_parser("memory", help="peak RSS of the process tree at several sizes")
    s.add_argument("--sizes", default="10,20000,200000", help="charges: baseline, small, big")
    s.add_argument("--pss-every", type=int, default=20, help="also read PSS every Nth 50 ms sample (0: off)")
    s.add_argument("--timeout", type=float, default=300)

    s = sub.add_parser("faults", help="5%% HTTP 500s at 10 req/s, repeated")
    s.add_argument("--charges", type=int, default=20_000)
    s.add_argument("--error-rate", type=float, default=0.05)
    s.add_argument("--rate", type=float, default=10)
    s.add_argument("--latency-ms", type=float, default=0)
    s.add_argument("--repeat", type=int, default=3)
    s.add_argument("--timeout", type=float, default=180)

    s = sub.add_parser("concurrency", help="20k charges, at most 4 requests in flight, 200 ms: async vs sync")
    s.add_argument("--charges", type=int, default=20_000)
    s.add_argument("--max-concurrency", type=int, default=4)
    s.add_argument("--latency-ms", type=float, default=200)
    s.add_argument("--modes", default="async,sync")
    s.add_argument("--timeout", type=float, default=600)

    s = sub.add_parser("stall", help="an upstream that accepts connections and never answers: time to failure")
    s.add_argument("--select", default="stripe/charge")
    s.add_argument("--timeout", type=float, default=900)
    s = sub.add_parser("fixed-cost", help="20k charges at 25 req/s: time to first request, write + checks + metadata")
    s.add_argument("--charges", type=int, default=20_000)
    s.add_argument("--timeout", type=float, default=180)
    s.add_argument("--baseline", metavar="DIR", default=None,
                   help="also run the package found in DIR (a checkout of an older commit), alternating with this tree")
    s.add_argument("--floor", action="store_true",
                   help="also run benchmarks/floor_location.py: Dagster alone, one asset that makes one request")
    s.add_argument("--repeat", type=int, default=1, help="runs of each variant, alternating")

    sub.add_parser("all", help="every scenario once with its defaults")
    return p.parse_args(argv)


def main(argv=None) -> int:
    global PYTHONPATH_OVERRIDE, MODULE
    a = parse_args(argv)
    MODULE = a.module
    PYTHONPATH_OVERRIDE = str(Path(a.pythonpath).resolve()) if a.pythonpath else None
    records = []
    for _ in range(a.repeat_all):
        if a.scenario == "all":
            for name, fn in SCENARIOS.items():
                sa = parse_args([*(["--keep"] if a.keep else []), *(["--profile", a.profile] if a.profile else []),
                                 *(["--in-process"] if a.in_process else []),
                                 *(["--multiprocess"] if a.multiprocess else []),
                                 *(["--stripe-config", json.dumps(a.stripe_config)] if a.stripe_config else []), name])
                records += fn(sa)
        else:
            records += SCENARIOS[a.scenario](a)
    print(f"records appended to {RESULTS.relative_to(REPO)}")
    return 0 if all(r.get("green", True) for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
