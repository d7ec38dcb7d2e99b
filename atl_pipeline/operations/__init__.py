"""What happens after a deploy: drift, incidents and their remediation, auto-scaling, backups and logs."""
