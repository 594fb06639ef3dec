"""Peak RSS of the CLI's process tree at several sizes (memory)."""

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
from scenario_rate import _no_limit_config


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
