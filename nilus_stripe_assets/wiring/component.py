"""The component's earlier public type name (`nilus_stripe_assets.wiring.component.StripePipelineComponent`)."""

from ..dagster_adapter.component import StripePipelineComponent  # noqa: F401
