"""Stripe objects as Dagster assets, loaded into DuckDB or PostgreSQL.

The public face: what a project that uses the package imports. Names resolve on first use, so importing the
package imports neither Dagster nor stripe-python (a code location pays only for what it builds).

The folders follow the data's path: `source/` (what Stripe offers and how to ask for it) → `reading/` (lists,
events, the request budget) → `staging/` (spool and typed Parquet) → `warehouse/` (the strategies and one sink
per database) ← `engine/` (a run without Dagster) ← `dagster_adapter/` (the only Dagster code) ←
`locations/` (the code locations). `emulator/` is a Stripe stand-in for tests and the demo.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "build_stripe_assets": "dagster_adapter.factory",
    "build_stripe_asset": "dagster_adapter.factory",
    "StripeTranslator": "dagster_adapter.factory",
    "StripeTranslatorData": "dagster_adapter.factory",
    "StripePipeline": "dagster_adapter.factory",
    "StripeResource": "dagster_adapter.resources",
    "WarehouseResource": "dagster_adapter.duckdb_resource",
    "StripeDuckDBIOManager": "dagster_adapter.io_manager",
    "StripePipelineComponent": "dagster_adapter.component",
    "build_finance_assets": "dagster_adapter.finance",
    "build_incremental_job": "dagster_adapter.automation",
    "build_events_sensor": "dagster_adapter.automation",
    "default_resources": "dagster_adapter.defaults",
    "CATALOG": "source.catalog",
    "StripeEmulator": "emulator",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # resolved once
    return value


def __dir__():
    return sorted([*globals(), *__all__])
