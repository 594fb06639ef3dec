"""The request budget's two state backends (files under flock, PostgreSQL) keep the same GCRA semantics.

Each `RequestBudget` here stands for one process (its own file descriptors or its own connection); two of
them on the same state must pace together. Reservations are read, not slept, so these tests take no time
beyond the round trips.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from nilus_stripe_assets.reading.budget import BudgetSettings, RequestBudget
from nilus_stripe_assets.source.config import ConfigError

BURST = 5


@pytest.fixture(params=["file", "postgres"])
def backend(request, tmp_path):
    """A function making `RequestBudget`s on one shared state location (a folder, or a database)."""
    location = {"state_dir": str(tmp_path / "budget")}
    if request.param == "postgres":
        location = {"state_url": request.getfixturevalue("postgres_url")}
    made: list[RequestBudget] = []

    def make(global_rate: float, endpoint_rate: float = 1000.0, account: str = "acct_fp", **override) -> RequestBudget:
        settings = BudgetSettings(global_rate=global_rate, endpoint_rate=endpoint_rate, max_in_flight=8,
                                  burst=BURST, **{**location, **override})
        made.append(RequestBudget(account, settings))
        return made[-1]

    make.kind = request.param
    yield make
    for budget in made:
        budget.close()


def send_times(budgets: list[RequestBudget], per_budget: int, endpoints: list[str]) -> list[float]:
    """Reserve `per_budget` slots from each budget, concurrently (a thread each); the times they may send."""
    sends: list[float] = []
    lock = threading.Lock()

    def run(budget: RequestBudget, endpoint: str) -> None:
        for _ in range(per_budget):
            asked = time.monotonic()
            wait = budget.rates.reserve(endpoint)
            with lock:
                sends.append(asked + wait)

    threads = [threading.Thread(target=run, args=(b, e)) for b, e in zip(budgets, endpoints)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(sends)


def assert_paced(sends: list[float], rate: float) -> None:
    """No window holds more than the burst plus `rate` per second, and the whole schedule is not slower."""
    interval, slack = 1.0 / rate, 0.03  # slack: the time between reading the clock and the reservation
    for i in range(len(sends)):
        for j in range(i + BURST, len(sends)):
            assert sends[j] - sends[i] >= (j - i - BURST + 1) * interval - slack, (i, j, sends[j] - sends[i])
    expected = (len(sends) - BURST) * interval
    assert sends[-1] - sends[0] <= expected + 0.5, (sends[-1] - sends[0], expected)


def test_two_processes_on_one_state_share_the_account_rate(backend):
    rate = 40.0
    sends = send_times([backend(rate), backend(rate)], 30, ["/v1/charges", "/v1/customers"])
    assert_paced(sends, rate)
    assert sends[-1] - sends[0] >= (60 - BURST) / rate - 0.05  # both were paced as one, not as two


def test_separate_accounts_do_not_share_a_rate(backend):
    rate = 40.0
    sends = send_times([backend(rate, account="acct_a"), backend(rate, account="acct_b")], 30, ["/v1/charges"] * 2)
    # Each account paces its own 30: together they finish in about half the time one shared budget takes.
    assert sends[-1] - sends[0] < (60 - BURST) / rate * 0.75


def test_one_endpoint_is_paced_at_its_own_rate_across_processes(backend):
    endpoint_rate = 20.0
    same = send_times([backend(1000, endpoint_rate), backend(1000, endpoint_rate)], 15, ["/v1/charges"] * 2)
    assert_paced(same, endpoint_rate)
    other = send_times([backend(1000, endpoint_rate, account="acct_2"), backend(1000, endpoint_rate, account="acct_2")],
                       15, ["/v1/refunds", "/v1/payouts"])
    assert other[-1] - other[0] < (30 - BURST) / endpoint_rate * 0.75  # two endpoints: two budgets


def test_a_429_pushes_the_named_limiter_back_for_every_process(backend):
    first, second = backend(50), backend(50)
    first.on_rate_limited("/v1/charges", "global-rate", 2.0)
    wait = second.rates.reserve("/v1/customers")
    assert 2.0 - BURST * 0.02 - 0.1 <= wait <= 2.0

    first.on_rate_limited("/v1/refunds", "endpoint-rate", 3.0)
    assert second.rates.reserve("/v1/refunds") >= 3.0 - BURST * 0.02 - 0.1
    assert second.rates.reserve("/v1/payouts") < 2.1  # other endpoints only wait for the global penalty


def test_postgres_budget_reconnects_after_the_server_drops_its_connection(postgres_url):
    budget = RequestBudget("acct_fp", BudgetSettings(global_rate=100, endpoint_rate=100, max_in_flight=4,
                                                     state_url=postgres_url))
    try:
        budget.rates.reserve("/v1/charges")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            assert dropped == 1
            budget.rates.reserve("/v1/charges")
            rows = admin.execute("SELECT scope, tat > 0 FROM nilus_request_budget ORDER BY scope").fetchall()
        assert rows == [("", True), ("/v1/charges", True)]
    finally:
        budget.close()


def test_postgres_budget_address_errors_are_one_line_without_the_password(postgres):
    closed = f"postgresql://nilus:s3cret@127.0.0.1:{postgres.port + 1}/budget"
    for url, expected in [
        ("mysql://nilus:s3cret@db/budget", "is not a PostgreSQL URL"),
        (closed, f"postgresql://nilus@127.0.0.1:{postgres.port + 1}/budget is not usable"),
    ]:
        with pytest.raises(ConfigError) as info:
            RequestBudget("acct_fp", BudgetSettings(global_rate=25, endpoint_rate=25, max_in_flight=4, state_url=url))
        message = str(info.value)
        assert expected in message and "NILUS_BUDGET_URL" in message
        assert "s3cret" not in message and "\n" not in message


def test_stripe_resource_takes_the_budget_database_from_its_field_or_the_environment(postgres_url, monkeypatch):
    from nilus_stripe_assets.dagster_adapter.resources import StripeResource

    def accounts_in_table() -> int:
        with psycopg.connect(postgres_url) as con:
            return con.execute("SELECT count(DISTINCT account) FROM nilus_request_budget").fetchone()[0]

    monkeypatch.delenv("NILUS_BUDGET_URL", raising=False)
    by_field = StripeResource(api_key="sk_test_firstaccount1", api_base="http://127.0.0.1:9", budget_url=postgres_url)
    by_field.get_api().budget.acquire("/v1/charges")
    assert accounts_in_table() == 1
    monkeypatch.setenv("NILUS_BUDGET_URL", postgres_url)
    by_env = StripeResource(api_key="sk_test_secondaccount2", api_base="http://127.0.0.1:9")
    by_env.get_api().budget.acquire("/v1/charges")
    assert accounts_in_table() == 2
