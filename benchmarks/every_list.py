#!/usr/bin/env python
"""A full load of every catalog object from the emulator, then an incremental run after changes to ten of the
objects issue 19 added.

    .venv/bin/python benchmarks/every_list.py                    # default emulator counts, 100 req/s ceiling
    .venv/bin/python benchmarks/every_list.py --scale 2 --rate 25

The bundled emulator runs in this process (over real HTTP) with Stripe's live rate limits switched on
(`--rate` requests/s for the account, 25 per endpoint) and the package's `StripeResource` set to the same
ceiling. Every object the main code location loads (the catalog minus the Connect-only children) is loaded
in one step into a fresh DuckDB file; then ten objects issue 19 added are changed through the emulator's
control API (an update each, and a delete for those Stripe deletes), and one `sync:incremental` run follows.
Prints, for the full load: requests (the emulator's count), objects, wall seconds, objects/s and the share of
the rate ceiling used (requests / wall / rate); for the incremental run: requests per endpoint; and checks
that every table matches the emulator (ids) and that every change reached its table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
from dagster_duckdb import DuckDBResource  # noqa: E402

from nilus_stripe_assets.dagster_adapter.factory import ONE_STEP_NAME, build_stripe_assets  # noqa: E402
from nilus_stripe_assets.dagster_adapter.io_manager import StripeDuckDBIOManager  # noqa: E402
from nilus_stripe_assets.dagster_adapter.resources import StripeResource  # noqa: E402
from nilus_stripe_assets.emulator import StripeEmulator  # noqa: E402
from nilus_stripe_assets.emulator.builders import BUILDERS  # noqa: E402
from nilus_stripe_assets.emulator.model import EVENT_RETENTION_SECONDS, PARENT, event_type  # noqa: E402
from nilus_stripe_assets.source.catalog import CATALOG  # noqa: E402

# What the main code location loads: every catalog object but the Connect locations' own children.
LOADABLE = [name for name, o in CATALOG.items() if not getattr(o, "connect_only", False)]


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the figures, not Dagster's debug log


def changeable(emu: StripeEmulator, n: int = 10) -> list[str]:
    """`n` objects issue 19 added whose changes Stripe reports as events (so change capture can see them),
    spread over the catalog, each with at least two objects in the emulator."""
    names = [name for name in LOADABLE if name not in BUILDERS and name not in PARENT
             and event_type(name, "updated") and len(emu.store.tables[name].data) >= 2]
    return names[:: max(1, len(names) // n)][:n]


def resources(emu: StripeEmulator, database: str, budget_dir: str, rate: float) -> dict:
    warehouse = DuckDBResource(database=database)
    return {
        "stripe": StripeResource(api_key=emu.api_key, api_base=emu.url, budget_dir=budget_dir,
                                 max_requests_per_second=rate, max_requests_per_second_per_endpoint=25),
        "duckdb": warehouse,
        "stripe_io_manager": StripeDuckDBIOManager(duckdb=warehouse),
    }


def expected_ids(emu: StripeEmulator, name: str) -> set[str]:
    table = emu.store.tables[name]
    if name == "event":  # Stripe lists the last 30 days
        since = time.time() - EVENT_RETENTION_SECONDS
        return {oid for c, oid in table.keys if c >= since}
    return set(table.data)


def mismatches(emu: StripeEmulator, database: str) -> list[str]:
    out = []
    with duckdb.connect(database, read_only=True) as con:
        for name in LOADABLE:
            got = {r[0] for r in con.execute(f"SELECT id FROM stripe.{name} WHERE NOT coalesce(is_deleted, false)").fetchall()}
            want = expected_ids(emu, name)
            if got != want:
                out.append(f"{name}: {len(got)} rows, emulator {len(want)} ({len(got - want)} extra, {len(want - got)} missing)")
    return out


def change(emu: StripeEmulator, names: list[str]) -> list[tuple[str, str, str]]:
    """An update of one object of each of `names`, and a delete of another where Stripe deletes; returns
    (object, id, "updated" | "deleted") to check afterwards."""
    out = []
    for name in names:
        ids = sorted(emu.store.tables[name].data)[:2]
        emu.update(name, ids[0], metadata={"bench": "changed"})
        out.append((name, ids[0], "updated"))
        if CATALOG[name].deletable and event_type(name, "deleted"):
            emu.delete(name, ids[1])
            out.append((name, ids[1], "deleted"))
    return out


def missing_changes(database: str, changes: list[tuple[str, str, str]]) -> list[str]:
    out = []
    with duckdb.connect(database, read_only=True) as con:
        for name, oid, kind in changes:
            row = con.execute(f"SELECT metadata->>'$.bench', is_deleted FROM stripe.{name} WHERE id = ?", [oid]).fetchone()
            # a delete is flagged (merge) or gone from the snapshot (replace)
            ok = (row is None or row[1] is True) if kind == "deleted" else (row is not None and row[0] == "changed")
            if not ok:
                out.append(f"{name} {oid} {kind}: {row}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the emulator's default counts")
    p.add_argument("--rate", type=float, default=100.0, help="requests/s ceiling (Stripe live: 100, test mode: 25)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nilus-every-") as tmp, \
            StripeEmulator(scale=a.scale, seed=19, global_rate=a.rate, endpoint_rate=25) as emu:
        database = str(Path(tmp) / "warehouse.duckdb")
        res = resources(emu, database, tmp, a.rate)
        assets = build_stripe_assets(LOADABLE, one_step=True)
        instance = dg.DagsterInstance.ephemeral()
        load = os.getloadavg()
        started = time.perf_counter()
        assert dg.materialize(assets, resources=res, run_config=QUIET, instance=instance).success
        wall = time.perf_counter() - started
        stats = emu.stats()["total"]
        objects = sum(len(expected_ids(emu, n)) for n in LOADABLE)
        wrong = mismatches(emu, database)
        print(f"full load of {len(LOADABLE)} objects (scale {a.scale}, load average {load[0]:.1f}): "
              f"{stats['requests']} requests, {objects} objects, {wall:.1f} s, {objects / wall:.0f} objects/s, "
              f"{stats['requests'] / wall:.1f} requests/s = {100 * stats['requests'] / wall / a.rate:.0f} % of "
              f"the {a.rate:g} req/s ceiling; 429s: {stats.get('429', 0)}; "
              f"tables off: {len(wrong)}")
        for line in wrong:
            print("   ", line)
        time.sleep(1.1)  # the changes' events fall after the full load's second
        names = changeable(emu)
        changes = change(emu, names)
        emu.reset_stats()
        config = {**QUIET, "ops": {ONE_STEP_NAME: {"config": {"mode": "sync:incremental"}}}}
        started = time.perf_counter()
        assert dg.materialize(assets, resources=res, run_config=config, instance=instance).success
        wall = time.perf_counter() - started
        stats = emu.stats()
        lost = missing_changes(database, changes)
        print(f"incremental run after {len(changes)} changes to {len(names)} objects ({', '.join(names)}): "
              f"{stats['total']['requests']} requests, {wall:.1f} s; changes missing: {len(lost)}")
        for endpoint, s in sorted(stats["endpoints"].items()):
            if s["requests"]:
                print(f"    {s['requests']:>6}  {endpoint}")
        for line in lost:
            print("   ", line)
    return 0 if not wrong and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
