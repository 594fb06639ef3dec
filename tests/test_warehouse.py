"""warehouse.write on a real DuckDB file, fed by a real Spool: the typed read (field kinds recorded by the
spool) must give exactly what DuckDB's own type probe gives, and fall back to the probe when it cannot."""

from __future__ import annotations

import duckdb
import pytest

from nilus_stripe_assets.spool import Spool
from nilus_stripe_assets.warehouse import ChangeSet, TableRef, table_columns, write

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
