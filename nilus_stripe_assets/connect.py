"""Code location `-m nilus_stripe_assets.connect`: Connect accounts as partitions (built in `locations/connect.py`)."""

from .locations.connect import accounts, defs, stripe_assets  # noqa: F401
