"""The domains.yml schema, version 1, as pydantic models.

Every name that later reaches a template, a process table or a URL is checked here, so
a `Config` that exists is safe to render. Rules that look across the whole file
(unique names, references, capacity, ports) live in `atl_pipeline.validation`.
"""

from __future__ import annotations

import re
import string
from ipaddress import IPv4Network
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    IPvAnyNetwork,
    StrictBool,
    StrictInt,
    Tag,
    field_validator,
    model_validator,
)

from atl_pipeline.config.names import check_identifier, normalize_hostname
from atl_pipeline.config.quantity import cpu_millicores, memory_bytes, parse_quantity
from atl_pipeline.secrets import check_secret_ref

MAX_REPLICAS = 50
PORT_BLOCK = 2 * MAX_REPLICAS  # a service's ports, two halves: releases alternate between port + r and port + 50 + r
COMMAND_PLACEHOLDERS = ("port", "replica", "service")


def _check_quantity(text: str) -> str:
    parse_quantity(text)
    return text


Identifier = Annotated[str, AfterValidator(check_identifier)]
Hostname = Annotated[str, AfterValidator(normalize_hostname)]
Quantity = Annotated[str, AfterValidator(_check_quantity)]
Port = Annotated[StrictInt, Field(ge=1024, le=65535)]
SecretRef = Annotated[str, AfterValidator(check_secret_ref)]
SqlName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]

_HEALTH_PATH = re.compile(r"/[A-Za-z0-9._~/-]*(\?[A-Za-z0-9._~=&-]*)?")
_IMAGE = re.compile(
    r"(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)


class _Model(BaseModel):
    # the docstring under a field is its description: `atl docs build` writes the reference from it
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True,
                              use_attribute_docstrings=True)


class Resources(_Model):
    cpu: Quantity = "250m"
    """Per replica, Kubernetes syntax (`500m`, `1`, `1.5`). On the local target a scheduling weight."""
    memory: Quantity = "256Mi"
    """Per replica, Kubernetes syntax (`512Mi`, `1Gi`). On the local target an address-space limit."""

    @property
    def millicores(self) -> int:
        return cpu_millicores(self.cpu)

    @property
    def bytes(self) -> int:
        return memory_bytes(self.memory)


class Health(_Model):
    path: str = "/healthz"
    """The URL path that answers 2xx when a replica is healthy: letters, digits, `. _ ~ / -`, a plain query."""

    @field_validator("path")
    @classmethod
    def _plain_path(cls, path: str) -> str:
        if not _HEALTH_PATH.fullmatch(path):
            raise ValueError(f"{path[:80]!r} is not a plain URL path such as /healthz")
        return path


class Service(_Model):
    command: list[str] | None = Field(None, min_length=1)
    """The program and its arguments, never a shell string. Placeholders `{port}`, `{replica}`, `{service}`."""
    image: str | None = None
    """The container image (`registry/name:tag` or `name@sha256:...`), for container targets."""
    port: Port
    """The first of the service's 100 ports: replica r listens on port + r or on port + 50 + r; each new release
    takes the half the serving one does not use."""
    health: Health = Health()
    """How the load balancer and the health check tell a replica is up."""

    @field_validator("command", mode="before")
    @classmethod
    def _argv_only(cls, command: object) -> object:
        if isinstance(command, str):
            raise ValueError("a command is a list of arguments, never a shell string: "
                             "write it as [program, arg, ...]")
        return command

    @field_validator("command")
    @classmethod
    def _arguments(cls, command: list[str] | None) -> list[str] | None:
        for argument in command or ():
            _check_argument(argument)
        return command

    @field_validator("image")
    @classmethod
    def _image_reference(cls, image: str | None) -> str | None:
        if image is not None and not _IMAGE.fullmatch(image):
            raise ValueError(f"{image[:80]!r} is not a container image reference such as "
                             "ghcr.io/allthingslinux/app:1.2.3")
        return image


def _check_argument(argument: str) -> None:
    """An argument a program can be given, whose placeholders are known bare names."""
    if "\x00" in argument:
        raise ValueError(f"argument {argument[:80]!r} holds a NUL character, which no program can be given")
    if "{" not in argument and "}" not in argument:
        return
    try:
        parts = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(argument)
                 if field is not None]
    except ValueError as error:
        raise ValueError(f"argument {argument[:80]!r}: {error}; write a literal brace as {{{{ or }}}}") from None
    if any(spec or conversion for _, spec, conversion in parts):
        raise ValueError(f"argument {argument[:80]!r}: a placeholder is a bare name such as {{port}}, "
                         "with no format or conversion")
    unknown = [field for field, _, _ in parts if field not in COMMAND_PLACEHOLDERS]
    if unknown:
        raise ValueError(f"argument {argument[:80]!r} uses {{{unknown[0][:40]}}}; "
                         f"the placeholders are {', '.join(f'{{{p}}}' for p in COMMAND_PLACEHOLDERS)}")


class Domain(_Model):
    name: Hostname
    """The domain: an RFC 1123 hostname; non-ASCII names are converted with IDNA 2008."""
    service: Identifier
    """The service that answers it, defined under `services:`."""
    ssl: StrictBool = True
    """HTTPS with a certificate, and HTTP redirected to it."""
    monitoring: StrictBool = True
    """A blackbox probe of the domain, with the SLO alerts on it."""
    replicas: StrictInt = Field(1, ge=1, le=MAX_REPLICAS)
    """How many replicas of the service run (1 to 50); domains sharing a service ask for the same."""
    resources: Resources = Resources()
    """What each replica may use; domains sharing a service ask for the same."""
    enabled: StrictBool = True
    """`false`: declared and checked, but not deployed (`atl utils disable`)."""
    proxied: StrictBool | None = None
    """hcloud: its DNS records go through Cloudflare's proxy. Default: `target.cloudflare.proxied`, except for
    names that must not be proxied (mail, smtp, imap...), which never are."""


class Capacity(_Model):
    cpu: Quantity
    """The cores the target has for services."""
    memory: Quantity
    """The memory the target has for services."""


class LocalTarget(_Model):
    """This machine: services as processes, Caddy in front on loopback."""

    kind: Literal["local"] = "local"
    """Where services run: `local`, processes on this machine behind Caddy on loopback."""
    capacity: Capacity | None = None
    """What the requested resources must fit in; default: this machine's cores and memory."""
    http_port: Port = 8000
    """The load balancer's HTTP port on 127.0.0.1."""
    https_port: Port = 8443
    """The load balancer's HTTPS port on 127.0.0.1."""
    admin_port: Port = 2019
    """Caddy's admin API on 127.0.0.1."""
    prometheus_port: Port = 9090
    """Prometheus on 127.0.0.1."""
    blackbox_port: Port = 9115
    """The blackbox exporter on 127.0.0.1."""

    @property
    def ports(self) -> dict[str, int]:
        """The ports on 127.0.0.1 that the target's processes listen on."""
        return {"http_port": self.http_port, "https_port": self.https_port, "admin_port": self.admin_port,
                "prometheus_port": self.prometheus_port, "blackbox_port": self.blackbox_port}


HCLOUD_LOCATIONS = {"fsn1": "eu-central", "nbg1": "eu-central", "hel1": "eu-central", "ash": "us-east",
                    "hil": "us-west", "sin": "ap-southeast"}  # location -> network zone
_SSH_PUBLIC_KEY = re.compile(r"(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}"
                             r"( [ -~]{0,100})?")


class Cloudflare(_Model):
    """Cloudflare DNS: an A and an AAAA record per domain, to the load balancer."""

    zone: Hostname
    """The zone, such as `allthingslinux.org`: every domain is in it."""
    zone_id: str
    """The zone's ID (32 hex digits, on the zone's Overview page in the Cloudflare dashboard)."""
    api_token: SecretRef = "env:CLOUDFLARE_API_TOKEN"
    """`env:NAME`, NAME holding an API token that may edit the zone's DNS."""
    proxied: StrictBool = True
    """Records go through Cloudflare's proxy (DDoS and WAF protection) unless a domain says otherwise."""

    @field_validator("zone_id")
    @classmethod
    def _zone_id(cls, zone_id: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{32}", zone_id):
            raise ValueError("a Cloudflare zone ID is 32 hex digits (the zone's Overview page in the dashboard)")
        return zone_id


class HcloudTarget(_Model):
    """Hetzner Cloud: servers on a private network behind a load balancer, DNS at Cloudflare."""

    kind: Literal["hcloud"]
    """`hcloud`: Hetzner Cloud servers running the services as containers."""
    location: Literal[tuple(HCLOUD_LOCATIONS)] = "fsn1"
    """The Hetzner location of the servers and the load balancer."""
    servers: StrictInt = Field(2, ge=1, le=10)
    """How many servers; each service's replicas are spread over them."""
    server_type: str | None = Field(None, pattern=r"^[a-z]{2,4}[0-9]{2,3}$")
    """An explicit Hetzner server type (`cx33`); default: the smallest that fits each server's share."""
    image: str = Field("debian-13", pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")
    """The servers' operating system image: one whose `docker-compose` package is Compose v2 (`docker
    compose up --wait`), as Debian 13's is; Debian 12's is version 1."""
    load_balancer_type: Literal["lb11", "lb21", "lb31"] = "lb11"
    """The Hetzner load balancer type."""
    network: IPv4Network = IPv4Network("10.0.0.0/16")
    """The private network (RFC 1918)."""
    subnet: IPv4Network = IPv4Network("10.0.1.0/24")
    """The servers' and load balancer's subnet, inside `network`."""
    ssh_public_key: str
    """The operator's SSH public key (`ssh-ed25519 AAAA... comment`), installed on every server."""
    ssh_from: list[IPvAnyNetwork] = []
    """The address ranges SSH is open to: at least those of the machines that deploy."""
    ssh_port: StrictInt = Field(22, ge=1, le=65535)
    """The servers' SSH port: their sshd and the firewall rule follow it."""
    ssh_identity: str | None = Field(None, pattern=r"^[^\x00\n]{1,4096}$")
    """The private key file the deployment logs in with, on the machine that deploys (`~/.ssh/atl_ed25519`;
    a relative path is in the project folder); default: OpenSSH's own keys and agent."""
    remote_dir: str = Field("/opt/atl", pattern=r"^(/[A-Za-z0-9._-]+)+$")
    """The folder on each server that holds a folder per server name: its Compose file and router."""
    hcloud_token: SecretRef = "env:HCLOUD_TOKEN"
    """`env:NAME`, NAME holding a Hetzner Cloud API token with read and write access."""
    cloudflare: Cloudflare
    """Where the domains' DNS records are."""
    prometheus_port: Port = 9090
    """Prometheus on 127.0.0.1 of the machine that deploys: it probes the domains through the load balancer."""
    blackbox_port: Port = 9115
    """The blackbox exporter on 127.0.0.1 of the machine that deploys."""

    @field_validator("ssh_public_key")
    @classmethod
    def _public_key(cls, key: str) -> str:
        if not _SSH_PUBLIC_KEY.fullmatch(key.strip()):
            raise ValueError("not an SSH public key such as `ssh-ed25519 AAAA... comment`; never a private key")
        return key.strip()

    @property
    def network_zone(self) -> str:
        return HCLOUD_LOCATIONS[self.location]

    @property
    def ports(self) -> dict[str, int]:
        """The ports on 127.0.0.1 that the target's processes listen on."""
        return {"prometheus_port": self.prometheus_port, "blackbox_port": self.blackbox_port}


class State(_Model):
    """Where Terraform keeps its state: a local file under .atl/, or PostgreSQL (with its lock)."""

    backend: Literal["local", "pg"] = "local"
    """`local`: a file under `.atl/terraform/`; `pg`: Terraform's PostgreSQL backend, with its lock."""
    conn_str: SecretRef | None = None
    """pg only: `env:NAME`, NAME holding the connection string. A literal value is refused."""
    schema_name: SqlName | None = None
    """pg only: default `atl_<project>__<environment>`."""

    @model_validator(mode="after")
    def _connection_for_pg_only(self) -> State:
        if self.backend == "pg" and self.conn_str is None:
            raise ValueError("the pg backend needs conn_str: env:NAME, NAME holding the connection string")
        if self.backend == "local" and (self.conn_str or self.schema_name):
            raise ValueError("conn_str and schema_name are settings of the pg backend only")
        return self


TARGETS = {"local": LocalTarget, "hcloud": HcloudTarget}


def _target_kind(target: object) -> str | None:
    """`local` when the kind is not written: the embedded default."""
    kind = target.get("kind", "local") if isinstance(target, dict) else getattr(target, "kind", None)
    return kind if isinstance(kind, str) and kind in TARGETS else None


class Config(_Model):
    version: Literal[1] = 1
    """The schema's version."""
    project: Identifier = "allthingslinux"
    """The project's name: `[a-z0-9-]`."""
    environment: Identifier = "production"
    """The environment: each has its own Terraform state."""
    target: Annotated[Annotated[LocalTarget, Tag("local")] | Annotated[HcloudTarget, Tag("hcloud")],
                      Discriminator(_target_kind, custom_error_type="target_kind",
                                    custom_error_message="kind must be local or hcloud")] = LocalTarget()
    """Where the services run: `kind: local` or `kind: hcloud`."""
    state: State = State()
    """Where Terraform keeps its state."""
    services: dict[Identifier, Service] = {}
    """The services, by name (`[a-z0-9-]`, 1-63 characters)."""
    domains: list[Domain]
    """The domains, each answered by a service."""

    @property
    def serving(self) -> list[Domain]:
        """The domains that are deployed: every one but those with `enabled: false`."""
        return [domain for domain in self.domains if domain.enabled]

    def services_in_use(self) -> dict[str, Domain]:
        """Each defined service an enabled domain routes to, with the first such domain."""
        return {name: domain for name, domain in self.first_domains().items() if name in self.services}

    def first_domains(self) -> dict[str, Domain]:
        """Each service an enabled domain routes to, with the first such domain: its replicas and resources."""
        first: dict[str, Domain] = {}
        for domain in self.serving:
            first.setdefault(domain.service, domain)
        return first
