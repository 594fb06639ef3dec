"""Rate scenarios: async-rate (the 25 req/s ceiling), all-objects, throughput (no limits) and concurrency (Stripe's concurrency limiter)."""

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
from nilus_stripe_assets.source.catalog import DEFAULT_OBJECTS


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
        case = Case("all-objects", variant, emulator_args, "group:stripe", list(DEFAULT_OBJECTS),
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
