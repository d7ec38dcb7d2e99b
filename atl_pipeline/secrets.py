"""Secrets: referenced in domains.yml as `env:NAME`, read at run time, never shown.

A `Redactor` replaces every secret value (and the password inside a connection string)
with `***` in any text the pipeline logs, records as metadata or raises as an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from atl_pipeline.errors import AtlError

SECRET_REF = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]{0,127})")
MASK = "***"


class SecretError(AtlError):
    """A secret reference cannot be resolved."""


def check_secret_ref(text: str) -> str:
    """Pydantic validator: the value must be a reference. Never echoes the value: it may be a secret."""
    if not SECRET_REF.fullmatch(text):
        raise ValueError("a secret is never written in domains.yml: write env:NAME here and set NAME "
                         "in the pipeline's environment")
    return text


def resolve(ref: str, environ: Mapping[str, str] = os.environ) -> str:
    name = SECRET_REF.fullmatch(ref).group(1)
    value = environ.get(name)
    if not value:
        raise SecretError(f"the secret {ref} is not set: export {name} in the environment of the pipeline "
                          "(the shell that runs `atl`, or `make run`/`dg dev`)")
    return value


class Redactor:
    """Masks known secret values in text."""

    def __init__(self, secrets: Iterable[str] = ()):
        values = set()
        for secret in secrets:
            values.add(secret)
            values.update(_embedded_passwords(secret))
        self._values = sorted((v for v in values if len(v) >= 4), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        return text


def _embedded_passwords(secret: str) -> list[str]:
    """The password of a `scheme://user:password@host` URL or a `password=...` key/value string."""
    found = re.findall(r"(?:^|\s)password\s*=\s*'?([^'\s]+)", secret)
    try:
        password = urlsplit(secret).password
    except ValueError:
        password = None
    return found + ([password] if password else [])


def masked_url(url: str) -> str:
    """A connection URL with its password (in its user part or a `password=` parameter) shown as ***:
    where it points, for a log or a report."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}:{MASK}@{host}" if ":" in user else parts.netloc
    query = re.sub(r"(?<![^&])password=[^&]*", f"password={MASK}", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))
