"""The base of the pipeline's own errors.

A module that talks to a collaborator (Terraform, supervisord, ssh, git, Prometheus and
promtool, Caddy's admin API, PostgreSQL through Terraform, the files of the project's state)
catches the errors that collaborator documents and raises an AtlError whose message tells
the operator what to do. Any other exception is a bug of ours and propagates with its
traceback: a stage fails with it, and `atl` saves it to a file.
"""

from __future__ import annotations


class AtlError(Exception):
    """A failure the message explains; `transient` when another attempt may succeed (a state backend
    or Caddy restarting, supervisord's socket not up yet, a held lock): the stage is retried."""

    transient: bool = False
