"""Rendering: every value an HCL literal, the structure exactly what the config implies,
the output already `terraform fmt`-clean, and hostile values still plain strings inside
real Terraform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.terraform.cli import Terraform
from atl_pipeline.terraform.hcl_check import check_rendered
from atl_pipeline.terraform.render import RenderError, hcl, render
from atl_pipeline.terraform.render import write as write_files
from tests.conftest import REPO

TEMPLATES = REPO / "terraform_templates"

HOSTILE_ARGUMENTS = [
    '${file("/etc/passwd")}',
    "%{ if true }x%{ endif }",
    '"\n}\nresource "terraform_data" "evil" {\n  input = "',
    "back\\slash\\",
    "$${already escaped}",
    "tab\there, cr\rhere, line\u2028sep",  # a NUL is refused at load: no program can be given it
    "${x} and %{y}",
    "$",
    "<<EOF\nheredoc\nEOF",
]


def example(write_file, command=None) -> object:
    command = command or ["app", "--port", "{port}"]
    text = ("services:\n  api:\n    command: " + json.dumps(command) + "\n    port: 9000\n"
            "domains:\n  - {name: api.example.org, service: api, replicas: 2}\n")
    return load_config(write_file(text)).config


def test_hcl_literals():
    assert [hcl(None), hcl(True), hcl(False), hcl(8080), hcl("a"), hcl(["a", 1, None])] == [
        "null", "true", "false", "8080", '"a"', '["a", 1, null]']
    assert hcl('say "${x}" %{y} \\ \n') == r'"say \"$${x}\" %%{y} \\ \n"'
    assert hcl("\x01\u2028") == r'"\u0001\u2028"'
    assert hcl({"a.b": [1], "c": {"d": None}}) == '{ "a.b" = [1], "c" = { "d" = null } }'
    assert hcl({}) == "{}"
    with pytest.raises(RenderError):
        hcl(1.5)


@pytest.mark.slow
def test_the_example_renders_to_checked_and_formatted_terraform(tmp_path: Path):
    config = load_config(REPO / "domains.yml").config
    rendered = render(config, TEMPLATES)
    check_rendered(rendered)
    write_files(rendered, tmp_path / "work")
    assert sorted(p.name for p in (tmp_path / "work").glob("*.tf")) == ["main.tf", "outputs.tf", "versions.tf"]
    assert Terraform(tmp_path / "work", tmp_path / "home").unformatted() == []
    assert rendered.inputs["services"]["backend-api"]["replicas"] == 3
    assert set(rendered.inputs["domains"]) == {d.name for d in config.domains}


@pytest.mark.slow
def test_hostile_values_stay_plain_strings_through_terraform(write, tmp_path: Path):
    arguments = ["app", *(a.replace("{", "{{").replace("}", "}}") for a in HOSTILE_ARGUMENTS)]  # literal braces
    config = example(write, arguments)
    rendered = render(config, TEMPLATES)
    check_rendered(rendered)
    work = tmp_path / "work"
    write_files(rendered, work)
    runner = Terraform(work, tmp_path / "home")
    assert runner.unformatted() == []
    runner.init()
    runner.plan(work / "plan.tfplan")
    planned = runner.show(work / "plan.tfplan")["planned_values"]["root_module"]["resources"]

    assert sorted(r["address"] for r in planned) == [
        'terraform_data.domain["api.example.org"]', 'terraform_data.service["api"]']
    service = next(r for r in planned if r["name"] == "service")
    assert service["values"]["input"]["command"] == arguments


@pytest.mark.parametrize("tamper", [
    lambda files: files["main.tf"] + 'resource "terraform_data" "evil" {}\n',
    lambda files: files["main.tf"] + 'output "leak" {\n  value = 1\n}\n',
    lambda files: files["main.tf"] + 'provider "null" {}\n',
    lambda files: files["main.tf"] + 'module "m" {\n  source = "./m"\n}\n',
    lambda files: files["main.tf"].replace('"app"', '"${file("/etc/passwd")}"'),
    lambda files: files["main.tf"].replace("replicas       = 2", "replicas       = 3", 1),
    lambda files: files["main.tf"].replace('"api.example.org" = {', '"api.example.org" = {\n      extra = 1'),
    lambda files: files["main.tf"] + "this is not HCL {",
], ids=["resource", "output", "provider", "module", "interpolation", "value", "field", "syntax"])
def test_a_rendering_that_declares_anything_else_is_refused(write, tamper):
    rendered = render(example(write), TEMPLATES)
    rendered.files["main.tf"] = tamper(rendered.files)
    with pytest.raises(RenderError, match="rendered"):
        check_rendered(rendered)


def test_a_value_python_hcl2_cannot_read_back_is_refused_not_planned(write):
    """python-hcl2 cannot parse an escaped `${` with no closing brace (Terraform can): refused, not guessed."""
    rendered = render(example(write, ["app", "${{"]), TEMPLATES)
    assert '"$${{"' in rendered.files["main.tf"]
    with pytest.raises(RenderError, match="could not be read back"):
        check_rendered(rendered)


def test_a_changed_backend_is_refused(write):
    rendered = render(example(write), TEMPLATES)
    rendered.files["versions.tf"] = rendered.files["versions.tf"].replace('backend "local"', 'backend "pg"')
    with pytest.raises(RenderError, match="backend"):
        check_rendered(rendered)


def test_a_template_that_prints_a_value_without_the_filter_fails(write, tmp_path: Path):
    (tmp_path / "templates" / "local").mkdir(parents=True)
    (tmp_path / "templates" / "local" / "main.tf.j2").write_text("locals {\n  x = {{ domains }}\n}\n")
    with pytest.raises(RenderError, match="without the hcl filter"):
        render(example(write), tmp_path / "templates")


def test_the_default_schema_name_is_unambiguous_and_fits_postgresql(write):
    from atl_pipeline.terraform.render import default_schema_name

    def schema(project: str, environment: str) -> str:
        path = write(f"project: {project}\nenvironment: {environment}\ndomains: []\n")
        return default_schema_name(load_config(path).config)

    assert schema("a-b", "c") != schema("a", "b-c")
    assert schema("allthingslinux", "production") == "atl_allthingslinux__production"
    long = schema("p" * 63, "e" * 63)
    assert len(long) == 63 and long != schema("p" * 63, "e" * 62 + "f")


def test_stale_terraform_files_are_removed(write, tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "old.tf").write_text("# from an earlier template\n")
    write_files(render(example(write), TEMPLATES), work)
    assert not (work / "old.tf").exists()
