"""The shared harness of the benchmarks: the real `dagster asset materialize` CLI against the bundled emulator.

Every run: the emulator starts as a subprocess on 127.0.0.1 (port 0, --ready-file), the CLI runs with a
private DAGSTER_HOME (telemetry off, the repo's `concurrency: pools` block), a private DuckDB file, spool
and budget folders, and run config from a YAML file. Peak RSS of the whole dagster process tree is sampled
from /proc every 50 ms; the emulator's request statistics are polled every 0.5 s. Afterwards the DuckDB
tables are checked against the emulator's counts (missing / duplicated ids) and one line of figures is
printed and one JSON record appended to benchmarks/results/latest.jsonl. These are benchmarks, not tests:
they print figures, and every run is bounded by a timeout.

The scenarios (`scenario_*.py`) build on this module; `run.py` is their command line.
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


@dataclass
class Target:
    """What the CLI runs: the code location module and an optional scratch copy of the package."""

    module: str = "nilus_stripe_assets.definitions"  # --module: another code location (e.g. a prototype in --pythonpath)
    pythonpath: Optional[str] = None  # --pythonpath: try an engine change from a scratch copy of the package


TARGET = Target()  # set by run.py's options; scenarios that compare packages switch it per run


def _pythonpath_env() -> dict:
    if not TARGET.pythonpath:
        return {}
    return {"PYTHONPATH": os.pathsep.join(p for p in (TARGET.pythonpath, os.environ.get("PYTHONPATH")) if p)}


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
                    "pythonpath": TARGET.pythonpath, "module": TARGET.module,
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
        argv = [dagster_cli(), "asset", "materialize", "-m", TARGET.module,
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


__all__ = [
    "API_KEY",
    "Case",
    "Emulator",
    "FIRST_CONNECT_PROBE",
    "MB",
    "PAGE",
    "PAGE_SIZE",
    "PY",
    "REPO",
    "RESULTS",
    "StatsPoller",
    "TARGET",
    "Target",
    "TreeMemorySampler",
    "_children_cpu",
    "_children_map",
    "_cpu_seconds",
    "_probe_env",
    "_pss",
    "_pythonpath_env",
    "_rss",
    "_stop_group",
    "_total",
    "api_phase",
    "base_line",
    "busy_window",
    "check_tables",
    "dagster_cli",
    "fmt_status",
    "git_revision",
    "listable_events",
    "materialize",
    "print_failure",
    "read_instance",
    "repo_pools_block",
    "run_config",
    "save",
    "save_stamped",
    "tree_pids",
    "verdict",
    "write_instance_yaml",
]
