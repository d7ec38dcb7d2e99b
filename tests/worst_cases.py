"""The most expensive file of each class of hostile input, each at most the reader's size
limit: what `tests/test_hostile_limits.py` bounds (peak memory, output, no traceback) and
`bench/validate.py` measures (seconds, peak memory)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline.config.yaml_reader import MAX_BYTES, MAX_VALUES

HEADER = "services: {web: {command: [app], port: 9000}}\n"
ROOM = MAX_BYTES - 4096  # what a generated file may fill, leaving room for its header and last lines


def _lines(line: Callable[[int], str], values_each: int = 1) -> str:
    """As many lines `line(i)` as fit in ROOM bytes and in the reader's MAX_VALUES."""
    out, size, index = [], 0, 0
    while size < ROOM and (index + 1) * values_each < MAX_VALUES - 1000:
        text = line(index)
        out.append(text)
        size += len(text.encode())
        index += 1
    return "".join(out)


def mistyped_tags() -> str:
    return HEADER + "domains:\n" + _lines(lambda i: f"  - {{name: d{i}.org, service: web, replicas: !!int three}}\n",
                                          values_each=7)


def huge_integer() -> str:
    return HEADER + "domains: [{name: a.org, service: web, replicas: " + "9" * ROOM + "}]\n"


def huge_quantity() -> str:
    return HEADER + "domains: [{name: a.org, service: web, resources: {cpu: " + "9" * ROOM + "}}]\n"


def kind_not_a_string() -> str:
    return "target: {kind: [" + ", ".join(["local"] * (MAX_VALUES - 1000)) + "]}\n" + HEADER + "domains: []\n"


def base_60_integer() -> str:
    return HEADER + "domains: [{name: a.org, service: web, replicas: 1" + ":00" * (ROOM // 3) + "}]\n"


def services_on_one_port() -> str:
    pairs = (MAX_VALUES - 1000) // 12
    services = "".join(f"  s{i}: {{command: [app], port: 9000}}\n" for i in range(pairs))
    domains = "".join(f"  - {{name: d{i}.org, service: s{i}}}\n" for i in range(pairs))
    return f"services:\n{services}domains:\n{domains}"


def huge_unknown_key() -> str:
    return HEADER + "domains: []\n" + "k" * ROOM + ": 1\n"


def numbers_kept_as_written() -> str:
    arguments = _lines(lambda i: ("0755, 1.10, 1:30, 0x1F, " if i % 2 else "1_000, .inf, 2001-12-14, ")) + "x"
    return f"services: {{web: {{command: [app, {arguments}], port: 9000}}}}\ndomains: [{{name: a.org, service: web}}]\n"


def multibyte_before_an_error() -> str:
    return HEADER + "# " + "é" * (ROOM // 2) + "\ndomains: [\n"


def yaml11_line_breaks() -> str:
    return HEADER + _lines(lambda i: f"# a comment\u2028with a line separator {i}\n") + "domains: []\n"


def newlines_in_keys() -> str:
    return HEADER + "domains: []\n" + _lines(lambda i: f'"k{i}\\nforged.yml:1:1: everything is fine": 1\n',
                                             values_each=2)


def invalid_names() -> str:
    return HEADER + "domains:\n" + _lines(lambda i: f"  - {{name: xn--ls8h{i}.org, service: web}}\n", values_each=5)


def shell_through_wrappers() -> str:
    arguments = ", ".join(["-n"] * (MAX_VALUES - 1000)) + ", sh"
    return (f"services: {{web: {{command: [nice, {arguments}], port: 9000}}}}\n"
            "domains: [{name: a.org, service: web}]\n")


def every_domain_wrong() -> str:
    return HEADER + "domains:\n" + _lines(lambda i: f"  - {{name: d{i}.org, service: web, replicas: 0}}\n",
                                          values_each=7)


def undefined_services() -> str:
    services = "".join(f"  svc-{i}: {{command: [app], port: {1024 + i}}}\n" for i in range(2000))
    domains = _lines(lambda i: f"  - {{name: d{i}.org, service: nope-{i}}}\n", values_each=5)
    return f"services:\n{services}domains:\n{domains}"


def credentials_in_a_long_address() -> str:
    url = "https://user:" + "p" * ROOM + "@hooks.example.org/x"
    return HEADER + f"domains: []\nalerting: {{receivers: {{ops: {{webhook: {{url: '{url}'}}}}}}}}\n"


def a_long_value_echoed() -> str:
    return HEADER + "domains: [{name: a.org, service: " + "w" * ROOM + "}]\n"


def schedules_durations_and_paths() -> str:
    volumes = ", ".join(f"v{i}: /proc/self/{i}/../.." for i in range(20))
    return (f"services: {{web: {{command: [app], port: 9000, volumes: {{{volumes}}}}}}}\ndomains: []\n"
            "backup: {repository: '~/../../..', password: env:P, schedule: '0 0 31 2,4,6,9,11 *'}\n"
            "alerting: {group_wait: 99999d, group_interval: 99999d, repeat_interval: 99999d}\n")


def hcloud_ports_that_clash() -> str:
    """As many services as fit, each with the same 20 TCP ports and replica block: the port table's worst."""
    ports = ", ".join(str(5000 + i) for i in range(20))
    services = _lines(lambda i: f"  s{i}: {{image: 'app:1', port: 9000, tcp_ports: [{ports}], internal: true, "
                                "resources: {cpu: 10m, memory: 16Mi}}\n", values_each=60)
    return ("target: {kind: hcloud, ssh_public_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyReplaceWithTheOp"
            "eratorsOwn00000 ops@example.org', ssh_from: [203.0.113.0/24], ssh_port: 5000, cloudflare: {zone: "
            f"example.org, zone_id: 0123456789abcdef0123456789abcdef}}}}\nservices:\n{services}domains: []\n")


WORST_CASES: dict[str, Callable[[], str]] = {
    "tags that do not fit their value": mistyped_tags,
    "an 8 MB integer": huge_integer,
    "an 8 MB quantity": huge_quantity,
    "target.kind a long list": kind_not_a_string,
    "a base-60 integer": base_60_integer,
    "services on one port": services_on_one_port,
    "an 8 MB unknown key": huge_unknown_key,
    "YAML 1.1 numbers in strings": numbers_kept_as_written,
    "multibyte text, then an error": multibyte_before_an_error,
    "YAML 1.1 line breaks": yaml11_line_breaks,
    "line breaks in keys": newlines_in_keys,
    "invalid IDNA names": invalid_names,
    "a shell behind a wrapper": shell_through_wrappers,
    "every domain wrong": every_domain_wrong,
    "undefined services": undefined_services,
    "credentials in an 8 MB address": credentials_in_a_long_address,
    "an 8 MB value echoed": a_long_value_echoed,
    "schedules, durations, paths": schedules_durations_and_paths,
    "hcloud ports that all clash": hcloud_ports_that_clash,
}


@dataclass(frozen=True)
class Answer:
    """What an `atl` command in a child process did: its exit code, output, seconds and peak memory."""

    code: int
    output: str
    seconds: float
    peak_bytes: int


def atl(*argv: str, cwd: Path | None = None) -> Answer:
    """`atl ARGV` as a child process, stdout and stderr together."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "atl_pipeline.cli", *argv], cwd=cwd,
                               env={**os.environ, **({"ATL_PROJECT_DIR": str(cwd)} if cwd else {})},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # not Popen.wait: wait4 gives this child's own peak
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    return Answer(process.returncode, output, time.perf_counter() - start, usage.ru_maxrss * 1024)
