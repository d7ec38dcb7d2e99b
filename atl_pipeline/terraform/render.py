"""Render a configuration into Terraform files, every value escaped as an HCL literal.

The templates live in `terraform_templates/<target kind>/*.tf.j2`. Each `{{ ... }}` must
pass through the `hcl` filter, which turns a Python value into an HCL literal (strings
quoted, with `${` and `%{` escaped so no value can become an interpolation or a
directive); a template that prints anything else fails to render.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

from atl_pipeline.config import Config
from atl_pipeline.config.model import MAX_REPLICAS
from atl_pipeline.errors import AtlError
from atl_pipeline.files import update_file
from atl_pipeline.targets import Target, target_of

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


class RenderError(AtlError):
    """The templates could not render this configuration, or rendered something unexpected."""


class Hcl(str):
    """Text that is already an HCL literal."""


def hcl(value: object) -> Hcl:
    """The HCL literal of None, a bool, an int, a string, or a list or dict of these."""
    if value is None:
        return Hcl("null")
    if isinstance(value, bool):
        return Hcl("true" if value else "false")
    if isinstance(value, int):
        return Hcl(str(value))
    if isinstance(value, str):
        return Hcl(f'"{_escape(value)}"')
    if isinstance(value, list | tuple):
        return Hcl("[" + ", ".join(hcl(item) for item in value) + "]")
    if isinstance(value, dict):
        items = ", ".join(f"{hcl(str(key))} = {hcl(item)}" for key, item in value.items())
        return Hcl(f"{{ {items} }}" if items else "{}")  # as `terraform fmt` writes it
    raise RenderError(f"no HCL literal for a {type(value).__name__}")


def _escape(text: str) -> str:
    text = "".join(_ESCAPES.get(char, char) for char in text)
    text = _CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return text.replace("${", "$${").replace("%{", "%%{")


def _only_hcl(value: object) -> object:
    if not isinstance(value, Hcl):
        raise RenderError(f"a template printed {str(value)[:60]!r} without the hcl filter")
    return value


@dataclass(frozen=True)
class Rendered:
    """Terraform files by name, the data the templates were given, and the target they are for."""

    files: dict[str, str]
    inputs: dict
    target: Target


def files_digest(files: Mapping[str, str]) -> str:
    """Of rendered Terraform files, by name: what the last apply and the policy scan are kept by."""
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def terraform_inputs(config: Config, counts: Mapping[str, int] | None = None) -> dict:
    """What the templates declare: each service in use and each domain, plus the state backend. `counts`:
    the replicas of the services that scale (atl_pipeline.operations.autoscale), in place of where they start."""
    counts = counts or {}
    services: dict[str, dict] = {}
    for name, workload in config.workloads().items():
        service = config.services[name]
        spec = {
            "command": service.command,
            "container_port": service.container_port,
            "cpu_millicores": workload.resources.millicores,
            "health_command": service.health.command,
            "health_path": service.health.path,
            "image": service.image,
            "memory_bytes": workload.resources.bytes,
            "metrics_path": service.metrics.path if service.metrics else None,
            "port": service.port,
            "servers": service.servers,
            "tcp_ports": service.tcp_ports,
            "volumes": service.volumes,
        }
        release = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        services[name] = {**spec, "release": release, "replicas": counts.get(name, workload.replicas),
                          "standby_port": service.port + MAX_REPLICAS}
    domains = {
        d.name: {
            "cpu_millicores": d.resources.millicores,
            "memory_bytes": d.resources.bytes,
            "monitoring": d.monitoring,
            "replicas": counts.get(d.service, d.replicas),
            "service": d.service,
            "ssl": d.ssl,
            "url": f"{'https' if d.ssl else 'http'}://{d.name}/",
        }
        for d in config.serving
    }
    backend = {"kind": config.state.backend}
    if config.state.backend == "pg":
        backend["schema_name"] = config.state.schema_name or default_schema_name(config)
    return {"backend": backend, "services": services, "domains": domains, **target_of(config).template_inputs()}


def default_schema_name(config: Config) -> str:
    """`atl_<project>__<environment>` in SQL's alphabet, kept to PostgreSQL's 63 characters."""
    name = f"atl_{config.project}__{config.environment}".replace("-", "_")
    if len(name) > 63:
        name = f"{name[:50]}_{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return name


def render(config: Config, templates: Path, counts: Mapping[str, int] | None = None) -> Rendered:
    """The templates of the configuration's kind of target (`templates/<kind>/`), rendered (with the
    `counts` of the services that scale)."""
    target = target_of(config)
    folder = templates / target.kind
    if not folder.is_dir():
        raise RenderError(f"no templates for the {folder.name} target: {folder} does not exist")
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder), undefined=jinja2.StrictUndefined, autoescape=False,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, finalize=_only_hcl,
    )
    environment.filters["hcl"] = hcl
    inputs = terraform_inputs(config, counts)
    files = {}
    for template in sorted(folder.glob("*.tf.j2")):
        try:
            files[template.name.removesuffix(".j2")] = environment.get_template(template.name).render(inputs)
        except jinja2.TemplateError as error:
            raise RenderError(f"{template}: {error}") from None
    return Rendered(files, inputs, target)


def write(rendered: Rendered, workdir: Path) -> None:
    """Write the files into `workdir`, removing Terraform files a previous render left there."""
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("*.tf"):
        if stale.name not in rendered.files:
            stale.unlink()
    for name, text in rendered.files.items():
        update_file(workdir / name, text)
