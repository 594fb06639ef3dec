"""The request budget: how fast this package may call one Stripe account, shared by every process.

Stripe counts requests per account: a global rate (100/s live, 25/s in test mode) and a per-endpoint rate
(25/s by default), see docs.stripe.com/rate-limits. Dagster's default executor runs each asset in its own
process, so an in-process limiter would let N assets send N times the budget. The limiters are GCRA
("theoretical arrival time") states kept outside the process, behind a small interface (`RateState`):
- by default in small files under a lock (`fcntl.flock`), so all processes on the machine that load the
  same account draw from one budget. A request reserves the next slot under the lock and sleeps outside
  it, which keeps the lock hold time to microseconds;
- with `state_url` (`postgresql://…`) in one PostgreSQL table (`postgres.py`), so processes on
  several machines draw from one budget.
The in-flight cap is per process and separate from where the rate state lives.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

from ..concurrency import ConcurrencyLimits
from .base import BudgetSettings, RateState
from .files import FileRates

__all__ = ["BudgetSettings", "RateState", "RequestBudget", "account_fingerprint", "open_rate_state"]


def open_rate_state(account_fingerprint: str, settings: BudgetSettings) -> RateState:
    """The configured backend: PostgreSQL when `state_url` is set, else files under `state_dir`."""
    if settings.state_url:
        from .postgres import PostgresRates  # psycopg is imported only by those who use it

        return PostgresRates(settings.state_url, account_fingerprint, settings)
    base = Path(settings.state_dir or os.path.join(tempfile.gettempdir(), "nilus_stripe_budget"))
    return FileRates(base / account_fingerprint, settings)


class RequestBudget:
    """One account's budget: its shared rate state plus this process's cap on requests in flight."""

    def __init__(self, account_fingerprint: str, settings: BudgetSettings):
        self.settings = settings
        self.rates = open_rate_state(account_fingerprint, settings)
        self.in_flight = ConcurrencyLimits(settings.max_in_flight)  # adapts to concurrency 429s

    def acquire(self, endpoint: str) -> float:
        """Block until both the endpoint's and the account's budget allow one more request."""
        wait = self.rates.reserve(endpoint)
        if wait > 0:
            time.sleep(wait)
        return wait

    def on_rate_limited(self, endpoint: str, reason: Optional[str], retry_after: float) -> None:
        """Slow every process down after a 429, on the limiter Stripe named."""
        self.rates.penalize(endpoint if reason and reason.startswith("endpoint") else None, retry_after)

    def close(self) -> None:
        self.rates.close()


def account_fingerprint(api_key: str, api_base: str, stripe_account: Optional[str]) -> str:
    """A stable, non-reversible name for one account's budget files (the key itself is never written)."""
    return hashlib.sha256(f"{api_base}|{stripe_account or ''}|{api_key}".encode()).hexdigest()[:20]
