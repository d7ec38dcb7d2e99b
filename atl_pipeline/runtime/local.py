"""The local target's runtime: deploy what Terraform's outputs declare, doing the least.

A service release runs as one supervisord group in one of two port slots (the `ports` or
the `standby_ports` of Terraform's output; a new release takes the slot the serving one
does not use). A changed service (new release, or a new
replica count) rolls: its new group starts in the other slot, every replica must answer
its health path, Caddy switches to it in one configuration load, the old group drains and
stops. Unchanged groups are not touched, and Caddy is not reloaded when nothing changed.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline.certificates import ServedCertificate, renew
from atl_pipeline.config.model import PORT_BLOCK, LocalTarget
from atl_pipeline.files import replace_file
from atl_pipeline.project import Project
from atl_pipeline.runtime import http
from atl_pipeline.runtime.caddy import (
    CaddyAdmin,
    CaddyError,
    LoadBalancer,
    Route,
    base_config,
    caddy_config,
    hosts_by_route,
    last_error,
)
from atl_pipeline.runtime.http import Frontend
from atl_pipeline.runtime.rolling import (
    DeployError,
    Domains,
    Replica,
    Runtime,
    ServiceOutcome,
    Services,
    domains_record,
    record_of,
)
from atl_pipeline.runtime.supervisor import GIVEN_UP, ReplicaSpec, Supervisor, ini_value
from atl_pipeline.targets.outputs import ServiceOutput
from atl_pipeline.timings import DEFAULT_TIMINGS, Timings

CRASHED = ("BACKOFF", "EXITED", "FATAL")


@dataclass(frozen=True)
class Group:
    """A running service release: the supervisord group `svc_<service>_<release>_s<slot>`."""

    name: str
    service: str
    release: str
    slot: int
    processes: tuple[dict, ...] = ()

    @classmethod
    def parse(cls, name: str, processes: list[dict]) -> Group | None:
        parts = name.split("_")
        if len(parts) != 4 or parts[0] != "svc" or parts[3] not in ("s0", "s1"):
            return None
        return cls(name, parts[1], parts[2], int(parts[3][1]), tuple(sorted(processes, key=lambda p: p["name"])))

    @classmethod
    def new(cls, service: str, release: str, slot: int) -> Group:
        return cls(f"svc_{service}_{release}_s{slot}", service, release, slot)


def deployed_runtime(project: Project, timings: Timings = DEFAULT_TIMINGS) -> LocalRuntime:
    """The runtime as the last deployment left it (default ports when nothing was deployed)."""
    record = project.state_dir / "runtime" / "deployed.json"
    ports = json.loads(record.read_text()).get("ports", {}) if record.exists() else {}
    return LocalRuntime(project, LocalTarget(**ports), timings)


class LocalRuntime(Runtime):
    def __init__(self, project: Project, target: LocalTarget, timings: Timings = DEFAULT_TIMINGS):
        self.project = project
        self.target = target
        self.timings = timings
        self.lb = LoadBalancer("127.0.0.1", target.http_port, target.https_port, target.admin_port,
                               project.state_dir / "runtime" / "caddy")
        self.supervisor = Supervisor(project.state_dir / "runtime")
        self.caddy = CaddyAdmin(self.lb.admin_url)
        self.deployed_file = project.state_dir / "runtime" / "deployed.json"

    def start(self) -> None:
        """supervisord and Caddy running, Caddy's admin API answering at the configured address."""
        for folder in (self.lb.data_dir, self.lb.config_dir):
            folder.mkdir(parents=True, exist_ok=True)
        base = self.lb.root / "base.json"
        base.write_text(json.dumps(base_config(self.lb), indent=2))
        self.supervisor.ensure_running(self._caddy_program(base))
        self._move_admin_endpoint()
        self.caddy.wait_ready(self._caddy_crashed)

    def _move_admin_endpoint(self) -> None:
        """Caddy resumes its last configuration, so a new admin port is set through the old one."""
        old = self.deployed().get("ports", {}).get("admin_port", self.lb.admin_port)
        if old != self.lb.admin_port:
            previous = CaddyAdmin(f"http://{self.lb.address}:{old}")
            previous.wait_ready()
            previous.load(base_config(self.lb))

    def restart_caddy(self) -> None:
        """Caddy stopped and started again (it resumes its configuration); for renewing certificates."""
        self.supervisor.rpc.stopProcess("caddy", True)
        self.supervisor.rpc.startProcess("caddy", True)
        self.caddy.wait_ready(self._caddy_crashed)

    def renew_certificates(self, domains: list[str]) -> list[ServedCertificate]:
        """Caddy issues these domains' certificates anew (see atl_pipeline.certificates)."""
        return renew(self.lb, self.restart_caddy, domains)

    def _caddy_crashed(self) -> str | None:
        """Why Caddy cannot start, once supervisord has seen it exit as it started (the error it logged)."""
        state = next((p["statename"] for p in self.supervisor.processes() if p["name"] == "caddy"), None)
        return last_error(self.supervisor.logs / "caddy.log") if state in ("BACKOFF", "FATAL") else None

    def stop(self) -> bool:
        """Stop every process and supervisord (or what it left running); what was deployed is kept."""
        running = self.supervisor.is_running() or bool(self.supervisor.strays())
        self.supervisor.shutdown()
        return running

    @property
    def frontend(self) -> Frontend:
        return self.lb.frontend

    def groups(self) -> dict[str, list[Group]]:
        """The running service releases, by service."""
        by_group: dict[str, list[dict]] = {}
        for process in self.supervisor.processes():
            by_group.setdefault(process["group"], []).append(process)
        groups: dict[str, list[Group]] = {}
        for name, processes in by_group.items():
            if group := Group.parse(name, processes):
                groups.setdefault(group.service, []).append(group)
        return groups

    def deploy(self, services: Services, domains: Domains) -> list[ServiceOutcome]:
        """Make what runs match Terraform's `services` and `domains` outputs."""
        with self.project.lock():
            return self._deploy(self.desired(services), domains)

    def _deploy(self, services: Services, domains: Domains) -> list[ServiceOutcome]:
        self.start()
        running = self._without_orphans(self.groups())
        serving: dict[str, Group] = {}
        started: list[Group] = []
        retired = [group for name, groups in running.items() if name not in services for group in groups]
        actions: dict[str, str] = {}
        try:
            for name, spec in services.items():
                groups = running.get(name, [])
                current = next((g for g in groups if g.release == spec.release
                                and len(g.processes) == spec.replicas), None)
                retired += [group for group in groups if group is not current]
                if current:
                    serving[name] = current
                    stopped = [p["name"] for p in current.processes if p["statename"] in GIVEN_UP]
                    self.supervisor.start(current.name, stopped)
                    actions[name] = "repaired" if stopped else "unchanged"
                else:
                    serving[name] = self._start_group(name, spec, slot=1 - groups[0].slot if groups else 0)
                    started.append(serving[name])
                    actions[name] = "rolled" if groups else "started"
            for name, group in serving.items():
                self._wait_healthy(group, services[name])
            self._route(services, domains, serving)
        except BaseException:
            for group in started:  # what ran before keeps serving
                self.supervisor.remove_group(group.name)
            raise
        if retired:
            time.sleep(self.timings.drain_seconds)  # Caddy's health checks see the new replicas before the old ones go
        for group in retired:
            self.supervisor.remove_group(group.name)
        stopped = [ServiceOutcome(g.service, g.release, "stopped") for g in retired if g.service not in services]
        return self._outcomes(services, serving, actions) + stopped

    def _without_orphans(self, running: dict[str, list[Group]]) -> dict[str, list[Group]]:
        """Groups that no deployment ever routed to (an interrupted deploy's) are removed."""
        routed = {spec.group for spec in self.deployed_services().values()}
        kept = {}
        for service, groups in running.items():
            for group in groups:
                if group.name not in routed:
                    self.supervisor.remove_group(group.name)
            kept[service] = [group for group in groups if group.name in routed]
        return kept

    def _start_group(self, name: str, spec: ServiceOutput, slot: int) -> Group:
        group = Group.new(name, spec.release, slot)
        replicas = [ReplicaSpec(
            argv=[argument.format(port=port, replica=index, service=name) for argument in spec.command],
            # one malloc arena: each further one reserves 64 MiB of the address space the limit counts
            env={"PORT": str(port), "ATL_SERVICE": name, "ATL_RELEASE": spec.release,
                 "ATL_REPLICA": str(index), "MALLOC_ARENA_MAX": "1", **self._volumes(name, spec)},
            memory_bytes=spec.memory_bytes, nice=cpu_nice(spec.cpu_millicores),
        ) for index, port in enumerate(spec.slot_ports(slot))]
        self.supervisor.add_group(group.name, replicas)
        return group

    def _volumes(self, name: str, spec: ServiceOutput) -> dict[str, str]:
        """Each volume's folder under .atl/volumes/<service>/, as ATL_VOLUME_<NAME> (it outlives releases)."""
        found = {}
        for volume in spec.volumes:
            folder = self.project.state_dir / "volumes" / name / volume
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            found[f"ATL_VOLUME_{volume.upper().replace('-', '_')}"] = str(folder)
        return found

    def _wait_healthy(self, group: Group, spec: ServiceOutput) -> None:
        deadline = time.monotonic() + self.timings.health_timeout
        for port in spec.slot_ports(group.slot):
            while not (answer := http.get(("127.0.0.1", port), "127.0.0.1", spec.health_path,
                                          tls=False, timeout=2)).ok:
                self._fail_if_crashed(group)
                if time.monotonic() > deadline:
                    raise DeployError(
                        f"{group.service} release {group.release}: the replica on port {port} did not answer "
                        f"{spec.health_path} with 2xx within {self.timings.health_timeout:.0f} s "
                        f"({answer.error or f'HTTP {answer.status}'}); its log is in {self.supervisor.logs}. "
                        "What ran before still serves.")
                time.sleep(0.1)
        while any(p["statename"] != "RUNNING" for p in self.supervisor.processes() if p["group"] == group.name):
            self._fail_if_crashed(group)
            if time.monotonic() > deadline:
                raise DeployError(f"{group.service} release {group.release}: supervisord does not report its "
                                  f"replicas running; see {self.supervisor.logs}. What ran before still serves.")
            time.sleep(0.1)

    def _fail_if_crashed(self, group: Group) -> None:
        """A replica that exits while starting fails the gate at once, with the end of its log."""
        for process in self.supervisor.processes():
            if process["group"] == group.name and process["statename"] in CRASHED:
                log = Path(process["stdout_logfile"])
                tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
                raise DeployError(
                    f"{group.service} release {group.release}: replica {process['name']} exited while starting "
                    f"({process['statename']}); the end of {log}:\n" + "\n".join(tail)
                    + "\nWhat ran before still serves.")

    def drift(self, services: Services, domains: Domains) -> list[str]:
        """How what runs differs from Terraform's `services` and `domains` outputs; empty when it matches."""
        if not self.supervisor.is_running():
            return ["supervisord is not running: no service and no load balancer runs"]
        found = []
        running = self.groups()
        for name, spec in sorted(self.desired(services).items()):
            current = [g for g in running.get(name, []) if g.release == spec.release]
            if not current:
                found.append(f"service {name}: release {spec.release} is not running")
            elif len(current[0].processes) != spec.replicas:
                found.append(f"service {name}: {len(current[0].processes)} replicas run, {spec.replicas} declared")
            found += [f"service {name}: replica {p['name']} is {p['statename']}"
                      for g in current for p in g.processes if p["statename"] != "RUNNING"]
        found += [f"service {name}: runs, but is not declared" for name in sorted(set(running) - set(services))]
        try:
            if self.caddy.config() != self._caddy_config(services, domains):
                found.append("load balancer: its routes differ from the declared domains")
        except CaddyError as error:
            found.append(f"load balancer: Caddy's admin API does not answer ({type(error).__name__})")
        return found

    def status(self) -> dict:
        """The load balancer, each deployed domain (probed through it) and each service's replicas."""
        running = self.supervisor.is_running()
        live = {group.name: group for groups in (self.groups() if running else {}).values() for group in groups}
        services = []
        for name, spec in sorted(self.deployed_services().items()):
            group = live.get(spec.group)
            replicas = [{"pid": p["pid"] or None, "port": port, "state": p["statename"]}
                        for p, port in zip(group.processes, spec.slot_ports(spec.slot), strict=False)] if group else []
            services.append({"name": name, "release": spec.release, "replicas": replicas})
        domains = sorted(self.deployed_domains().items())
        paths = {name: spec.health_path for name, spec in self.deployed_services().items()}
        with ThreadPoolExecutor(max_workers=16) as pool:
            healthy = list(pool.map(lambda item: running and self._answers(item[0], item[1].ssl,
                                                                           paths[item[1].service]), domains))
        lb = self.lb
        return {
            "load_balancer": {"address": lb.address, "http_port": lb.http_port, "https_port": lb.https_port,
                              "ca_cert": str(lb.ca_cert), "running": running},
            "domains": [{"name": name, "url": self._url(name, domain.ssl), "service": domain.service,
                         "ssl": domain.ssl, "healthy": ok}
                        for (name, domain), ok in zip(domains, healthy, strict=True)],
            "services": services,
            "monitoring": {"prometheus_url": f"http://127.0.0.1:{self.target.prometheus_port}"},
        }

    def _answers(self, name: str, ssl: bool, path: str) -> bool:
        port = self.lb.https_port if ssl else self.lb.http_port
        return http.get((self.lb.address, port), name, path, tls=ssl, ca=self.lb.ca_cert, timeout=3).ok

    def _url(self, name: str, ssl: bool) -> str:
        return f"https://{name}:{self.lb.https_port}/" if ssl else f"http://{name}:{self.lb.http_port}/"

    def _caddy_config(self, services: Services, domains: Domains) -> dict:
        """Each domain routed to its service's whole port block."""
        routes = [Route(tuple(names), ssl, port_block("127.0.0.1", services[service].port),
                        services[service].health_path) for (service, ssl), names in hosts_by_route(domains).items()]
        return caddy_config(self.lb, routes)

    def _route(self, services: Services, domains: Domains, serving: dict[str, Group]) -> None:
        """Point each domain at its service's port block: one Caddy load, only when the routes changed."""
        config = self._caddy_config(services, domains)
        if self.caddy.config() != config:
            self.caddy.load(config)
        record = {"ports": self.target.ports, "domains": domains_record(domains),
                  **record_of(self.deployed(), {name: services[name] for name in serving},
                              {name: group.slot for name, group in serving.items()},
                              {name: group.name for name, group in serving.items()})}
        replace_file(self.deployed_file, json.dumps(record, indent=2))

    def _outcomes(self, services: dict[str, dict], serving: dict[str, Group],
                  actions: dict[str, str]) -> list[ServiceOutcome]:
        live = {group.name: group for groups in self.groups().values() for group in groups}
        outcomes = []
        for name, group in serving.items():
            ports = services[name].slot_ports(group.slot)
            replicas = tuple(Replica(port, pid=p["pid"], state=p["statename"])
                             for p, port in zip(live[group.name].processes, ports, strict=True))
            outcomes.append(ServiceOutcome(name, group.release, actions[name], replicas))
        return outcomes

    def _caddy_program(self, base: Path) -> str:
        logs = ini_value(self.supervisor.logs)
        return f"""\
[program:caddy]
command={ini_value(Path(sys.executable).parent / "caddy")} run --config {ini_value(base)} --resume
environment=HOME="{ini_value(self.lb.root)}",XDG_DATA_HOME="{ini_value(self.lb.data_dir)}",\
XDG_CONFIG_HOME="{ini_value(self.lb.config_dir)}"
autorestart=true
startsecs=1
stopsignal=TERM
stdout_logfile={logs}/caddy.log
redirect_stderr=true
"""


def port_block(address: str, port: int) -> tuple[str, ...]:
    """Every address a service's replica may listen on at `address`: its whole port block, both slots."""
    return tuple(f"{address}:{number}" for number in range(port, port + PORT_BLOCK))


def cpu_nice(millicores: int) -> int:
    """A scheduling weight: a full core (or more) runs at nice 0, a tenth of a core at nice 9."""
    return max(0, min(19, round(10 * (1 - millicores / 1000))))
