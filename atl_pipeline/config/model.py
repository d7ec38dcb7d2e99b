"""The domains.yml schema, version 1, as pydantic models.

Every name that later reaches a template, a process table or a URL is checked here, so
a `Config` that exists is safe to render. Rules that look across the whole file
(unique names, references, capacity, ports) live in `atl_pipeline.validation`.
"""

from __future__ import annotations

import posixpath
import re
import string
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    IPvAnyNetwork,
    StrictBool,
    StrictInt,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from atl_pipeline.config.addresses import (
    check_absolute_folder,
    check_host_port,
    check_project_folder,
    check_restic_address,
    check_url,
)
from atl_pipeline.config.cron import check_cron
from atl_pipeline.config.names import check_identifier, normalize_hostname
from atl_pipeline.config.quantity import cpu_millicores, memory_bytes, parse_quantity
from atl_pipeline.secrets import SECRET_REF, check_secret_ref

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
VolumePath = Annotated[str, Field(pattern=r"^(/[A-Za-z0-9._-]+)+$"), AfterValidator(check_absolute_folder)]
DURATION = r"^[1-9][0-9]{0,4}(s|m|h|d)$"  # as Prometheus and Alertmanager write one
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(longest: str):
    """A Duration field (`90s`, `10m`, `4h`, `1d`) of at most `longest`: nothing here is meant to wait for years."""
    def at_most(value: str) -> str:
        if duration_seconds(value) > duration_seconds(longest):
            raise ValueError(f"at most {longest} here")
        return value
    return Annotated[str, Field(pattern=DURATION), AfterValidator(at_most)]


def text_first(check):
    """`check` on a string before the field's own pattern, which would refuse it without saying why."""
    return BeforeValidator(lambda value: check(value) if isinstance(value, str) else value)

def _argv_only(command: object) -> object:
    if isinstance(command, str):
        raise ValueError("a command is a list of arguments, never a shell string: write it as [program, arg, ...]")
    return command


def _check_argument(argument: str) -> str:
    """An argument a program can be given, whose placeholders are known bare names."""
    if "\x00" in argument:
        raise ValueError(f"argument {argument[:80]!r} holds a NUL character, which no program can be given")
    if "{" not in argument and "}" not in argument:
        return argument
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
    return argument


# the program and its arguments, never a shell string
Argv = Annotated[list[Annotated[str, AfterValidator(_check_argument)]], BeforeValidator(_argv_only),
                 Field(min_length=1)]


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


def _plain_path(path: str) -> str:
    if not _HEALTH_PATH.fullmatch(path):
        raise ValueError(f"{path[:80]!r} is not a plain URL path such as /healthz")
    return path


class Health(_Model):
    path: str = "/healthz"
    """The URL path that answers 2xx when a replica is healthy: letters, digits, `. _ ~ / -`, a plain query."""
    command: Argv | None = None
    """Container targets: a program inside the container whose success means healthy (`[pg_isready]`), run
    instead of `curl` on `path`: for an image without curl, or a service that speaks no HTTP. The
    routers still check `path`."""

    @field_validator("path")
    @classmethod
    def _plain_path(cls, path: str) -> str:
        return _plain_path(path)


class Metrics(_Model):
    path: str = "/metrics"
    """The URL path of the replica's Prometheus metrics."""

    @field_validator("path")
    @classmethod
    def _plain_path(cls, path: str) -> str:
        return _plain_path(path)


class ScaleTarget(_Model):
    """What one replica should carry: requests per second, or a share of a core."""

    requests_per_second_per_replica: StrictInt | None = Field(None, ge=1, le=1_000_000)
    """The request rate through the load balancer one replica should serve: a whole number (`50`)."""
    cpu_per_replica: str | None = Field(None, pattern=r"^([1-9][0-9]?|100)%$")
    """The share of the replica's CPU request it should use (`70%`), from its `process_cpu_seconds_total`."""

    @model_validator(mode="after")
    def _one_metric(self) -> ScaleTarget:
        if (self.requests_per_second_per_replica is None) == (self.cpu_per_replica is None):
            raise ValueError("give one target: requests_per_second_per_replica or cpu_per_replica")
        return self


class Autoscale(_Model):
    """Replicas moved within bounds by the `autoscaler` sensor, from live metrics."""

    min: StrictInt = Field(ge=1, le=MAX_REPLICAS)
    """The fewest replicas."""
    max: StrictInt = Field(ge=1, le=MAX_REPLICAS)
    """The most replicas; capacity is checked at this count."""
    target: ScaleTarget
    """What one replica should carry."""
    scale_down_after: duration("1d") = "5m"
    """How long the metric must stay low before replicas are removed (they are added at once); at most 1d."""

    @model_validator(mode="after")
    def _bounds(self) -> Autoscale:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        return self


class Service(_Model):
    command: Argv | None = None
    """The program and its arguments, never a shell string. Placeholders `{port}`, `{replica}`, `{service}`."""
    image: str | None = None
    """The container image (`registry/name:tag` or `name@sha256:...`), for container targets."""
    port: Port
    """The first of the service's 100 ports: replica r listens on port + r or on port + 50 + r; each new release
    takes the half the serving one does not use."""
    container_port: StrictInt | None = Field(None, ge=1, le=65535)
    """Container targets: the port the image listens on inside its container (`80`); each replica's own port is
    published to it, and `PORT` and `{port}` are this one. Default: the replica's own port."""
    health: Health = Health()
    """How the load balancer and the health check tell a replica is up."""
    metrics: Metrics | None = Metrics()
    """Where Prometheus scrapes each replica; `null`: the service exposes no metrics and is only probed."""
    tcp_ports: list[Port] = Field([], max_length=20)
    """hcloud: ports of a protocol other than HTTP (XMPP, IRC) that the load balancer passes to the service as
    they are. One replica per server listens on each."""
    volumes: dict[Identifier, VolumePath] = Field({}, max_length=20)
    """Named data directories that outlive a release: name -> the path inside the container (hcloud: a Docker
    volume; local: a folder under `.atl/volumes/`, given to each replica as `ATL_VOLUME_<NAME>`)."""
    servers: Identifier | None = None
    """hcloud: the server group (`target.server_groups`) that runs it; default: the group `default`."""
    internal: StrictBool = False
    """`true`: runs with no domain routed to it (a database, a queue), on its servers' private network only."""
    replicas: StrictInt | None = Field(None, ge=1, le=MAX_REPLICAS)
    """An internal service's replicas (a routed service takes its domains'); default 1."""
    resources: Resources | None = None
    """An internal service's resources per replica (a routed service takes its domains')."""
    autoscale: Autoscale | None = None
    """Replicas moved between `min` and `max` from live metrics; `replicas` is where they start."""

    @field_validator("image")
    @classmethod
    def _image_reference(cls, image: str | None) -> str | None:
        if image is not None and not _IMAGE.fullmatch(image):
            raise ValueError(f"{image[:80]!r} is not a container image reference such as "
                             "ghcr.io/allthingslinux/app:1.2.3")
        return image


class Domain(_Model):
    name: Hostname
    """The domain: an RFC 1123 hostname; non-ASCII names are converted with IDNA 2008."""
    service: Identifier | None = None
    """The service that answers it, defined under `services:` (none for an external domain)."""
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
    group: Identifier | None = None
    """A label for people and tables (`core`, `apps`); it changes nothing that is deployed."""
    required: StrictBool = False
    """`true`: the domain may not be disabled."""
    external: StrictBool = False
    """`true`: served elsewhere (`provider`); declared and checked, never deployed, its DNS left alone."""
    provider: Identifier | None = None
    """Where an external domain is served (`cloudflare-workers`, say): for people; only with `external: true`."""

    @model_validator(mode="after")
    def _service_unless_external(self) -> Domain:
        if self.external and self.service is not None:
            raise ValueError("an external domain is served elsewhere: it names no service")
        if not self.external and self.service is None:
            raise ValueError("missing required field 'service' (the service that answers it)")
        if self.provider is not None and not self.external:
            raise ValueError("provider says where an external domain runs: set external: true, or remove it")
        return self


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
    alertmanager_port: Port = 9093
    """Alertmanager on 127.0.0.1."""

    @property
    def ports(self) -> dict[str, int]:
        """The ports on 127.0.0.1 that the target's processes listen on."""
        return {"http_port": self.http_port, "https_port": self.https_port, "admin_port": self.admin_port,
                "prometheus_port": self.prometheus_port, "blackbox_port": self.blackbox_port,
                "alertmanager_port": self.alertmanager_port}


HCLOUD_LOCATIONS = {"fsn1": "eu-central", "nbg1": "eu-central", "hel1": "eu-central", "ash": "us-east",
                    "hil": "us-west", "sin": "ap-southeast"}  # location -> network zone
_SSH_PUBLIC_KEY = re.compile(r"(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}"
                             r"( [ -~]{0,100})?")


def _check_zone_id(zone_id: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", zone_id):
        raise ValueError("a Cloudflare zone ID is 32 hex digits (the zone's Overview page in the dashboard)")
    return zone_id


ZoneId = Annotated[str, AfterValidator(_check_zone_id)]


class Cloudflare(_Model):
    """Cloudflare DNS: an A and an AAAA record per domain, to the load balancer, each in its own zone."""

    zone: Hostname | None = None
    """A zone, such as `allthingslinux.org`, with `zone_id`: how a file of one zone names it. Its resources keep
    the addresses they have always had when `zones` adds more. Each domain is in the zone whose name is the
    longest suffix of its own (after a dot, or the whole name)."""
    zone_id: ZoneId | None = None
    """The ID of `zone` (32 hex digits, on the zone's Overview page in the Cloudflare dashboard)."""
    zones: dict[Hostname, ZoneId] = Field({}, max_length=50)
    """More zones, or all of them without `zone`: each zone's name and its ID. Their resources in Terraform are
    keyed by zone name. Each zone is listed once, with an ID of its own."""
    api_token: SecretRef = "env:CLOUDFLARE_API_TOKEN"
    """`env:NAME`, NAME holding an API token that may edit the DNS and settings of every zone."""
    proxied: StrictBool = True
    """Records go through Cloudflare's proxy (DDoS and WAF protection) unless a domain says otherwise."""
    min_tls_version: Literal["1.0", "1.1", "1.2", "1.3"] | None = None
    """The lowest TLS version Cloudflare's edge accepts from visitors of the proxied names (a setting of each
    whole zone: `zone`, and each of `zones` that holds a record); default: the zone's own. The load
    balancer's TLS versions are Hetzner's."""

    @field_validator("zones", mode="before")
    @classmethod
    def _each_zone_once(cls, zones: object, info: ValidationInfo) -> object:
        """Two names of one zone (`Atl.Chat`, `atl.chat.`) would otherwise collapse into one, silently; one ID
        under two names would put one zone's records into the other."""
        zone, zone_id = info.data.get("zone"), info.data.get("zone_id")
        names = {zone: "target.cloudflare.zone"} if zone else {}  # each zone -> how it was first written
        ids = {zone_id: "target.cloudflare.zone"} if zone_id else {}  # each ID -> its zone
        for written, written_id in zones.items() if isinstance(zones, dict) else ():
            try:
                name = normalize_hostname(str(written))
            except ValueError:
                continue  # reported by the key's own check
            if name in names:
                raise ValueError(f"the zone {written} is listed already, as {names[name]}: write each zone once")
            names[name] = written
            if not isinstance(written_id, str):
                continue  # reported by the ID's own check
            if written_id in ids:
                raise ValueError(f"the zone {written} has the ID of {ids[written_id]}: each zone has its own")
            ids[written_id] = written
        return zones

    @model_validator(mode="after")
    def _some_zone(self) -> Cloudflare:
        if (self.zone is None) != (self.zone_id is None):
            raise ValueError("zone and zone_id go together: give both, or neither and list the zones under zones")
        if self.zone is None and not self.zones:
            raise ValueError("no zone: give zone and zone_id, or zones (each zone's name and ID)")
        return self

    @property
    def all_zones(self) -> dict[str, str]:
        """Every zone and its ID: `zone` first, then `zones`."""
        return ({self.zone: self.zone_id} if self.zone else {}) | self.zones

    def zone_of(self, name: str) -> str | None:
        """The zone `name` is in: the longest zone that is `name` or ends it after a dot; None when none does."""
        found = [zone for zone in self.all_zones if name == zone or name.endswith(f".{zone}")]
        return max(found, key=len, default=None)


Location = Literal[tuple(HCLOUD_LOCATIONS)]


class ServerGroup(_Model):
    """Servers that run the services placed on them (`services.<name>.servers`)."""

    count: StrictInt = Field(1, ge=1, le=10)
    """How many servers; each service's replicas are spread over them."""
    type: str | None = Field(None, pattern=r"^[a-z]{2,4}[0-9]{2,3}$")
    """The Hetzner server type (`cx33`); default: the smallest that fits each server's share."""
    location: Location | None = None
    """The Hetzner location; default: `target.location`."""
    private_ip: IPv4Address | None = None
    """A fixed address in `target.subnet` (a group of one server only)."""
    docker_subnet: IPv4Network | None = None
    """The subnet of the Docker network the group's containers are on; default: Docker's choice."""


class Sshd(_Model):
    """How the servers' sshd is hardened (a drop-in under /etc/ssh/sshd_config.d, written by cloud-init)."""

    password_auth: Literal[False] = False
    """Always `false`: keys only."""
    root_login: Literal["prohibit-password"] = "prohibit-password"
    """`prohibit-password`: root logs in with its key only, which is how the pipeline deploys."""
    max_auth_tries: StrictInt = Field(3, ge=1, le=10)
    """Attempts per connection before sshd closes it."""


class DockerLogs(_Model):
    """The json-file log driver's rotation, for every container on the servers."""

    max_size: str = Field("10m", pattern=r"^[1-9][0-9]{0,5}[kmg]$")
    """Each log file's size before it rotates (`10m`)."""
    max_file: StrictInt = Field(5, ge=1, le=100)
    """How many rotated files are kept."""


class HcloudTarget(_Model):
    """Hetzner Cloud: servers on a private network behind a load balancer, DNS at Cloudflare."""

    kind: Literal["hcloud"]
    """`hcloud`: Hetzner Cloud servers running the services as containers."""
    location: Location = "fsn1"
    """The Hetzner location of the load balancer, and of each server group that names none."""
    servers: StrictInt = Field(2, ge=1, le=10)
    """Without `server_groups`: how many servers the one group `default` has."""
    server_type: str | None = Field(None, pattern=r"^[a-z]{2,4}[0-9]{2,3}$")
    """Without `server_groups`: the `default` group's server type; default: the smallest that fits."""
    server_groups: dict[Identifier, ServerGroup] = Field({}, max_length=20)
    """Named groups of servers, each running the services placed on it; none: one group `default` of
    `servers` servers."""
    sshd: Sshd = Sshd()
    """The servers' sshd hardening."""
    docker_logs: DockerLogs = DockerLogs()
    """The containers' log rotation."""
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
    remote_dir: VolumePath = "/opt/atl"
    """The folder on each server that holds a folder per server name: its Compose file and router."""
    hcloud_token: SecretRef = "env:HCLOUD_TOKEN"
    """`env:NAME`, NAME holding a Hetzner Cloud API token with read and write access."""
    cloudflare: Cloudflare
    """Where the domains' DNS records are."""
    prometheus_port: Port = 9090
    """Prometheus on 127.0.0.1 of the machine that deploys: it probes the domains through the load balancer."""
    blackbox_port: Port = 9115
    """The blackbox exporter on 127.0.0.1 of the machine that deploys."""
    alertmanager_port: Port = 9093
    """Alertmanager on 127.0.0.1 of the machine that deploys."""

    @field_validator("ssh_public_key")
    @classmethod
    def _public_key(cls, key: str) -> str:
        if not _SSH_PUBLIC_KEY.fullmatch(key.strip()):
            raise ValueError("not an SSH public key such as `ssh-ed25519 AAAA... comment`; never a private key")
        return key.strip()

    @property
    def groups(self) -> dict[str, ServerGroup]:
        """The server groups: those declared, or the one group `default`."""
        return self.server_groups or {"default": ServerGroup(count=self.servers, type=self.server_type)}

    @property
    def network_zone(self) -> str:
        return HCLOUD_LOCATIONS[self.location]

    @property
    def ports(self) -> dict[str, int]:
        """The ports on 127.0.0.1 that the target's processes listen on."""
        return {"prometheus_port": self.prometheus_port, "blackbox_port": self.blackbox_port,
                "alertmanager_port": self.alertmanager_port}


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


class PrometheusSettings(_Model):
    """Prometheus on the machine that deploys."""

    retention: str = Field("15d", pattern=r"^[1-9][0-9]{0,4}(h|d|w|y)$")
    """How long samples are kept (`15d`)."""
    scrape_interval: str = Field("2s", pattern=r"^[1-9][0-9]{0,3}s$")
    """How often every target is scraped and probed (`15s`); the SLO alerts' windows stay as they are."""
    alert_window: duration("1d") | None = None
    """The window over which the SLO alerts average (default: their own, `5m`); shorter for tests and drills; at
    most 1d."""
    alert_for: duration("1d") | None = None
    """How long every alert's condition must hold before it fires (default: each alert's own, 1 to 10 minutes); at
    most 1d."""


_EMAIL = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}$"


class Webhook(_Model):
    url: Annotated[str, text_first(check_url), Field(
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%-]*)?$")]
    """Where Alertmanager posts each notification (JSON): `http(s)://host[:port]/path`, with no secret
    in it (a query string or user part is refused); the secret goes in `token`."""
    token: SecretRef | None = None
    """`env:NAME`, NAME holding the token sent as `Authorization: Bearer`; written only to a 0600 file."""


class Email(_Model):
    to: str = Field(pattern=_EMAIL)
    """Who gets the mail."""
    sender: str = Field(pattern=_EMAIL)
    """Its `From:` address."""
    smarthost: Annotated[str, text_first(check_host_port), Field(pattern=r"^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}$")]
    """The SMTP server, `host:port`."""
    username: str | None = Field(None, pattern=r"^[ -~]{1,256}$")
    """The SMTP login, if the server asks for one."""
    password: SecretRef | None = None
    """`env:NAME`, NAME holding the SMTP password."""
    require_tls: StrictBool = True
    """STARTTLS required."""


class Receiver(_Model):
    """Where notifications go: a webhook, an email address, or both."""

    webhook: Webhook | None = None
    """A URL Alertmanager posts each notification to."""
    email: Email | None = None
    """An address Alertmanager mails each notification to."""

    @model_validator(mode="after")
    def _somewhere(self) -> Receiver:
        if not (self.webhook or self.email):
            raise ValueError("a receiver needs a webhook or an email (or both)")
        return self


class Remediation(_Model):
    """How the pipeline answers the alerts it can act on (docs/operating.md, "Alerts that act")."""

    enabled: StrictBool = True
    """Start a remediation run for each firing alert; off: alerts only notify."""
    cooldown: duration("7d") = "10m"
    """At most one remediation per service in this long; at most 7d."""
    after_deploy: duration("30d") = "1h"
    """A failing service is rolled back only this long after the deploy that changed it; at most 30d."""
    max_failures: StrictInt = Field(2, ge=1, le=10)
    """Failed remediations of a service's release before it is left to a person."""


class Alerting(_Model):
    """Alertmanager on the machine that deploys: where notifications go, and the remediation runs."""

    receivers: dict[Identifier, Receiver] = {}
    """Named receivers; each gets every notification. None: the alerts are still shown and acted on."""
    group_by: list[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]] = ["alertname", "domain"]
    """The labels that make alerts one notification."""
    group_wait: duration("1h") = "10s"
    """How long a new group waits for more alerts before its first notification; at most 1h."""
    group_interval: duration("1d") = "1m"
    """How long before a group's changes are notified; at most 1d."""
    repeat_interval: duration("30d") = "4h"
    """How long before a notification still firing is sent again; at most 30d."""
    remediation: Remediation = Remediation()
    """The remediation runs' guard rails."""


RESTIC_BACKENDS = ("sftp:", "s3:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:")


def _check_repository(value: str) -> str:
    if value.startswith(RESTIC_BACKENDS):
        return check_restic_address(value)
    if ":" in value.split("/")[0]:
        raise ValueError(f"{value[:80]!r}: a repository is a folder, or an address starting with one of "
                         f"{', '.join(RESTIC_BACKENDS)}")
    check_project_folder(value)
    if posixpath.normpath(value).split("/")[0] == ".atl":
        raise ValueError("a repository inside .atl/ is lost with what it backs up: choose a folder outside it "
                         "(another disk, or an sftp: or s3: address)")
    return value


class Keep(_Model):
    """How many snapshots `restic forget` keeps: the newest of each of the last N days, weeks and months."""

    daily: StrictInt = Field(7, ge=0, le=3660)
    """The newest snapshot of each of the last N days."""
    weekly: StrictInt = Field(4, ge=0, le=520)
    """The newest of each of the last N weeks."""
    monthly: StrictInt = Field(12, ge=0, le=1200)
    """The newest of each of the last N months."""


class Backup(_Model):
    """restic backups of what recovers the platform: Terraform's state, the Dagster instance, Caddy's CA
    and certificates, the deployment record and the services' volumes."""

    repository: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_check_repository)]
    """restic's repository: a folder (relative to the project's, never inside `.atl/`), or an address
    (`sftp:user@host:/srv/restic`, `s3:https://host/bucket`), its credentials in restic's environment."""
    password: SecretRef
    """`env:NAME`, NAME holding the repository's password."""
    schedule: Annotated[str, Field(max_length=100), AfterValidator(check_cron)] = "0 3 * * *"
    """When the `backup` schedule runs (cron, UTC)."""
    keep: Keep = Keep()
    """The retention."""
    check_subset: str = Field("10%", pattern=r"^([1-9][0-9]?|100)%$")
    """The share of the repository's data `restic check` reads after each backup."""


class Logs(_Model):
    """The central log store: rsyslog on the machine that deploys, one set of files per source."""

    retention: duration("365d") = "7d"
    """How long a source's rolled files are kept; at most 365d."""
    max_size: str = Field("100Mi", pattern=r"^[1-9][0-9]{0,5}(Ki|Mi|Gi)$")
    """What one source (a service, Caddy, the pipeline) may take on disk, its rolled files included."""


_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
Role = Literal["viewer", "operator"]


def _check_password_hash(text: str) -> str:
    """A bcrypt hash, or env:NAME holding one. Never echoes the value: it may be the password itself."""
    if _BCRYPT.fullmatch(text) or SECRET_REF.fullmatch(text):
        return text
    raise ValueError("write the password's bcrypt hash (`atl utils hash-password` prints one), or env:NAME holding "
                     "it; never the password itself")


class Operator(_Model):
    """A person who signs in to the console."""

    role: Role
    """`viewer`: sees everything and changes nothing; `operator`: also launches and re-executes runs and switches
    sensors and schedules."""
    password_hash: Annotated[str, AfterValidator(_check_password_hash)]
    """The password's bcrypt hash (`atl utils hash-password`), or `env:NAME` holding it."""


class ServiceAccount(_Model):
    """Automation: a forge's webhook, which signs its push notifications, or a program that calls the console
    with a token. Removing the account from the file revokes it."""

    webhook_secret: SecretRef | None = None
    """`env:NAME`: the secret the forge signs its push notifications with (HMAC)."""
    token: SecretRef | None = None
    """`env:NAME`: the token a program signs in to the console with (HTTP basic auth: the account's name and it)."""
    role: Role | None = None
    """A token's role, as an operator's."""

    @model_validator(mode="after")
    def _one_kind(self) -> ServiceAccount:
        if (self.webhook_secret is None) == (self.token is None):
            raise ValueError("a service account has a webhook_secret (a forge's) or a token (a program's): one of them")
        if self.token is not None and self.role is None:
            raise ValueError("an account with a token needs its role: viewer or operator")
        if self.webhook_secret is not None and self.role is not None:
            raise ValueError("a webhook's account only signs push notifications: it takes no role")
        return self


class ConsoleSettings(_Model):
    """The operator console (`make dev`)."""

    hostname: Hostname | None = None
    """Its name once `operators` are declared, when it is served over HTTPS (Caddy's internal CA) with sign-in.
    Default: `ops.` and the first domain's parent (`ops.allthingslinux.org`), or the first domain itself when it
    is an apex (`ops.example.org` for `example.org`, never `ops.org`)."""


SCANNER_FAILED = "checkov"  # the policy of a finding that says Checkov could not scan


def _check_exceptable(policy: str) -> str:
    if policy == SCANNER_FAILED:
        raise ValueError("the scanner's own failure (checkov) cannot be excepted: a plan no one scanned is not let "
                         "through; make Checkov work (`atl utils doctor` says how)")
    return policy


class PolicyException(_Model):
    """A finding the operators accept, and why: it no longer stops a deploy, and is recorded with each plan."""

    policy: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$"), AfterValidator(_check_exceptable)]
    """The policy's name (`production_replicas`) or Checkov's check id (`CKV_SECRET_2`); never `checkov`, the
    scanner's own failure (a plan no one could scan is not let through)."""
    domain: Hostname | None = None
    """Only this domain's finding; default: every finding of the policy."""
    reason: str = Field(min_length=1, max_length=500)
    """Why it does not apply: shown with every plan it lets through."""


class Policy(_Model):
    """The policy checks on every plan: the rules in Rego (shipped, and the project's `policies/*.rego`) and
    Checkov on the rendered Terraform."""

    exceptions: list[PolicyException] = Field([], max_length=200)
    """Findings let through, each with its reason."""


def duration_seconds(duration: str) -> float:
    """A Duration (`90s`, `10m`, `4h`, `1d`) in seconds."""
    return int(duration[:-1]) * UNITS[duration[-1]]


@dataclass(frozen=True)
class Workload:
    """What a service in use runs: its replicas and each one's resources."""

    replicas: int
    resources: Resources
    autoscale: Autoscale | None = None

    @property
    def most(self) -> int:
        """The most replicas it may run: what capacity must hold."""
        return self.autoscale.max if self.autoscale else self.replicas


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
    prometheus: PrometheusSettings = PrometheusSettings()
    """Prometheus's retention and scrape interval."""
    alerting: Alerting = Alerting()
    """Alertmanager's receivers and grouping, and the remediation runs."""
    backup: Backup | None = None
    """Scheduled restic backups; none: nothing is backed up."""
    logs: Logs = Logs()
    """The central log store's retention."""
    policy: Policy = Policy()
    """The exceptions to the policy checks on every plan."""
    console: ConsoleSettings = ConsoleSettings()
    """The operator console's name."""
    operators: dict[Identifier, Operator] = Field({}, max_length=200)
    """Who may sign in to the console, by user name, with their role; none: the console asks no one (loopback only)."""
    service_accounts: dict[Identifier, ServiceAccount] = Field({}, max_length=200)
    """Forges' webhooks and programs, by name, each with its own secret."""

    @property
    def console_hostname(self) -> str:
        if self.console.hostname:
            return self.console.hostname
        first = next((domain.name for domain in self.domains if "." in domain.name), "localhost")
        parent = first.split(".", 1)[-1]
        return f"ops.{parent if '.' in parent else first}"  # never under a top-level domain alone (`ops.org`)

    @property
    def serving(self) -> list[Domain]:
        """The domains that are deployed: every one but those disabled and those served elsewhere."""
        return [domain for domain in self.domains if domain.enabled and not domain.external]

    def workloads(self) -> dict[str, Workload]:
        """Each defined service that runs, with its replicas and resources: those an enabled domain routes
        to (the first such domain's), then the internal ones (their own)."""
        found: dict[str, Workload] = {}
        for domain in self.serving:
            if domain.service in self.services and domain.service not in found:
                found[domain.service] = Workload(domain.replicas, domain.resources,
                                                 self.services[domain.service].autoscale)
        for name, service in self.services.items():
            if service.internal and name not in found:
                found[name] = Workload(service.replicas or 1, service.resources or Resources(), service.autoscale)
        return found
