"""Each secret forced into the real output of the tool that handles it, and then found nowhere:
not in the terminal, the run's event log and metadata, nor any file under `.atl/`.

- Terraform echoes a `pg` connection string whose password holds an invalid escape (`%zz`).
- A provider's token: a provider cannot be downloaded here, so a stand-in provider (in the
  implied local mirror under $HOME, where `terraform init` finds it) writes its token as its
  handshake, which Terraform reports ("Unrecognized remote plugin message: ...").
- A git remote's `user:token@`, on a real HTTP git server on loopback.

A redactor that returns its input unchanged fails these tests."""

from __future__ import annotations

import platform
import sys
import zipfile
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context, execute_job

from atl_pipeline.cli import main
from atl_pipeline.definitions import loaded
from atl_pipeline.orchestration.runner import deploy_subset, stages_until
from atl_pipeline.project import Project
from atl_pipeline.secrets import masked_url
from tests.conftest import REPO
from tests.git_helpers import HttpRemote, Remote
from tests.terraform_helpers import use_pg

pytestmark = pytest.mark.slow  # Terraform and a git HTTP server

PG_CANARY = "canary-pg%zzQ7"
TOKENS = {"HCLOUD_TOKEN": "hcloud-canary-7Rk2", "CLOUDFLARE_API_TOKEN": "cloudflare-canary-9Qw4"}
GIT_CANARY = "git-canary-4Tp8"
PROVIDERS = {"hetznercloud/hcloud": ("1.68.0", "HCLOUD_TOKEN"), "cloudflare/cloudflare": ("5.22.0",
                                                                                         "CLOUDFLARE_API_TOKEN")}


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg2://dagster:pa:ss@db:5432/dagster?sslmode=require",
     "postgresql+psycopg2://dagster:***@db:5432/dagster?sslmode=require"),
    ("postgres://dagster@db/dagster?sslmode=disable&password=pa%40ss",
     "postgres://dagster@db/dagster?sslmode=disable&password=***"),
    ("postgresql+psycopg2://db/dagster?mypassword=1", "postgresql+psycopg2://db/dagster?mypassword=1"),
    ("postgresql+psycopg2://dagster:pass@[::1/dagster", "***"),  # unreadable: nothing of it shows
])
def test_a_urls_password_is_masked_where_it_points(url: str, shown: str):
    assert masked_url(url) == shown


def test_a_connection_string_terraform_echoes_never_shows(project: Project, capfd, monkeypatch):
    monkeypatch.setenv("ATL_TEST_PG_CONN", f"postgres://postgres:{PG_CANARY}@127.0.0.1:1/postgres")
    use_pg(project, "ATL_TEST_PG_CONN")

    assert main(["infra", "plan"]) == 1
    out, err = capfd.readouterr()
    assert 'parse "***": invalid URL escape' in out, out  # Terraform printed it; it was masked
    assert_never_shown(PG_CANARY, project, out + err)


def test_provider_tokens_terraform_echoes_never_show(project: Project, capfd, monkeypatch, tmp_path):
    home = tmp_path / "home"
    for source, (version, token) in PROVIDERS.items():
        stand_in_provider(home, source, version, token)
    monkeypatch.setenv("HOME", str(home))
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    project.domains_file.write_text((REPO / "examples" / "hcloud" / "domains.yml").read_text())

    assert main(["infra", "plan"]) == 1
    out, err = capfd.readouterr()
    assert out.count("remote plugin message: token=***") == 2, out  # both tokens printed, both masked
    for value in TOKENS.values():
        assert_never_shown(value, project, out + err)


def stand_in_provider(home: Path, source: str, version: str, token: str) -> None:
    """A provider binary that prints its token and exits, where `terraform init` looks first."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    name = source.split("/")[1]
    folder = home / ".terraform.d" / "plugins" / "registry.terraform.io" / source / version / f"linux_{arch}"
    folder.mkdir(parents=True)
    binary = folder / f"terraform-provider-{name}_v{version}"
    binary.write_text(f"#!{sys.executable}\nimport os\nprint('token=' + os.environ.get({token!r}, ''))\n")
    binary.chmod(0o755)


@pytest.fixture
def http_remote(project: Project, tmp_path: Path):
    Remote.create(tmp_path, project.root)
    server = HttpRemote(tmp_path)
    yield server
    server.close()


def test_a_git_remotes_credentials_never_show(project: Project, http_remote: HttpRemote, monkeypatch):
    instance = DagsterInstance.from_config(str(project.ensure_instance()))
    sensor = loaded().resolve_sensor_def("git_push")
    monkeypatch.setenv("ATL_GIT_REMOTE", http_remote.url("origin.git", f"ops:{GIT_CANARY}"))
    monkeypatch.setenv("ATL_GIT_BRANCH", "no-such-branch")
    skipped = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=loaded().resources)).skip_message
    assert "has no branch no-such-branch" in skipped and "http://***@127.0.0.1" in skipped, skipped

    monkeypatch.setenv("ATL_GIT_BRANCH", "main")
    context = build_sensor_context(instance=instance, resources=loaded().resources)
    (request,) = sensor.evaluate_tick(context).run_requests
    run = execute_job(deploy_subset(stages_until("validated_config")), instance, run_config=request.run_config,
                      tags=request.tags)
    assert run.success
    assert_never_shown(GIT_CANARY, project, skipped)


def assert_never_shown(secret: str, project: Project, terminal: str) -> None:
    assert secret not in terminal
    instance = DagsterInstance.from_config(str(project.dagster_home))
    for run in instance.get_runs():
        logged = "\n".join(entry.to_json() for entry in instance.all_logs(run.run_id))
        assert secret not in logged, f"run {run.run_id}'s event log"
        assert secret not in str(run.tags)
    for path in project.state_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert secret.encode() not in readable(path), path


def readable(path: Path) -> bytes:
    """A file's bytes, and the members of a zip (a saved Terraform plan) unpacked."""
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            data += b"".join(archive.read(name) for name in archive.namelist())
    return data

