"""The semantic rules: each finding, and where it points."""

from __future__ import annotations

import json
import os
import re

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.findings import MAX_FINDINGS, ConfigError
from atl_pipeline.validation import validate

CAPACITY = ("target: {kind: local, capacity: {cpu: '8', memory: 16Gi}, prometheus_port: 19090, blackbox_port: 19115, "
            "alertmanager_port: 19093}\n")


def findings(write, text: str) -> list[tuple[int, int, str]]:
    validated = validate(load_config(write(CAPACITY + text)))
    return [(f.line, f.column, f.message) for f in validated.findings]


def test_a_valid_configuration_has_no_findings(write):
    assert findings(write, """\
services:
  api: {command: [api, "{port}", --id, "{replica}"], port: 8080}
  web: {command: [web, "{port}"], port: 8180}
domains:
  - {name: api.example.org, service: api, replicas: 3}
  - {name: www.example.org, service: web, replicas: 2}
  - {name: example.org, service: web, replicas: 2}
""") == []


def test_duplicate_domain_names_ignore_case_and_a_trailing_dot(write):
    assert findings(write, """\
services: {web: {command: [web], port: 9000}}
domains:
  - {name: www.example.org, service: web}
  - {name: WWW.Example.org., service: web}
""") == [(5, 12, "domain www.example.org is declared twice (first at line 4); remove one, or merge what they say "
                "into the first")]


def test_a_duplicate_points_to_the_first_of_its_name(write):
    assert findings(write, """\
services: {web: {command: [web], port: 9000}}
domains:
  - {name: www.example.org, service: web}
  - {name: api.example.org, service: web}
  - {name: api.example.org, service: web}
""") == [(6, 12, "domain api.example.org is declared twice (first at line 5); remove one, or merge what they say "
                 "into the first")]


def test_every_domain_names_a_defined_service(write):
    assert findings(write, """\
services: {backend-api: {command: [api], port: 9000}}
domains:
  - {name: a.example.org, service: backend-apii}
  - {name: b.example.org, service: mail}
""") == [
        (4, 36, "service 'backend-apii' is not defined; did you mean 'backend-api'?"),
        (5, 36, "service 'mail' is not defined; define it under `services:`"),
    ]


def test_domains_sharing_a_service_ask_for_the_same_replicas_and_resources(write):
    assert findings(write, """\
services: {web: {command: [web], port: 9000}}
domains:
  - {name: a.example.org, service: web, replicas: 2}
  - {name: b.example.org, service: web, replicas: 3, resources: {cpu: 1}}
""") == [
        (5, 51, "b.example.org and a.example.org (line 4) share service 'web' but ask for different replicas; "
                "make them equal"),
        (5, 65, "b.example.org and a.example.org (line 4) share service 'web' but ask for different resources; "
                "make them equal"),
    ]


def test_an_external_domain_is_passed_over_not_the_domains_after_it(write):
    assert findings(write, """\
services: {web: {command: [web], port: 9000}}
domains:
  - {name: x.example.org, external: true, provider: cloudflare-workers}
  - {name: a.example.org, service: web, replicas: 2}
  - {name: b.example.org, service: web, replicas: 3}
""") == [(6, 51, "b.example.org and a.example.org (line 5) share service 'web' but ask for different replicas; "
                 "make them equal")]


def test_the_local_target_needs_a_command_and_no_shell(write):
    assert findings(write, """\
services:
  api: {image: ghcr.io/example/api:1.0, port: 9000}
  web: {command: [/bin/bash, -c, "web --port {port}"], port: 9100}
  unused: {image: ghcr.io/example/unused:1.0, port: 9200}
domains:
  - {name: a.example.org, service: api}
  - {name: b.example.org, service: web}
""") == [
        (3, 8, "service 'api' has no command; the local target runs services as processes"),
        (4, 18, "service 'web' runs a shell ('/bin/bash'); give the program's own arguments instead, "
                "so no configuration value is ever read by a shell"),
    ]


def test_no_two_services_share_a_port(write):
    assert findings(write, """\
services:
  api: {command: [api], port: 9000}
  web: {command: [web], port: 9099}
  docs: {command: [docs], port: 9200}
  far: {command: [far], port: 65500}
  lb: {command: [lb], port: 7950}
domains:
  - {name: a.example.org, service: api, replicas: 3}
  - {name: b.example.org, service: web}
  - {name: c.example.org, service: docs}
  - {name: d.example.org, service: far, replicas: 2}
  - {name: e.example.org, service: lb}
""") == [
        (4, 31, "services 'api' and 'web' both use port 9099 (a service takes 100 ports from its port): give each "
                "its own block"),
        (6, 31, "service 'far' needs ports 65500-65599, past 65535"),
        (7, 29, "service 'lb' takes ports 7950-8049, which holds target.http_port 8000"),
    ]


def test_the_load_balancer_ports_differ(write):
    path = write("target: {kind: local, http_port: 9000, https_port: 9000}\ndomains: []\n")
    validated = validate(load_config(path))
    assert [str(f) for f in validated.findings] == [
        f"{path}:1:9: the target's ports must all differ: {{'http_port': 9000, 'https_port': 9000, 'admin_port': "
        "2019, 'prometheus_port': 9090, 'blackbox_port': 9115, 'alertmanager_port': 9093}"]


@pytest.mark.parametrize(("port", "expected"), [
    (65436, []), (65437, [(2, 40, "service 'far' needs ports 65437-65536, past 65535")])])
def test_a_services_ports_end_at_65535(write, port, expected):
    assert findings(write, f"services: {{far: {{command: [far], port: {port}}}}}\n"
                           "domains: [{name: a.example.org, service: far}]\n") == expected


def test_requests_stay_within_the_target_capacity(write):
    text = """\
target: {kind: local, capacity: {cpu: '2', memory: 1Gi}}
services:
  api: {command: [api], port: 30000}
  web: {command: [web], port: 30100}
domains:
  - {name: a.example.org, service: api, replicas: 3, resources: {cpu: 500m, memory: 256Mi}}
  - {name: b.example.org, service: web, replicas: 2, resources: {cpu: 500m, memory: 256Mi}}
"""
    validated = validate(load_config(write(text)))
    assert [(f.line, f.column, f.message) for f in validated.findings] == [
        (5, 1, "the domains request 2.5 cpu and 1.25Gi memory; target.capacity has 2 cpu and 1Gi: "
               "lower replicas or resources, or raise target.capacity")]


def test_requests_may_take_the_whole_capacity(write):
    assert validate(load_config(write("""\
target: {kind: local, capacity: {cpu: '2', memory: 1Gi}}
services: {api: {command: [api], port: 30000}}
domains: [{name: a.example.org, service: api, replicas: 4, resources: {cpu: 500m, memory: 256Mi}}]
"""))).findings == ()


def test_capacity_defaults_to_this_machine(write):
    cores = len(os.sched_getaffinity(0)) * 1000
    path = write(f"""\
services: {{api: {{command: [api], port: 30000}}}}
domains:
  - {{name: a.example.org, service: api, resources: {{cpu: "{cores + 1}m"}}}}
""")
    (finding,) = validate(load_config(path)).findings
    assert finding.message.startswith(f"the domains request {(cores + 1) / 1000:g} cpu")
    assert f"; this machine has {cores / 1000:g} cpu and " in finding.message


def test_findings_from_different_rules_are_reported_together_in_file_order(write):
    result = findings(write, """\
services: {api: {command: [sh, -c, api], port: 9000}}
domains:
  - {name: a.example.org, service: api}
  - {name: a.example.org, service: nope}
""")
    assert [line for line, _, _ in result] == [2, 5, 5]


@pytest.mark.parametrize(("command", "shell"), [
    (["{service}", "-c", "web"], "'sh'"),  # the service is named sh
    (["/usr/bin/env", "bash", "-c", "web"], "'bash' through '/usr/bin/env'"),
    (["env", "-i", "PATH=/bin", "sh", "-c", "web"], "'sh' through 'env'"),
    (["env", "-S", "sh -c web"], "'sh -c web' through 'env'"),
    (["nice", "-n", "5", "timeout", "10", "dash", "-c", "web"], "'dash' through 'nice'"),
    (["busybox", "ash", "-c", "web"], "'ash' through 'busybox'"),
    (["stdbuf", "-o", "L", "/bin/zsh5.9", "-c", "web"], "'/bin/zsh5.9' through 'stdbuf'"),
    (["setsid", "nohup", "su", "-c", "web"], "'su' through 'setsid'"),
    (["bash{port}", "-c", "web"], "'bash1'"),  # placeholders are filled in before the program is looked at
    (["sh{replica}", "-c", "web"], "'sh0'"),
])
def test_no_shell_behind_a_placeholder_or_a_wrapper(write, command, shell):
    argv = ", ".join(json.dumps(argument) for argument in command)
    assert findings(write, f"services: {{sh: {{command: [{argv}], port: 9000}}}}\n"
                           "domains: [{name: a.example.org, service: sh}]\n") == [
        (2, 26, f"service 'sh' runs a shell ({shell}); give the program's own arguments instead, so no "
                "configuration value is ever read by a shell")]


@pytest.mark.parametrize("command", [["nice", "-n", "5", "web"], ["env", "PATH=/bin", "python3", "-m", "app"],
                                     ["shellcheck"], ["busybox", "httpd", "-f"], ["bashful"],
                                     ["env", "", "python3"]])
def test_wrappers_of_other_programs_are_fine(write, command):
    argv = ", ".join(json.dumps(argument) for argument in command)
    assert findings(write, f"services: {{web: {{command: [{argv}], port: 9000}}}}\n"
                           "domains: [{name: a.example.org, service: web}]\n") == []


def test_services_on_one_port_are_one_finding(write):
    services = "".join(f"  s{i}: {{command: [app], port: {9000 + i}}}\n" for i in range(1500))
    domains = "".join(f"  - {{name: d{i}.example.org, service: s{i}, resources: {{cpu: 1m, memory: 1Mi}}}}\n"
                      for i in range(1500))
    result = findings(write, f"services:\n{services}domains:\n{domains}")
    assert [message for _, _, message in result] == [
        "services 's0', 's1' and 1,498 more use ports from port 9001 (a service takes 100 ports from its port): "
        "give each its own block"]


def test_a_long_list_of_findings_is_cut_and_counted(write):
    domains = "".join(f"  - {{name: d{i}.example.org, service: nope}}\n" for i in range(250))
    result = findings(write, f"services: {{}}\ndomains:\n{domains}")
    assert len(result) == MAX_FINDINGS + 1
    assert result[-1] == (4 + MAX_FINDINGS, 39, "and 150 more findings; correct these first")


def test_external_required_and_internal_entries(write):
    assert findings(write, """\
services:
  web: {command: [web], port: 9000}
  db: {command: [db], port: 9100, internal: true, replicas: 2}
  cache: {command: [cache], port: 9200, replicas: 2}
domains:
  - {name: a.example.org, service: web, required: true, enabled: false}
  - {name: example.org, external: true, provider: cloudflare-workers}
  - {name: b.example.org, service: db}
""") == [
        (4, 45, "service 'db' is internal but a domain routes to it: remove `internal: true`, or the domain"),
        (5, 51, "service 'cache' takes its replicas from its domains: set replicas there, or make it `internal: "
                "true`"),
        (7, 66, "a.example.org is required: it may not be disabled; remove `required: true` first if it really "
                "must go"),
    ]


@pytest.mark.parametrize(("domain", "message"), [
    ("{name: example.org, external: true, service: web}", "an external domain is served elsewhere: it names no "
                                                           "service"),
    ("{name: example.org, provider: cloudflare-workers, service: web}", "provider says where an external domain "
                                                                        "runs: set external: true"),
    ("{name: example.org}", "missing required field 'service'"),
])
def test_a_domain_is_served_here_by_a_service_or_elsewhere(write, domain, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(f"services: {{web: {{command: [web], port: 9000}}}}\ndomains: [{domain}]\n"))


def test_an_internal_service_runs_with_no_domain_and_a_disabled_or_external_domain_does_not(write):
    config = load_config(write("""\
services:
  web: {command: [web], port: 9000}
  db: {command: [db], port: 9100, internal: true, replicas: 2, resources: {cpu: 200m, memory: 64Mi}}
domains:
  - {name: a.example.org, service: web, enabled: false}
  - {name: example.org, external: true}
""")).config
    assert [d.name for d in config.serving] == []
    assert {name: (w.replicas, w.resources.cpu) for name, w in config.workloads().items()} == {"db": (2, "200m")}
