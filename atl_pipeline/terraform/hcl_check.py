"""Parse rendered Terraform with python-hcl2 and require exactly what the config implies.

A file that parses to any other block, resource, output, backend or value (say, because
a value broke out of its string) is an error, and is never planned.
"""

from __future__ import annotations

from typing import Any

import hcl2
from lark.exceptions import LarkError

from atl_pipeline.terraform.render import Rendered, RenderError, hcl

_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

BLOCK_TYPES = {"terraform", "locals", "resource", "output"}  # of every target's templates
LOCAL_RESOURCES = {("terraform_data", "service"), ("terraform_data", "domain")}
HCLOUD_RESOURCES = {("hcloud_ssh_key", "operator"), ("hcloud_network", "private"),
                    ("hcloud_network_subnet", "servers"), ("hcloud_firewall", "servers"), ("hcloud_server", "node"),
                    ("hcloud_load_balancer", "main"), ("hcloud_load_balancer_network", "main"),
                    ("hcloud_load_balancer_target", "servers"), ("hcloud_load_balancer_service", "http"),
                    ("cloudflare_dns_record", "a"), ("cloudflare_dns_record", "aaaa")}
HCLOUD_TLS_RESOURCES = {("hcloud_managed_certificate", "tls"), ("hcloud_load_balancer_service", "https"),
                        ("hcloud_zone", "acme"), ("cloudflare_dns_record", "acme_delegation")}
HCLOUD_PROXIED_RESOURCES = {("cloudflare_zone_setting", "ssl")}  # while some record is proxied


def check_rendered(rendered: Rendered, target: str) -> None:
    """Raises RenderError unless the files declare exactly the target's shape and inputs."""
    blocks: dict[str, list] = {}
    for name, text in rendered.files.items():
        for block_type, entries in _parse(f"rendered {name}", text).items():
            blocks.setdefault(block_type, []).extend(entries)

    resources, outputs = _shape(rendered.inputs, target)
    _require(set(blocks) == BLOCK_TYPES, f"block types {sorted(blocks)}, expected {', '.join(sorted(BLOCK_TYPES))}")
    found = [(kind, name) for entry in blocks["resource"] for kind, named in entry.items() for name in named]
    _require(sorted(found) == sorted(resources), f"resources {found}")
    named_outputs = [name for entry in blocks["output"] for name in entry]
    _require(sorted(named_outputs) == sorted(outputs), f"outputs {named_outputs}")
    _require(blocks["terraform"][0].get("backend") == [_backend(rendered.inputs["backend"])],
             f"backend {blocks['terraform'][0].get('backend')}")
    locals_ = {key: value for entry in blocks["locals"] for key, value in entry.items()}
    _require(locals_ == _expected_locals(rendered.inputs), "locals that differ from the configuration's values")


def _shape(inputs: dict, target: str) -> tuple[set, set]:
    """The resources and outputs the target's templates declare for these inputs."""
    if target == "local":
        return LOCAL_RESOURCES, {"services", "domains"}
    hcloud = inputs["hcloud"]
    tls = HCLOUD_TLS_RESOURCES if hcloud["certificate_domains"] else set()
    proxied = HCLOUD_PROXIED_RESOURCES if any(record["proxied"] for record in hcloud["records"].values()) else set()
    return HCLOUD_RESOURCES | tls | proxied, {"services", "domains", "servers", "load_balancer"}


def _backend(backend: dict) -> dict:
    if backend["kind"] == "pg":
        return {"pg": {"schema_name": backend["schema_name"]}}
    return {"local": {"path": "terraform.tfstate"}}


def _expected_locals(inputs: dict) -> dict:
    return _read_back({**inputs.get("hcloud", {}), "services": inputs["services"], "domains": inputs["domains"]})


def _read_back(value: Any) -> Any:
    """A value as python-hcl2 reads back its literal written by `hcl` (not by the templates).

    Plain strings read back as themselves. A string with `${` or `%{` is read back from its
    own literal, since python-hcl2 keeps such escaped sequences raw; a template that printed
    it unescaped would make an interpolation, which reads back differently.
    """
    if isinstance(value, str) and ("${" in value or "%{" in value):
        return _parse("a value", f"x = {hcl(value)}\n")["x"]
    if isinstance(value, dict):
        return {key: _read_back(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_read_back(item) for item in value]
    return value


def _parse(name: str, text: str) -> dict:
    try:
        return hcl2.loads(text, serialization_options=_OPTIONS)
    except (LarkError, ValueError) as error:
        raise RenderError(f"{name} could not be read back as HCL ({str(error).splitlines()[0]}); nothing was "
                          "planned. python-hcl2 cannot read a value holding `${` or `%{` without a closing `}`: "
                          "check terraform_templates/ and such values") from None


def _require(condition: bool, found: str) -> None:
    if not condition:
        raise RenderError(f"the rendered Terraform declares {found}: not what domains.yml implies; "
                          "nothing was planned (check terraform_templates/)")
