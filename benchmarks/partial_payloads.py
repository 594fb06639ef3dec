#!/usr/bin/env python
"""What it costs that an event payload lacking a field (older API version) never nulls that field.

    python benchmarks/partial_payloads.py                  # 100k rows, 10k change states
    python benchmarks/partial_payloads.py --rows 200000 --changes 50000

Change capture applies event states with one MERGE; each state carries the list of fields its payload
had (`_event_fields`), and every column is updated with `CASE WHEN list_contains(...) THEN new ELSE old`.
This times that write against the same MERGE updating every column unconditionally (what would null an
absent field), on a real DuckDB file, with half the states lacking two fields. The alternative design,
re-fetching each changed object, costs one request per changed object: at Stripe's 25 (test) / 100 (live)
requests/s that is changes / 25 s, the figure printed beside.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402

from nilus_stripe_assets.warehouse import strategies as warehouse  # noqa: E402
from nilus_stripe_assets.staging.spool import Spool  # noqa: E402
from nilus_stripe_assets.staging.parquet import EVENT_CREATED, EVENT_PRESENT, EVENT_TYPE  # noqa: E402
from nilus_stripe_assets.warehouse.strategies import ChangeSet, TableRef, write  # noqa: E402


def _row(i: int) -> dict:
    return {
        "id": f"ch_{i:012d}", "object": "charge", "amount": 1000 + i % 977, "currency": "usd", "created": 1_700_000_000 + i,
        "customer": f"cus_{i % 5000:08d}", "description": None, "email": f"user{i}@example.com", "paid": True,
        "status": "succeeded", "metadata": {"order": str(i)}, "billing_details": {"name": f"User {i}", "phone": None},
        **{f"field_{k}": (i * k) % 1013 for k in range(16)},
    }


def _spool(objects, root, tags=None) -> Spool:
    spool = Spool(directory=root)
    for start in range(0, len(objects), 1000):
        spool.write(objects[start:start + 1000], tags=tags[start:start + 1000] if tags else None)
    return spool


def measure(rows: int, changes: int, repeats: int) -> dict:
    times: dict[str, list[float]] = {"guarded": [], "unguarded": []}
    original = warehouse._merge
    for attempt in range(repeats):
        for variant in ("guarded", "unguarded"):
            with tempfile.TemporaryDirectory(prefix="nilus-partial-") as tmp:
                database = str(Path(tmp) / "w.duckdb")
                table = TableRef("stripe", "charge")
                base = [_row(i) for i in range(rows)]
                spool = _spool(base, tmp)
                summary = spool.finish()
                with duckdb.connect(database) as con:
                    write(con, table, summary.files, "merge", state_at=1, fields=summary.fields, kinds=summary.kinds)
                states, tags = [], []
                for j in range(changes):
                    state = {**_row(j * (rows // changes)), "status": "refunded"}
                    if j % 2:  # an older API version: no `email`, no `billing_details`
                        state.pop("email")
                        state.pop("billing_details")
                    states.append(state)
                    tags.append({EVENT_CREATED: 2, EVENT_TYPE: "charge.updated", EVENT_PRESENT: list(state)})
                changed = _spool(states, tmp, tags).finish()
                change_set = ChangeSet(changed.files, "k", 2, fields=changed.fields, kinds=changed.kinds)
                if variant == "unguarded":
                    warehouse._merge = lambda *a, keep_absent=False, **k: original(*a, **k)
                try:
                    with duckdb.connect(database) as con:
                        started = time.perf_counter()
                        write(con, table, [], "merge", changes=change_set)
                        times[variant].append(time.perf_counter() - started)
                        kept = con.execute(
                            "SELECT count(*) FILTER (WHERE email IS NOT NULL), count(*) FILTER (WHERE status = 'refunded') "
                            "FROM stripe.charge"
                        ).fetchone()
                finally:
                    warehouse._merge = original
                expected_email = rows if variant == "guarded" else rows - changes // 2
                assert kept == (expected_email, changes), (variant, kept)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--changes", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    r = measure(a.rows, a.changes, a.repeats)
    extra = r["guarded"] - r["unguarded"]
    print(
        f"{a.changes:,} change states into {a.rows:,} rows (half lack 2 fields), median of {a.repeats}: "
        f"guarded write {r['guarded']:.3f} s, unguarded {r['unguarded']:.3f} s (+{extra:.3f} s, "
        f"{100 * extra / r['unguarded']:+.0f} %); re-fetching instead: {a.changes:,} requests, "
        f"{a.changes / 25:.0f} s at 25 req/s, {a.changes / 100:.0f} s at 100 req/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
