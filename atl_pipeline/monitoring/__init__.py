"""Monitoring: Prometheus and its blackbox exporter, configured from what was deployed.

`rules.yml` holds the alert rules that encode the key metrics as SLOs; `rules_test.yml`
holds their `promtool test rules` unit tests.
"""
