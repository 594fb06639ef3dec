"""Never a green run that lost rows: the async split relies on Stripe's newest-first order and on the
`created` filter. Against servers that list oldest first, ignore the filter or reject it (emulator switches;
localstripe does the last), every row still arrives exactly once, and the run says it fell back to a
sequential read."""

from __future__ import annotations

import logging

import dagster as dg
import pytest

from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.reading.fetch import ListOrderError, Window, fetch_object, order_problem
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.dagster_adapter.resources import StripeResource

from .conftest import SMALL, make_resources, materialize, mode_config, query

OBJECTS = ["charge", "customer", "invoice_item", "event"]


def test_order_problem_names_what_is_wrong():
    newest_first = [{"id": "b", "created": 20}, {"id": "a", "created": 20}, {"id": "c", "created": 10}]
    assert order_problem(newest_first, Window()) is None
    assert "not newest first" in order_problem(newest_first[::-1], Window())
    assert "outside the requested range [11, None)" in order_problem(newest_first, Window(gte=11))
    assert "outside" in order_problem(newest_first, Window(lt=20))
    assert "without an integer `created`" in order_problem([{"id": "x", "created": "2024-01-01"}], Window())
    assert order_problem([{"id": "i", "date": 5}], Window(), time_field="date") is None


@pytest.fixture(scope="module")
def odd_server():
    with StripeEmulator(scale=SMALL, seed=23) as emu:
        yield emu


def _listable(emu, name: str) -> set[str]:
    """Every id the server lists for `name`, read with one cursor (right in any order)."""
    api = StripeResource(api_key=emu.api_key, api_base=emu.url).get_api()
    ids: set[str] = set()
    fetch_object(api, CATALOG[name], "sync", lambda page: ids.update(o["id"] for o in page))
    return ids


@pytest.mark.parametrize("switch,value", [("oldest_first", True), ("ignore_created_filter", True),
                                          ("reject_created_filter", 400), ("reject_created_filter", 500)])
def test_async_falls_back_and_loads_every_row(odd_server, warehouse_path, switch, value):
    odd_server.configure(**{switch: value})
    try:
        expected = {name: _listable(odd_server, name) for name in OBJECTS}
        assets = build_stripe_assets(OBJECTS)
        instance = dg.DagsterInstance.ephemeral()
        result = materialize(assets, make_resources(odd_server, warehouse_path, max_network_retries=1),
                             run_config=mode_config(assets, "async"),
                             instance=instance)
    finally:
        odd_server.configure(**{switch: None if switch == "reject_created_filter" else False})
    assert result.success
    metadata = {
        e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    for name in OBJECTS:
        ids = {row[0] for row in query(warehouse_path, f"SELECT id FROM stripe.{name}")}
        rows = query(warehouse_path, f"SELECT count(*) FROM stripe.{name}")[0][0]
        assert ids == expected[name] and rows == len(ids), name
        # Out-of-range objects show once the split hands out pieces (more than one page); a list that
        # is not newest first shows on any page with two creation times.
        if switch == "oldest_first" or len(ids) > 100:
            notes = metadata[name]["notes"].value
            assert "async split was stopped" in notes and "read again sequentially" in notes, name
    logged = [e for e in instance.all_logs(result.run_id) if "read again sequentially" in (e.user_message or "")]
    assert {e.level for e in logged} == {logging.WARNING}  # a warning in the run log too, not only the metadata


@pytest.mark.parametrize("switch", [dict(ignore_created_filter=True), dict(reject_created_filter=400),
                                    dict(reject_created_filter=500)])
def test_a_sequential_window_keeps_only_its_range_when_the_filter_is_ignored_or_rejected(switch):
    """Ignored: the pages hold other times, which are dropped. Rejected (400, or a 500 that retries do not
    cure): the list is read without the filter, and the same drop applies."""
    with StripeEmulator(counts={"charge": 300}, seed=29) as emu:
        # One SDK retry: a 500 is retried before the unfiltered read is tried; more only adds back-off time.
        api = StripeResource(api_key=emu.api_key, api_base=emu.url, max_network_retries=1).get_api()
        everything: list[dict] = []
        fetch_object(api, CATALOG["charge"], "sync", everything.extend)
        times = sorted(o["created"] for o in everything)
        window = Window(gte=times[100], lt=times[200])
        wanted = {o["id"] for o in everything if window.gte <= o["created"] < window.lt}
        emu.configure(**switch)
        got, notes = [], []
        fetch_object(api, CATALOG["charge"], "sync", got.extend, window=window, notes=notes)
        assert {o["id"] for o in got} == wanted and len(got) == len(wanted)
        assert notes and "outside the requested `created` range" in notes[0] and "did not apply the filter" in notes[0]
        with pytest.raises(ListOrderError):  # the split refuses to trust the pages (or cannot get them)
            fetch_object(api, CATALOG["charge"], "async", [].extend, window=window)


@pytest.mark.parametrize("status", [400, 500])
def test_incremental_runs_work_against_a_server_that_rejects_the_created_filter(warehouse_path, status):
    """The cursor read and the event stream both send `created[gte]`: without it they read everything and
    keep what is new, so the second run still picks up a new object and an update."""
    with StripeEmulator(counts={"customer": 250}, seed=37) as emu:
        emu.configure(reject_created_filter=status)
        assets = build_stripe_assets(["customer"])
        resources = make_resources(emu, warehouse_path, max_network_retries=1)
        config = mode_config(assets, "sync:incremental")
        assert materialize(assets, resources, run_config=config).success
        assert query(warehouse_path, "SELECT count(*) FROM stripe.customer")[0][0] == 250
        some = query(warehouse_path, "SELECT id FROM stripe.customer ORDER BY id LIMIT 1")[0][0]
        emu.update("customer", some, description="changed while the filter is rejected")
        added = emu.create("customer", email="new@example.com")
        result = materialize(assets, resources, run_config=config)
        assert result.success
        rows = dict(query(warehouse_path, "SELECT id, description FROM stripe.customer"))
        assert len(rows) == 251 and added["id"] in rows
        assert rows[some] == "changed while the filter is rejected"
        assert emu.stats()["total"][str(status)] >= 2  # the filter really was sent and refused


def test_an_oldest_first_list_whose_pages_each_hold_one_second_is_caught():
    """Each page alone looks right (one `created` second, inside the range): only the pages' sequence shows
    that the list rises. The split must not narrow the cursor's range to the first page's second, which
    would hide every newer object (localstripe after a fast setup: 100 events in one second, then more)."""
    with StripeEmulator(counts={"charge": 0, "customer": 5}, seed=41, now=1_700_000_000) as emu:
        for second in range(4):
            for _ in range(120 if second == 0 else 50):
                emu.create("charge", created=1_699_990_000 + second)
        emu.configure(oldest_first=True)
        api = StripeResource(api_key=emu.api_key, api_base=emu.url).get_api()
        with pytest.raises(ListOrderError, match="rising across pages|not newest first"):
            fetch_object(api, CATALOG["charge"], "async", [].extend, workers=8)
        emu.configure(oldest_first=False)
        got: list[dict] = []
        fetch_object(api, CATALOG["charge"], "async", got.extend, workers=8)  # Stripe's order: split trusted
        assert len(got) == len({o["id"] for o in got}) == 270
