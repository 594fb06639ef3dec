"""Code location `-m nilus_stripe_assets.daily`: daily partitions over `created` (built in `locations/daily.py`)."""

from .locations.daily import daily_partitions, defs, stripe_assets  # noqa: F401
