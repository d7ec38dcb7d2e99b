"""The Dagster definitions, by stage group: `dg` and Dagster's loader read this folder."""
