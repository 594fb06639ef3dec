"""The request budget: how fast this package may call one Stripe account, shared by every process.

Stripe counts requests per account: a global rate (100/s live, 25/s in test mode) and a per-endpoint rate
(25/s by default), see docs.stripe.com/rate-limits. Dagster's default executor runs each asset in its own
process, so an in-process limiter would let N assets send N times the budget. The limiters are GCRA
("theoretical arrival time") states kept outside the process, behind a small interface (`RateState`):
- by default in small files under a lock (`fcntl.flock`), so all processes on the machine that load the
  same account draw from one budget. A request reserves the next slot under the lock and sleeps outside
  it, which keeps the lock hold time to microseconds;
- with `state_url` (`postgresql://…`) in one PostgreSQL table (`budget_postgres.py`), so processes on
  several machines draw from one budget.
The in-flight cap is per process and separate from where the rate state lives.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

from .concurrency import ConcurrencyLimits

_STATE = struct.Struct("<d")  # one float: the theoretical arrival time, epoch seconds


class SharedRateLimiter:
    """A GCRA limiter whose state lives in a file, so it holds across processes."""

    def __init__(self, path: Path, rate: float, burst: int = 1):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.path = path
        self.interval = 1.0 / rate
        # How far ahead of the steady pace a request may go; a small burst fills the pipe at start-up
        # without exceeding Stripe's token bucket (which allows about one second of rate).
        self.tolerance = max(0, burst - 1) * self.interval
        self._lock = threading.Lock()  # flock is per open file description; serialise this process's threads
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def _update(self, fn) -> float:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                raw = os.pread(self._fd, _STATE.size, 0)
                tat = _STATE.unpack(raw)[0] if len(raw) == _STATE.size else 0.0
                new_tat, result = fn(tat, time.time())
                os.pwrite(self._fd, _STATE.pack(new_tat), 0)
                return result
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def reserve(self) -> float:
        """Reserve the next slot; return how long the caller must wait before sending."""

        def step(tat: float, now: float):
            start = max(tat, now)
            return start + self.interval, max(0.0, start - self.tolerance - now)

        return self._update(step)

    def penalize(self, seconds: float) -> None:
        """Push every process's next slot back after Stripe said we went too fast (a 429)."""
        self._update(lambda tat, now: (max(tat, now) + seconds, None))

    def close(self) -> None:
        os.close(self._fd)


@dataclass(frozen=True)
class BudgetSettings:
    global_rate: float  # requests/s for the whole account
    endpoint_rate: float  # requests/s for each endpoint
    max_in_flight: int  # concurrent requests per process
    burst: int = 5
    state_dir: Optional[str] = None  # file backend: folder of the state files (default: temp dir)
    state_url: Optional[str] = None  # postgresql://… : keep the state in PostgreSQL instead (across machines)


class RateState(Protocol):
    """Where one account's rate limiters keep their GCRA state (files on this machine, or PostgreSQL)."""

    def reserve(self, endpoint: str) -> float:
        """Reserve the next slot on the account's and the endpoint's limiters; seconds to wait before sending."""

    def penalize(self, endpoint: Optional[str], seconds: float) -> None:
        """Push the next slot back by `seconds` on one endpoint's limiter (None: the account's global one)."""

    def close(self) -> None: ...


class FileRates:
    """A global limiter plus one per endpoint, each a file under `flock` in one folder per account."""

    def __init__(self, folder: Path, settings: BudgetSettings):
        self.settings = settings
        self._dir = folder
        self.global_limiter = SharedRateLimiter(self._dir / "global", settings.global_rate, settings.burst)
        self._endpoint_limiters: dict[str, SharedRateLimiter] = {}
        self._endpoints_lock = threading.Lock()

    def endpoint(self, endpoint: str) -> SharedRateLimiter:
        with self._endpoints_lock:
            limiter = self._endpoint_limiters.get(endpoint)
            if limiter is None:
                name = hashlib.sha256(endpoint.encode()).hexdigest()[:16]
                limiter = SharedRateLimiter(self._dir / f"ep_{name}", self.settings.endpoint_rate, self.settings.burst)
                self._endpoint_limiters[endpoint] = limiter
            return limiter

    def reserve(self, endpoint: str) -> float:
        # Reserve both slots first; the caller sleeps once for the later one, so waits don't add up.
        return max(self.endpoint(endpoint).reserve(), self.global_limiter.reserve())

    def penalize(self, endpoint: Optional[str], seconds: float) -> None:
        (self.endpoint(endpoint) if endpoint else self.global_limiter).penalize(seconds)

    def close(self) -> None:
        self.global_limiter.close()
        for limiter in self._endpoint_limiters.values():
            limiter.close()


def open_rate_state(account_fingerprint: str, settings: BudgetSettings) -> RateState:
    """The configured backend: PostgreSQL when `state_url` is set, else files under `state_dir`."""
    if settings.state_url:
        from .budget_postgres import PostgresRates  # psycopg is imported only by those who use it

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
