"""What runs on the local target, and whether it answers: `atl infra status`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from atl_pipeline.runtime import http
from atl_pipeline.runtime.caddy import LoadBalancer
from atl_pipeline.runtime.local import LocalRuntime
from atl_pipeline.runtime.rolling import SLOT_PORTS


def status(runtime: LocalRuntime) -> dict:
    """The load balancer, each deployed domain (probed through it) and each service's replicas."""
    lb = runtime.lb
    deployed = runtime.deployed()
    running = runtime.supervisor.is_running()
    live = {group.name: group for groups in (runtime.groups() if running else {}).values() for group in groups}
    services = []
    for name, spec in sorted(deployed.get("services", {}).items()):
        group = live.get(spec["group"])
        replicas = [{"pid": p["pid"] or None, "port": port, "state": p["statename"]}
                    for p, port in zip(group.processes, spec[SLOT_PORTS[spec["slot"]]], strict=False)] if group else []
        services.append({"name": name, "release": spec["release"], "replicas": replicas})
    domains = sorted(deployed.get("domains", {}).items())
    paths = {name: spec["health_path"] for name, spec in deployed.get("services", {}).items()}
    with ThreadPoolExecutor(max_workers=16) as pool:
        healthy = list(pool.map(lambda item: running and _answers(runtime.lb, item[0], item[1]["ssl"],
                                                                  paths[item[1]["service"]]), domains))
    return {
        "load_balancer": {"address": lb.address, "http_port": lb.http_port, "https_port": lb.https_port,
                          "ca_cert": str(lb.ca_cert), "running": running},
        "domains": [{"name": name, "url": _url(runtime, name, domain["ssl"]), "service": domain["service"],
                     "ssl": domain["ssl"], "healthy": ok} for (name, domain), ok in zip(domains, healthy, strict=True)],
        "services": services,
        "monitoring": {"prometheus_url": f"http://127.0.0.1:{runtime.target.prometheus_port}"},
    }


def _answers(lb: LoadBalancer, name: str, ssl: bool, path: str) -> bool:
    port = lb.https_port if ssl else lb.http_port
    return http.get((lb.address, port), name, path, tls=ssl, ca=lb.ca_cert, timeout=3).ok


def _url(runtime: LocalRuntime, name: str, ssl: bool) -> str:
    return f"https://{name}:{runtime.lb.https_port}/" if ssl else f"http://{name}:{runtime.lb.http_port}/"
