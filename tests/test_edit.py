"""`atl utils enable|disable`: domains.yml edited in place, comments and order kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from atl_pipeline.cli import main
from atl_pipeline.config import load_config
from atl_pipeline.config.edit import EditError, set_enabled
from atl_pipeline.terraform.render import terraform_inputs

EXAMPLE = """\
# the fleet
services:
  web: {command: [python3, -m, http.server, "{port}"], port: 8100}
domains:
  - name: a.example.org   # the first
    service: web
  - name: b.example.org
    service: web
    enabled: false        # parked until the launch
"""


def test_disable_inserts_the_key_and_keeps_everything_else(write):
    path = write(EXAMPLE)

    assert set_enabled(path, "a.example.org", False) == (True, 5)

    assert path.read_text() == EXAMPLE.replace("# the first\n", "# the first\n    enabled: false\n")
    assert [d.enabled for d in load_config(path).config.domains] == [False, False]


def test_enable_rewrites_the_value_and_keeps_its_comment(write):
    path = write(EXAMPLE)

    assert set_enabled(path, "b.example.org", True) == (True, 7)

    assert path.read_text() == EXAMPLE.replace("enabled: false        # parked", "enabled: true        # parked")


def test_a_disabled_domain_is_declared_but_not_deployed(write):
    config = load_config(write(EXAMPLE)).config
    assert list(terraform_inputs(config)["domains"]) == ["a.example.org"]


def test_an_unknown_domain_suggests_the_closest_and_changes_nothing(write):
    path = write(EXAMPLE)
    with pytest.raises(EditError, match="declares no domain a.exampel.org; did you mean a.example.org"):
        set_enabled(path, "a.exampel.org", False)
    assert path.read_text() == EXAMPLE


def test_a_flow_style_domain_is_left_to_the_operator(write):
    path = write("domains:\n  - {name: a.example.org, service: web}\nservices:\n  web: {command: [x], port: 8100}\n")
    before = path.read_text()
    with pytest.raises(EditError, match="flow style"):
        set_enabled(path, "a.example.org", False)
    assert path.read_text() == before


def test_the_commands(write, capsys):
    path = write(EXAMPLE)
    assert main(["utils", "disable", "a.example.org", "-f", str(path)]) == 0
    assert "a.example.org disabled in domains.yml:5; the next deploy applies it" in capsys.readouterr().out
    assert main(["utils", "disable", "a.example.org", "-f", str(path)]) == 0
    assert "a.example.org is already disabled" in capsys.readouterr().out
    assert main(["utils", "enable", "nope.example.org", "-f", str(path)]) == 1
    assert main(["utils", "enable", "a.example.org", "-f", str(Path("missing.yml"))]) == 2
