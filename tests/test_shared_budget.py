"""The request budget across machines: two `dagster asset materialize` processes that share nothing but the
Stripe account (limited to 25 requests/s) and, with the PostgreSQL backend, the budget's database.

With the PostgreSQL budget they pace as one: no 429s, and together they keep the account near its rate.
With the file budget in separate folders (what two machines have) each sends the full rate and the account
answers 429s. The benchmark (benchmarks/shared_budget.py) runs the same with more data and prints figures.
"""

from nilus_stripe_assets.emulator import StripeEmulator

from .two_machines import run_pair

RATE = 25
OBJECTS = ("charge", "customer")


def test_two_machines_share_the_account_rate_through_postgres_and_not_through_files(tmp_path, postgres_url):
    # ~200 pages each: about 16 s at 25 requests/s together. Under a loaded machine the two `dagster` processes
    # start seconds apart; at 60 pages each the first could finish alone before the second sent anything.
    counts = {"charge": 20000, "customer": 20000}
    with StripeEmulator(counts=counts, seed=5, latency_ms=20, global_rate=RATE) as emu:
        shared = run_pair(emu.url, tmp_path / "postgres", OBJECTS, budget_url=postgres_url)
        separate = run_pair(emu.url, tmp_path / "files", OBJECTS, budget_url=None)
    print(f"\nPostgreSQL budget: {shared.summary(RATE)}\nfile budgets: {separate.summary(RATE)}")

    assert shared.returncodes == {"charge": 0, "customer": 0}, shared.logs
    assert shared.rejected == 0
    assert shared.both_seconds >= 1.5  # the two really overlapped, so the rate below is a shared one
    assert shared.both_rate >= 0.9 * RATE, shared.summary(RATE)
    assert shared.both_rate <= RATE * 1.1
    # Separate budget files: each process sends the account's whole rate; Stripe (the emulator) says 429.
    assert separate.rejected > 0, separate.summary(RATE)
