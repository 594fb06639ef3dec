"""Code location `-m nilus_stripe_assets.definitions`: the single-account location (built in `locations/main.py`)."""

from .locations.main import defs, finance_assets, stripe_assets  # noqa: F401
