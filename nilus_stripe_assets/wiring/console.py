"""The console handler's earlier path, for a dagster.yaml that names `nilus_stripe_assets.wiring.console.FailuresInOneLine`."""

from ..dagster_adapter.console import FailuresInOneLine  # noqa: F401
