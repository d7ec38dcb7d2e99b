"""The git_push sensor against a real bare repository: one run per push that touches the
watched files, keyed by commit, deploying that commit's files read from git."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context, execute_job

from atl_pipeline import gitops
from atl_pipeline.definitions import loaded
from atl_pipeline.gitops import GitError, GitSource, Mirror
from atl_pipeline.orchestration.runner import deploy_subset, stages_until
from atl_pipeline.project import Project
from tests.git_helpers import Remote

pytestmark = pytest.mark.slow  # git on a bare repository (one pure test rides along)


@pytest.fixture
def remote(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Remote:
    """The project committed to a bare repository, which ATL_GIT_REMOTE names."""
    remote = Remote.create(tmp_path, project.root)
    monkeypatch.setenv("ATL_GIT_REMOTE", str(remote.origin))
    monkeypatch.setenv("ATL_GIT_BRANCH", "main")
    return remote


class Ticks:
    """Evaluates the git_push sensor tick after tick, carrying its cursor as the daemon does."""

    def __init__(self, project: Project):
        self.sensor = loaded().resolve_sensor_def("git_push")
        self.instance = DagsterInstance.from_config(str(project.ensure_instance()))
        self.cursor: str | None = None

    def tick(self):
        context = build_sensor_context(instance=self.instance, cursor=self.cursor, resources=loaded().resources)
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor or self.cursor
        return result

    def deploy(self, request, until: str):
        """Run the requested run's stages up to `until` (what the test needs to see)."""
        return execute_job(deploy_subset(stages_until(until)), self.instance, run_config=request.run_config,
                           tags=request.tags)

    def metadata(self, key: str) -> dict:
        event = self.instance.get_latest_materialization_event(AssetKey(key))
        return {name: value.value for name, value in event.asset_materialization.metadata.items()}


def test_pushes_since_the_last_tick_coalesce_into_one_run_of_the_newest(project: Project, remote: Remote):
    ticks = Ticks(project)
    (first,) = ticks.tick().run_requests
    assert first.run_key == remote.git("rev-parse", "HEAD").strip()
    assert ticks.tick().skip_message.endswith("already seen")

    older = remote.edit("domains.yml", "replicas: 3", "replicas: 2", "api: two replicas")
    newer = remote.edit("domains.yml", "replicas: 2", "replicas: 1", "api: one replica")
    (request,) = ticks.tick().run_requests

    assert older != newer and request.run_key == newer and ticks.cursor == newer
    assert request.run_config == {"ops": {"domain_config": {"config": {"commit": newer}}}}
    assert request.tags == {"atl/trigger": "git", "atl/commit": newer, "atl/author": "Ada Operator <ada@example.org>",
                            "atl/message": "api: one replica", "atl/commits": "2", "dagster/sensor_name": "git_push"}


def test_a_commit_that_touches_nothing_watched_moves_the_cursor_without_a_run(project: Project, remote: Remote):
    ticks = Ticks(project)
    ticks.tick()
    (project.root / "NOTES.md").write_text("on-call rota\n")
    head = remote.commit("notes", "NOTES.md")

    result = ticks.tick()

    assert result.run_requests == [] and ticks.cursor == head
    assert "no new commit touches domains.yml or terraform_templates" in result.skip_message


def test_the_run_deploys_the_commits_files_not_the_working_tree(project: Project, remote: Remote):
    ticks = Ticks(project)
    ticks.tick()
    sha = remote.edit("domains.yml", "replicas: 3", "replicas: 2", "api: two replicas")
    project.domains_file.write_text("this working copy is half edited: [")

    (request,) = ticks.tick().run_requests
    result = ticks.deploy(request, until="service_deployment")

    assert result.success
    meta = ticks.metadata("domain_config")
    assert (meta["commit"], meta["author"], meta["message"]) == (sha, "Ada Operator <ada@example.org>",
                                                                 "api: two replicas")
    assert meta["source"] == f"{sha[:12]}:domains.yml"
    services = ticks.metadata("service_deployment")["services"]
    (api,) = [row.split(" | ") for row in services.splitlines() if row.startswith("| backend-api | ")]
    assert api[3] == "2"  # the replicas column: the commit's two, the working copy does not even load
    exported = project.state_dir / "git" / "commits" / sha
    assert sorted(p.name for p in exported.iterdir()) == ["domains.yml", "terraform_templates"]


def test_a_broken_commit_fails_its_run_and_blocks_nothing_after_it(project: Project, remote: Remote):
    ticks = Ticks(project)
    ticks.tick()
    broken = remote.edit("domains.yml", "replicas: 3", "replicas: many", "api: oops")
    (request,) = ticks.tick().run_requests
    failed = ticks.deploy(request, until="domain_config")
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"{broken[:12]}:domains.yml:" in failure.step_failure_data.user_failure_data.description

    fixed = remote.edit("domains.yml", "replicas: many", "replicas: 2", "api: two replicas")
    (request,) = ticks.tick().run_requests
    assert request.run_key == fixed and ticks.deploy(request, until="validated_config").success


def test_a_restarted_sensor_takes_the_deployed_commit_as_seen(project: Project, remote: Remote):
    ticks = Ticks(project)
    (request,) = ticks.tick().run_requests
    assert ticks.deploy(request, until="domain_config").success

    restarted = Ticks(project)  # no cursor, as after the sensor's state was lost
    assert restarted.tick().run_requests == []
    sha = remote.edit("domains.yml", "replicas: 3", "replicas: 2", "api: two replicas")
    assert [r.run_key for r in restarted.tick().run_requests] == [sha]


def test_the_project_in_a_subfolder_of_its_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from tests.conftest import copy_project

    monkeypatch.delenv("ATL_GIT_REMOTE", raising=False)
    repo = tmp_path / "infra"
    project = copy_project(repo / "sites" / "atl")
    remote = Remote.create(tmp_path, repo)
    source = GitSource.of(project)
    assert (source.remote, source.branch, source.subdir) == (str(repo), "main", "sites/atl")

    mirror = Mirror(project)
    head = mirror.head(source)
    mirror.fetch(source)
    tree = mirror.export(head, source)

    assert tree == project.state_dir / "git" / "commits" / head / "sites" / "atl"
    assert (tree / "domains.yml").read_text() == project.domains_file.read_text()
    assert not (tree.parent.parent / ".gitignore").exists()
    assert [c.sha for c in mirror.changes(source, None, head)] == [remote.git("rev-parse", "HEAD").strip()]


def test_a_remote_that_reads_as_an_option_is_refused(project: Project):
    with pytest.raises(GitError, match="read as an option"):
        Mirror(project).head(GitSource("--upload-pack=touch /tmp/pwned", "main"))


def test_a_remote_that_fails_keeps_its_credentials_out_of_the_message(project: Project):
    source = GitSource("http://deploy:s3cr3t-token@127.0.0.1:9/atl/infra.git", "main")  # nothing listens on 9
    with pytest.raises(GitError) as raised:
        Mirror(project).head(source)
    assert "s3cr3t-token" not in str(raised.value) and "http://***@127.0.0.1:9/atl/infra.git" in str(raised.value)


def test_a_remote_that_never_answers_is_a_git_error_after_the_time_limit(project: Project,
                                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gitops, "GIT_TIMEOUT", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections wait in its backlog, never answered
        source = GitSource(f"http://deploy:s3cr3t-token@127.0.0.1:{silent.getsockname()[1]}/atl.git", "main")
        with pytest.raises(GitError, match=r"git ls-remote http://\*\*\*@127\.0\.0\.1:\d+/atl\.git refs/heads/main "
                                           r"took longer than 1 s"):
            Mirror(project).head(source)


def test_a_commit_with_a_link_out_of_its_tree_is_not_exported(project: Project, remote: Remote):
    (project.root / "terraform_templates" / "local" / "passwd.tf.j2").symlink_to("/etc/passwd")
    sha = remote.commit("a link to another file of the machine", "terraform_templates")
    source, mirror = GitSource.of(project), Mirror(project)
    mirror.fetch(source)
    with pytest.raises(GitError, match=f"cannot export {sha[:12]}: .*passwd.tf.j2' is a link to an absolute path"):
        mirror.export(sha, source)
    assert not (project.state_dir / "git" / "commits" / sha).exists()


def test_the_autoscaler_reads_the_bounds_of_the_deployed_commit_not_the_working_copy(project: Project,
                                                                                     remote: Remote):
    remote.edit("domains.yml", "    health: {path: /healthz}\n", "    health: {path: /healthz}\n    autoscale: "
                "{min: 1, max: 4, target: {requests_per_second_per_replica: 5}}\n", "backend-api: autoscale")
    ticks = Ticks(project)
    (request,) = ticks.tick().run_requests
    ticks.deploy(request, until="domain_config")
    project.domains_file.write_text("being edited: [")  # the working copy, not yet committed

    autoscaler = loaded().resolve_sensor_def("autoscaler")
    result = autoscaler.evaluate_tick(build_sensor_context(instance=ticks.instance, resources=loaded().resources))
    assert result.skip_message.startswith("the last deploy ended")  # past the bounds: the commit's were read
