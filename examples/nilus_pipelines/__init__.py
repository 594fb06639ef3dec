"""Defs folder of the example project: Dagster loads the components declared in `defs.yaml` here."""
