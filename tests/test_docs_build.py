"""`atl docs build`: the generated reference is complete, current, and rebuilt on demand."""

from __future__ import annotations

from pathlib import Path

from atl_pipeline.config import Config, load_config
from atl_pipeline.docs_build import build, configuration_reference, fields, pipeline_page
from atl_pipeline.project import Project
from tests.conftest import REPO
from tests.test_cli import run


def test_the_committed_pages_are_current():
    stale = build(load_config(REPO / "domains.yml", name="domains.yml"), REPO / "docs" / "reference", write=False)
    assert stale == [], "run `atl docs build` and commit docs/reference/"


def test_every_field_is_in_the_reference_with_its_description():
    reference = configuration_reference()
    rows = fields(Config)
    assert len(rows) == 147
    lines = reference.splitlines()
    for path, _, _, description in rows:  # a field of each target kind has a row of its own
        row = f"| `{path}` |"
        assert description and any(line.startswith(row) and description[:40] in line for line in lines), path
    assert "| `domains[].replicas` | integer | `1` | How many replicas" in reference
    assert "| `services.<name>.health.path` | string | `/healthz` |" in reference
    assert "| `state.backend` | `local` or `pg` | `local` |" in reference
    assert "| `target.cloudflare.zones` | mapping of string | `{}` | *hcloud:* More" in reference  # a tagged union
    assert "| `target.http_port` | integer | `8000` | *local:* " in reference


def test_the_pipeline_diagram_follows_the_dagster_graph():
    page = pipeline_page()
    assert "    domain_config --> validated_config\n" in page
    assert "    monitoring --> certificates\n" in page
    assert '    terraform_plan -.-> destroy_approved{{"destroy_approved (blocking)"}}\n' in page
    assert '    certificates -.-> certificates_valid{{"certificates_valid"}}\n' in page


def test_the_command_writes_then_finds_nothing_to_do(capsys, project: Project, tmp_path: Path):
    out = tmp_path / "reference"
    code, printed, _ = run(capsys, "docs", "build", "--out", str(out))
    assert code == 0 and sorted(p.name for p in out.iterdir()) == ["configuration.md", "domains.md", "pipeline.md"]
    assert "| api.allthingslinux.org | backend-api | 3 | 500m | 512Mi | yes | yes |" in (out / "domains.md").read_text()
    assert run(capsys, "docs", "build", "--out", str(out), "--check") == (0, f"{out}: up to date\n", "")

    project.domains_file.write_text(project.domains_file.read_text().replace("replicas: 3", "replicas: 4"))
    code, printed, _ = run(capsys, "docs", "build", "--out", str(out), "--check")
    assert code == 1 and printed == f"out of date: {out / 'domains.md'}\n"
