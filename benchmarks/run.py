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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the harness and scenarios beside this file
from harness import *  # noqa: F401,F403,E402 (re-exported: other benchmarks `import run as bench`)
from harness import REPO, RESULTS, TARGET  # noqa: E402
from scenario_faults import scenario_faults, scenario_stall  # noqa: E402
from scenario_fixed_cost import scenario_fixed_cost  # noqa: E402
from scenario_memory import scenario_memory  # noqa: E402
from scenario_rate import ALL_OBJECTS_COUNTS, scenario_all_objects, scenario_async_rate, scenario_concurrency, scenario_throughput  # noqa: E402,E501

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
    p.add_argument("--module", default=TARGET.module, help="code location module for `dagster asset materialize -m`")
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
    a = parse_args(argv)
    TARGET.module = a.module
    TARGET.pythonpath = str(Path(a.pythonpath).resolve()) if a.pythonpath else None
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

