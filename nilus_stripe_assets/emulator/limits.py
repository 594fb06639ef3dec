"""Fault switches (latency, rate limits, concurrency cap, random 500s, malformed bodies, a stalled upstream,
other servers' list behaviour) and request statistics."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Optional


@dataclass
class Faults:
    latency_ms: float = 0
    global_rate: Optional[float] = None  # requests/s for the whole account
    endpoint_rate: Optional[float] = None  # requests/s per endpoint (method + path with ids collapsed)
    max_concurrency: Optional[int] = None  # in-flight requests
    error_rate: float = 0.0  # share of requests answered with a random 500
    rate_limit_should_retry: Optional[bool] = None  # Stripe-Should-Retry header on 429s (None: omitted)
    # Endpoints (e.g. "GET /v1/coupons") whose 200 answers are cut short: invalid JSON, as from a broken proxy.
    malformed: tuple[str, ...] = ()
    stall: bool = False  # accept connections and requests, never answer (until switched off or stopped)
    # Behaviour of other Stripe-compatible servers, to check the client does not rely on more than it verifies:
    oldest_first: bool = False  # lists in ascending (created, id) order instead of Stripe's newest first
    ignore_created_filter: bool = False  # accepts created[...] but returns objects outside the range
    # Answers created[...] with this status: 400 about the parameter, or 500 (localstripe does both).
    reject_created_filter: Optional[int] = None
    # Products (catalog `product` names, any case) the account has not set up: their lists answer Stripe's 400.
    not_set_up: tuple[str, ...] = ()


FAULT_NAMES = frozenset(f.name for f in fields(Faults))


class TokenBucket:
    """`rate` tokens per second, holding at most one second's worth."""

    __slots__ = ("rate", "capacity", "tokens", "last")

    def __init__(self, rate: float):
        self.rate = float(rate)
        self.capacity = max(self.rate, 1.0)
        self.tokens = self.capacity
        self.last = time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Limiter:
    def __init__(self, faults: Faults, seed: int = 42):
        self.faults = faults
        self.lock = threading.Lock()
        self.inflight = 0
        self.rng = random.Random(f"{seed}:errors")
        self._global: Optional[TokenBucket] = None
        self._endpoints: dict[str, TokenBucket] = {}
        self.configure()

    def configure(self, **switches) -> dict:
        unknown = set(switches) - FAULT_NAMES
        if unknown:
            raise ValueError(f"unknown fault switches: {sorted(unknown)}")
        with self.lock:
            for name, value in switches.items():
                setattr(self.faults, name, value)
            f = self.faults
            self._global = TokenBucket(f.global_rate) if f.global_rate is not None else None
            self._endpoints = {}
            return asdict(f)

    def config(self) -> dict:
        return asdict(self.faults)

    def enter(self, endpoint: str) -> Optional[str]:
        """Count a request in flight; the Stripe-Rate-Limited-Reason if it must be rejected. Always `leave()`."""
        f = self.faults
        with self.lock:
            self.inflight += 1
            if f.max_concurrency is not None and self.inflight > f.max_concurrency:
                return "global-concurrency"
            if self._global is None and f.endpoint_rate is None:
                return None
            now = time.monotonic()
            if self._global is not None and not self._global.take(now):
                return "global-rate"
            if f.endpoint_rate is not None:
                bucket = self._endpoints.get(endpoint)
                if bucket is None:
                    bucket = self._endpoints[endpoint] = TokenBucket(f.endpoint_rate)
                if not bucket.take(now):
                    return "endpoint-rate"
        return None

    def leave(self) -> None:
        with self.lock:
            self.inflight -= 1

    def random_failure(self) -> bool:
        rate = self.faults.error_rate
        if not rate:
            return False
        with self.lock:
            return self.rng.random() < rate


STAT_FIELDS = ("requests", "200", "400", "401", "403", "404", "429", "500", "objects")


class Stats:
    """Per-endpoint and total request counts by status, objects served, Stripe-Account and Stripe-Version
    values seen (a request without the header counts under "none")."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.endpoints: dict[str, dict[str, int]] = {}
            self.accounts: dict[str, int] = {}
            self.versions: dict[str, int] = {}

    def record(self, endpoint: str, status: int, objects: int, account: Optional[str],
               version: Optional[str] = None) -> None:
        with self.lock:
            row = self.endpoints.get(endpoint)
            if row is None:
                row = self.endpoints[endpoint] = dict.fromkeys(STAT_FIELDS, 0)
            row["requests"] += 1
            code = str(status)
            row[code] = row.get(code, 0) + 1
            row["objects"] += objects
            if account:
                self.accounts[account] = self.accounts.get(account, 0) + 1
            version = version or "none"
            self.versions[version] = self.versions.get(version, 0) + 1

    def snapshot(self) -> dict:
        with self.lock:
            total = dict.fromkeys(STAT_FIELDS, 0)
            for row in self.endpoints.values():
                for k, v in row.items():
                    total[k] = total.get(k, 0) + v
            return {"total": total, "endpoints": {k: dict(v) for k, v in self.endpoints.items()},
                    "accounts": dict(self.accounts), "stripe_versions": dict(self.versions)}
