"""Code location `-m nilus_stripe_assets.connect_daily`: Connect accounts x days (built in `locations/connect_daily.py`)."""

from .locations.connect_daily import accounts, defs, stripe_assets  # noqa: F401
