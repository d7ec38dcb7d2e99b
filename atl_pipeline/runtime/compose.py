"""What each hcloud server runs, as a Docker Compose file: the service replicas placed on it
and its router.

Replica r of a service runs on server r mod n (servers in name order), as the Compose
service `<service>-<release>-s<slot>-<r>`, published on the server's private address at the
port its slot gives it (as on the local target: `ports` or `standby_ports`, releases
alternating), running the service's command with its placeholders filled in when
domains.yml gives one (else the image's own). The router is Caddy on the private address, port 80, where the load
balancer sends HTTP and HTTPS alike: it routes by Host to every address a replica of the
service may listen on, on every server, and its health checks find the ones that answer.
It answers the load balancer's own check, `/.atl/ready`, and redirects plain HTTP to HTTPS
for `ssl: true` domains (the load balancer says which in X-Forwarded-Proto).
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

import yaml

from atl_pipeline.runtime.caddy import Route, hosts_by_route, proxy, unknown_host
from atl_pipeline.runtime.cloudflare import CLOUDFLARE_RANGES
from atl_pipeline.runtime.rolling import Domains, Services
from atl_pipeline.targets.outputs import ServerOutput, ServiceOutput

Servers = dict[str, ServerOutput]
Group = tuple[str, ServiceOutput, int]  # a service, its output, the slot its release runs in

ROUTER_IMAGE = "caddy:2.11"
READY_PATH = "/.atl/ready"


@dataclass(frozen=True)
class Project:
    """What a server's Compose project takes from the target's settings."""

    name: str  # the Compose project's name, on every server
    log_size: str = "10m"  # the json-file driver's rotation (target.docker_logs)
    log_files: int = 5
    subnets: dict[str, str] = field(default_factory=dict)  # server group -> its Docker network's subnet

    @property
    def logging(self) -> dict:
        return {"driver": "json-file", "options": {"max-size": self.log_size, "max-file": str(self.log_files)}}


def placement(replicas: int, servers: list[str]) -> dict[str, list[int]]:
    """The replica indexes each of `servers` runs (none on any other server)."""
    ordered = sorted(servers)
    placed = {server: [r for r in range(replicas) if r % len(ordered) == index] for index, server in enumerate(ordered)}
    return defaultdict(list, placed)


def compose_file(project: Project, server: str, servers: Servers, groups: list[Group], router_json: str) -> str:
    """The Compose file of `server`: its replicas of each (service, spec, slot) group (an old and a
    new one while a release rolls in), their volumes, and the router with `router_json`."""
    entries = {"router": {
        "image": ROUTER_IMAGE, "command": ["caddy", "run", "--config", "/etc/atl/router.json"],
        "network_mode": "host", "volumes": ["./router.json:/etc/atl/router.json:ro"],
        # a new router.json recreates the router: Caddy reads it only when it starts
        "labels": {"atl.router": hashlib.sha256(router_json.encode()).hexdigest()[:12]},
        "restart": "unless-stopped", "logging": project.logging,
    }}
    volumes = {}
    for entry, service, spec, replica, port in replicas_on(server, servers, groups):
        entries[entry] = _replica(service, spec, replica, port, str(servers[server].private_ip), project.logging)
        volumes.update({f"{service}-{name}": {} for name in spec.volumes})
    document = {"name": project.name, "services": entries, **({"volumes": volumes} if volumes else {})}
    if subnet := project.subnets.get(servers[server].group):
        document["networks"] = {"default": {"ipam": {"config": [{"subnet": subnet}]}}}
    return yaml.safe_dump(document, sort_keys=False)


def replicas_on(server: str, servers: Servers, groups: list[Group]) -> list[tuple]:
    """(Compose service name, service, spec, replica, port) of each replica of the groups on `server`:
    a service's replicas are spread over the servers of its group."""
    found = []
    for service, spec, slot in sorted(groups, key=lambda group: (group[0], group[2])):
        port_of = spec.slot_ports(slot)
        for replica in placement(spec.replicas, group_servers(servers, spec))[server]:
            found.append((f"{service}-{spec.release}-s{slot}-{replica}", service, spec, replica, port_of[replica]))
    return found


def group_servers(servers: Servers, spec: ServiceOutput) -> list[str]:
    """The servers of the service's group."""
    return [name for name, server in servers.items() if server.group == (spec.servers or "default")]


def _replica(service: str, spec: ServiceOutput, replica: int, port: int, private_ip: str, logging: dict) -> dict:
    inner = spec.container_port or port  # where the container listens; `port` is where it is published
    filled = functools.partial(_filled, port=inner, replica=replica, service=service)
    probe = filled(spec.health_command) if spec.health_command else [
        "curl", "-fsS", f"http://127.0.0.1:{inner}{spec.health_path}"]
    entry = {
        "image": spec.image,
        "environment": {"PORT": str(inner), "ATL_SERVICE": service, "ATL_RELEASE": spec.release,
                        "ATL_REPLICA": str(replica)},
        # the TCP ports as they are (one replica per server): the load balancer passes them on
        "ports": [f"{private_ip}:{port}:{inner}", *(f"{private_ip}:{n}:{n}" for n in spec.tcp_ports)],
        "deploy": {"resources": {"limits": {"cpus": f"{spec.cpu_millicores / 1000:g}",
                                            "memory": str(spec.memory_bytes)}}},
        "healthcheck": {"test": ["CMD", *probe], "interval": "5s", "timeout": "3s", "retries": 3,
                        "start_period": "10s"},
        "restart": "unless-stopped",
        "logging": logging,
    }
    if spec.volumes:
        entry["volumes"] = [f"{service}-{name}:{path}" for name, path in spec.volumes.items()]
    if spec.command:
        entry["command"] = filled(spec.command)
    return entry


def _filled(argv: list[str], **placeholders: object) -> list[str]:
    """The arguments with their placeholders filled in, `$` doubled: Compose would read `$NAME` in a
    value as one of its own variables."""
    return [argument.format(**placeholders).replace("$", "$$") for argument in argv]


def router_config(services: Services, domains: Domains, servers: Servers, listen: str, load_balancer: str,
                  operators: tuple[str, ...]) -> dict:
    """Caddy's configuration for one server's router (the same on every server but `listen`).

    A domain proxied by Cloudflare is served only to Cloudflare's edge and to the `operators`
    (the ranges the pipeline probes from); anyone else who reaches the load balancer's own
    addresses gets 403. The client is the address that connected to the load balancer, which
    the load balancer (`load_balancer`, its private address) appends to X-Forwarded-For: read
    from the right (`trusted_proxies_strict`), so an address a client puts there itself is never
    taken for its own.
    """
    routes = [_ready()]
    proxied = sorted(name for name, domain in domains.items() if domain.proxied)
    if proxied:
        routes.append(_only_through_cloudflare(proxied, operators))
    for (service, ssl), names in hosts_by_route(domains).items():
        spec = services[service]
        upstreams = tuple(f"{servers[server].private_ip}:{port}"
                          for slot in (0, 1) for server in sorted(group_servers(servers, spec))
                          for port in _ports_on(spec.slot_ports(slot), spec.replicas, server,
                                                group_servers(servers, spec)))
        route = Route(tuple(names), ssl, upstreams, spec.health_path)
        if ssl:
            routes.append(_to_https(route))
        routes.append(proxy(route))
    routes.append(unknown_host())
    return {"admin": {"disabled": True},
            "apps": {"http": {"servers": {"router": {
                "listen": [f"{listen}:80"], "routes": routes, "automatic_https": {"disable": True},
                "trusted_proxies": {"source": "static", "ranges": [f"{load_balancer}/32"]},
                "client_ip_headers": ["X-Forwarded-For"], "trusted_proxies_strict": 1}}}}}


def _only_through_cloudflare(hosts: list[str], operators: tuple[str, ...]) -> dict:
    return {"match": [{"host": hosts, "not": [{"client_ip": {"ranges": [*CLOUDFLARE_RANGES, *operators]}}]}],
            "terminal": True, "handle": [{
                "handler": "static_response", "status_code": 403,
                "body": "This site is reached through Cloudflare, not at this address.\n"}]}


def _ports_on(ports: list[int], replicas: int, server: str, servers: list[str]) -> list[int]:
    """Of a slot's ports, those of the replicas `server` runs."""
    return [ports[r] for r in placement(replicas, servers)[server]]


def _ready() -> dict:
    return {"match": [{"path": [READY_PATH]}], "terminal": True,
            "handle": [{"handler": "static_response", "status_code": 200, "body": "ready\n"}]}


def _to_https(route: Route) -> dict:
    return {"match": [{"host": list(route.hosts), "header": {"X-Forwarded-Proto": ["http"]}}], "terminal": True,
            "handle": [{"handler": "static_response", "status_code": 308,
                        "headers": {"Location": ["https://{http.request.host}{http.request.uri}"]}}]}
