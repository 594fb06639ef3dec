"""How many requests may be in flight at once, adapted to Stripe's concurrency limiter.

Stripe limits concurrent requests per account (and per endpoint) besides their rate, and answers 429 with
`Stripe-Rate-Limited-Reason: global-concurrency` / `endpoint-concurrency` above it. The limit is not
published and other clients of the account use part of it, so it is discovered the way TCP finds a
network's capacity (AIMD): each concurrency 429 cuts the number of requests allowed in flight to
DECREASE × what was in flight, and every RECOVERY_ROUNDS × limit answers without one add one slot back.
Pausing instead (what a rate 429 calls for) keeps the same number of requests in flight, so they are
rejected again after every pause.

One burst of requests sent together gets several 429s for one overload; only the first of them cuts the
limit (the others were sent before the cut, so they carry no news), as TCP reduces once per window.
The limits live in this process: processes sharing an account each adapt on their own, and AIMD is
what makes such independent clients converge to a fair share.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

DECREASE = 0.7  # multiplicative decrease, as TCP CUBIC (0.5 halves too far below a small limit like 4)
RECOVERY_ROUNDS = 8  # answers per slot before probing one more: ~1 429 per 8 × limit requests at the edge


class AdaptiveLimit:
    """A counting semaphore whose size moves between 1 and `ceiling` (AIMD)."""

    def __init__(self, ceiling: int):
        if ceiling < 1:
            raise ValueError("the in-flight ceiling must be at least 1")
        self.ceiling = ceiling
        self.limit = ceiling
        self.in_flight = 0
        self.decreases = 0
        self.lowest = ceiling
        self._epoch = 0  # bumped by every decrease
        self._answers = 0  # answers since the last change of the limit
        self._cond = threading.Condition()

    def acquire(self) -> int:
        """Wait for a slot; returns the ticket to hand back to `release`."""
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
            return self._epoch

    def release(self, ticket: int, rejected: bool = False, answered: bool = False) -> None:
        """Free the slot. `rejected`: the server refused it for concurrency; `answered`: any other answer."""
        with self._cond:
            if rejected and ticket == self._epoch:
                self.limit = max(1, min(self.limit - 1, math.floor(self.in_flight * DECREASE)))
                self.lowest = min(self.lowest, self.limit)
                self.decreases += 1
                self._epoch += 1
                self._answers = 0
            elif answered and self.limit < self.ceiling:
                self._answers += 1
                if self._answers >= RECOVERY_ROUNDS * self.limit:
                    self.limit += 1
                    self._answers = 0
            self.in_flight -= 1
            self._cond.notify_all()


@dataclass
class Slot:
    """What became of a request sent in a slot (set by the caller before the slot is released)."""

    rejected_for: Optional[str] = None  # "global-concurrency" or "endpoint-concurrency"
    answered: bool = False


class ConcurrencyLimits:
    """The account-wide in-flight limit plus one per endpoint, each adapting to its own 429s."""

    def __init__(self, ceiling: int):
        self.ceiling = ceiling
        self.account = AdaptiveLimit(ceiling)
        self._endpoints: dict[str, AdaptiveLimit] = {}
        self._lock = threading.Lock()

    def endpoint(self, endpoint: str) -> AdaptiveLimit:
        with self._lock:
            limit = self._endpoints.get(endpoint)
            if limit is None:
                limit = self._endpoints[endpoint] = AdaptiveLimit(self.ceiling)
            return limit

    @contextmanager
    def slot(self, endpoint: str) -> Iterator[Slot]:
        """Hold one in-flight slot of the endpoint and of the account (always taken in that order)."""
        own = self.endpoint(endpoint)
        own_ticket = own.acquire()
        try:
            account_ticket = self.account.acquire()
        except BaseException:
            own.release(own_ticket)
            raise
        outcome = Slot()
        try:
            yield outcome
        finally:
            reason = outcome.rejected_for
            self.account.release(account_ticket, rejected=reason == "global-concurrency", answered=outcome.answered)
            own.release(own_ticket, rejected=reason == "endpoint-concurrency", answered=outcome.answered)
