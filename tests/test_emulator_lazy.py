"""The emulator's lazy mode (objects computed from their index when read, for 10M-object accounts) answers
with Stripe's list semantics and the eager mode's field set: the same checks as test_emulator.py, the real
fetch engine (sync and the async split), updates through the control route, and flat memory at 10M."""

from __future__ import annotations

import time
import tracemalloc

import orjson
import pytest

from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.emulator import EmulatorClient, EmulatorError, StripeEmulator
from nilus_stripe_assets.emulator.lazy import LazyTable, can_be_lazy
from nilus_stripe_assets.reading.fetch import Window, fetch_object
from nilus_stripe_assets.dagster_adapter.resources import StripeResource

from .test_emulator import expected_ids, get, order_key, sdk, walk, walk_object

CHARGES = 2_345  # not a multiple of any page size
LAZY = sorted(name for name in CATALOG if can_be_lazy(name))


@pytest.fixture(scope="module")
def lazy_emu():
    with StripeEmulator(seed=7, counts={"charge": CHARGES, "customer": 450}, lazy=True) as e:
        yield e


@pytest.fixture(scope="module")
def eager_emu():
    with StripeEmulator(seed=7, counts={"charge": CHARGES, "customer": 450}, lazy=False) as e:
        yield e


def first(emu, name: str) -> dict:
    return orjson.loads(emu.store.list(name, 1)[0][0])


def test_lazy_tables_are_what_was_asked(lazy_emu, eager_emu):
    assert {n for n, t in lazy_emu.store.tables.items() if isinstance(t, LazyTable)} == set(LAZY)
    assert "charge" in LAZY and "customer" in LAZY and "subscription" not in LAZY  # parents of embedded lists stay eager
    assert not any(isinstance(t, LazyTable) for t in eager_emu.store.tables.values())
    # Lazily computed balance transactions are never swept into a payout (a payout's itemization needs them
    # all in memory), so `?payout=` lists nothing in lazy mode; every other table is the eager one's.
    assert lazy_emu.counts()["payout_balance_transaction"] == 0 < eager_emu.counts()["payout_balance_transaction"]
    assert lazy_emu.counts() == eager_emu.counts() | {"event": lazy_emu.counts()["event"], "payout_balance_transaction": 0}
    with pytest.raises(ValueError, match="cannot generate lazily: \\['subscription'\\]"):
        StripeEmulator(lazy=["subscription"])


@pytest.mark.parametrize("name", LAZY)
def test_same_fields_and_kinds_as_eager(lazy_emu, eager_emu, name):
    lazy, eager = first(lazy_emu, name), first(eager_emu, name)
    assert list(lazy) == list(eager), "field set or order differs from the eager mode's"
    kinds = {k: type(v).__name__ for k, v in eager.items() if v is not None}
    assert all(type(lazy[k]).__name__ == kind for k, kind in kinds.items() if lazy[k] is not None)
    assert lazy["id"].startswith(CATALOG[name].id_prefix) and len(lazy["id"]) == len(eager["id"])


@pytest.mark.parametrize("limit", [100, 7])
@pytest.mark.parametrize("name", [*LAZY, "payment_method"])  # payment methods: listed under lazy customers
def test_pagination_walks_every_object_once(lazy_emu, name, limit):
    objs = walk_object(lazy_emu, sdk(lazy_emu), name, limit)  # checks newest first by (created, id)
    ids = [o["id"] for o in objs]
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(lazy_emu, name)


def test_ties_straddle_page_boundaries(lazy_emu):
    created = [c["created"] for c in walk(sdk(lazy_emu), "/v1/charges", 100)]
    assert len(created) == CHARGES
    for limit in (7, 10, 100):
        assert any(created[i - 1] == created[i] for i in range(limit, len(created), limit)), limit


def test_created_filters(lazy_emu):
    client = sdk(lazy_emu)
    everything = walk(client, "/v1/charges", 100)
    mid = everything[len(everything) // 2]["created"]
    newer = walk(client, "/v1/charges", 100, created={"gte": mid})
    older = walk(client, "/v1/charges", 7, created={"lt": mid})
    assert newer + older == everything and newer and older
    assert walk(client, "/v1/charges", 100, created={"gt": mid}) == [c for c in everything if c["created"] > mid]
    assert walk(client, "/v1/charges", 9, created={"lte": mid}) == [c for c in everything if c["created"] <= mid]
    assert walk(client, "/v1/charges", 100, created=mid) == [c for c in everything if c["created"] == mid]
    window = walk(client, "/v1/charges", 100, created={"gt": mid - 5 * 86400, "lte": mid})
    assert window == [c for c in everything if mid - 5 * 86400 < c["created"] <= mid]


def test_cursors(lazy_emu):
    client = sdk(lazy_emu)
    page = lambda **p: client.raw_request("get", "/v1/charges", **p).data  # noqa: E731
    one = page(limit=7)
    two = page(limit=7, starting_after=one["data"][-1]["id"])
    three = page(limit=7, starting_after=two["data"][-1]["id"])
    assert page(limit=7, ending_before=two["data"][0]["id"]) == {**one, "has_more": False}
    back = page(limit=7, ending_before=three["data"][0]["id"])
    assert back["data"] == two["data"] and back["has_more"] is True
    assert page(limit=3, ending_before=three["data"][0]["id"])["data"] == two["data"][-3:]
    oldest = walk(client, "/v1/charges", 100)[-1]["id"]
    assert page(limit=5, starting_after=oldest) == {"object": "list", "data": [], "has_more": False, "url": "/v1/charges"}
    known = one["data"][0]["id"]
    for unknown in ("ch_doesnotexist", known[:-1] + ("A" if known[-1] != "A" else "B"), "ch_zzzzzz" + known[9:]):
        status, _, body = get(lazy_emu, f"/v1/charges?starting_after={unknown}")
        assert status == 400 and body["error"]["code"] == "resource_missing" and unknown in body["error"]["message"]
    status, _, body = get(lazy_emu, f"/v1/charges/{known}")
    assert status == 200 and body == one["data"][0]


def test_deterministic_per_seed():
    pages = []
    for seed in (7, 7, 8):
        with StripeEmulator(seed=seed, counts={"charge": 500}, lazy=["charge"]) as e:
            c = sdk(e)
            top = c.raw_request("get", "/v1/charges", limit=100).data["data"]
            pages.append((top, c.raw_request("get", "/v1/charges", limit=100, starting_after=top[-1]["id"]).data["data"]))
    assert pages[0] == pages[1] and pages[0] != pages[2]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_fetch_engine_reads_every_object_once(lazy_emu, mode):
    api = StripeResource(api_key=lazy_emu.api_key, api_base=lazy_emu.url).get_api()
    got: list[dict] = []
    notes: list[str] = []
    fetch_object(api, CATALOG["charge"], mode, got.extend, notes=notes)
    ids = [o["id"] for o in got]
    assert len(ids) == len(set(ids)) == CHARGES and set(ids) == expected_ids(lazy_emu, "charge")
    assert not notes  # the async split found nothing to fall back from
    mid = sorted(o["created"] for o in got)[CHARGES // 3]
    window: list[dict] = []
    fetch_object(api, CATALOG["charge"], mode, window.extend, Window(gte=mid))
    assert sorted(o["id"] for o in window) == sorted(o["id"] for o in got if o["created"] >= mid)


def test_updates_are_an_overlay_with_events():
    with StripeEmulator(seed=5, counts={"charge": 1_000}, lazy=["charge"]) as emu:
        client = EmulatorClient(emu.url)
        before = sdk(emu).raw_request("get", "/v1/charges", limit=100).data["data"]
        target = before[42]
        client.update("charge", target["id"], description="changed", metadata={"k": "v"})
        after = sdk(emu).raw_request("get", "/v1/charges", limit=100).data["data"]
        changed = {**target, "description": "changed", "metadata": {"k": "v"}}
        assert after == before[:42] + [changed] + before[43:]  # same place, same fields, only those changed
        client.update("charge", target["id"], amount_refunded=7)
        assert get(emu, f"/v1/charges/{target['id']}")[2] == {**changed, "amount_refunded": 7}
        events = sdk(emu).raw_request("get", "/v1/events", type="charge.updated").data["data"]
        events.sort(key=lambda e: e["data"]["object"]["amount_refunded"] == 7)  # same second: any order
        assert [e["data"]["object"] for e in events] == [changed, {**changed, "amount_refunded": 7}]
        assert events[0]["data"]["previous_attributes"] == {"description": target["description"], "metadata": target["metadata"]}
        assert emu.store.tables["charge"].overlay.keys() == {emu.store.tables["charge"].source.index(target["id"])}
        for call in (lambda: client.create("charge", amount=5), lambda: client.delete("charge", target["id"]),
                     lambda: client.update("charge", target["id"], created=1)):
            with pytest.raises(EmulatorError, match="generated lazily"):
                call()
        assert get(emu, f"/v1/charges/{target['id']}")[0] == 200


def test_ten_million_charges_in_little_memory():
    tracemalloc.start()
    try:
        started = time.perf_counter()
        emu = StripeEmulator(seed=1, counts={"charge": 10_000_000})  # lazy by itself above 2,000,000
        built = time.perf_counter() - started
        charges = emu.store.tables["charge"]
        assert isinstance(charges, LazyTable) and emu.counts()["charge"] == 10_000_000
        newest, has_more = emu.store.list("charge", 100)
        mid = charges.keys[5_000_000][0]
        middle, _ = emu.store.list("charge", 100, lte=mid)
        oldest, last_more = emu.store.list("charge", 100, starting_after=charges.keys[50][1])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    pages = [[orjson.loads(b) for b in p] for p in (newest, middle, oldest)]
    assert has_more and not last_more and [len(p) for p in pages] == [100, 100, 50]
    assert all(p == sorted(p, key=order_key) for p in pages)
    assert pages[1][0]["created"] <= mid and pages[2][-1]["id"] == charges.keys[0][1]
    assert built < 10, f"{built:.1f} s to set up 10M lazy charges"
    assert peak < 64 * 1024 * 1024, f"{peak / 2**20:.0f} MB traced for 10M lazy charges"
