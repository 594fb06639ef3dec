"""The request budget's rate state in files under `fcntl.flock`: every process on the machine draws from one budget.

A request reserves the next slot under the lock and sleeps outside it, which keeps the lock hold time to
microseconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import threading
import time
from pathlib import Path
from typing import Optional

from .base import BudgetSettings

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
