"""The Dagster layer: assets, checks and sensors that wire the plain modules into a pipeline."""
