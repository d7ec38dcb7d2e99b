"""Terraform's outputs, read once after apply into typed models that every later stage uses.

The `services` and `domains` outputs are every target's; `servers` and `load_balancer` are
those of targets with servers (hcloud). A server's name and addresses become paths and
arguments of ssh, so they are checked here, before anything uses them.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from atl_pipeline.errors import AtlError

ServerName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class OutputError(AtlError):
    """Terraform's outputs are not of the shape the templates promise."""


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ServiceOutput(_Output):
    """A service in use: what runs, and where each replica listens in each of the two slots."""

    command: list[str] | None = None
    container_port: int | None = None  # where the container listens inside (container targets)
    cpu_millicores: int
    health_command: list[str] | None = None  # run inside the container instead of curl on health_path
    health_path: str
    image: str | None = None
    memory_bytes: int
    port: int
    release: str
    replicas: int
    standby_port: int
    ports: list[int]
    standby_ports: list[int]
    metrics_path: str | None = "/metrics"  # None: the service exposes no metrics
    servers: str | None = None  # hcloud: its server group (None: `default`)
    tcp_ports: list[int] = Field(default_factory=list)
    volumes: dict[str, str] = Field(default_factory=dict)  # name -> path in the container

    @property
    def exclusive(self) -> bool:
        """Two releases cannot run side by side: a TCP port is published once per server, and data
        in a volume has one writer. Such a service's roll stops the old release first."""
        return bool(self.tcp_ports or self.volumes)

    def slot_ports(self, slot: int) -> list[int]:
        """The replicas' ports in slot 0 (`ports`) or slot 1 (`standby_ports`)."""
        return self.standby_ports if slot else self.ports


class DomainOutput(_Output):
    cpu_millicores: int
    memory_bytes: int
    monitoring: bool
    replicas: int
    service: str
    ssl: bool
    url: str
    proxied: bool = False  # through Cloudflare's proxy (hcloud)


class ServerOutput(_Output):
    ipv4: IPv4Address
    private_ip: IPv4Address
    group: str = "default"


class LoadBalancerOutput(_Output):
    ipv4: IPv4Address
    ipv6: IPv6Address | None = None
    private_ip: IPv4Address | None = None  # on the servers' network: the routers trust its X-Forwarded-For


class Outputs(_Output):
    services: dict[str, ServiceOutput] = Field(default_factory=dict)
    domains: dict[str, DomainOutput] = Field(default_factory=dict)
    servers: dict[ServerName, ServerOutput] = Field(default_factory=dict)
    load_balancer: LoadBalancerOutput | None = None

    @classmethod
    def parse(cls, raw: dict) -> Outputs:
        """Terraform's `output -json` values; OutputError says which output is not as promised."""
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise OutputError(f"Terraform's output {where}: {first['msg']} ({str(first.get('input'))[:80]!r}); "
                              "the templates in terraform_templates/ must output what the pipeline reads") from None

    def as_json(self) -> dict:
        return self.model_dump(mode="json")
