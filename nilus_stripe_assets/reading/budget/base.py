"""What every request budget backend shares: the settings, and the interface a backend's rate state implements.

The backends (`files.py`: files under `flock` on one machine; `postgres.py`: one PostgreSQL table for several
machines) each implement `RateState` and import only this module, never each other; `open_rate_state` in the
package's `__init__` chooses one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol


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
