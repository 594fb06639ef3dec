"""warehouse.write on a real DuckDB file, fed by a real Spool: the typed read (field kinds recorded by the
spool) must give exactly what DuckDB's own type probe gives, and fall back to the probe when it cannot."""

from __future__ import annotations

import duckdb
import pytest

from nilus_stripe_assets.staging.spool import Spool
from nilus_stripe_assets.warehouse.strategies import ChangeSet, TableRef, table_columns, write

TABLE = TableRef("stripe", "thing")

# Shapes a Stripe-compatible server may send: unknown fields, nulls, ints that become floats, a field that
# is a string on one object and an object on another, lists, booleans, a field only some objects have.
FIRST = [
    {"id": "th_1", "object": "thing", "created": 100, "amount": 5, "ratio": 1, "flag": True, "label": "a",
     "nested": {"k": [1, 2]}, "maybe": None, "mixed": "text", "tags": ["x"]},
    {"id": "th_2", "object": "thing", "created": 101, "amount": None, "ratio": 2.5, "flag": False, "label": None,
     "nested": None, "maybe": None, "mixed": {"as": "object"}, "tags": [], "only_here": 7},
]
LATER = [
    {"id": "th_2", "object": "thing", "created": 101, "amount": 9, "ratio": 3, "flag": None, "label": "b",
     "nested": {"k": []}, "maybe": 42, "mixed": None, "tags": None, "brand_new": "yes"},
    {"id": "th_3", "object": "thing", "created": 102, "amount": 1.5, "ratio": None, "flag": True, "label": "c",
     "nested": {}, "maybe": 43, "mixed": 5, "tags": ["y", {"z": 1}]},
]


def _spool(tmp_path, *pages):
    spool = Spool(directory=str(tmp_path))
    for page in pages:
        spool.write(page)
    return spool.finish()


def _load(database, tmp_path, pages_per_write, typed: bool, strategy="merge"):
    with duckdb.connect(database) as con:
        for pages in pages_per_write:
            summary = _spool(tmp_path, *pages)
            write(con, TABLE, summary.files, strategy, state_at=1000, fields=summary.fields,
                  kinds=summary.kinds if typed else None)
        columns = table_columns(con, TABLE)
        rows = con.execute(f"SELECT * EXCLUDE (_loaded_at) FROM {TABLE.sql} ORDER BY id").fetchall()
    return columns, rows


@pytest.mark.parametrize("strategy", ["merge", "replace", "append"])
def test_typed_read_matches_the_probe_on_awkward_shapes(tmp_path, strategy):
    writes = [[FIRST], [LATER]]
    typed = _load(str(tmp_path / "typed.duckdb"), tmp_path, writes, typed=True, strategy=strategy)
    probed = _load(str(tmp_path / "probed.duckdb"), tmp_path, writes, typed=False, strategy=strategy)
    assert typed == probed
    columns, rows = typed
    assert columns["amount"] == "DOUBLE" and columns["nested"] == "JSON" and columns["maybe"] == "BIGINT"
    assert columns["mixed"] == "JSON" and columns["brand_new"] == "VARCHAR" and columns["flag"] == "BOOLEAN"
    expected_ids = ["th_2", "th_3"] if strategy == "replace" else ["th_1", "th_2", "th_3"]
    assert [r[0] for r in rows] == expected_ids


def test_an_integer_beyond_bigint_falls_back_to_the_probe_and_keeps_the_row(tmp_path):
    database = str(tmp_path / "big.duckdb")
    page = [{"id": "th_1", "created": 1, "n": 2**63}, {"id": "th_2", "created": 2, "n": 3}]
    summary = _spool(tmp_path, page)
    with duckdb.connect(database) as con:
        result = write(con, TABLE, summary.files, "merge", fields=summary.fields, kinds=summary.kinds)
        assert result.inserted == 2
        assert table_columns(con, TABLE)["n"] == "DOUBLE"
        values = con.execute(f"SELECT id, n FROM {TABLE.sql} ORDER BY id").fetchall()
    assert values == [("th_1", float(2**63)), ("th_2", 3.0)]


def test_a_key_repeated_within_one_first_batch_lands_once(tmp_path):
    database = str(tmp_path / "dup.duckdb")
    page = [{"id": "th_1", "created": 1, "v": 1}, {"id": "th_2", "created": 2, "v": 2}]
    summary = _spool(tmp_path, page, [{"id": "th_1", "created": 1, "v": 1}])  # a server repeating an object
    with duckdb.connect(database) as con:
        result = write(con, TABLE, summary.files, "merge", fields=summary.fields, kinds=summary.kinds)
        assert con.execute(f"SELECT count(*), count(DISTINCT id) FROM {TABLE.sql}").fetchone() == (2, 2)
    assert result.received == 2 and result.inserted == 2


def test_typed_change_capture_applies_newest_state_and_deletions(tmp_path):
    database = str(tmp_path / "changes.duckdb")
    rows = _spool(tmp_path, [{"id": "th_1", "created": 1, "v": 1}, {"id": "th_2", "created": 2, "v": 2}])
    events = _spool(tmp_path, [
        {"id": "th_1", "created": 1, "v": 10, "_event_created": 2000, "_event_type": "thing.updated"},
        {"id": "th_2", "created": 2, "v": 2, "_event_created": 2001, "_event_type": "thing.deleted"},
    ])
    changes = ChangeSet(files=events.files, state_key="thing", cursor=2001, fields=events.fields, kinds=events.kinds)
    with duckdb.connect(database) as con:
        write(con, TABLE, rows.files, "merge", state_at=1000, changes=changes, fields=rows.fields, kinds=rows.kinds)
        got = con.execute(f"SELECT id, v, is_deleted, _state_at FROM {TABLE.sql} ORDER BY id").fetchall()
    assert got == [("th_1", 10, False, 2000), ("th_2", 2, True, 2001)]


def _charges(n, changed=(), description="as loaded"):
    return [
        {"id": f"ch_{i:04d}", "object": "charge", "created": 1000 + i, "amount": 100 + i,
         "description": description if i not in changed else "changed", "metadata": {"order": i}}
        for i in range(n)
    ]


@pytest.mark.parametrize("strategy", ["merge", "replace"])
def test_a_reload_rewrites_only_changed_rows_and_counts_them_exactly(tmp_path, strategy):
    database = str(tmp_path / "reload.duckdb")
    with duckdb.connect(database) as con:
        first = _spool(tmp_path, _charges(300))
        result = write(con, TABLE, first.files, strategy, state_at=1000, fields=first.fields, kinds=first.kinds)
        assert (result.inserted, result.updated, result.unchanged, result.rows) == (300, 0, 0, 300)
        loaded_at = dict(con.execute(f"SELECT id, _loaded_at FROM {TABLE.sql}").fetchall())

        same = _spool(tmp_path, _charges(300))
        result = write(con, TABLE, same.files, strategy, state_at=2000, fields=same.fields, kinds=same.kinds)
        assert (result.inserted, result.updated, result.unchanged, result.deleted) == (0, 0, 300, 0)
        assert dict(con.execute(f"SELECT id, _loaded_at FROM {TABLE.sql}").fetchall()) == loaded_at
        # Unchanged rows are not rewritten, but their state is known from the newer read.
        assert con.execute(f"SELECT DISTINCT _state_at FROM {TABLE.sql}").fetchall() == [(2000,)]

        # 3 changed, 1 new, and (for replace) the 2 last ones gone from the snapshot.
        changed = _charges(301, changed={5, 6, 7})[:298] + _charges(301)[300:]
        later = _spool(tmp_path, changed)
        result = write(con, TABLE, later.files, strategy, state_at=3000, fields=later.fields, kinds=later.kinds)
        gone = 2 if strategy == "replace" else 0
        assert (result.inserted, result.updated, result.unchanged, result.deleted) == (1, 3, 295, gone)
        rows = dict(con.execute(f"SELECT id, description FROM {TABLE.sql}").fetchall())
        assert len(rows) == 301 - gone
        assert con.execute(f"SELECT count(*), count(DISTINCT id) FROM {TABLE.sql}").fetchone() == (301 - gone,) * 2
        assert [rows[f"ch_{i:04d}"] for i in (4, 5, 6, 7, 8)] == ["as loaded", "changed", "changed", "changed", "as loaded"]
        rewritten = con.execute(f"SELECT count(*) FROM {TABLE.sql} WHERE _loaded_at > ?", [max(loaded_at.values())]).fetchone()
        assert rewritten == (4,)


def test_a_field_missing_from_a_reload_keeps_its_stored_value(tmp_path):
    database = str(tmp_path / "kept.duckdb")
    with duckdb.connect(database) as con:
        first = _spool(tmp_path, [{"id": "th_1", "created": 1, "a": 1, "b": "x"}])
        write(con, TABLE, first.files, "merge", state_at=1, fields=first.fields, kinds=first.kinds)
        later = _spool(tmp_path, [{"id": "th_1", "created": 1, "a": 2}])
        result = write(con, TABLE, later.files, "merge", state_at=2, fields=later.fields, kinds=later.kinds)
        assert result.updated == 1
        assert con.execute(f"SELECT a, b FROM {TABLE.sql}").fetchall() == [(2, "x")]
