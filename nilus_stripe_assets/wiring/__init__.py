"""The adapter's former name: kept so that YAML written as `type: nilus_stripe_assets.wiring.component.StripePipelineComponent`
still loads. New code imports from `nilus_stripe_assets` or `nilus_stripe_assets.dagster_adapter`."""
