"""`atl quality lint`: each kind of finding, --fix, and the JSON shape."""

from __future__ import annotations

import json

import pytest

from atl_pipeline.project import Project
from tests.runtime_helpers import clash_ports
from tests.test_cli import run


@pytest.mark.slow
def test_the_example_is_clean(capsys, project: Project):
    assert run(capsys, "quality", "lint") == (0, "domains.yml: clean\n", "")


@pytest.mark.slow
def test_style_findings_are_located_and_fixed(capsys, project: Project):
    text = project.domains_file.read_text()
    lines = text.split("\n")
    lines[2] += "   "
    lines[5] += "\r"
    untidy = "\n".join(lines) + "\n\n"
    project.domains_file.write_text(untidy)

    code, out, _ = run(capsys, "quality", "lint", "--format", "json")
    document = json.loads(out)
    assert code == 1 and document["fixed"] == 0
    assert [(f["line"], f["rule"], f["fixable"]) for f in document["findings"]] == [
        (3, "style/trailing-space", True), (6, "style/crlf", True), (len(lines), "style/trailing-blank-lines", True)]
    assert set(document["findings"][0]) == {"file", "line", "column", "rule", "message", "fixable"}

    code, out, _ = run(capsys, "quality", "lint", "--fix")
    assert code == 0 and "domains.yml: fixed 3 findings" in out
    assert project.domains_file.read_text() == text


def test_fix_leaves_a_file_that_does_not_load_alone(capsys, project: Project):
    broken = project.domains_file.read_text().replace("replicas: 3", "replicas: three") + "   \n"
    project.domains_file.write_text(broken)
    code, out, _ = run(capsys, "quality", "lint", "--fix")
    assert code == 1 and project.domains_file.read_text() == broken
    assert "[schema] domains[0].replicas" in out and "[style/trailing-space]" in out


def test_rule_findings(capsys, project: Project):
    clashing = clash_ports(project)
    code, out, _ = run(capsys, "quality", "lint")
    assert code == 1 and f"[rules] services 'backend-api' and 'website' both use port {clashing}" in out


@pytest.mark.slow
def test_rendered_terraform_that_fmt_would_rewrite(capsys, project: Project):
    template = project.templates_dir / "local" / "main.tf.j2"
    template.write_text(template.read_text().replace("  for_each = local.services", "  for_each   = local.services"))
    code, out, _ = run(capsys, "quality", "lint")
    assert code == 1
    assert f"{template}:1:1: [terraform/fmt] renders to Terraform that `terraform fmt` would rewrite" in out


def test_rendered_terraform_that_declares_something_else(capsys, project: Project):
    template = project.templates_dir / "local" / "main.tf.j2"
    template.write_text(template.read_text() + '\nresource "terraform_data" "extra" {}\n')
    code, out, _ = run(capsys, "quality", "lint")
    assert code == 1 and "[terraform/hcl] the rendered Terraform declares" in out
