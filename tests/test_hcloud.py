"""The hcloud target, verified offline (no provider can be downloaded here): the example's
Terraform parses to exactly the expected resources, is `terraform fmt`-clean and matches
its golden files; the same domains.yml renders both targets; the rules of the target; and
`terraform init` failing on the providers says what to do, without the tokens."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import hcl2
import pytest

from atl_pipeline.config import LoadedConfig, load_config
from atl_pipeline.findings import ConfigError
from atl_pipeline.targets import target_of
from atl_pipeline.targets.hcloud import fitting_server_type, group_share
from atl_pipeline.terraform.cli import Terraform, TerraformError
from atl_pipeline.terraform.hcl_check import check_rendered
from atl_pipeline.terraform.render import Rendered, hcl, render
from atl_pipeline.terraform.render import write as write_files
from atl_pipeline.terraform.stages import make_plan
from atl_pipeline.validation import validate
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "hcloud" / "domains.yml"
GOLDEN = Path(__file__).parent / "golden" / "hcloud"
TEMPLATES = REPO / "terraform_templates"
GiB = 2**30


@pytest.mark.slow
def test_the_example_renders_to_exactly_the_expected_resources(tmp_path: Path):
    config = load_config(EXAMPLE).config
    rendered = render(config, TEMPLATES)
    check_rendered(rendered)  # exact blocks, resources, outputs, backend and locals

    assert declared(rendered) == {
        ("hcloud_ssh_key", "operator"), ("hcloud_network", "private"), ("hcloud_network_subnet", "servers"),
        ("hcloud_firewall", "servers"), ("hcloud_server", "node"), ("hcloud_load_balancer", "main"),
        ("hcloud_load_balancer_network", "main"), ("hcloud_load_balancer_target", "servers"),
        ("hcloud_load_balancer_service", "http"), ("hcloud_load_balancer_service", "https"),
        ("hcloud_managed_certificate", "tls"), ("hcloud_zone", "acme"), ("cloudflare_dns_record", "a"),
        ("cloudflare_dns_record", "aaaa"), ("cloudflare_dns_record", "acme_delegation"),
        ("cloudflare_zone_setting", "ssl"), ("hcloud_load_balancer_service", "tcp")}
    main = parse(rendered.files["main.tf"])
    locals_ = main["locals"][0]
    assert locals_["servers"] == {f"allthingslinux-production-{n}": {"group": "default", "type": "cx23",
                                                                      "location": "fsn1", "ip": None} for n in (1, 2)}
    assert locals_["records"]["api.allthingslinux.org"] == {"proxied": True, "ttl": 1}
    assert locals_["ssh_port"] == 22
    assert unformatted(rendered, tmp_path) == []


def test_the_servers_public_interfaces_accept_only_ssh_from_the_operators():
    """Hetzner's firewalls do not filter the private network, where the load balancer reaches
    the routers: a rule for 80 or 443 would only open the public addresses, where nothing listens."""
    main = parse(render(load_config(EXAMPLE).config, TEMPLATES).files["main.tf"])
    firewall = resource(main, "hcloud_firewall", "servers")
    assert "rule" not in firewall  # no static rule: the one rule is SSH's
    [ssh_rule] = firewall["dynamic"]
    assert ssh_rule["rule"]["for_each"] == "${length(local.ssh_from) > 0 ? [local.ssh_from] : []}"
    [content] = ssh_rule["rule"]["content"]
    assert (content["protocol"], content["port"], content["source_ips"]) == (
        "tcp", "${tostring(local.ssh_port)}", "${rule.value}")


def test_cloudflare_verifies_the_load_balancers_certificate_while_a_record_is_proxied(write):
    """SSL mode Full (strict), the zone's: under Flexible, Cloudflare's HTTP requests would loop on the
    routers' redirect to HTTPS. Not declared when nothing is proxied: the zone's mode is then not atl's."""
    dns = parse(render(load_config(EXAMPLE).config, TEMPLATES).files["dns.tf"])
    setting = resource(dns, "cloudflare_zone_setting", "ssl")
    assert {key: setting[key] for key in ("zone_id", "setting_id", "value", "depends_on")} == {
        "zone_id": "${local.zone_id}", "setting_id": "ssl", "value": "strict",
        "depends_on": ["${hcloud_load_balancer_service.https}"]}

    unproxied = EXAMPLE.read_text().replace("    zone_id: 0123", "    proxied: false\n    zone_id: 0123", 1)
    rendered = render(load_config(write(unproxied)).config, TEMPLATES)
    check_rendered(rendered)  # the expected set has no zone setting now
    assert not any(record["proxied"] for record in rendered.inputs["hcloud"]["records"].values())
    assert ("cloudflare_zone_setting", "ssl") not in declared(rendered)


def test_the_lowest_tls_version_is_the_zones_when_set(write):
    assert ("cloudflare_zone_setting", "min_tls_version") not in declared(
        render(load_config(EXAMPLE).config, TEMPLATES))  # the zone's own, unless the file says
    text = EXAMPLE.read_text().replace("    zone_id: 0123", '    min_tls_version: "1.2"\n    zone_id: 0123', 1)
    rendered = render(load_config(write(text)).config, TEMPLATES)
    check_rendered(rendered)
    setting = resource(parse(rendered.files["dns.tf"]), "cloudflare_zone_setting", "min_tls_version")
    assert (setting["setting_id"], setting["value"]) == ("min_tls_version", "${local.min_tls_version}")
    assert parse(rendered.files["main.tf"])["locals"][0]["min_tls_version"] == "1.2"


@pytest.mark.slow
def test_the_acme_delegation_names_hetzners_nameservers_without_their_trailing_dot(tmp_path: Path):
    """Hetzner's API gives `authoritative_nameservers.assigned` fully qualified (the provider's own
    fixture: "hydrogen.ns.hetzner.com."); Cloudflare stores an NS record's content without the dot,
    so a dot left in would be an update in every plan. The rendered expression, evaluated by
    Terraform offline on a stand-in for the zone, gives the names without it."""
    dns = parse(render(load_config(EXAMPLE).config, TEMPLATES).files["dns.tf"])
    content = resource(dns, "cloudflare_dns_record", "acme_delegation")["content"]
    expression = content.removeprefix("${").removesuffix("}")
    assert expression.startswith("trimsuffix(hcloud_zone.acme.authoritative_nameservers.assigned[each.value[1]]")
    stand_in = expression.replace("hcloud_zone.acme.", "local.zone.").replace("each.value[1]", "index")
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.tf").write_text(
        'locals {\n  zone = { authoritative_nameservers = { assigned = ["hydrogen.ns.hetzner.com.", '
        '"oxygen.ns.hetzner.com.", "helium.ns.hetzner.de"] } }\n}\n\n'
        f"output \"content\" {{\n  value = [for index in [0, 1, 2] : {stand_in}]\n}}\n")
    terraform = Terraform(work, tmp_path / "home")
    terraform.init()
    terraform.run("apply", "-auto-approve", "-input=false", "-no-color")
    assert terraform.outputs()["content"] == [
        "hydrogen.ns.hetzner.com", "oxygen.ns.hetzner.com", "helium.ns.hetzner.de"]


def declared(rendered: Rendered) -> set[tuple[str, str]]:
    """The (type, name) of every resource the rendered files declare."""
    return {(kind, name) for text in rendered.files.values() for entry in parse(text).get("resource", [])
            for kind, named in entry.items() for name in named}


def unformatted(rendered: Rendered, tmp_path: Path) -> list[str]:
    """The rendered files `terraform fmt` would change."""
    write_files(rendered, tmp_path / "work")
    return Terraform(tmp_path / "work", tmp_path / "home").unformatted()


def parse(text: str) -> dict:
    return hcl2.loads(text, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True))


def resource(parsed: dict, kind: str, name: str) -> dict:
    """One resource block of a parsed file."""
    return next(entry[kind][name] for entry in parsed["resource"] if name in entry.get(kind, {}))


def test_the_example_matches_its_golden_files():
    """After a deliberate change of the templates: ATL_UPDATE_GOLDEN=1 pytest tests/test_hcloud.py"""
    rendered = render(load_config(EXAMPLE).config, TEMPLATES)
    assert not (os.environ.get("ATL_UPDATE_GOLDEN") and os.environ.get("CI")), "CI never rewrites golden files"
    if os.environ.get("ATL_UPDATE_GOLDEN"):
        for name, text in rendered.files.items():
            (GOLDEN / name).write_text(text)
    assert {path.name: path.read_text() for path in GOLDEN.glob("*.tf")} == rendered.files


def test_the_same_domains_yml_renders_both_targets():
    local, hcloud = load_config(REPO / "domains.yml").config, load_config(EXAMPLE).config
    assert (local.services, local.domains) == (hcloud.services, hcloud.domains)
    on_local, on_hcloud = render(local, TEMPLATES), render(hcloud, TEMPLATES)
    check_rendered(on_local)
    check_rendered(on_hcloud)
    assert on_local.inputs["services"] == on_hcloud.inputs["services"]
    assert on_local.inputs["domains"] == on_hcloud.inputs["domains"]


def test_a_server_is_the_smallest_type_that_holds_its_share(write):
    text = EXAMPLE.read_text()
    config = load_config(write(text)).config
    # api: ceil(3/2) x (500m, 512Mi); website: ceil(2/2) x (100m, 128Mi); the system: 500m, 1Gi
    assert group_share(config, "default") == (1600, 2 * 512 * 2**20 + 128 * 2**20 + GiB)
    assert fitting_server_type(config) == "cx23"
    bigger = load_config(write(text.replace("servers: 2 ", "servers: 1 ").replace('memory: "512Mi"', 'memory: "2Gi"'))
                         ).config
    assert fitting_server_type(bigger) == "cx33"  # 3 x 2Gi + 2 x 128Mi + 1Gi


@pytest.mark.parametrize(("old", "new", "finding"), [
    ('name: "www.allthingslinux.org"', 'name: "www.example.org"',
     (38, 11, "www.example.org is not in the Cloudflare zone allthingslinux.org (target.cloudflare.zone)")),
    ('name: "docs.allthingslinux.org"', 'name: "mail.allthingslinux.org"\n    proxied: true',
     (47, 14, "mail.allthingslinux.org must not go through Cloudflare's HTTP proxy (mail and the like): remove "
              "`proxied: true`")),
    ("zone_id: 0123456789abcdef0123456789abcdef", "zone_id: 0123456789abcdef0123456789abcdef\n  subnet: 10.9.0.0/24",
     (16, 11, "the subnet 10.9.0.0/24 must lie in the private network 10.0.0.0/16 (RFC 1918)")),
    ("kind: hcloud", "kind: hcloud\n  network: 100.64.0.0/16\n  subnet: 100.64.1.0/24",
     (10, 11, "the subnet 100.64.1.0/24 must lie in the private network 100.64.0.0/16 (RFC 1918)")),
    ('memory: "512Mi"', 'memory: "32Gi"',
     (7, 1, "each of 2 servers needs 1.6 cpu and 65.1Gi memory; the largest known type, cx53, has 16 cpu and 32Gi: "
             "add servers, or set target.server_type")),
    ("    image: ghcr.io/allthingslinux/website:1.0.0\n", "",
     (24, 5, "service 'website' has no image; the hcloud target runs services as containers")),
    ("location: fsn1", "location: ash",
     (8, 3, "set target.server_type: the types sized automatically (cx23, cx33, cx43, cx53) are offered in fsn1, "
            "nbg1, hel1 only")),
    ("project: allthingslinux", "project: " + "a" * 51,
     (5, 10, f"`{'a' * 51}-production-1` names a server on hcloud: keep project, environment and server group names "
             "within 63 characters together")),
    ("ssh_from: [203.0.113.0/24]", "ssh_from: []",
     (12, 13, "the deployment reaches the servers over SSH, which the firewall closes to every address not in "
              "target.ssh_from: list the ranges of the machines that deploy")),
    ("kind: hcloud", "kind: hcloud\n  ssh_port: 80",
     (9, 13, "target.ssh_port 80 and the routers' port 80 take the same port on every server: choose another")),
    ("    ssl: true\n", "    ssl: false\n",
     (32, 10, "api.allthingslinux.org goes through Cloudflare's proxy, which reaches the load balancer over HTTPS and "
              "verifies its certificate (SSL mode Full (strict)); the certificate holds only `ssl: true` domains: set "
              "`ssl: true`, or `proxied: false`")),
])
def test_the_rules_of_the_target(write, old, new, finding):
    text = EXAMPLE.read_text()
    assert old in text
    validated = validate(load_config(write(text.replace(old, new, 1))))
    assert [(f.line, f.column, f.message) for f in validated.findings] == [finding]


@pytest.mark.parametrize("replacements", [
    {},
    {'name: "docs.allthingslinux.org"': 'name: "allthingslinux.org"'},  # the zone's apex is in the zone
    {'name: "docs.allthingslinux.org"': 'name: "mail.allthingslinux.org"'},  # not proxied, since not asked to be
    {"project: allthingslinux": "project: " + "a" * 50},  # server names of 63 characters
    {"kind: hcloud": "kind: hcloud\n  ssh_port: 8300"},  # the port after website's block
    {"port: 8100": "port: 9000"},  # holds the Prometheus port of the machine that deploys, not of the servers
    {"kind: hcloud": "kind: hcloud\n  server_type: cx53", 'memory: "512Mi"': 'memory: "32Gi"'},  # taken as set
])
def test_what_the_target_allows(write, replacements):
    text = EXAMPLE.read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new, 1)
    assert validate(load_config(write(text))).findings == ()


def test_a_domain_without_a_certificate_is_fine_unproxied(write):
    text = EXAMPLE.read_text().replace("    ssl: true\n", "    ssl: false\n    proxied: false\n", 1)
    validated = validate(load_config(write(text)))
    assert not validated.findings
    rendered = render(validated.loaded.config, TEMPLATES)
    check_rendered(rendered)
    assert rendered.inputs["hcloud"]["records"]["api.allthingslinux.org"] == {"proxied": False, "ttl": 300}
    assert "api.allthingslinux.org" not in rendered.inputs["hcloud"]["certificate_domains"]


def test_a_mail_name_is_never_proxied(write):
    text = EXAMPLE.read_text().replace('name: "docs.allthingslinux.org"', 'name: "mail.allthingslinux.org"')
    rendered = render(load_config(write(text)).config, TEMPLATES)
    assert rendered.inputs["hcloud"]["records"]["mail.allthingslinux.org"] == {"proxied": False, "ttl": 300}


@pytest.mark.slow
def test_hostile_text_in_the_ssh_key_comment_stays_a_string(write, tmp_path: Path):
    comment = 'ops ${file("/etc/passwd")} %{ if true }x%{ endif } "quoted" \\'
    text = re.sub(r"ssh_public_key: (\S+ \S+) .*", lambda m: f"ssh_public_key: '{m.group(1)} {comment}'",
                  EXAMPLE.read_text())
    rendered = render(load_config(write(text)).config, TEMPLATES)
    check_rendered(rendered)
    assert rendered.inputs["hcloud"]["ssh_public_key"].endswith(comment)
    assert unformatted(rendered, tmp_path) == []


@pytest.mark.slow
def test_planning_without_the_providers_says_what_to_do_and_never_shows_a_token(project, monkeypatch):
    canaries = {"HCLOUD_TOKEN": "hcloud-canary-7Rk2", "CLOUDFLARE_API_TOKEN": "cloudflare-canary-9Qw4"}
    for name, value in canaries.items():
        monkeypatch.setenv(name, value)
    project.domains_file.write_text(EXAMPLE.read_text())
    with pytest.raises(TerraformError) as raised:
        make_plan(project, validate(load_config(project.domains_file)), "hcloud")
    message = str(raised.value)
    assert "could not get the providers" in message and "registry.terraform.io" in message
    assert not any(value in message for value in canaries.values())


def test_only_a_dial_to_the_state_database_is_a_backend_outage_and_an_unsaved_state_is_never_retried(
        tmp_path: Path):
    runner = Terraform(tmp_path, tmp_path / "home", backend="pg", backend_address="db.example.org:5432")
    outage = runner._error("plan", "Error: dial tcp db.example.org:5432: connect: connection refused")
    reset = runner._error("apply", "Error: read tcp 10.0.0.5:33350->db.example.org:5432: read: connection reset by "
                                   "peer")
    provider = runner._error("apply", "Error: Post https://api.hetzner.cloud/v1/servers: dial tcp "
                                      "213.239.246.1:443: i/o timeout")
    unsaved = runner._error("apply", "Error: Failed to save state: dial tcp db.example.org:5432: connect: connection "
                                     "refused\nError: Failed to persist state to backend ... errored.tfstate")
    assert type(outage).__name__ == type(reset).__name__ == "BackendUnavailable"
    assert type(provider).__name__ == "TerraformError"  # the provider's API, not the state backend
    assert type(unsaved).__name__ == "StateNotSaved" and "terraform state push errored.tfstate" in str(unsaved)


def test_one_domain_is_planned_through_the_resources_of_its_own_target():
    """`atl infra up --domain` targets what the hcloud templates declare for a domain: its records."""
    config = load_config(EXAMPLE).config
    rendered = render(config, TEMPLATES)
    addresses = target_of(config).addresses(next(d for d in config.domains if d.name == "api.allthingslinux.org"))
    assert addresses == ('cloudflare_dns_record.a["api.allthingslinux.org"]',
                         'cloudflare_dns_record.aaaa["api.allthingslinux.org"]')
    assert {address.split("[")[0] for address in addresses} <= {f"{kind}.{name}" for kind, name in declared(rendered)}
    assert "api.allthingslinux.org" in rendered.inputs["hcloud"]["records"]  # the for_each key


GROUPS = """\
  server_groups:
    web: {count: 2}
    chat: {count: 1, type: cx33, location: hel1, private_ip: 10.0.1.10, docker_subnet: 172.23.0.0/16}
    db: {count: 1}
"""
CHAT = """\
  chat:
    image: ghcr.io/example/prosody:0.12.4
    port: 8300
    servers: chat
    tcp_ports: [5222, 5269]
    volumes: {data: /var/lib/prosody}
    metrics: null
  postgres:
    image: postgres:16.3
    port: 8400
    servers: db
    internal: true
    volumes: {data: /var/lib/postgresql/data}
    resources: {cpu: "1", memory: 2Gi}
"""
CHAT_DOMAIN = """\
  - name: chat.allthingslinux.org
    service: chat
    proxied: false
  - name: allthingslinux.org
    external: true
    provider: cloudflare-workers
    enabled: false
"""


def grouped(write) -> LoadedConfig:
    """The example with server groups, a chat service on TCP ports, a database and an external domain."""
    return load_config(write(grouped_text(EXAMPLE.read_text())))


def grouped_text(text: str, groups: str = GROUPS, chat: str = CHAT) -> str:
    text = text.replace("  cloudflare:\n", groups + "  cloudflare:\n", 1)
    text = text.replace("services:\n", "services:\n" + chat, 1)
    for port in ("8100", "8200"):
        text = text.replace(f"    port: {port}", f"    port: {port}\n    servers: web")
    return text + CHAT_DOMAIN


@pytest.mark.slow
def test_server_groups_tcp_ports_internal_and_external_services_render(write, tmp_path: Path):
    loaded = grouped(write)
    assert validate(loaded).findings == ()
    rendered = render(loaded.config, TEMPLATES)
    check_rendered(rendered)
    servers = rendered.inputs["hcloud"]["servers"]
    assert servers == {
        "allthingslinux-production-web-1": {"group": "web", "type": "cx23", "location": "fsn1", "ip": None},
        "allthingslinux-production-web-2": {"group": "web", "type": "cx23", "location": "fsn1", "ip": None},
        "allthingslinux-production-chat-1": {"group": "chat", "type": "cx33", "location": "hel1", "ip": "10.0.1.10"},
        "allthingslinux-production-db-1": {"group": "db", "type": "cx23", "location": "fsn1", "ip": None}}
    assert rendered.inputs["hcloud"]["tcp_ports"] == [5222, 5269]
    assert set(rendered.inputs["services"]) == {"backend-api", "website", "chat", "postgres"}  # postgres: internal
    assert "allthingslinux.org" not in rendered.inputs["domains"]  # external: served elsewhere, no DNS
    assert "allthingslinux.org" not in rendered.inputs["hcloud"]["records"]
    main = parse(rendered.files["main.tf"])
    user_data = main["resource"][-1]["hcloud_server"]["node"]["user_data"]
    assert "MaxAuthTries ${local.sshd.max_auth_tries}" in user_data and "PubkeyAuthentication yes" in user_data
    assert unformatted(rendered, tmp_path) == []


@pytest.mark.parametrize(("change", "finding"), [
    (("    servers: chat\n", "    servers: chta\n"),
     (25, 14, "service 'chat' runs on the server group 'chta', which target.server_groups does not declare; did you "
              "mean 'chat'?")),
    (("\n    servers: web", "\n"),  # backend-api on the group `default`, which server_groups replaces
     (37, 5, "service 'backend-api' runs on the server group 'default', which target.server_groups does not declare")),
    (("    proxied: false\n", ""),  # proxied as target.cloudflare.proxied says
     (74, 5, "chat.allthingslinux.org: its service takes TCP ports, which Cloudflare's HTTP proxy does not pass: set "
             "`proxied: false`")),
    (("    proxied: false\n", "    proxied: true\n"),
     (76, 14, "chat.allthingslinux.org: its service takes TCP ports, which Cloudflare's HTTP proxy does not pass: set "
              "`proxied: false`")),
    (("name: chat.allthingslinux.org\n    service: chat\n", "name: chat.allthingslinux.org\n    service: chat\n"
      "    replicas: 2\n"),
     (26, 16, "service 'chat' publishes TCP ports once per server: 2 replicas need as many servers in group 'chat', "
              "which has 1")),
    (("chat: {count: 1,", "chat: {count: 2,"),
     (15, 62, "server group 'chat': a fixed private_ip needs a group of one server, and an address in target.subnet "
              "10.0.1.0/24")),
    (("docker_subnet: 172.23.0.0/16", "docker_subnet: 10.0.9.0/24"),
     (15, 88, "server group 'chat': docker_subnet 10.0.9.0/24 overlaps target.network 10.0.0.0/16, which the servers "
              "must reach: choose another range")),
    (("    internal: true\n", ""),
     (34, 16, "service 'postgres' takes its resources from its domains: set resources there, or make it "
              "`internal: true`")),
    (("db: {count: 1}", "db: {count: 1, location: ash}"),  # after chat, whose type is set
     (16, 9, "set the type of server group 'db': the types sized automatically (cx23, cx33, cx43, cx53) are offered "
             "in fsn1, nbg1, hel1 only")),
    (('memory: "512Mi"', 'memory: "32Gi"'),
     (14, 5, "each of 2 servers of group 'web' needs 1.6 cpu and 65.1Gi memory; the largest known type, cx53, has 16 "
             "cpu and 32Gi: add servers, or set the type of server group 'web'")),
])
def test_the_rules_of_groups_and_tcp_services(write, change, finding):
    old, new = change
    text = grouped(write).source.text
    assert old in text
    validated = validate(load_config(write(text.replace(old, new, 1), "changed.yml")))
    assert [(f.line, f.column, f.message) for f in validated.findings] == [finding]


def test_a_share_that_fills_a_type_exactly_fits_it(write):
    text = EXAMPLE.read_text().replace('cpu: "500m"', 'cpu: "700m"', 1)
    text = text.replace('memory: "512Mi"', 'memory: "1472Mi"', 1)
    config = load_config(write(text)).config
    assert group_share(config, "default") == (2000, 4 * GiB)  # 2 x (700m, 1472Mi) + (100m, 128Mi) + the system's
    assert fitting_server_type(config) == "cx23"


def test_without_a_certificate_the_tls_resources_are_neither_rendered_nor_expected(write):
    text = EXAMPLE.read_text().replace("    ssl: true\n", "    ssl: false\n    proxied: false\n")
    rendered = render(load_config(write(text)).config, TEMPLATES)
    assert rendered.inputs["hcloud"]["certificate_domains"] == []
    check_rendered(rendered)


def test_the_local_target_refuses_tcp_ports_and_honours_the_rest(write):
    text = (REPO / "domains.yml").read_text().replace(
        '    health: {path: /healthz}\n', '    health: {path: /healthz}\n    tcp_ports: [5222]\n', 1)
    findings = [(f.line, f.column, f.message) for f in validate(load_config(write(text))).findings]
    assert findings == [(21, 16, "service 'backend-api': TCP ports are not supported on the local target (Caddy from "
                                 "PyPI proxies HTTP only; its TCP proxy is a plugin it is built without): deploy it to "
                                 "hcloud")]


# several Cloudflare zones

ZONES = """\
    min_tls_version: "1.2"
    zones:
      atl.chat: 11111111111111111111111111111111
      docs.allthingslinux.org: 22222222222222222222222222222222
      atl.wiki: 33333333333333333333333333333333
"""
ZONE_DOMAINS = """\
  - name: atl.chat
    service: website
    proxied: false
    replicas: 2
    resources: {cpu: 100m, memory: 128Mi}
  - name: atl.wiki
    external: true
"""
PRIMARY_ID = "0123456789abcdef0123456789abcdef"
CHAT_ID, DOCS_ID, WIKI_ID = "1" * 32, "2" * 32, "3" * 32


def zoned_text(text: str = EXAMPLE.read_text()) -> str:
    """The example with more zones: docs.allthingslinux.org a zone of its own inside allthingslinux.org, atl.chat
    unproxied, atl.wiki holding only an external domain; and a lowest TLS version."""
    return text.replace(f"    zone_id: {PRIMARY_ID}\n", f"    zone_id: {PRIMARY_ID}\n" + ZONES, 1) + ZONE_DOMAINS


def zones_only_text() -> str:
    """The same zones, all under `zones`."""
    return zoned_text().replace(f"    zone: allthingslinux.org\n    zone_id: {PRIMARY_ID}\n", "", 1).replace(
        "    zones:\n", f"    zones:\n      allthingslinux.org: {PRIMARY_ID}\n", 1)


def instances(rendered: Rendered, tmp_path: Path) -> dict[str, object]:
    """Each resource of dns.tf as Terraform evaluates it offline, from the rendered locals: its zone_id, name,
    content and value (by for_each key when it has one). Hetzner's zones are stand-ins whose nameservers name
    their zone (`ns0.atl.chat.`); the load balancer's addresses are left out."""
    main = rendered.files["main.tf"]
    start = main.index("locals {")
    hcloud = rendered.inputs["hcloud"]
    hetzner = {name: {"authoritative_nameservers": {"assigned": [f"ns{n}.{name}." for n in range(3)]}}
               for name in [hcloud["zone"], *hcloud.get("zones", {})] if name}
    resources = "".join(f'    "{address}" = {value}\n' for address, value in _evaluable(rendered.files["dns.tf"],
                                                                                           hcloud["zone"]))
    work = tmp_path / "evaluate"
    work.mkdir(parents=True)
    (work / "main.tf").write_text(f"{main[start:main.index(chr(10) + '}' + chr(10), start) + 3]}\n"
                                  f"locals {{\n  hetzner = {hcl(hetzner)}\n}}\n\n"
                                  f'output "resources" {{\n  value = {{\n{resources}  }}\n}}\n')
    terraform = Terraform(work, tmp_path / "home")
    terraform.init()
    terraform.run("apply", "-auto-approve", "-input=false", "-no-color")
    return terraform.outputs()["resources"]


def _evaluable(dns: str, zone: str | None) -> Iterator[tuple[str, str]]:
    """Each resource's address, and an expression of its attributes that needs locals only (`local.hetzner` for
    the Hetzner zones)."""
    options = hcl2.SerializationOptions(strip_string_quotes=False, with_comments=False)
    for entry in hcl2.loads(dns, serialization_options=options)["resource"]:
        for kind, named in entry.items():
            for name, block in named.items():
                attributes = ", ".join(f"{key} = {_expression(block[key])}" for key in ("zone_id", "name", "content",
                                                                                          "value")
                                       if key in block and "hcloud_load_balancer" not in block[key])
                value = f"{{ {attributes} }}"
                if "for_each" in block:
                    value = f"{{ for key, item in {_expression(block['for_each'])} : key => {value} }}"
                value = re.sub(r"\beach\.key\b", "key", re.sub(r"\beach\.value\b", "item", value))
                value = value.replace("hcloud_zone.acme.", f"local.hetzner[{hcl(zone)}].")
                yield f"{kind.strip(chr(34))}.{name.strip(chr(34))}", value.replace("hcloud_zone.acme_zones[",
                                                                                    "local.hetzner[")


def _expression(parsed: str) -> str:
    """A parsed attribute as HCL again: `${...}` is an expression, anything else a quoted template."""
    return parsed[2:-1] if parsed.startswith("${") else parsed


@pytest.mark.slow
def test_each_record_and_zone_setting_is_in_its_own_zone(write, tmp_path: Path):
    """The longest zone wins (docs.allthingslinux.org); SSL strict only where a record of that zone is proxied;
    the lowest TLS version in each zone holding a record; a zone with only an external name is left alone."""
    rendered = render(load_config(write(zoned_text())).config, TEMPLATES)
    check_rendered(rendered)
    found = instances(rendered, tmp_path)
    for kind in ("a", "aaaa"):
        assert {name: record["zone_id"] for name, record in found[f"cloudflare_dns_record.{kind}"].items()} == {
            "api.allthingslinux.org": PRIMARY_ID, "www.allthingslinux.org": PRIMARY_ID,
            "docs.allthingslinux.org": DOCS_ID, "atl.chat": CHAT_ID}
    assert found["cloudflare_zone_setting.ssl"] == {"zone_id": PRIMARY_ID, "value": "strict"}
    assert found["cloudflare_zone_setting.ssl_zones"] == {"docs.allthingslinux.org": {"zone_id": DOCS_ID,
                                                                                      "value": "strict"}}
    assert found["cloudflare_zone_setting.min_tls_version"] == {"zone_id": PRIMARY_ID, "value": "1.2"}
    assert found["cloudflare_zone_setting.min_tls_version_zones"] == {
        "docs.allthingslinux.org": {"zone_id": DOCS_ID, "value": "1.2"},
        "atl.chat": {"zone_id": CHAT_ID, "value": "1.2"}}  # atl.wiki: no record there


@pytest.mark.slow
def test_each_certificate_domain_is_delegated_to_a_hetzner_zone_of_its_own_zone(write, tmp_path: Path):
    """The challenge of each certificate domain is answered in a Hetzner zone named like the Cloudflare zone the
    domain is in, and delegated there from that zone; the certificate holds every zone's domains."""
    rendered = render(load_config(write(zoned_text())).config, TEMPLATES)
    found = instances(rendered, tmp_path)
    assert found["hcloud_zone.acme"] == {"name": "allthingslinux.org"}
    assert found["hcloud_zone.acme_zones"] == {zone: {"name": zone} for zone in ("atl.chat", "docs.allthingslinux.org")}

    def delegations(domains: dict[str, tuple[str, str]]) -> dict:
        return {f"{domain} {n}": {"zone_id": zone_id, "name": f"_acme-challenge.{domain}", "content": f"ns{n}.{zone}"}
                for domain, (zone, zone_id) in domains.items() for n in range(3)}

    primary = ("allthingslinux.org", PRIMARY_ID)
    assert found["cloudflare_dns_record.acme_delegation"] == delegations(
        {"api.allthingslinux.org": primary, "www.allthingslinux.org": primary})
    assert found["cloudflare_dns_record.acme_delegation_zones"] == delegations(
        {"docs.allthingslinux.org": ("docs.allthingslinux.org", DOCS_ID), "atl.chat": ("atl.chat", CHAT_ID)})
    assert rendered.inputs["hcloud"]["certificate_domains"] == [
        "api.allthingslinux.org", "www.allthingslinux.org", "docs.allthingslinux.org", "atl.chat"]
    certificate = resource(parse(rendered.files["load_balancer.tf"]), "hcloud_managed_certificate", "tls")
    assert certificate["depends_on"] == ["${cloudflare_dns_record.acme_delegation}",
                                         "${cloudflare_dns_record.acme_delegation_zones}"]


@pytest.mark.slow
def test_adding_zones_moves_nothing_of_the_first_and_all_under_zones_is_keyed(write, tmp_path: Path):
    """A file of one zone declares exactly what it always did (the golden files, and the set in the first test);
    with `zones` added, the resources of `zone` keep their addresses and the others are keyed by zone; with every
    zone under `zones`, all are keyed."""
    one = declared(render(load_config(EXAMPLE).config, TEMPLATES))
    zoned = render(load_config(write(zoned_text())).config, TEMPLATES)
    keyed = {("cloudflare_zone_setting", "ssl_zones"), ("cloudflare_zone_setting", "min_tls_version_zones"),
             ("hcloud_zone", "acme_zones"), ("cloudflare_dns_record", "acme_delegation_zones")}
    assert declared(zoned) == one | keyed | {("cloudflare_zone_setting", "min_tls_version")}
    assert unformatted(zoned, tmp_path) == []

    only = render(load_config(write(zones_only_text(), "only.yml")).config, TEMPLATES)
    check_rendered(only)
    unkeyed = {("cloudflare_zone_setting", "ssl"), ("hcloud_zone", "acme"),
               ("cloudflare_dns_record", "acme_delegation")}
    assert declared(only) == (one - unkeyed) | keyed
    found = instances(only, tmp_path / "only")
    assert found["cloudflare_dns_record.a"]["www.allthingslinux.org"]["zone_id"] == PRIMARY_ID
    assert set(found["hcloud_zone.acme_zones"]) == {"allthingslinux.org", "atl.chat", "docs.allthingslinux.org"}


@pytest.mark.parametrize(("change", "message"), [
    (("  - name: atl.wiki\n", "  - name: atl.wiki.example\n"), "atl.wiki.example is not in any of the Cloudflare "
     "zones allthingslinux.org, atl.chat, docs.allthingslinux.org, atl.wiki (target.cloudflare.zone and zones)"),
    (("  - name: atl.chat\n", "  - name: xatl.chat\n"), "xatl.chat is not in any of the Cloudflare zones"),
    (("      atl.wiki: 3", "      ATL.Chat.: 3"), "the zone ATL.Chat. is listed already, as atl.chat"),
    (("      atl.wiki: 3", "      AllThingsLinux.org: 3"),
     "the zone AllThingsLinux.org is listed already, as target.cloudflare.zone"),
    ((f"atl.wiki: {WIKI_ID}", f"atl.wiki: {CHAT_ID}"), "the zone atl.wiki has the ID of atl.chat"),
    ((f"atl.wiki: {WIKI_ID}", "atl.wiki: 3"), "target.cloudflare.zones.atl.wiki: a Cloudflare zone ID is 32 hex"),
    ((f"atl.wiki: {WIKI_ID}", "atl.wiki: [3]"), "target.cloudflare.zones.atl.wiki: input should be a valid string"),
    ((f"    zone_id: {PRIMARY_ID}\n", ""), "zone and zone_id go together"),
])
def test_the_zones_are_checked(write, change, message):
    old, new = change
    text = zoned_text()
    assert old in text
    path = write(text.replace(old, new, 1))
    try:
        findings = validate(load_config(path)).findings
    except ConfigError as error:
        findings = error.findings
    assert any(message in finding.message for finding in findings), findings


def test_a_zone_is_the_longest_suffix_on_label_boundaries(write):
    cloudflare = load_config(write(zoned_text())).config.target.cloudflare
    assert [cloudflare.zone_of(name) for name in ("docs.allthingslinux.org", "a.docs.allthingslinux.org",
                                                  "mydocs.allthingslinux.org", "allthingslinux.org", "xatl.chat",
                                                  "chat")] == [
        "docs.allthingslinux.org", "docs.allthingslinux.org", "allthingslinux.org", "allthingslinux.org", None, None]
