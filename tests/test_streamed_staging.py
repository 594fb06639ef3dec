"""Staging while the fetch runs gives exactly the table that staging the whole spool at once gives.

Every case writes the same spool twice on both warehouses (a DuckDB file, a PostgreSQL database): once
from the pieces staged while the spool filled (`StreamedStaging`, as a load does now), once staged at once
(`prepare` without them, as before); the two tables must have the same columns, types, rows, content
hashes and counts. The spool is real (zstd NDJSON, a file per writing thread, closed every few objects),
and so is the fetch in the last case (the engine's `extract` against the emulator over HTTP).
"""

from __future__ import annotations

import os
import threading

import duckdb
import orjson
import psycopg
import pytest

from nilus_stripe_assets.dagster_adapter.resources import StripeResource
from nilus_stripe_assets.emulator.client import EmulatorClient
from nilus_stripe_assets.engine import load
from nilus_stripe_assets.engine.load import extract
from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.staging.columns import Column, declared_columns
from nilus_stripe_assets.staging.spool import Spool
from nilus_stripe_assets.staging.stream import StreamedStaging
from nilus_stripe_assets.warehouse.sinks import as_sink
from nilus_stripe_assets.warehouse.strategies import TableRef, apply, prepare, table_columns

STREAMED, AT_ONCE = TableRef("stripe", "streamed"), TableRef("stripe", "at_once")
DECLARED = {"created": Column("created", "TIMESTAMPTZ", "BIGINT", "Time at which the object was created.", False)}


@pytest.fixture(params=["duckdb", "postgres"])
def con(request, tmp_path):
    if request.param == "duckdb":
        made = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    else:
        made = psycopg.connect(request.getfixturevalue("postgres_url"), autocommit=True)
    yield made
    made.close()


def spooled(tmp_path, pages, every, declared=DECLARED, state_at=1000, threads=1):
    """Pages written into a spool that hands each file on every `every` objects, as a load does."""
    tmp_path.mkdir(exist_ok=True)
    spool = Spool(directory=str(tmp_path))
    streamed = StreamedStaging(str(spool.path), "id", state_at, declared)
    spool.hand_on(streamed.add, every=every)
    if threads == 1:
        for page in pages:
            spool.write(page)
    else:  # each thread writes its own file, as the async split's workers do
        workers = [threading.Thread(target=lambda mine: [spool.write(p) for p in mine], args=(pages[i::threads],))
                   for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return spool.finish(), streamed


def write_both(con, tmp_path, summary, streamed, strategy="merge", declared=DECLARED, state_at=1000):
    """The spool applied from its streamed pieces into one table and staged at once into another."""
    kwargs = dict(fields=summary.fields, kinds=summary.kinds, directory=str(tmp_path), declared=declared)
    pieces = prepare(summary.files, "id", state_at, streamed=streamed, **kwargs)
    at_once = prepare(summary.files, "id", state_at, **kwargs)
    try:
        results = (apply(con, STREAMED, pieces, strategy), apply(con, AT_ONCE, at_once, strategy))
        return results, pieces.rows
    finally:
        pieces.cleanup()
        at_once.cleanup()


def assert_same_table(con):
    sink = as_sink(con)
    columns = table_columns(con, STREAMED)
    assert list(columns.items()) == list(table_columns(con, AT_ONCE).items())
    content = ", ".join(f'"{c}"' for c in columns if c != "_loaded_at")
    for one, other in ((STREAMED, AT_ONCE), (AT_ONCE, STREAMED)):
        differ = sink.execute(f"SELECT count(*) FROM (SELECT {content} FROM {one.sql} EXCEPT SELECT {content} FROM {other.sql}) d")
        assert differ.fetchone()[0] == 0, f"{one} has rows {other} lacks"
    counts = "SELECT count(*), count(DISTINCT id), sum(_content_hash % 1000003) FROM "
    assert sink.execute(counts + STREAMED.sql).fetchone() == sink.execute(counts + AT_ONCE.sql).fetchone()


def thing(n: int, created: int, **fields) -> dict:
    return {"id": f"th_{n}", "object": "thing", "created": created, **fields}


def test_a_type_widened_in_a_later_piece_and_fields_first_seen_late(con, tmp_path):
    pages = [
        [thing(n, 100 + n, amount=n, flag=None, note=None) for n in range(0, 30)],  # amount: integers
        [thing(n, 100 + n, amount=n, flag=True, note="a") for n in range(30, 60)],
        [thing(n, 100 + n, amount=n + 0.5, flag=False, note={"nested": n}) for n in range(60, 90)],  # decimals, objects
        [thing(n, 100 + n, amount=n, flag=None, note=None, late=n) for n in range(90, 120)],  # a new field
    ]
    summary, streamed = spooled(tmp_path, pages, every=30)
    (streamed_result, at_once_result), rows = write_both(con, tmp_path, summary, streamed)
    assert streamed.fallback is None and len(rows.paths) == 4  # staged piece by piece
    assert_same_table(con)
    types = table_columns(con, STREAMED)
    assert (types["amount"], types["flag"], types["note"], types["late"], types["created"]) == (
        "DOUBLE", "BOOLEAN", "JSON", "BIGINT", "TIMESTAMPTZ")
    assert as_sink(con).execute(f"SELECT amount FROM {STREAMED.sql} WHERE id = 'th_5'").fetchone()[0] == 5.0
    assert (streamed_result.received, streamed_result.inserted) == (at_once_result.received, at_once_result.inserted) == (120, 120)


def test_an_object_repeated_across_pieces_lands_once(con, tmp_path):
    first = [thing(n, 100 + n, v=n) for n in range(0, 40)]
    pages = [first[:20], first[20:], [thing(n, 100 + n, v=n) for n in range(40, 60)] + first[5:8],  # a tie re-read
             [thing(n, 100 + n, v=n) for n in range(60, 80)] + first[5:6] + first[30:31]]
    summary, streamed = spooled(tmp_path, pages, every=20)
    (streamed_result, at_once_result), rows = write_both(con, tmp_path, summary, streamed)
    assert streamed.fallback is None and len(rows.paths) > 1
    assert rows.rows == 80 and streamed_result.received == at_once_result.received == 80
    assert_same_table(con)
    assert as_sink(con).execute(f"SELECT count(*), count(DISTINCT id) FROM {STREAMED.sql}").fetchone() == (80, 80)


def test_a_re_load_from_pieces_changes_the_same_rows(con, tmp_path):
    before = [[thing(n, 100 + n, v=n) for n in range(i, i + 25)] for i in range(0, 100, 25)]
    summary, streamed = spooled(tmp_path / "a", before, every=25)
    write_both(con, tmp_path, summary, streamed, state_at=1000)
    after = [[thing(n, 100 + n, v=n * (2 if n % 10 == 0 else 1), w=n / 2) for n in range(i, i + 25)]
             for i in range(0, 125, 25)]
    summary, streamed = spooled(tmp_path / "b", after, every=25, threads=3, state_at=2000)
    (streamed_result, at_once_result), _ = write_both(con, tmp_path, summary, streamed, "replace", state_at=2000)
    assert streamed.fallback is None
    counts = lambda r: (r.received, r.inserted, r.updated, r.unchanged, r.deleted)  # noqa: E731
    assert counts(streamed_result) == counts(at_once_result) == (125, 25, 100, 0, 0)
    assert_same_table(con)


def test_a_value_beyond_64_bits_stages_the_whole_spool_at_once(con, tmp_path):
    pages = [[thing(n, 100 + n, big=n) for n in range(0, 20)], [thing(n, 100 + n, big=2**63 + n) for n in range(20, 40)]]
    summary, streamed = spooled(tmp_path, pages, every=20)
    (streamed_result, _), rows = write_both(con, tmp_path, summary, streamed)
    assert streamed.fallback is not None and len(rows.paths) == 1  # DuckDB probed the types, as before
    assert streamed_result.inserted == 40
    assert_same_table(con)


def test_charges_fetched_over_http_stage_while_fetching_exactly(con, tmp_path, shared_emulator, monkeypatch):
    """The engine's fetch (async split, several threads) into a spool closed every 150 charges."""
    monkeypatch.setattr(load, "ROTATE_OBJECTS", 150)
    api = StripeResource(api_key=shared_emulator.api_key, api_base=shared_emulator.url,
                         budget_dir=str(tmp_path / "budget"), max_requests_per_second=1000).get_api()
    batch = extract(api, CATALOG["charge"], "async", "merge", STREAMED, spool_root=str(tmp_path))
    try:
        (streamed_result, at_once_result), rows = write_both(
            con, tmp_path, batch.spool, batch.streamed, declared=declared_columns("charge"), state_at=batch.started_at)
        assert batch.streamed.fallback is None and len(rows.paths) >= batch.spool.objects // 150
        expected = EmulatorClient(shared_emulator.url).counts()["charge"]
        assert streamed_result.inserted == at_once_result.inserted == expected
        assert_same_table(con)
    finally:
        batch.streamed.close()
        from nilus_stripe_assets.staging import disk

        disk.remove(batch.spool_dir)


def test_pieces_are_typed_from_their_own_objects(tmp_path):
    """The spool hands on each closed file with its own objects' kinds and the fields seen so far."""
    handed = []
    spool = Spool(directory=str(tmp_path))
    spool.hand_on(handed.append, every=2)
    spool.write([thing(1, 1, a=1), thing(2, 2, a=None)])
    spool.write([thing(3, 3, a="x", b=1)])
    summary = spool.finish()
    assert [h.objects for h in handed] == [2, 1]
    assert handed[0].kinds["a"] == {"BIGINT", "NULL"} and handed[1].kinds["a"] == {"VARCHAR"}
    assert "b" not in handed[0].fields and handed[1].fields == summary.fields
    assert [h.path for h in handed] == summary.files
    assert [orjson.loads(line)["id"] for h in handed for line in _lines(h.path)] == ["th_1", "th_2", "th_3"]


def _lines(path: str) -> list[bytes]:
    import zstandard

    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read().splitlines()


def test_closed_spool_files_give_their_memory_back(tmp_path):
    """A 1M load closes ~120 spool files while it fetches; each closed zstd writer kept its context and
    buffer (~0.75 MB), which raised the fetch's peak RSS by ~90 MB."""
    spool = Spool(directory=str(tmp_path))
    spool.hand_on(lambda spooled: None, every=200)
    page = [thing(n, n, v=os.urandom(1200).hex()) for n in range(200)]  # ~0.5 MB a file, as charges
    spool.write(page)
    before = _rss_mb()
    for _ in range(100):
        spool.write(page)
    assert _rss_mb() - before < 25, "closed spool files still hold memory"
    spool.finish()


def _rss_mb() -> int:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) // 1024
