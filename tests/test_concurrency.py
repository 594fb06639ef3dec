"""Stripe's concurrency limiter: a 429 with `Stripe-Rate-Limited-Reason: *-concurrency` lowers the number of
requests in flight (and it recovers slowly), instead of pausing with as many requests in flight as before."""

from __future__ import annotations

import threading
import time

from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.reading.concurrency import DECREASE, RECOVERY_ROUNDS, AdaptiveLimit, ConcurrencyLimits
from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.reading.fetch import fetch_object
from nilus_stripe_assets.dagster_adapter.resources import StripeResource


def test_one_overload_cuts_once_and_answers_win_slots_back():
    limit = AdaptiveLimit(8)
    tickets = [limit.acquire() for _ in range(8)]
    limit.release(tickets[0], rejected=True)  # 8 in flight were too many
    assert limit.limit == int(8 * DECREASE) == 5
    for ticket in tickets[1:4]:  # rejections of the same burst carry no news
        limit.release(ticket, rejected=True)
    assert limit.limit == 5 and limit.decreases == 1
    for ticket in tickets[4:]:
        limit.release(ticket, answered=True)
    for _ in range(RECOVERY_ROUNDS * 5 - 4):
        limit.release(limit.acquire(), answered=True)
    assert limit.limit == 6  # one slot back after RECOVERY_ROUNDS rounds of answers


def test_a_full_limit_makes_requests_wait_for_a_slot():
    limits = ConcurrencyLimits(2)
    with limits.slot("/v1/charges") as first:
        first.rejected_for = "endpoint-concurrency"
        with limits.slot("/v1/charges"):
            pass
    assert limits.endpoint("/v1/charges").limit == 1 and limits.account.limit == 2  # only the endpoint's
    entered = threading.Event()

    def second():
        with limits.slot("/v1/charges"):
            entered.set()

    with limits.slot("/v1/charges"):
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(0.2)  # the endpoint allows one in flight now
    assert entered.wait(2)
    thread.join()


def _read(emu, mode: str, tmp_path) -> tuple[float, set, object]:
    resource = StripeResource(api_key=emu.api_key, api_base=emu.url, budget_dir=str(tmp_path / mode),
                              max_requests_per_second=1000, max_requests_per_second_per_endpoint=1000)
    api = resource.get_api()
    ids: set = set()
    started = time.perf_counter()
    fetch_object(api, CATALOG["charge"], mode, lambda page: ids.update(o["id"] for o in page), workers=8)
    return time.perf_counter() - started, ids, api


def test_async_under_a_concurrency_limit_is_faster_than_sync_with_few_429s(tmp_path):
    # 4 requests at a time, 200 ms each: a sequential read takes 30 × 0.2 s. Before, each 429 paused every
    # request for Retry-After with 8 still sent at once: async took ~10 s against sync's ~6 s.
    with StripeEmulator(counts={"charge": 3000}, seed=5, max_concurrency=4, latency_ms=200) as emu:
        sync_seconds, sync_ids, _ = _read(emu, "sync", tmp_path)
        emu.reset_stats()
        async_seconds, async_ids, api = _read(emu, "async", tmp_path)
        stats = emu.stats()["total"]
    assert async_ids == sync_ids and len(async_ids) == 3000
    assert async_seconds < sync_seconds, (async_seconds, sync_seconds)
    limit = api.budget.in_flight.account
    assert limit.decreases >= 1 and limit.lowest <= 5  # it learnt the server's limit
    assert stats["429"] <= 8, stats  # the first burst of 8 requests, then (almost) none
