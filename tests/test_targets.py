"""The seam between the kinds of target: the stages ask the Target, nothing else branches on the kind."""

from __future__ import annotations

import ast

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.targets import KINDS, target_of
from atl_pipeline.targets.outputs import OutputError, Outputs
from tests.conftest import REPO

KIND_NAMES = set(KINDS)


def test_no_module_outside_targets_branches_on_the_kind():
    found = []
    for path in sorted((REPO / "atl_pipeline").rglob("*.py")):
        if "targets" in path.relative_to(REPO / "atl_pipeline").parts[:1]:
            continue
        found += [f"{path.relative_to(REPO)}:{line}: {text}" for line, text in kind_branches(path.read_text())]
    assert found == []


def kind_branches(source: str) -> list[tuple[int, str]]:
    """Comparisons of anything's `.kind`, and of a target with a kind's name (`target == "hcloud"`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        names = {value for operand in operands for value in _constants(operand)}
        on_target = names & KIND_NAMES and "target" in ast.unparse(node)
        on_kind = any(isinstance(o, ast.Attribute) and o.attr == "kind" for o in operands)
        if on_target or on_kind:
            found.append((node.lineno, ast.unparse(node)))
    return found


def _constants(node: ast.AST) -> set:
    if isinstance(node, ast.Constant):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return {value for item in node.elts for value in _constants(item)}
    return set()


@pytest.mark.parametrize("branch", ['if config.target.kind == "hcloud": pass', 'x = target_kind in ("local", "y")',
                                    "y = target.kind != other", "z = self.kind in KINDS",
                                    'if spec.kind == "local": pass'])
def test_the_check_sees_a_branch_on_the_kind(branch):
    assert kind_branches(branch)


def test_each_kind_is_a_target_of_its_own_with_its_templates():
    local = target_of(load_config(REPO / "domains.yml").config)
    hcloud = target_of(load_config(REPO / "examples" / "hcloud" / "domains.yml").config)
    assert (local.kind, hcloud.kind) == ("local", "hcloud") and set(KINDS) == {"local", "hcloud"}
    assert {kind: (REPO / "terraform_templates" / kind).is_dir() for kind in KINDS} == {"local": True, "hcloud": True}
    assert local.renews_certificates and not hcloud.renews_certificates
    assert local.provider_secrets() == () and [name for name, _ in hcloud.provider_secrets()] == [
        "HCLOUD_TOKEN", "CLOUDFLARE_API_TOKEN"]


def test_terraforms_outputs_are_read_once_into_typed_models():
    outputs = Outputs.parse({"services": {"web": {
        "command": ["app"], "cpu_millicores": 100, "health_path": "/healthz", "image": None, "memory_bytes": 1024,
        "port": 9000, "release": "abc", "replicas": 2, "standby_port": 9050, "ports": [9000, 9001],
        "standby_ports": [9050, 9051]}}, "domains": {}})
    assert outputs.services["web"].slot_ports(1) == [9050, 9051]
    with pytest.raises(OutputError, match="Terraform's output services.web.replicas"):
        Outputs.parse({"services": {"web": {**outputs.services["web"].model_dump(), "replicas": "two"}}})
