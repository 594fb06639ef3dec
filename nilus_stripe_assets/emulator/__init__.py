"""A bundled Stripe API emulator for the offline demo, tests and benchmarks (stdlib + orjson only).

    with StripeEmulator(counts={"charge": 200_000}) as emu:
        client = stripe.StripeClient(emu.api_key, base_addresses={"api": emu.url})
        client.v1.charges.list({"limit": 100})

Modules: `model` (catalog-derived facts), `builders` (per-object fields), `data` (deterministic seed data),
`store` (sorted in-memory pages), `api` (Stripe list protocol), `auth`, `limits` (fault switches, stats),
`errors`, `server` (HTTP + `StripeEmulator`), `client` (`EmulatorClient`), `__main__` (CLI).

Throughput (`python -m nilus_stripe_assets.emulator.bench`): see that module's docstring.
"""

from .client import EmulatorClient, EmulatorError
from .data import DEFAULT_COUNTS
from .server import StripeEmulator

__all__ = ["DEFAULT_COUNTS", "EmulatorClient", "EmulatorError", "StripeEmulator"]
