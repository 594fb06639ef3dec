"""The Dagster wiring layer: the only part of the package that imports Dagster."""
