"""Terraform: render the templates, check what they declare, plan and apply with the CLI."""
