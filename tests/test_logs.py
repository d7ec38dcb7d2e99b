"""The central log store with the real rsyslog, supervisord and Caddy: the lines of three replicas, of
Caddy and of the pipeline arrive labelled and in order; a replica writing 10 MB a second neither
stalls the others' lines nor fills the disk past `logs.max_size`; a secret the configuration
references is redacted before it is stored."""

from __future__ import annotations

import json
import re
import time

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.config.quantity import memory_bytes
from atl_pipeline.operations.logs import read, store
from atl_pipeline.runtime.local import deployed_runtime
from tests.conftest import copy_project, kill_stack
from tests.runtime_helpers import through_lb, wait_for
from tests.test_cli import run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("logs")]

API = "api.allthingslinux.org"
SECRET = "s3cr3t-Log-T0ken"
MARKER = "a marker written during the flood"
FLOOD = """  flood:
    command: [python3, -m, atl_pipeline.sample_service, --port, "{port}", --log-bytes-per-second, "10000000"]
    port: PORT
    internal: true
    health: {path: /healthz}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("logs")
    project = copy_project(root / "project")
    text = project.domains_file.read_text().replace(
        '--port, "{port}"]', '--port, "{port}", --log-every, "0.2"]', 1)
    text += (f"\nlogs: {{max_size: 40Mi}}\n"
             f"backup: {{repository: {root / 'restic'}, password: env:ATL_TEST_LOG_SECRET}}\n")
    project.domains_file.write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATL_PROJECT_DIR", str(project.root))
        patch.setenv("ATL_TEST_LOG_SECRET", SECRET)
        yield project
    kill_stack(project)


def stored(project, selection=None):
    return list(read(project, load_config(project.domains_file).config, selection))


def test_replicas_caddy_and_the_pipeline_arrive_labelled_and_in_order(stack, capsys):
    project = stack
    assert run(capsys, "infra", "up")[0] == 0
    release = deployed_runtime(project).deployed_services()["backend-api"].release
    wait_for("ticks of the three replicas", lambda: {line.fields["replica"] for line in stored(project, "backend-api")
                                                    if line.fields["message"].startswith("tick")} == {"0", "1", "2"},
             timeout=30)
    assert through_lb(project, API, "/").status == 200
    wait_for("Caddy's line", lambda: [line for line in stored(project, API) if line.fields["source"] == "caddy"
                                      and line.fields["message"] == "GET / 200"], timeout=30)

    lines = stored(project, "backend-api")
    for line in lines:
        assert (line.fields["service"], line.fields["domain"], line.fields["release"]) == (
            "backend-api", API, release), line.fields
        assert line.fields["server"]
    for replica in ("0", "1", "2"):
        ticks = [int(m[1]) for line in lines if line.fields["replica"] == replica
                 and (m := re.fullmatch(r"tick (\d+)", line.fields["message"]))]
        assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), ticks  # every line, in the order written
    code, out, _ = run(capsys, "utils", "logs", "--json")
    merged = [json.loads(text) for text in out.splitlines()]
    assert code == 0 and [line["time"] for line in merged] == sorted(line["time"] for line in merged)
    assert {line["source"] for line in merged} >= {"backend-api", "website", "caddy", "pipeline"}
    assert any(re.fullmatch(r"run \S+ \(deploy\) certificates: ok", line["message"]) for line in merged
               if line["source"] == "pipeline")


def test_a_secret_is_redacted_before_it_is_stored(stack):
    project = stack
    log = next(deployed_runtime(project).supervisor.logs.glob("svc_website_*_0.log"))
    with log.open("a") as output:  # as the replica writes its output
        output.write(f"connecting with token={SECRET}\n")
    (line,) = wait_for("the line", lambda: [line for line in stored(project, "website")
                                            if line.fields["message"].startswith("connecting")], timeout=30)
    assert line.fields["message"] == "connecting with token=***"
    assert not any(SECRET in path.read_text(errors="replace") for path in store(project).iterdir())


def test_a_flooding_replica_neither_stalls_the_others_nor_fills_the_disk(stack, capsys):
    project = stack
    text = project.domains_file.read_text()
    port = int(re.search(r"port: (\d+)", text[text.index("  website:"):])[1]) + 100
    project.domains_file.write_text(text.replace("\ndomains:", FLOOD.replace("PORT", str(port)) + "\ndomains:", 1))
    assert run(capsys, "infra", "up")[0] == 0
    flood = store(project)
    wait_for("the flood's file rolled three times", lambda: len(list(flood.glob("flood.jsonl.*"))) == 3, timeout=60)
    log = next(deployed_runtime(project).supervisor.logs.glob("svc_backend-api_*_0.log"))
    with log.open("a") as output:
        output.write(MARKER + "\n")
    wait_for("the marker, while the flood goes on", lambda: [
        line for line in stored(project, "backend-api") if line.fields["message"] == MARKER], timeout=30)
    time.sleep(3)  # more of the flood
    limit = memory_bytes("40Mi")
    on_disk = sum(path.stat().st_size for path in flood.glob("flood.jsonl*"))
    assert on_disk <= limit * 1.1, (on_disk, sorted(p.name for p in flood.iterdir()))
    assert len(list(flood.glob("flood.jsonl.*"))) == 3
