"""The write contract on both warehouses: every test runs against a DuckDB file and a PostgreSQL database.

merge upserts on the key, replace swaps (the table or one partition's slice), append is idempotent, schema
evolves (new columns, widening), nested objects stay queryable JSON, and change capture plus its cursor
commit with the rows or not at all. The objects go through a real Spool, as in a load.
"""

from __future__ import annotations

import duckdb
import psycopg
import pytest

from nilus_stripe_assets.warehouse import strategies as warehouse
from nilus_stripe_assets.staging.columns import Column
from nilus_stripe_assets.warehouse.sinks import as_sink
from nilus_stripe_assets.staging.spool import Spool
from nilus_stripe_assets.warehouse.strategies import ChangeSet, Slice, TableRef

TABLE = TableRef("stripe", "thing")
# Both engines' column types (the sinks report them in DuckDB's spelling), in one vocabulary.
_KIND = {"BIGINT": "int", "DOUBLE": "float", "BOOLEAN": "bool", "VARCHAR": "text", "JSON": "json"}
# As for every catalog object, `created` is declared an epoch field (stored TIMESTAMPTZ; partition slices
# compare it as such).
CREATED = Column("created", "TIMESTAMPTZ", "BIGINT", "Time at which the object was created.", False)


class Warehouse:
    """One engine's connection; the writes and reads under test are the package's own, for both."""

    def __init__(self, name: str, con):
        self.name, self.con = name, con

    def write(self, *args, **kwargs):
        return warehouse.write(self.con, TABLE, *args, declared={"created": CREATED}, **kwargs)

    def query(self, text: str) -> list[tuple]:
        return self.con.execute(text).fetchall()

    def columns(self) -> dict[str, str]:
        return {c: _KIND.get(t, t) for c, t in warehouse.table_columns(self.con, TABLE).items()}

    def cursor(self, key: str):
        return warehouse.get_cursor(self.con, TABLE.schema, key)

    def nested_text(self, column: str, *path: str) -> str:
        return as_sink(self.con).json_text(column, path)

    def close(self):
        self.con.close()


@pytest.fixture(params=["duckdb", "postgres"])
def sink(request, tmp_path):
    if request.param == "duckdb":
        made = Warehouse("duckdb", duckdb.connect(str(tmp_path / "warehouse.duckdb")))
    else:
        made = Warehouse("postgres", psycopg.connect(request.getfixturevalue("postgres_url"), autocommit=True))
    yield made
    made.close()


@pytest.fixture
def spool(tmp_path):
    def make(*pages):
        s = Spool(directory=str(tmp_path))
        for page in pages:
            s.write(page)
        return s.finish()

    return make


def write(sink, summary, strategy="merge", **kwargs):
    return sink.write(summary.files, strategy, fields=summary.fields, kinds=summary.kinds, **kwargs)


def obj(number: int, created: int, **fields) -> dict:
    return {"id": f"th_{number}", "object": "thing", "created": created, **fields}


def ids_and(sink, column: str) -> list[tuple]:
    return sink.query(f"SELECT id, {column} FROM stripe.thing ORDER BY id")


def test_merge_updates_in_place_and_inserts_new_ids(sink, spool):
    first = write(sink, spool([obj(1, 100, v=1), obj(2, 101, v=2), obj(3, 102, v=3)]), state_at=1000)
    second = write(sink, spool([obj(2, 101, v=20), obj(4, 103, v=4)]), state_at=2000)
    assert (first.inserted, first.updated) == (3, 0)
    assert (second.inserted, second.updated, second.rows) == (1, 1, 4)
    assert ids_and(sink, "v") == [("th_1", 1), ("th_2", 20), ("th_3", 3), ("th_4", 4)]
    assert ids_and(sink, "_state_at") == [("th_1", 1000), ("th_2", 2000), ("th_3", 1000), ("th_4", 2000)]


def test_a_key_repeated_in_one_batch_lands_once(sink, spool):
    result = write(sink, spool([obj(1, 100, v=1), obj(2, 101, v=2)], [obj(1, 100, v=1)]))
    assert result.received == 2 and result.inserted == 2
    assert sink.query("SELECT count(*), count(DISTINCT id) FROM stripe.thing") == [(2, 2)]


def test_replace_swaps_the_whole_table(sink, spool):
    write(sink, spool([obj(1, 100, v=1), obj(2, 101, v=2), obj(3, 102, v=3)]), "replace")
    result = write(sink, spool([obj(2, 101, v=20), obj(4, 103, v=4)]), "replace")
    assert (result.deleted, result.updated, result.inserted, result.rows) == (2, 1, 1, 2)
    assert ids_and(sink, "v") == [("th_2", 20), ("th_4", 4)]


def test_replace_of_a_partition_swaps_only_its_slice(sink, spool):
    write(sink, spool([obj(1, 100, v=1), obj(2, 150, v=2), obj(3, 250, v=3)]), "replace")
    result = write(sink, spool([obj(2, 150, v=20), obj(5, 199, v=5)]), "replace", scope=Slice("created", 100, 200))
    assert result.deleted == 1  # th_1 left the slice's snapshot; th_3 lies outside the slice
    assert ids_and(sink, "v") == [("th_2", 20), ("th_3", 3), ("th_5", 5)]


def test_append_is_idempotent(sink, spool):
    batch = [obj(1, 100, v=1), obj(2, 101, v=2)]
    write(sink, spool(batch), "append")
    again = write(sink, spool(batch + [obj(3, 102, v=3)]), "append")
    assert (again.inserted, again.unchanged, again.rows) == (1, 2, 3)
    assert sink.query("SELECT count(*), count(DISTINCT id) FROM stripe.thing") == [(3, 3)]


def test_schema_evolves_and_nested_objects_stay_queryable_json(sink, spool):
    write(sink, spool([obj(1, 100, amount=5, maybe=None, details={"address": {"city": "Lyon"}}, tags=["a"])]))
    result = write(sink, spool([obj(2, 101, amount=2.5, maybe=7, details=None, brand_new="yes", tags=[])]))
    columns = sink.columns()
    assert columns["amount"] == "float" and columns["maybe"] == "int"  # widened; typed once values arrived
    assert columns["details"] == "json" and columns["tags"] == "json" and columns["brand_new"] == "text"
    assert result.added_columns == ["brand_new"] and sorted(result.widened_columns) == ["amount", "maybe"]
    assert ids_and(sink, "amount") == [("th_1", 5.0), ("th_2", 2.5)]
    assert ids_and(sink, sink.nested_text("details", "address", "city")) == [("th_1", "Lyon"), ("th_2", None)]


def test_change_capture_and_its_cursor_commit_with_the_rows_or_not_at_all(sink, spool):
    rows = spool([obj(1, 100, v=1), obj(2, 101, v=2), obj(3, 102, v=3)])
    events = spool([
        {**obj(1, 100, v=10), "_event_created": 2000, "_event_type": "thing.updated"},
        {**obj(1, 100, v=9), "_event_created": 1999, "_event_type": "thing.updated"},  # older: loses
        {**obj(2, 101, v=2), "_event_created": 2001, "_event_type": "thing.deleted"},
        {**obj(3, 102, v=30), "_event_created": 500, "_event_type": "thing.updated"},  # older than the list read
    ])
    changes = ChangeSet(files=events.files, state_key="thing", cursor=2001, fields=events.fields, kinds=events.kinds)
    result = write(sink, rows, state_at=1000, changes=changes)
    assert sink.query("SELECT id, v, is_deleted, _state_at FROM stripe.thing ORDER BY id") == [
        ("th_1", 10, False, 2000), ("th_2", 2, True, 2001), ("th_3", 3, False, 1000)]
    assert (result.updated, result.deleted) == (1, 1)
    assert sink.cursor("thing") == 2001

    # A batch that cannot be written (no merge key) rolls back its rows and its cursor together.
    broken = spool([{"object": "thing", "created": 103, "v": 4}])
    later = ChangeSet(files=[], state_key="thing", cursor=3000)
    with pytest.raises(ValueError, match="no 'id' field"):
        write(sink, broken, changes=later)
    assert sink.cursor("thing") == 2001
    assert sink.query("SELECT count(*) FROM stripe.thing") == [(3,)]


def _event(number: int, second: int, rank: int, etype: str, **fields) -> dict:
    return {**obj(number, 100, **fields), "_event_created": second, "_event_type": etype, "_event_seq": rank}


def test_within_one_second_the_events_list_order_decides_and_a_deletion_wins(sink, spool):
    # Ranks as the events list gives them (0 = newest). The spool holds them oldest first, so no order of
    # the file can stand in for the ranks.
    events = spool([
        _event(1, 2000, 3, "thing.created", v=1), _event(1, 2000, 2, "thing.updated", v=2),
        _event(1, 2000, 1, "thing.updated", v=3),  # th_1: three states in one second, the newest is v=3
        _event(2, 2000, 5, "thing.updated", v=20), _event(2, 2000, 4, "thing.deleted", v=21),  # update, delete
        _event(3, 2000, 7, "thing.deleted", v=30), _event(3, 2000, 6, "thing.updated", v=31),  # delete, update
    ])
    changes = ChangeSet(files=events.files, state_key="thing", cursor=2000, fields=events.fields, kinds=events.kinds)
    write(sink, spool([obj(1, 100, v=0), obj(2, 100, v=0), obj(3, 100, v=0)]), state_at=1000, changes=changes)
    assert sink.query("SELECT id, v, is_deleted, _state_at FROM stripe.thing ORDER BY id") == [
        ("th_1", 3, False, 2000), ("th_2", 21, True, 2000), ("th_3", 30, True, 2000)]

    # A later read that sees only a change of that same second (published late) does not revive the rows.
    late = spool([_event(2, 2000, 0, "thing.updated", v=22), _event(3, 2000, 0, "thing.updated", v=32),
                  _event(1, 2000, 0, "thing.updated", v=4)])
    result = write(sink, spool(), changes=ChangeSet(files=late.files, state_key="thing", cursor=2000,
                                                     fields=late.fields, kinds=late.kinds))
    assert sink.query("SELECT id, v, is_deleted FROM stripe.thing ORDER BY id") == [
        ("th_1", 4, False), ("th_2", 21, True), ("th_3", 30, True)]
    assert result.updated == 1


def test_an_integer_beyond_bigint_is_kept_as_a_float(sink, spool):
    result = write(sink, spool([obj(1, 1, n=2**63), obj(2, 2, n=3)]))
    assert result.inserted == 2 and sink.columns()["n"] == "float"
    assert ids_and(sink, "n") == [("th_1", float(2**63)), ("th_2", 3.0)]


def test_a_table_keyed_by_id_alone_converts_to_parent_and_id_on_its_next_write(sink, spool):
    # Line items were merged on `id` alone (PostgreSQL: a unique index on it); their key is now (invoice, id).
    line = lambda number, invoice, **f: {**obj(number, 100, **f), "object": "line_item", "invoice": invoice}  # noqa: E731
    write(sink, spool([line(1, "in_A", v=1), line(2, "in_B", v=2), line(3, "in_C", v=3)]), merge_key="id")
    result = write(sink, spool([line(1, "in_A", v=10), line(1, "in_D", v=11), line(2, "in_E", v=12)]),
                   merge_key=("invoice", "id"), state_at=2000)
    assert (result.inserted, result.updated, result.rows) == (2, 1, 5)
    assert sink.query("SELECT invoice, id, v FROM stripe.thing ORDER BY invoice, id") == [
        ("in_A", "th_1", 10), ("in_B", "th_2", 2), ("in_C", "th_3", 3), ("in_D", "th_1", 11), ("in_E", "th_2", 12)]
    if sink.name == "postgres":
        indexes = sink.query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'stripe' AND tablename = 'thing' ORDER BY 1")
        assert [i for (i,) in indexes if "UNIQUE" in i] == [
            'CREATE UNIQUE INDEX thing__invoice_id__key ON stripe.thing USING btree (invoice, id)']
