"""One account's Stripe API, as the fetch engine sees it: `list_page(path, params) -> page dict`.

Built on stripe-python's `StripeClient`: its retries (5xx, 409, connection errors, `Stripe-Should-Retry`),
its per-attempt timeout, its error classes and its parameter encoding (`created[gte]=…`). Added around it:
- every real HTTP attempt, including the SDK's own retries, waits for the shared request budget and for an
  in-flight slot, and is counted (a `RequestsClient` subclass is the SDK's documented seam for the transport);
- a 429 the SDK does not retry (no `Stripe-Should-Retry: true`) is retried here with jittered backoff that
  honours `Retry-After`. A rate 429 first slows every process down on the limiter Stripe named; a
  concurrency 429 lowers the number of requests in flight instead (`reading/concurrency.py`);
- retries are bounded in time as well as in count: no retry of a page starts more than
  `max_retry_seconds` after its first attempt, so a stalled upstream fails a load in about
  `max_retry_seconds + timeout_seconds`, not after every attempt has waited out the SDK's 80 s default.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

import orjson
import stripe

from ..reading.budget import RequestBudget
from .config import DEFAULT_API_BASE
from .shapes import api_version



def endpoint_key(url: str) -> str:
    """The endpoint Stripe's per-endpoint limiter counts: method-less path with the object id collapsed.

    `GET /v1/customers/cus_1/payment_methods` and `…/cus_2/…` share one limit, as Stripe documents.
    """
    parts = urlsplit(url).path.split("/")
    if len(parts) > 3 and parts[3]:
        parts[3] = "{id}"
    return "/".join(parts)


@dataclass
class RequestStats:
    """Counters for one asset run; thread-safe."""

    requests: int = 0
    # Objects the load has kept so far (for progress logs), counted by the load: a fan-out's pages of parents
    # (450 customers read for 250 payment methods) are not the object's.
    objects: int = 0
    rate_limited: int = 0  # 429 responses
    server_errors: int = 0  # 5xx responses
    connection_errors: int = 0
    retries: int = 0  # every retried attempt: stripe-python's own (5xx, 409, connection) and ours after a 429
    wait_seconds: float = 0.0  # time spent waiting for the budget
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, value in deltas.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class _MeteredRequestsClient(stripe.RequestsClient):
    """The SDK's requests transport, with every attempt paced by the budget and counted."""

    def __init__(self, budget: RequestBudget, stats: RequestStats, timeout: float, max_retry_seconds: float):
        super().__init__(timeout=timeout)
        self._budget = budget
        self._stats = stats
        self._max_retry_seconds = max_retry_seconds
        self._decoded = threading.local()  # the last successful page decoded by this thread
        self._page = threading.local()  # when this thread's current page may no longer be retried

    def request_with_retries(self, *args, **kwargs):
        # The SDK calls this once per API call and `request` once per attempt: attempts beyond the first
        # are stripe-python's own retries.
        self._decoded.attempts = 0
        try:
            return super().request_with_retries(*args, **kwargs)
        finally:
            self._stats.add(retries=max(0, self._decoded.attempts - 1))

    def take_page(self) -> dict:
        page, self._decoded.page = self._decoded.page, None
        return page

    def start_page(self) -> None:
        """A new page: its retry deadline starts with its first attempt."""
        self._page.deadline = None

    def retry_deadline(self) -> Optional[float]:
        return getattr(self._page, "deadline", None)

    def _should_retry(self, response, api_connection_error, num_retries, max_network_retries):
        # The SDK bounds its retries by count only (6 attempts × an 80 s timeout = 8 minutes for a server
        # that never answers). Refuse a retry that would start after the page's deadline; the SDK then
        # raises the error it has, which the caller explains in one line.
        if not super()._should_retry(response, api_connection_error, num_retries, max_network_retries):
            return False
        deadline = self.retry_deadline()
        pause = min(self.INITIAL_DELAY * 2**num_retries, self.MAX_DELAY)  # the SDK's longest next sleep
        return deadline is None or time.monotonic() + pause <= deadline

    def request(self, method, url, headers, post_data=None, *args, **kwargs):
        self._decoded.attempts = getattr(self._decoded, "attempts", 0) + 1
        endpoint = endpoint_key(url)
        waited = self._budget.acquire(endpoint)
        with self._budget.in_flight.slot(endpoint) as slot:
            if self.retry_deadline() is None:  # waiting for the budget or a slot is not retrying
                self._page.deadline = time.monotonic() + self._max_retry_seconds
            try:
                body, code, rheaders = super().request(method, url, headers, post_data, *args, **kwargs)
            except stripe.APIConnectionError:
                self._stats.add(requests=1, connection_errors=1, wait_seconds=waited)
                raise
            reason = rheaders.get("Stripe-Rate-Limited-Reason") if code == 429 else None
            if reason and reason.endswith("-concurrency"):
                slot.rejected_for = reason
            else:
                slot.answered = True
        self._stats.add(
            requests=1,
            wait_seconds=waited,
            rate_limited=int(code == 429),
            server_errors=int(code >= 500),
        )
        if 200 <= code < 300:
            # Decode the page here with orjson and hand the SDK an empty object: its own
            # json.loads(..., object_pairs_hook=OrderedDict) was about half the fetch CPU. Error bodies pass
            # through untouched, so the SDK's error classes and retries work as before.
            self._decoded.page = orjson.loads(body)
            body = b"{}"
        if code == 429 and not slot.rejected_for:
            # Too fast: slow every process down. (Too many at once was handled above by the slot: pausing
            # would keep the same number in flight and be refused again.)
            self._budget.on_rate_limited(endpoint, reason, _retry_after(rheaders, default=1.0))
        return body, code, rheaders


def should_retry(headers: Optional[Mapping[str, str]]) -> bool:
    """False when Stripe said `Stripe-Should-Retry: false`: the same request would fail again."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "stripe-should-retry"), None)
    return str(value).lower() != "false"


def _retry_after(headers: Optional[Mapping[str, str]], default: float) -> float:
    try:
        return max(0.0, float((headers or {}).get("Retry-After", default)))
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class RetryPolicy:
    max_network_retries: int = 6  # handed to the SDK: 5xx, 409, connection errors
    max_rate_limit_retries: int = 12  # our own loop for 429s the SDK leaves to the caller
    max_backoff_seconds: float = 30.0
    # One attempt: connecting, then each wait for the server's answer (the SDK's default is 80 s; Stripe's
    # list calls answer in well under a second).
    timeout_seconds: float = 20.0
    max_retry_seconds: float = 60.0  # no retry of one page starts later than this after its first attempt


class StripeApi:
    """A thread-safe handle on one Stripe account."""

    def __init__(
        self,
        api_key: str,
        budget: RequestBudget,
        api_base: str = DEFAULT_API_BASE,
        stripe_account: Optional[str] = None,
        retry: RetryPolicy = RetryPolicy(),
    ):
        self.api_base = api_base.rstrip("/")
        self.api_key = api_key  # kept for masking in error messages; never logged
        self.budget = budget
        self.retry = retry
        self.stats = RequestStats()
        self._transport = _MeteredRequestsClient(budget, self.stats, retry.timeout_seconds, retry.max_retry_seconds)
        self._client = stripe.StripeClient(
            api_key,
            # Stated, not left to the SDK's default: the version the SDK's classes (and so our columns)
            # describe, sent as `Stripe-Version` on every request, so every list comes back in it.
            stripe_version=api_version(),
            stripe_account=stripe_account,
            base_addresses={"api": self.api_base},
            max_network_retries=retry.max_network_retries,
            http_client=self._transport,
        )

    def retrieve(self, path: str) -> dict:
        """GET one object, e.g. `/v1/invoices/in_…`, in the pinned API version (retries as `list_page`)."""
        found = self.list_page(path, {})
        self.stats.add(objects=1)
        return found

    def list_page(self, path: str, params: Mapping[str, Any]) -> dict:
        """GET one list page. Raises stripe.StripeError once retries are spent."""
        attempt = 0
        self._transport.start_page()
        while True:
            try:
                self._client.raw_request("get", path, **params)  # raises Stripe's errors, retries
                return self._transport.take_page()
            except stripe.RateLimitError as exc:
                attempt += 1
                if attempt > self.retry.max_rate_limit_retries or not should_retry(exc.headers):
                    raise
                # Exponential backoff with full jitter, never shorter than what Stripe asked for.
                backoff = min(self.retry.max_backoff_seconds, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
                pause = max(backoff, _retry_after(exc.headers, default=0.0))
                deadline = self._transport.retry_deadline()
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise
                self.stats.add(retries=1)
                time.sleep(pause)
