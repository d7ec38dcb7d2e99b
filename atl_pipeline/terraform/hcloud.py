"""What the hcloud templates declare, worked out from the configuration: the servers and the
server type their share of the replicas needs, and each domain's DNS records.

Replicas are spread evenly, so each server must hold ceil(replicas / servers) replicas of
every service, plus what the system itself takes (the OS, Docker and the router).
"""

from __future__ import annotations

import math

from atl_pipeline.config import Config
from atl_pipeline.config.model import Domain, HcloudTarget

GiB = 2**30
# Hetzner's shared-vCPU x86 types, smallest first: (name, millicores, memory), offered in
# the EU locations. Set `target.server_type` to use any other.
SERVER_TYPES = (("cx23", 2000, 4 * GiB), ("cx33", 4000, 8 * GiB), ("cx43", 8000, 16 * GiB),
                ("cx53", 16000, 32 * GiB))
SYSTEM = (500, 1 * GiB)  # per server: the OS, Docker and the router
SIZED_LOCATIONS = ("fsn1", "nbg1", "hel1")  # where SERVER_TYPES are offered
MAX_NAME = 56  # `<project>-<environment>-<n>` must fit Hetzner's 63-character labels
NEVER_PROXIED = {"mail", "smtp", "imap", "pop", "pop3", "mx", "autoconfig", "autodiscover", "ftp", "ssh", "sftp"}
UNPROXIED_TTL = 300  # a proxied record's TTL is Cloudflare's automatic one, 1


def resource_name(config: Config) -> str:
    """What names the servers (`<name>-<n>`) and labels every resource on hcloud."""
    return f"{config.project}-{config.environment}"


def server_share(config: Config) -> tuple[int, int]:
    """The millicores and bytes one server needs for its share of the replicas, the system included."""
    servers = config.target.servers
    millicores, bytes_ = SYSTEM
    for domain in config.first_domains().values():
        on_one = math.ceil(domain.replicas / servers)
        millicores += on_one * domain.resources.millicores
        bytes_ += on_one * domain.resources.bytes
    return millicores, bytes_


def fitting_server_type(config: Config) -> str | None:
    """The smallest known server type that holds a server's share; None when none does."""
    millicores, bytes_ = server_share(config)
    return next((name for name, cores, memory in SERVER_TYPES if cores >= millicores and memory >= bytes_), None)


def never_proxied(name: str) -> bool:
    """Names whose traffic is not HTTP through Cloudflare's proxy: mail and the like."""
    return name.split(".", 1)[0] in NEVER_PROXIED


def proxied(domain: Domain, target: HcloudTarget) -> bool:
    if never_proxied(domain.name):
        return False
    return target.cloudflare.proxied if domain.proxied is None else domain.proxied


def hcloud_inputs(config: Config) -> dict:
    """The hcloud templates' data (each value is rendered through the `hcl` filter)."""
    target: HcloudTarget = config.target
    prefix = resource_name(config)
    records = {}
    for domain in config.serving:
        on = proxied(domain, target)
        records[domain.name] = {"proxied": on, "ttl": 1 if on else UNPROXIED_TTL}
    return {
        "name": prefix,
        "location": target.location,
        "network_zone": target.network_zone,
        "network": str(target.network),
        "subnet": str(target.subnet),
        "server_type": target.server_type or fitting_server_type(config),
        "servers": [f"{prefix}-{index}" for index in range(1, target.servers + 1)],
        "image": target.image,
        "load_balancer_type": target.load_balancer_type,
        "ssh_public_key": target.ssh_public_key,
        "ssh_from": [str(network) for network in target.ssh_from],
        "ssh_port": target.ssh_port,
        "zone": target.cloudflare.zone,
        "zone_id": target.cloudflare.zone_id,
        "records": records,
        "certificate_domains": [domain.name for domain in config.serving if domain.ssl],
        "labels": {"atl-project": prefix},
    }
