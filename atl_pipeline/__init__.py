"""atl-pipeline: a GitOps pipeline that turns domains.yml into running, monitored services."""
