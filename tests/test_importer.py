"""`atl utils import`: All Things Linux's own domains.yml (allthingslinux/infra, configs/domains.yml at
ce4abf2) imports into this schema, validates and renders for hcloud; variants of it change the result as
they should; what cannot be mapped stops the import with its location; comments come along; and every
global setting is accounted for. The catalog's own rules are checked here too."""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path

import pytest

from atl_pipeline.cli import main
from atl_pipeline.config import load_config
from atl_pipeline.config.catalog import catalog
from atl_pipeline.config.importer import Options, import_file, import_text
from atl_pipeline.config.model import PORT_BLOCK
from atl_pipeline.config.yaml_reader import parse, read_source
from atl_pipeline.terraform.hcl_check import check_rendered
from atl_pipeline.terraform.render import render
from atl_pipeline.validation import validate
from tests.conftest import REPO
from tests.test_hcloud import parse as parse_hcl
from tests.test_hcloud import unformatted

REAL = Path(__file__).parent / "fixtures" / "allthingslinux-domains.yml"
GOLDEN = Path(__file__).parent / "golden" / "imported" / "domains.yml"
GOLDEN_TERRAFORM = GOLDEN.parent / "terraform"
TEMPLATES = REPO / "terraform_templates"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyForTheImportTests00000000000000 ops@example.org"


def imported(text: str, options: Options | None = None, name: str = "allthingslinux-domains.yml"):
    result = import_text(text, options or Options(), name=name)
    assert result.ok, "\n".join(map(str, result.findings))
    return result


def valid(text: str, write) -> None:
    """The result loads, has no finding, and renders to exactly the resources it implies."""
    loaded = load_config(write(text, "imported.yml"))
    assert validate(loaded).findings == ()
    check_rendered(render(loaded.config, TEMPLATES))


def changed(before: str, after: str) -> list[str]:
    """The lines removed (-) and added (+) from one result to the other."""
    return [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line[:2] in ("- ", "+ ")]


# the real file


@pytest.mark.slow
def test_the_real_file_imports_validates_and_renders(write):
    result = import_file(REAL)
    assert result.ok, result.findings
    valid(result.text, write)
    config = load_config(write(result.text, "imported.yml")).config
    assert list(config.target.server_groups) == ["atl-services", "atl-dev", "atl-tools", "atl-chat", "atl-wiki",
                                                 "database-cluster"]
    assert config.target.server_groups["atl-services"].private_ip is not None
    assert config.target.server_groups["database-cluster"].count == 2
    assert [(d.name, d.service) for d in config.domains] == [
        ("auth.atl.services", "authentik"), ("metrics.atl.services", "grafana"), ("atl.chat", "element-web"),
        ("atl.wiki", "mediawiki"), ("allthingslinux.org", None)]
    assert config.services["prosody"].tcp_ports == [5222, 5269]
    assert config.services["ergo-irc"].tcp_ports == [6667, 6697]
    assert {name for name, service in config.services.items() if not service.internal} == {
        "authentik", "grafana", "element-web", "mediawiki"}
    assert (config.project, config.environment, config.target.location) == ("allthingslinux", "production", "ash")
    assert (config.prometheus.retention, config.prometheus.scrape_interval) == ("15d", "15s")
    assert (config.target.docker_logs.max_size, config.target.docker_logs.max_file) == ("10m", 3)
    assert config.target.cloudflare.min_tls_version == "1.2"
    assert config.target.sshd.max_auth_tries == 3
    assert main(["quality", "lint", str(write(result.text, "linted.yml"))]) == 0  # no line past 120 either


def test_the_real_file_matches_its_golden_import():
    """After a deliberate change of the importer or the catalog: ATL_UPDATE_GOLDEN=1 pytest tests/test_importer.py"""
    text = import_file(REAL).text
    assert not (os.environ.get("ATL_UPDATE_GOLDEN") and os.environ.get("CI")), "CI never rewrites golden files"
    if os.environ.get("ATL_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert GOLDEN.read_text() == text


@pytest.mark.slow
def test_the_golden_import_renders_to_its_golden_terraform(tmp_path: Path):
    """The imported file's Terraform for hcloud: a server group per domain id and per piece of shared
    infrastructure, the names routed to their services, the TCP ports on the load balancer, and each record in its
    own zone. After a deliberate change: ATL_UPDATE_GOLDEN=1 pytest tests/test_importer.py"""
    rendered = render(load_config(GOLDEN).config, TEMPLATES)
    check_rendered(rendered)
    assert unformatted(rendered, tmp_path) == []
    assert not (os.environ.get("ATL_UPDATE_GOLDEN") and os.environ.get("CI")), "CI never rewrites golden files"
    if os.environ.get("ATL_UPDATE_GOLDEN"):
        GOLDEN_TERRAFORM.mkdir(exist_ok=True)
        for name, text in rendered.files.items():
            (GOLDEN_TERRAFORM / name).write_text(text)
    assert {path.name: path.read_text() for path in GOLDEN_TERRAFORM.glob("*.tf")} == rendered.files

    locals_ = parse_hcl(rendered.files["main.tf"])["locals"][0]
    assert {name: server["group"] for name, server in locals_["servers"].items()} == {
        **{f"allthingslinux-production-{group}-1": group for group in ("atl-services", "atl-dev", "atl-tools",
                                                                        "atl-chat", "atl-wiki", "database-cluster")},
        "allthingslinux-production-database-cluster-2": "database-cluster"}  # the primary's and the replica's
    assert {name: domain["service"] for name, domain in locals_["domains"].items()} == {
        "auth.atl.services": "authentik", "metrics.atl.services": "grafana", "atl.chat": "element-web",
        "atl.wiki": "mediawiki"}
    assert locals_["tcp_ports"] == [5222, 5269, 6667, 6697]
    assert 'resource "hcloud_load_balancer_service" "tcp"' in rendered.files["load_balancer.tf"]
    zone_ids = {zone: f"{number:032x}" for number, zone in enumerate(["atl.services", "atl.dev", "atl.tools",
                                                                      "atl.chat", "atl.wiki"], 1)}
    assert {name: record["zone_id"] for name, record in locals_["records"].items()} == {
        "auth.atl.services": zone_ids["atl.services"], "metrics.atl.services": zone_ids["atl.services"],
        "atl.chat": zone_ids["atl.chat"], "atl.wiki": zone_ids["atl.wiki"]}
    assert set(locals_["zones"]) == {"atl.services", "atl.chat", "atl.wiki"}  # those that hold a record


def test_each_image_listens_on_its_own_port_and_is_checked_by_a_program_it_has(write):
    """Every service takes the catalog's container port and health command, so that no command moves a port;
    the only health-gate review left is matterbridge's, which listens on nothing its image could check."""
    result = import_file(REAL)
    config = load_config(write(result.text, "imported.yml")).config
    for name, entry in catalog().items():
        if entry.is_service:
            service = config.services[name]
            assert (service.container_port, service.health.command) == (entry.container_port,
                                                                          entry.health_command), name
    vaultwarden, postgresql = config.services["vaultwarden"], config.services["postgresql"]
    assert (vaultwarden.container_port, vaultwarden.command) == (80, None)
    assert postgresql.health.command == ["pg_isready", "-h", "127.0.0.1", "-p", "{port}", "-U", "postgres"]
    gaps = [decision.message for decision in result.decisions if "health gate" in decision.message]
    assert gaps == ["matterbridge (42wim/matterbridge:1.26.0) speaks no HTTP, and the catalog gives it no "
                    "health.command: its replicas fail the health gate (curl on the health path inside the "
                    "container) until the file gives one"]


def test_every_zone_of_the_real_file_is_declared_with_its_names(write):
    """Each domain id's name is a zone of target.cloudflare.zones (the external one's too: every domain must be
    in a zone), each with a placeholder ID of its own unless --zone-id gives it; every name is a domain."""
    zones = ["atl.services", "atl.dev", "atl.tools", "atl.chat", "atl.wiki", "allthingslinux.org"]
    config = load_config(write(imported(REAL.read_text()).text, "imported.yml")).config
    assert config.target.cloudflare.zone is None
    assert config.target.cloudflare.zones == {zone: f"{number:032x}" for number, zone in enumerate(zones, 1)}
    assert [config.target.cloudflare.zone_of(d.name) for d in config.domains] == [
        "atl.services", "atl.services", "atl.chat", "atl.wiki", "allthingslinux.org"]
    chat = next(domain for domain in config.domains if domain.name == "atl.chat")
    assert (chat.service, chat.proxied) == ("element-web", False)  # its TCP ports

    wiki_id = "0123456789abcdef0123456789abcdef"
    options = Options(zone_ids=(f"atl.wiki={wiki_id}",), ssh_public_key=KEY, ssh_from=("198.51.100.0/24",))
    text = imported(REAL.read_text(), options).text
    valid(text, write)
    given = load_config(write(text, "wiki.yml")).config.target
    assert given.cloudflare.zones["atl.wiki"] == wiki_id and given.ssh_public_key == KEY
    assert f"      atl.wiki: {wiki_id}\n" in text and "atl.chat=ID" in text  # the others stay placeholders


@pytest.mark.parametrize(("zone_ids", "message"), [
    (("f" * 32,), "--zone-id ffffffffffffffffffffffffffffffff: an ID alone is for a file of one zone, and this one "
                  "has 6 (atl.services, atl.dev, atl.tools, atl.chat, atl.wiki, allthingslinux.org): write --zone-id "
                  "ZONE=ID for each"),
    ((f"atl.nope={'f' * 32}",), "--zone-id atl.nope=...: atl.nope is not a zone of this file; its zones are "
                                "atl.services, atl.dev, atl.tools, atl.chat, atl.wiki, allthingslinux.org"),
])
def test_a_zone_id_for_no_zone_of_the_file_stops_the_import(zone_ids, message):
    result = import_file(REAL, Options(zone_ids=zone_ids))
    assert [finding.message for finding in result.findings] == [message]


def test_an_id_alone_is_the_zone_of_a_file_of_one_zone(write):
    text = "domains:\n  atl_wiki:\n    domain: atl.wiki\n    server: {type: cx33}\n    services: [mediawiki]\n"
    result = imported(text, Options(zone_ids=("e" * 32,)), name="wiki.yml")
    valid(result.text, write)
    assert load_config(write(result.text, "imported.yml")).config.target.cloudflare.zones == {"atl.wiki": "e" * 32}
    assert "placeholder: --zone-id" not in result.text


def test_the_older_variant_imports_too(write):
    """fbc0a46's file: no `group` labels, no internal_dns."""
    text = re.sub(r"\n    group: \w+", "", REAL.read_text())
    text = text[:text.index("\n  internal_dns:")] + text[text.index("\n# Global settings"):]
    valid(imported(text).text, write)


def test_every_global_setting_is_accounted_for():
    """Each setting under `global` is named by a decision: what it became, or why it was dropped."""
    decisions = [decision.message for decision in import_file(REAL).decisions]
    data = parse(read_source(REAL))

    def leaves(value, path):
        if isinstance(value, dict):
            return [leaf for key, item in value.items() for leaf in leaves(item, f"{path}.{key}")]
        return [path]

    for leaf in leaves(data["global"], "global"):
        parts = leaf.split(".")
        named = [".".join(parts[:end]) for end in range(len(parts), 1, -1)]
        assert any(message.startswith(f"{path}:") for path in named for message in decisions), leaf
    messages = "\n".join(decisions)
    for dropped in ("global.default_user", "global.backup_enabled", "global.organization", "global.system.timezone",
                    "global.system.locale", "global.system.ntp_servers", "global.security.firewall.logging",
                    "global.security.firewall.allowed_ports", "global.ssl.email",
                    "global.monitoring.grafana", "global.monitoring.logging", "global.backup"):
        assert re.search(rf"^{re.escape(dropped)}: ", messages, re.M), dropped
    assert "global.security.ssh.root_login: false cannot be kept" in messages
    assert "global.ssl.protocols: target.cloudflare.min_tls_version: 1.2, the lowest listed" in messages


def test_the_decisions_say_how_each_name_was_mapped_or_why_not():
    decisions = {str(decision).split(": ", 1)[1] for decision in import_file(REAL).decisions}
    expected = [
        "mapped: auth.atl.services -> authentik",
        "dropped: postfix: not expressible in the schema: SMTP listens on ports 25, 465 and 587, below the 1024 "
        "where the schema's tcp_ports start, and Postfix publishes no official image",
        "dropped: docker: provided by the servers: every server runs Docker (cloud-init installs it); the services "
        "are its containers",
        "mapped: port 5222 -> services.prosody.tcp_ports: the load balancer passes it to the servers as it is",
        "dropped: server group backup: not created: none of its services runs here (their decisions say why)",
        "placeholder: target.cloudflare.zones.atl.chat: a placeholder ID, which the file cannot give: replace it "
        "(the zone's Overview page), or import again with --zone-id atl.chat=ID",
        "placeholder: target.cloudflare.zones.allthingslinux.org: an external domain's zone (every domain must be in "
        "a zone; atl changes nothing in a zone that holds none of its records); a placeholder ID, which the file "
        "cannot give: replace it (the zone's Overview page), or import again with --zone-id allthingslinux.org=ID",
    ]
    for line in expected:
        assert any(decision.endswith(line) for decision in decisions), line
    located = [decision for decision in import_file(REAL).decisions if "nginx-proxy-manager" in decision.message]
    assert (located[0].line, located[0].column) == (17, 9)  # its item under atl_services.services


# variants


@pytest.fixture
def real() -> str:
    return REAL.read_text()


def test_a_domain_added(real, write):
    before = imported(real).text
    after = imported(real.replace("      - metrics\n", "      - metrics\n      - alerts\n", 1)).text
    valid(after, write)
    assert changed(before, after) == [
        "-     internal: true",  # alertmanager: routed now
        "+   - name: alerts.atl.services", "+     service: alertmanager", "+     required: true", "+     group: core"]


def test_a_domain_disabled(real, write):
    before = imported(real).text
    after = imported(real.replace("  atl_wiki:\n    enabled: true", "  atl_wiki:\n    enabled: false")).text
    valid(after, write)
    assert changed(before, after) == [
        "-     # Documentation platform", "-     atl-wiki:", "-       count: 1", "-       type: cx31",
        "-       location: ash", "-       docker_subnet: 172.24.0.0/16",  # its group is not created
        "-     internal: true", "-     resources: {cpu: \"1\", memory: 2Gi}",  # elasticsearch runs nowhere
        "+     enabled: false"]


def test_a_required_domain_cannot_be_disabled(real):
    result = import_text(real.replace("  atl_services:\n    enabled: true", "  atl_services:\n    enabled: false"),
                         name="allthingslinux-domains.yml")
    assert not result.ok
    assert "auth.atl.services is required: it may not be disabled" in result.findings[0].message


def test_a_service_moved_between_groups(real, write):
    before = imported(real).text
    moved = real.replace("      - alertmanager\n", "", 1).replace("      - element-web\n",
                                                                    "      - element-web\n      - alertmanager\n", 1)
    after = imported(moved).text
    valid(after, write)
    assert changed(before, after) == ["-     servers: atl-services", "+     servers: atl-chat"]


def test_the_files_own_services_override_the_catalog_and_add_to_it(real, write):
    text = real.replace("      - pastebin\n", "      - pastebin\n      - hedgedoc\n", 1).replace(
        "\n", "\n", 1) + """
services:
  hedgedoc: {image: quay.io/hedgedoc/hedgedoc:1.10.0, health: {path: /status}}
  vaultwarden: {image: vaultwarden/server:1.34.1-alpine, command: [/vaultwarden]}
  pgbouncer: {image: edoburu/pgbouncer:v1.23.1-p3, port: 12000}
"""
    result = imported(text)
    valid(result.text, write)
    config = load_config(write(result.text, "imported.yml")).config
    assert config.services["hedgedoc"].port == 10100  # the first free block past the catalog's
    assert config.services["vaultwarden"].image == "vaultwarden/server:1.34.1-alpine"
    assert config.services["vaultwarden"].volumes == {"data": "/data"}  # the rest is the catalog's
    assert config.services["vaultwarden"].container_port == 80
    assert config.services["pgbouncer"].internal and config.services["pgbouncer"].servers == "database-cluster"
    messages = [decision.message for decision in result.decisions]
    assert "services.pgbouncer: declared in this file, over the catalog's entry (no single image: declare it " \
           "yourself)" in messages


@pytest.mark.parametrize(("override", "gap"), [
    ("{volumes: {config: /srv/matterbridge}}", True),  # the catalog's health check still cannot pass
    ("{container_port: 4242, health: {command: [wget, -q, -O-, 'http://127.0.0.1:{port}/api/health']}}", False),
    ("{image: 42wim/matterbridge:1.26.0-custom}", False),  # another image: the file vouches for it
])
def test_the_files_own_image_or_health_check_answers_the_health_gap(real, override, gap):
    messages = [decision.message for decision in imported(f"{real}\nservices:\n  matterbridge: {override}\n").decisions]
    assert any(message.startswith("matterbridge (") for message in messages) == gap


def test_a_subdomain_can_name_its_service_and_the_apex(write):
    text = """\
domains:
  atl_tools:
    domain: atl.tools
    server: {type: cx33, location: fsn1}
    services: [nextcloud, gitea]
    subdomains: [cloud, {code: gitea}, {"@": nextcloud}]
"""
    result = imported(text, name="tools.yml")
    valid(result.text, write)
    config = load_config(write(result.text, "imported.yml")).config
    assert [(d.name, d.service) for d in config.domains] == [
        ("cloud.atl.tools", "nextcloud"), ("code.atl.tools", "gitea"), ("atl.tools", "nextcloud")]
    assert config.target.location == "fsn1"


# what cannot be mapped


@pytest.mark.parametrize(("change", "where", "message"), [
    (("      - pastebin\n", "      - pastebin\n      - hedgedoc\n"), (77, 9),
     "service 'hedgedoc' is not in the catalog: add `services.hedgedoc: {image: ..., port: ...}` (the schema's "
     "service fields) to this file, or an entry to atl_pipeline/config/catalog.yml"),
    (("      ip: \"10.0.1.10\"", "      ip: \"10.0.2.10\""), (31, 11),
     "domains.atl_services.network.ip: 10.0.2.10 cannot be kept: a fixed private_ip needs a group of one server and "
     "an address in the servers' subnet 10.0.1.0/24; remove it, or choose one there"),
    (("      subnet: \"172.21.0.0/16\"", "      subnet: \"10.0.128.0/17\""), (56, 15),
     "domains.atl_dev.network.subnet: 10.0.128.0/17 overlaps the private network 10.0.0.0/16, which the servers "
     "must reach: choose another range"),
    (("      - 6697 # IRC SSL\n", "      - 6697 # IRC SSL\n      - 8448\n"), (106, 9),
     "port 8448: no service of domains.atl_chat.services listens on it in the catalog; declare it in this file's "
     "`services.<name>.tcp_ports`"),
    (("      - mail\n", "      - mail\n      - forum\n"), (29, 9),
     "subdomain 'forum': no service of the catalog answers it; write `- forum: <service>`"),
    (("      location: \"ash\"\n      count: 1\n    services:\n      - docker",
      "      location: \"fsn1\"\n      count: 1\n    services:\n      - docker"), (44, 17),
     "server group atl-dev is in fsn1 (eu-central), the first in ash (us-east): one private network holds every "
     "group, in one network zone"),
    (("    provider: \"cloudflare_workers\"\n", "    provider: \"cloudflare_workers\"\n    region: eu\n"), (139, 5),
     "domains.main_domain.region: unknown field; the fields here are domain, enabled, external, features, group, "
     "monitoring, network, note, port, ports, provider, required, server, services, subdomains"),
    (("  default_user: \"ansible\"\n", "  default_user: \"ansible\"\n  debug: true\n"), (186, 3),
     "global.debug: a setting the importer does not know; remove it, or map it by hand"),
])
def test_what_cannot_be_mapped_stops_the_import_with_its_location(real, change, where, message):
    old, new = change
    assert old in real
    result = import_text(real.replace(old, new, 1), name="allthingslinux-domains.yml")
    assert result.text is None
    assert [(f.line, f.column, f.message) for f in result.findings] == [(*where, message)]


def test_any_line_removed_or_retyped_gives_a_result_or_findings_never_an_error():
    """Every line of the real file removed, and every value replaced by a list, in turn: each variant
    imports (and then validates) or stops with findings."""
    lines = REAL.read_text().split("\n")
    variants = ["\n".join(lines[:index] + lines[index + 1:]) for index in range(len(lines))]
    for index, line in enumerate(lines):
        key, colon, value = line.partition(":")
        if colon and value.strip() and not line.lstrip().startswith("#"):
            variants.append("\n".join([*lines[:index], f"{key}: [1, 2]", *lines[index + 1:]]))
    for text in variants:
        result = import_text(text, name="variant.yml")
        assert result.ok == (not result.findings) and (result.text is not None or not result.ok)


@pytest.mark.parametrize(("services", "where", "message"), [
    ("  hedgedoc: {health: {path: /status}}\n", (259, 3),
     "services.hedgedoc: needs an image: the hcloud target runs each service as a container"),
    ("  hedgedoc: {image: quay.io/hedgedoc/hedgedoc:1.10.0, port: 8650}\n", (259, 61),
     "services.hedgedoc.port 8650: its 100 ports meet those of nextcloud (from 8600); give it a port of its own"),
    ("  hedgedoc: {image: quay.io/hedgedoc/hedgedoc:1.10.0, replicas: two}\n", (259, 65),
     "services.hedgedoc.replicas: Input should be a valid integer"),
])
def test_a_service_the_file_declares_is_checked_where_it_is_written(real, services, where, message):
    text = real.replace("      - pastebin\n", "      - pastebin\n      - hedgedoc\n", 1) + "services:\n" + services
    result = import_text(text, name="allthingslinux-domains.yml")
    assert [(f.line, f.column, f.message) for f in result.findings] == [(*where, message)]


def test_a_file_already_in_this_schema_is_not_imported():
    result = import_text((REPO / "domains.yml").read_text())
    assert [f.message for f in result.findings] == [
        "this file is already in the pipeline's format (a `domains:` list): nothing to import"]


# comments


def test_comments_come_along_where_they_attach(real):
    forge = "      # the forge, with its own SSH on 2222\n      - gitea  # git.atl.tools\n"
    text = real.replace("      - gitea\n", forge, 1)
    text = text.replace("      - auth\n", "      - auth  # single sign-on for everything\n", 1)
    out = imported(text).text
    assert "  # the forge, with its own SSH on 2222\n  gitea:  # git.atl.tools\n    image:" in out
    assert "  - name: auth.atl.services  # single sign-on for everything\n" in out
    assert "    # Self-hosted applications\n    atl-tools:\n" in out  # above the domain id: above its group
    assert "      - 5222  # XMPP C2S\n      - 5269  # XMPP S2S\n" in out  # the ports' comments
    assert "  # Docker Configuration\n  docker_logs: {max_size: 10m, max_file: 3}\n" in out
    assert out.startswith("# domains.yml for the hcloud target, imported by `atl utils import` from "
                          "allthingslinux-domains.yml\n")
    assert "# All Things Linux - Domain Configuration\n" in out
    assert "  # Runs on Cloudflare Workers, no infrastructure needed\n" in out  # its note
    assert "    enabled: false  # ← This is how we disable it cleanly!\n" in out


def test_a_comment_holding_a_line_break_of_yaml_1_1_stays_one_comment(real):
    """U+2028 ends a line for libyaml: carried over as is, the rest of the comment would become YAML."""
    text = real.replace("  # Self-hosted applications\n", "  # Self-hosted\u2028services: {evil: 1}\n", 1)
    out = imported(text).text
    assert "    # Self-hosted\\u2028services: {evil: 1}\n" in out
    assert "evil" not in json.dumps(parse(read_source_text(out)))


def read_source_text(text: str):
    from atl_pipeline.config.yaml_reader import decode_source

    return decode_source(text.encode(), "out.yml")


# the command


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_writes_the_result_and_lists_the_decisions(capsys, tmp_path: Path):
    out = tmp_path / "domains.yml"
    zone_ids = [f"{zone}={digit * 32}" for zone, digit in (("atl.services", "a"), ("atl.dev", "b"), ("atl.tools", "c"),
                                                           ("atl.chat", "d"), ("atl.wiki", "e"),
                                                           ("allthingslinux.org", "f"))]
    code, printed, err = run(capsys, "utils", "import", str(REAL), "-o", str(out), "--ssh-public-key", KEY,
                             "--ssh-from", "198.51.100.0/24", "--ssh-from", "2001:db8::/32",
                             *(argument for zone_id in zone_ids for argument in ("--zone-id", zone_id)))
    assert (code, printed) == (0, "")
    assert out.read_text() == import_file(REAL, Options(zone_ids=tuple(zone_ids), ssh_public_key=KEY,
                                                        ssh_from=("198.51.100.0/24", "2001:db8::/32"))).text
    lines = err.splitlines()
    assert lines[-1] == f"allthingslinux-domains.yml: imported ({len(lines) - 1} decisions) into {out}"
    assert all(re.match(rf"{re.escape(str(REAL))}:\d+:\d+: (mapped|dropped|review|placeholder): ", line)
               for line in lines[:-1])
    assert not any("placeholder" in line for line in lines)
    assert validate(load_config(out)).findings == ()

    code, _, err = run(capsys, "utils", "import", str(REAL), "-o", str(out))
    assert (code, err) == (2, f"atl: {out} exists; --force overwrites it\n")
    assert run(capsys, "utils", "import", str(REAL), "-o", str(out), "--force")[0] == 0


def test_the_command_prints_the_result_on_standard_output_or_in_json(capsys):
    code, printed, err = run(capsys, "utils", "import", str(REAL))
    assert (code, printed) == (0, import_file(REAL).text)
    code, printed, _ = run(capsys, "utils", "import", str(REAL), "--json")
    document = json.loads(printed)
    assert (code, document["ok"], document["output"], document["findings"]) == (0, True, None, [])
    assert document["text"] == import_file(REAL).text
    assert set(document["decisions"][0]) == {"file", "line", "column", "category", "message"}


def test_the_command_exits_1_with_the_findings_and_2_on_bad_arguments(capsys, write, tmp_path: Path):
    path = write(REAL.read_text().replace("      - pastebin\n", "      - pastebin\n      - hedgedoc\n"), "atl.yml")
    code, printed, err = run(capsys, "utils", "import", str(path), "-o", str(tmp_path / "out.yml"))
    assert (code, printed) == (1, "")
    assert f"{path}:77:9: service 'hedgedoc' is not in the catalog" in err
    assert not (tmp_path / "out.yml").exists()
    code, _, err = run(capsys, "utils", "import", str(REAL), "--zone-id", "nope")
    assert (code, err) == (2, "atl: --zone-id: a Cloudflare zone ID is 32 hex digits (the zone's Overview page)\n")
    code, _, err = run(capsys, "utils", "import", str(REAL), "--zone-id", f"atl.chat={'e' * 32}", "--zone-id",
                       f"Atl.Chat.={'f' * 32}")
    assert (code, err) == (2, "atl: --zone-id: once per zone, as ZONE=ID; an ID alone is for a file of one zone\n")
    assert run(capsys, "utils", "import", str(tmp_path / "missing.yml"))[0] == 2
    code, _, err = run(capsys, "utils", "import", str(REAL), "--ssh-public-key", "-----BEGIN OPENSSH PRIVATE KEY-----")
    assert code == 2 and "never a private key" in err


# the catalog


def test_every_name_of_the_real_file_is_in_the_catalog():
    data = parse(read_source(REAL))
    units = [*data["domains"].values(), *data["shared_infrastructure"].values()]
    names = {name for unit in units for name in unit.get("services", [])}
    assert names <= set(catalog())


def test_the_catalogs_services_are_pinned_and_own_their_ports():
    services = {name: entry for name, entry in catalog().items() if entry.is_service}
    for name, entry in services.items():
        tag = entry.image.rsplit("/", 1)[-1].split(":", 1)[1]
        assert tag != "latest" and re.search(r"[0-9]", tag), name
        assert entry.port % PORT_BLOCK == 0 and not {9090, 9115, 9093} & set(range(entry.port, entry.port + PORT_BLOCK))
        assert entry.http or entry.health is None, name
        assert not any("{port}" in argument for argument in entry.command or []), name  # container_port does
    blocks = sorted(entry.port for entry in services.values())
    assert all(later - earlier >= PORT_BLOCK for earlier, later in zip(blocks, blocks[1:], strict=False))
    labels = [entry.subdomain for entry in catalog().values() if entry.subdomain]
    assert len(labels) == len(set(labels))
    assert all(entry.reason for entry in catalog().values() if not entry.is_service)


def test_the_docs_quote_the_import_as_it_is():
    """docs/importing.md: its decisions are printed as quoted, their count is right, and its catalog table
    gives each service's image, port block and container port."""
    doc = (REPO / "docs" / "importing.md").read_text()
    decisions = import_file(REAL, name=REAL.name).decisions
    quoted = re.search(r"^```text\n(.*?)^```$", doc, re.M | re.S).group(1).splitlines()
    assert quoted and set(quoted) <= {str(decision) for decision in decisions}
    assert f"with its {len(decisions)} decisions" in doc
    for name, entry in catalog().items():
        if entry.is_service:
            assert re.search(rf"^\| `{name}` \| service[^|]* \| `{re.escape(entry.image)}` \| {entry.port} \| "
                             rf"{entry.container_port or 'none'} \|", doc, re.M), name
        else:
            assert re.search(rf"^\|[^|]*`{name}`[^|]*\| {entry.role}", doc, re.M), name
