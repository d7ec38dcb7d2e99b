"""Hostile input, third round (issue 32): each class the held-out set found, refused at its line with
what to do and nothing echoed that should not be. Each case failed before its fix."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atl_pipeline.config import cron, load_config
from atl_pipeline.config.cron import check_cron
from atl_pipeline.config.importer import import_text
from atl_pipeline.config.model import PORT_BLOCK
from atl_pipeline.findings import ConfigError
from atl_pipeline.policy import Violation, excepted
from atl_pipeline.validation import validate
from tests.conftest import REPO
from tests.test_hcloud import EXAMPLE, grouped_text

SERVICE = ("services: {web: {command: [app, '{port}'], port: 12000%s}}\n"
           "domains: [{name: www.example.org, service: web}]\n")


def refused(write, text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(write(text))
    return [f"{f.line}:{f.column}: {f.message}" for f in raised.value.findings]


@pytest.mark.parametrize("schedule, message", [
    ("0 0 31 4 *", "never fires: no calendar has that day"),  # cron allows it; April has 30 days
    ("0 0 30 2 *", "the Dagster scheduler refuses"),  # Dagster would refuse the code location
    ("*/61 * * * *", "steps by 61, more than the field's range"),  # Dagster would fire it otherwise
    ("60 * * * *", "the minute field `60` is outside 0-59"),
    ("5-1 * * * *", "range that runs backwards"),
    ("0 3 * *", "five fields"),
])
def test_a_schedule_is_judged_as_dagsters_scheduler_runs_it(write, schedule: str, message: str):
    text = SERVICE % "" + f"backup: {{repository: backups, password: env:RESTIC_PASSWORD, schedule: '{schedule}'}}\n"
    (finding,) = refused(write, text)
    assert finding.startswith("3:") and message in finding, finding


def test_a_schedule_that_fires_only_in_leap_years_is_kept(write):
    text = SERVICE % "" + "backup: {repository: backups, password: env:RESTIC_PASSWORD, schedule: '0 0 29 2 *'}\n"
    assert load_config(write(text)).config.backup.schedule == "0 0 29 2 *"


@pytest.mark.parametrize("field, secret", [
    ("backup: {repository: 'sftp:user:hunter2@host:/srv', password: env:P}", "hunter2"),
    ("backup: {repository: 's3:https://AKIA:wJalrXUtnFEMI@s3.example.org/b', password: env:P}", "wJalrXUtnFEMI"),
    ("backup: {repository: 'rest:https://u:p4ss@backup.example.org/', password: env:P}", "p4ss"),
    ("alerting: {receivers: {ops: {webhook: {url: 'https://user:s3cret@hooks.example.org/x'}}}}", "s3cret"),
    ("alerting: {receivers: {ops: {email: {to: a@b.org, sender: c@d.org, smarthost: 'u:pw9@mail.example.org:25'}}}}",
     "pw9"),
])
def test_credentials_in_an_address_are_refused_and_never_printed(write, field: str, secret: str):
    (finding,) = refused(write, SERVICE % "" + field + "\n")
    assert "credentials removed" in finding and secret not in finding, finding


def test_a_password_yaml_reads_as_a_boolean_is_not_echoed(write):
    (finding,) = refused(write, SERVICE % "" + "backup: {repository: backups, password: Yes}\n")
    assert "read as the boolean true" in finding and "Yes" not in finding, finding


@pytest.mark.parametrize("field, message", [
    ("prometheus: {alert_for: 99999d}", "alert_for: at most 1d"),
    ("alerting: {repeat_interval: 9999d}", "repeat_interval: at most 30d"),
    ("alerting: {group_wait: 2d}", "group_wait: at most 1h"),
    ("alerting: {remediation: {cooldown: 30d}}", "cooldown: at most 7d"),
    ("logs: {retention: 99999d}", "retention: at most 365d"),
    ("alerting: {receivers: {ops: {webhook: {url: 'https://hooks.example.org:0/x'}}}}", "port must be a number"),
    ("alerting: {receivers: {ops: {webhook: {url: 'https://hooks.example.org:99999/x'}}}}", "port must be a number"),
    ("alerting: {receivers: {ops: {email: {to: a@b.org, sender: c@d.org, smarthost: 'mail.example.org:0'}}}}",
     "port a number from 1 to 65535"),
    ("backup: {repository: '~/backups', password: env:P}", "~ is not expanded"),
    ("backup: {repository: '/', password: env:P}", "is / or a system folder"),
    ("backup: {repository: 'a/../../..', password: env:P}", "a folder that holds it"),
    ("backup: {repository: '/proc/self/cwd', password: env:P}", "system folder"),
])
def test_values_that_cannot_be_meant_are_refused(write, field: str, message: str):
    findings = refused(write, SERVICE % "" + field + "\n")
    assert any(message in finding for finding in findings), findings


@pytest.mark.parametrize("volume", ["/..", "/var/lib/../../..", "/proc/self/root", "/sys/x", "/data/./x"])
def test_a_volume_path_is_used_as_written_and_is_no_system_folder(write, volume: str):
    (finding,) = refused(write, SERVICE % f", volumes: {{data: '{volume}'}}")
    assert finding.startswith("1:") and "volumes.data" in finding, finding


@pytest.mark.parametrize("first, console", [
    ("example.org", "ops.example.org"),  # an apex: never ops.org
    ("api.allthingslinux.org", "ops.allthingslinux.org"),
])
def test_the_consoles_default_name_is_under_the_operators_domain(write, first: str, console: str):
    text = (f"services: {{web: {{command: [app, '{{port}}'], port: 12000}}}}\n"
            f"domains: [{{name: {first}, service: web}}]\n")
    assert load_config(write(text)).config.console_hostname == console


def test_the_scanners_own_failure_cannot_be_excepted(write):
    (finding,) = refused(write, SERVICE % "" + "policy: {exceptions: [{policy: checkov, reason: it is slow}]}\n")
    assert "the scanner's own failure (checkov) cannot be excepted" in finding
    failure = Violation("checkov", "checkov", "Checkov is not installed")

    class Exception_:  # a Config built in code, past the schema
        policy, domain, reason = "checkov", None, "it is slow"

    assert excepted([failure], [Exception_()]) == (failure,)


def hcloud_findings(write, text: str) -> list[tuple[int, str]]:
    return [(f.line, f.message) for f in validate(load_config(write(text, "changed.yml"))).findings]


@pytest.mark.parametrize("change, found", [
    # sshd and a replica block: both places named
    (("kind: hcloud", "kind: hcloud\n  ssh_port: 8100"), [
        (9, "target.ssh_port 8100 and the ports of service 'backend-api' (8100-8199) take the same port on the "
            "servers: choose another"),
        (40, "target.ssh_port 8100 and the ports of service 'backend-api' (8100-8199) take the same port on the "
             "servers: choose another")]),
    # a TCP port on sshd's: the load balancer would publish sshd to the world past ssh_from
    (("tcp_ports: [5222, 5269]", "tcp_ports: [5222, 2222]"), [
        (9, "target.ssh_port 2222 and TCP port 2222 of service 'chat' take the same port on the servers: choose "
            "another"),
        (27, "target.ssh_port 2222 and TCP port 2222 of service 'chat' take the same port on the servers: choose "
             "another")]),
    # a port repeated in one list: the load balancer keeps one listener
    (("tcp_ports: [5222, 5269]", "tcp_ports: [5222, 5222]"), [
        (26, "TCP port 5222 of service 'chat' and TCP port 5222 of service 'chat' take the same port on the servers "
             "of group 'chat': choose another")] * 2),
    # a TCP port inside a replica block, on the same servers
    (("tcp_ports: [5222, 5269]", "tcp_ports: [5222, 8310]"), [
        (24, "the ports of service 'chat' (8300-8399) and TCP port 8310 of service 'chat' take the same port on the "
             "servers of group 'chat': choose another"),
        (26, "the ports of service 'chat' (8300-8399) and TCP port 8310 of service 'chat' take the same port on the "
             "servers of group 'chat': choose another")]),
])
def test_one_table_of_ports_names_each_clash_at_both_places(write, change, found):
    text = grouped_text(EXAMPLE.read_text()).replace("  ssh_port: 2222\n", "")
    if "2222" in change[1]:
        text = text.replace("kind: hcloud", "kind: hcloud\n  ssh_port: 2222", 1)
    assert change[0] in text
    assert hcloud_findings(write, text.replace(*change, 1)) == found


def test_two_services_on_one_tcp_port_and_two_groups_on_one_address_are_named(write):
    text = grouped_text(EXAMPLE.read_text())
    text = text.replace("    volumes: {data: /var/lib/postgresql/data}\n",
                        "    volumes: {data: /var/lib/postgresql/data}\n    tcp_ports: [5222]\n", 1)
    text = text.replace("db: {count: 1}", "db: {count: 1, private_ip: 10.0.1.10}")
    found = [message for _, message in hcloud_findings(write, text)]
    assert found.count("TCP port 5222 of service 'chat' and TCP port 5222 of service 'postgres' take the same port on "
                       "the load balancer: choose another") == 2
    assert found.count("server groups 'chat' and 'db' both have private_ip 10.0.1.10") == 2


@pytest.mark.parametrize("address, name", [("10.0.1.0", "network"), ("10.0.1.255", "broadcast")])
def test_a_private_ip_is_no_subnet_address(write, address: str, name: str):
    text = grouped_text(EXAMPLE.read_text()).replace("private_ip: 10.0.1.10", f"private_ip: {address}")
    assert (15, f"server group 'chat': {address} is target.subnet's {name} address: choose another") in \
        hcloud_findings(write, text)


# the importer


FIXTURE = REPO / "tests" / "fixtures" / "allthingslinux-domains.yml"


@pytest.mark.parametrize("old, new", [
    ("    services:\n      - nginx-proxy-manager\n      - authentik\n      - grafana\n      - prometheus\n"
     "      - alertmanager\n      - loki\n      - postfix\n", "    services: 7\n"),  # a number for the list
    ("    services:\n      - nginx-proxy-manager\n      - authentik\n      - grafana\n      - prometheus\n"
     "      - alertmanager\n      - loki\n      - postfix\n", "    services: {nginx-proxy-manager: yes}\n"),
])
def test_the_importer_answers_a_wrong_type_with_a_finding(old: str, new: str):
    text = FIXTURE.read_text()
    assert old in text
    result = import_text(text.replace(old, new, 1), name="source.yml")  # no TypeError
    assert any(finding.line == 16 and "write a list" in finding.message for finding in result.findings), \
        result.findings


def test_a_line_break_in_a_value_the_importer_writes_as_a_comment_stays_in_the_comment():
    text = FIXTURE.read_text().replace('name: "All Things Linux"', 'name: "All Things\\nLinux: injected"', 1)
    assert "injected" in text
    result = import_text(text, name="source.yml")
    assert result.text is not None and "\nLinux: injected" not in result.text


def test_the_importer_gives_each_service_its_own_block_in_one_pass():
    services = "".join(f"  app-{i}: {{image: 'ghcr.io/example/app:1.0'}}\n" for i in range(40))
    units = "".join(f"  site_{i}:\n    domain: site{i}.example.org\n    server: {{type: cx22, location: fsn1}}\n"
                    f"    services: [app-{i}]\n" for i in range(40))
    result = import_text(f"domains:\n{units}services:\n{services}", name="source.yml")
    ports = sorted(int(line.split(":")[1]) for line in (result.text or "").splitlines()
                   if line.startswith("    port:"))
    assert len(ports) == 40
    assert all(later - earlier >= PORT_BLOCK for earlier, later in zip(ports, ports[1:], strict=False))


def test_a_finding_of_the_result_points_into_the_source():
    units = "".join(f"  site_{i}:\n    domain: site{i}.example{i}.org\n    server: {{type: cx22, location: fsn1}}\n"
                    f"    services: [app-{i}]\n" for i in range(60))  # 60 zones: more than Cloudflare's 50
    services = "".join(f"  app-{i}: {{image: 'ghcr.io/example/app:1.0'}}\n" for i in range(60))
    result = import_text(f"domains:\n{units}services:\n{services}", name="source.yml")
    assert {(finding.file, finding.line) for finding in result.findings} == {("source.yml", 2)}  # not the result's
    assert any("the result would not validate (target.cloudflare.zones" in f.message for f in result.findings)


def day_field(low: int, high: int):
    number = st.integers(low, high)
    single = number.map(str)
    span = st.tuples(number, number).map(lambda pair: f"{min(pair)}-{max(pair)}")
    stepped = st.tuples(st.one_of(st.just("*"), single, span), st.integers(1, high - low)).map(
        lambda pair: f"{pair[0]}/{pair[1]}")
    return st.lists(st.one_of(st.just("*"), single, span, stepped), min_size=1, max_size=3).map(",".join)


@settings(max_examples=300)
@given(day_field(1, 31), day_field(1, 12), st.sampled_from(["*", "1", "1-5", "0,6"]))
def test_what_the_schema_accepts_is_what_dagsters_scheduler_runs(days: str, months: str, weekdays: str):
    """The schema's judgement of a schedule against Dagster's own parser and iterator: what it accepts,
    Dagster runs on the days and months it names; what Dagster refuses or never fires, it refuses. (Where
    cron's meaning never fires and Dagster's iterator fires on other dates, `31/1` or `2-2`, it refuses.)"""
    from dagster._utils.schedules import cron_string_iterator, is_valid_cron_schedule

    schedule = f"0 3 {days} {months} {weekdays}"
    try:
        accepted = check_cron(schedule) == schedule
    except ValueError:
        accepted = False
    try:
        runs = is_valid_cron_schedule(schedule) and list(itertools.islice(cron_string_iterator(0, schedule, "UTC"), 3))
    except Exception:  # noqa: BLE001 (the vendored croniter's own errors: it never fires)
        runs = []
    if accepted:
        assert runs, schedule
        named_days, named_months = cron._values(days, 1, 31), cron._values(months, 1, 12)
        named_weekdays = {day % 7 for day in cron._values(weekdays, 0, 7)}
        either = days != "*" and weekdays != "*"  # cron's rule: with both restricted, either day may match

        def named(run) -> bool:
            weekday = (run.weekday() + 1) % 7  # cron counts from Sunday
            return run.month in named_months and (run.day in named_days or either and weekday in named_weekdays)

        assert all(named(run) for run in runs), (schedule, runs)


def test_an_address_may_name_its_host_by_ip(write):
    text = SERVICE % "" + ("alerting: {receivers: {ops: {webhook: {url: 'http://127.0.0.1:9093/hook'}, email: "
                           "{to: a@b.org, sender: c@d.org, smarthost: '127.0.0.1:25'}}}}\n")
    assert load_config(write(text)).config.alerting.receivers["ops"].webhook.url == "http://127.0.0.1:9093/hook"
