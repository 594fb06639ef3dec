"""Stripe objects as Dagster assets, loaded into DuckDB.

Importing the package does not import Dagster; the Dagster wiring lives in `nilus_stripe_assets.definitions`.
"""

__version__ = "0.1.0"
