"""The central log store's files, without rsyslog: reading them merged, following them across a roll,
rolling them within the retention (atl_pipeline.operations.logs, logroll)."""

from __future__ import annotations

import json
import os
import time

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.operations.logroll import roll
from atl_pipeline.operations.logs import LogError, _appended, read, store
from atl_pipeline.project import Project
from tests.conftest import REPO


def line(at: str, source: str, message: str, domain: str = "") -> str:
    return json.dumps({"time": f"2026-11-30T01:00:{at}+00:00", "source": source, "service": source,
                       "domain": domain, "message": message}) + "\n"


@pytest.fixture
def folder(tmp_path):
    project = Project(tmp_path)
    store(project).mkdir(parents=True)
    return project


def test_the_sources_are_merged_in_time_order_rolled_files_first(folder):
    files = store(folder)
    (files / "backend-api.jsonl.1").write_text(line("01", "backend-api", "a", "api.allthingslinux.org"))
    (files / "backend-api.jsonl").write_text(line("04", "backend-api", "d", "api.allthingslinux.org"))
    (files / "caddy.jsonl").write_text(line("02", "caddy", "GET / 200", "api.allthingslinux.org")
                                       + line("03", "caddy", "GET / 200", "www.allthingslinux.org"))
    config = load_config(REPO / "domains.yml").config
    assert [entry.fields["message"] for entry in read(folder, config)] == ["a", "GET / 200", "GET / 200", "d"]
    assert [entry.fields["time"][17:19] for entry in read(folder, config, "api.allthingslinux.org")] == [
        "01", "02", "04"]  # the domain's service, and Caddy's lines for that domain only
    assert [entry.fields["message"] for entry in read(folder, config, "backend-api", grep="d")] == ["d"]
    with pytest.raises(LogError, match="nope.org is neither a service nor a domain"):
        list(read(folder, config, "nope.org"))


def test_following_reads_the_rest_of_a_file_rolled_meanwhile(folder):
    current = store(folder) / "web.jsonl"
    current.write_text("one\n")
    position = (os.stat(current).st_ino, len("one\n"))
    with current.open("a") as output:
        output.write("two\nthree, half")  # written, then the file rolls before the next look
    current.rename(current.with_name("web.jsonl.1"))
    current.write_text("four\n")
    texts, position = _appended([current.with_name("web.jsonl.1"), current], position)
    assert texts == ["two", "four"]  # a line not ended yet is not a line
    with current.open("a") as output:
        output.write("five\n")
    assert _appended([current.with_name("web.jsonl.1"), current], position)[0] == ["five"]


def test_a_roll_keeps_the_newest_files_within_the_retention(tmp_path):
    current = tmp_path / "web.jsonl"
    for number in (1, 2, 3):
        (tmp_path / f"web.jsonl.{number}").write_text(f"rolled {number}\n")
    current.write_text("current\n")
    old = time.time() - 3600
    os.utime(tmp_path / "web.jsonl.2", (old, old))

    roll(str(current), keep=3, retention_seconds=600)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["web.jsonl.1", "web.jsonl.2"]
    assert (tmp_path / "web.jsonl.1").read_text() == "current\n"  # the file rsyslog writes next is new
    assert (tmp_path / "web.jsonl.2").read_text() == "rolled 1\n"  # .2 was past the retention, .3 past keep
