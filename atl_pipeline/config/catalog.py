"""The catalog of well-known services: what `atl utils import` maps a bare service name to.

In the spirit of Coolify's and CapRover's one-click apps: each name the All Things Linux
format writes (`grafana`, `prosody`, `postgresql`...) is either a service, with its official
image pinned to a release, its ports, health and metrics paths, volumes and the subdomain it
answers by default, or a name of another role (something the servers provide, part of
another image, a scheduled job, something the pipeline itself does...), which the importer
turns into a decision instead of a service. The entries live in `catalog.yml` beside this
module, and each service entry is checked against the schema when the catalog is read.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from atl_pipeline.config.model import Port, Resources, Service, VolumePath
from atl_pipeline.config.names import check_identifier
from atl_pipeline.config.yaml_reader import parse, read_source
from atl_pipeline.findings import ConfigError, Finding

CATALOG_FILE = Path(__file__).with_name("catalog.yml")
Role = Literal["service", "provided", "bundled", "declare", "job", "replaced", "unsupported"]
ROLES: dict[str, str] = {  # what the importer says of a name of each role that is not a service
    "provided": "provided by the servers",
    "bundled": "part of another image",
    "declare": "no single image: declare it yourself",
    "job": "a scheduled job, not a service",
    "replaced": "done by the pipeline itself",
    "unsupported": "not expressible in the schema",
}


class Entry(BaseModel):
    """One name of the catalog (the fields are described in catalog.yml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Role = "service"
    reason: str | None = None
    part_of: str | None = None
    image: str | None = None
    port: Port | None = None
    container_port: int | None = Field(None, ge=1, le=65535)
    command: list[str] | None = None
    health: str | None = None
    health_command: list[str] | None = None
    metrics: str | None = None
    http: bool = True
    curl: bool = True
    volumes: dict[str, VolumePath] = {}
    tcp_ports: list[Port] = []
    subdomain: str | None = None
    apex: bool = False
    internal: bool = False
    resources: Resources | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Entry:
        check_identifier(self.name)
        if self.role == "service":
            needed = ("image", "port", *(("health", "container_port") if self.http else ()))
            missing = [field for field in needed if getattr(self, field) is None]
            if missing:
                raise ValueError(f"a service needs {', '.join(missing)}")
            if self.image.endswith(":latest") or ":" not in self.image.rsplit("/", 1)[-1]:
                raise ValueError("a service's image is pinned to a release tag, never `latest`")
            Service.model_validate(self.service())  # the schema accepts what the importer will write
        elif self.reason is None:
            raise ValueError(f"a name of role {self.role} says why (`reason`)")
        if self.role == "bundled" and self.part_of is None:
            raise ValueError("a bundled name says which entry's image holds it (`part_of`)")
        return self

    @property
    def is_service(self) -> bool:
        return self.role == "service"

    def service(self) -> dict:
        """`services.<name>` in the schema's terms, as the importer writes it: the catalog's values
        explicitly, so that the imported file says everything it runs."""
        entry: dict = {"image": self.image, "port": self.port}
        if self.container_port:
            entry["container_port"] = self.container_port
        if self.command:
            entry["command"] = list(self.command)
        health = {"path": self.health} if self.http else {}
        if self.health_command:
            health["command"] = list(self.health_command)
        if health:
            entry["health"] = health
        entry["metrics"] = {"path": self.metrics} if self.metrics else None
        if self.volumes:
            entry["volumes"] = dict(self.volumes)
        return entry

    def gap(self) -> str | None:
        """Why a replica of this image cannot pass the runtime's health gate as the catalog runs it: None when
        it can (curl on its health path inside the container, or its own `health_command`)."""
        if self.health_command or (self.http and self.curl):
            return None
        lacks = "speaks no HTTP" if not self.http else "has no curl"
        return (f"{lacks}, and the catalog gives it no health.command: its replicas fail the health gate (curl "
                "on the health path inside the container) until the file gives one")


@cache
def catalog() -> dict[str, Entry]:
    """The catalog, by name; raises ConfigError (located in catalog.yml) when an entry is invalid."""
    return read_catalog(CATALOG_FILE)


def read_catalog(path: Path) -> dict[str, Entry]:
    source = read_source(path, name=path.name)
    data = parse(source)
    if not isinstance(data, dict):
        raise ConfigError([_finding(source.name, 1, "the catalog is a mapping of names to entries")])
    entries, problems = {}, []
    for name, fields in data.items():
        try:
            entries[name] = Entry.model_validate({"name": name, **(fields or {})})
        except (ValidationError, ValueError) as error:
            problems.append(_finding(source.name, _line_of(source.text, name), f"{name}: {error}"))
    problems += _clashes(source.name, source.text, entries)
    if problems:
        raise ConfigError(problems)
    return entries


def _clashes(file: str, text: str, entries: dict[str, Entry]) -> list[Finding]:
    """Two services with overlapping port blocks, or two names answering one subdomain."""
    problems, ports, labels = [], {}, {}
    for name, entry in entries.items():
        if entry.port is not None:
            for other, port in ports.items():
                if abs(port - entry.port) < 100:
                    problems.append(_finding(file, _line_of(text, name), f"{name}: its port block "
                                             f"({entry.port}) meets {other}'s ({port})"))
            ports[name] = entry.port
        if entry.subdomain is not None:
            if entry.subdomain in labels:
                problems.append(_finding(file, _line_of(text, name), f"{name}: subdomain {entry.subdomain!r} "
                                         f"is already {labels[entry.subdomain]}'s"))
            labels[entry.subdomain] = name
        if entry.part_of is not None and entry.part_of not in entries:
            problems.append(_finding(file, _line_of(text, name), f"{name}: part_of names no entry"))
    return problems


def by_subdomain() -> dict[str, str]:
    """The catalog's name for each default subdomain."""
    return {entry.subdomain: name for name, entry in catalog().items() if entry.subdomain}


def _line_of(text: str, name: str) -> int:
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith(f"{name}:"):
            return number
    return 1


def _finding(file: str, line: int, message: str) -> Finding:
    return Finding(file, line, 1, message)
