"""The loader against broken and hostile files: each rejected with a located, clear error,
in bounded memory, before anything acts on the file."""

from __future__ import annotations

import errno
import hashlib
import os
import tracemalloc

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.config.yaml_reader import MAX_ALIASES, MAX_BYTES, MAX_DEPTH, decode_source, parse
from atl_pipeline.findings import MAX_FINDINGS, ConfigError, Finding
from tests.conftest import REPO

SERVICE = "services: {web: {command: [app], port: 9000}}\n"


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def many_aliases() -> str:
    return "x: &x 1\nlist: [" + ", ".join(["*x"] * (MAX_ALIASES + 1)) + "]\n"


HOSTILE = {
    # name: (file content, what the message says, line, column)
    "alias bomb": (billion_laughs(), "expands to more than", 6, None),
    "too many aliases": (many_aliases(), f"more than {MAX_ALIASES} aliases", 2, None),
    "recursive alias": ("a: &a [1, *a]\n", "refers to itself", 1, 11),
    "undefined alias": ("a: *nowhere\n", "has no anchor", 1, 4),
    "duplicate keys": (SERVICE + "domains: []\nservices: {}\n", "duplicate key 'services' (first at line 1)", 3, 1),
    "duplicate nested keys": ("domains:\n  - name: a.org\n    name: b.org\n    service: web\n",
                              "duplicate key 'name'", 3, 5),
    "python tag": ('domains: !!python/object/apply:os.system ["touch pwned"]\n',
                   "tag !!python/object/apply:os.system is not allowed", 1, 10),
    "python name tag": ("domains: [!!python/name:os.system x]\n", "tag !!python/name:os.system is not allowed",
                        1, 11),
    "custom tag": ("domains: !include other.yml\n", "tag !include is not allowed", 1, 10),
    "merge key": ("base: &b {service: web}\ndomains: [{<<: *b, name: a.org}]\n", "merge keys (<<)", 2, 12),
    "deep nesting": ("domains: " + "[" * 40 + "]" * 40 + "\n", f"more than {MAX_DEPTH} levels", 1, 42),
    "very deep nesting": ("domains: " + "[" * 5000 + "]" * 5000 + "\n", "maximum nesting depth", 1, None),
    "two documents": ("domains: []\n---\ndomains: []\n", "more than one YAML document", 2, 1),
    "syntax error": ("domains: [\n  - name: a\n", "did not find expected node content", 2, 3),
    "tab indentation": ("domains:\n\t- name: a\n", "YAML syntax", 2, 1),
    "NUL byte": ("domains: []\nx: \x00\n", "#x0000 is not allowed", 2, 4),
    "non-UTF-8 bytes": (b"domains:\n  - name: caf\xe9.org\n", "byte 0xe9 is not UTF-8", 2, 14),
    "empty file": ("", "must be a mapping", 1, 1),
    "a list at the top": ("- name: a.org\n", "must be a mapping", 1, 1),
    "a list as a key": ("? [a, b]\n: 1\ndomains: []\n", "a key must be a plain name", 1, 3),
    "unknown top-level field": ("domain: []\n", "unknown field 'domain'; did you mean 'domains'?", 1, 1),
    "unknown nested field": (SERVICE + "domains: [{name: a.org, service: web, replica: 3}]\n",
                             "unknown field 'replica'; did you mean 'replicas'?", 2, 39),
    "unknown field without a close match": (SERVICE + "domains: [{name: a.org, service: web, zzz: 1}]\n",
                                            "the fields here are name, service", 2, 39),
    "HCL in a name": (SERVICE + "domains: [{name: 'a\" } resource \"null\" \"x\" { ', service: web}]\n",
                      "is not a valid hostname", 2, 18),
    "shell in a name": (SERVICE + "domains: [{name: '$(reboot).example.org', service: web}]\n",
                        "is not a valid hostname", 2, 18),
    "template in a name": (SERVICE + "domains: [{name: '{{ 7 * 7 }}.example.org', service: web}]\n",
                           "is not a valid hostname", 2, 18),
    "HCL template in a name": (SERVICE + "domains: [{name: '${file(\"/etc/passwd\")}', service: web}]\n",
                               "is not a valid hostname", 2, 18),
    "newline in a name": (SERVICE + 'domains: [{name: "a.org\\nb.org", service: web}]\n',
                          "is not a valid hostname", 2, 18),
    "path traversal in a service": (SERVICE + "domains: [{name: a.org, service: ../../etc/passwd}]\n",
                                    "'../../etc/passwd' is not a valid name", 2, 34),
    "path traversal in a service key": ("services: {'../x': {command: [app], port: 9000}}\ndomains: []\n",
                                        "'../x' is not a valid name", 1, 12),
    "shell string command": ('services: {web: {command: "app; rm -rf /", port: 9000}}\ndomains: []\n',
                             "never a shell string", 1, 27),
    # a tag whose value does not fit it, also through a %TAG directive
    "an !!int that is not one": (SERVICE + "domains: [{name: a.org, service: web, replicas: !!int three}]\n",
                                 "'three' is not a decimal integer, as its tag !!int says", 2, 49),
    "a !!bool that is not one": (SERVICE + "domains: [{name: a.org, service: web, ssl: !!bool maybe}]\n",
                                 "'maybe' is not true or false", 2, 44),
    "a !!float that is not one": (SERVICE + "domains: [{name: a.org, service: web, resources: {cpu: !!float abc}}]\n",
                                  "'abc' is not a number", 2, 56),
    "an empty !!int": (SERVICE + "domains: [{name: a.org, service: web, replicas: !!int ''}]\n",
                       "'' is not a decimal integer", 2, 49),
    "a %TAG alias of !!": ("%TAG !e! tag:yaml.org,2002:\n---\n" + SERVICE
                           + "domains: [{name: a.org, service: web, replicas: !e!int three}]\n",
                           "'three' is not a decimal integer", 4, 49),
    # numbers past what Python converts, or past any machine
    "a 5,000-digit integer": (SERVICE + "domains: [{name: a.org, service: web, replicas: " + "9" * 5000 + "}]\n",
                              "(5,000 digits) is beyond any value allowed here", 2, 49),
    "a quantity of 10^99": (SERVICE + "domains: [{name: a.org, service: web, resources: {cpu: 1e99}}]\n",
                            "more than 2^63", 2, 56),
    "a million-digit quantity": (SERVICE + "domains: [{name: a.org, service: web, resources: {memory: "
                                 + "9" * 1_000_000 + "}}]\n", "longer than any quantity", 2, 59),
    "target.kind a list": ("target: {kind: [local]}\n" + SERVICE + "domains: []\n", "kind must be local or hcloud",
                           1, 9),
    "target.kind a mapping": ("target: {kind: {a: 1}}\n" + SERVICE + "domains: []\n",
                              "kind must be local or hcloud", 1, 9),
    # YAML 1.1 numbers are never read as octal or base 60
    "a leading zero in a port": ("services: {web: {command: [app], port: 021450}}\ndomains: []\n",
                                 "'021450' has a leading zero, which YAML 1.1 reads as octal", 1, 40),
    "a base-60 integer": (SERVICE + "domains: [{name: a.org, service: web, replicas: 2:40:00}]\n",
                          "'2:40:00' is a base-60 number to YAML 1.1", 2, 49),
    "a megabyte base-60 integer": (SERVICE + "domains: [{name: a.org, service: web, replicas: 1"
                                   + ":00" * 400_000 + "}]\n", "is a base-60 number to YAML 1.1", 2, 49),
    "a YAML 1.1 boolean in a string field": ("environment: no\n" + SERVICE + "domains: []\n",
                                             "'no' was read as the boolean false", 1, 14),
    "null in a string field": ("project:\n" + SERVICE + "domains: []\n", "nothing was written", 1, 9),
    # locations as editors and grep count them
    "multibyte text before a bad character": ("# ééééééééé\nenvironment: ééé\x00\ndomains: []\n",
                                              "#x0000 is not allowed", 2, 17),
    "a line separator in a comment, then an error": ("# one\u2028two\u2029three\x85four\ndomains: [\n",
                                                     "YAML syntax", 2, 11),
    "an error at the end of a file without a final newline": ("domains: [a, b", "YAML syntax", 1, 15),
    # accepted though wrong, before
    "an IDNA label that does not decode": (SERVICE + "domains: [{name: xn--ls8h.org, service: web}]\n",
                                           "not a valid IDNA A-label", 2, 18),
    "hyphens reserved for IDNA": (SERVICE + "domains: [{name: ab--cd.org, service: web}]\n",
                                  "which only an IDNA label (xn--) may have", 2, 18),
    "a name ending in two dots": (SERVICE + "domains: [{name: a.org.., service: web}]\n",
                                  "is not a valid hostname", 2, 18),
    "a NUL in a command argument": ('services: {web: {command: [app, "a\\0b"], port: 9000}}\ndomains: []\n',
                                    "holds a NUL character", 1, 33),  # at the argument itself
    # files that are not UTF-8 text
    "UTF-16 without a byte order mark": ("domains: []\n".encode("utf-16-le"),
                                         "UTF-16 or UTF-32 without a byte order mark", 1, 1),
    "UTF-16 with a byte order mark": ("domains: []\n".encode("utf-16"), "the file is UTF-16", 1, 1),
}


def rejected(path) -> tuple[ConfigError, int]:
    """The error loading `path` raised, and the peak memory the attempt took (bytes)."""
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as raised:
            load_config(path)
        return raised.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_rejected_with_a_located_error(write, hang_guard, case, tmp_path, monkeypatch):
    content, message, line, column = HOSTILE[case]
    path = write(content)
    monkeypatch.chdir(tmp_path)
    error, peak = rejected(path)
    findings = error.findings
    matching = [f for f in findings if message in f.message]
    assert matching, f"no finding says {message!r}: {findings}"
    assert matching[0].file == str(path)
    assert matching[0].line == line
    if column is not None:
        assert matching[0].column == column
    assert str(matching[0]).startswith(f"{path}:{line}:")
    assert peak < 32 * 2**20, f"peak memory {peak / 2**20:.1f} MiB"
    assert not (tmp_path / "pwned").exists()


def test_a_60_megabyte_file_is_refused_without_reading_it_whole(write, hang_guard):
    path = write(b"")
    with path.open("wb") as stream:
        line = b"# " + b"x" * 1021 + b"\n"
        for _ in range(60 * 1024):
            stream.write(line)
    error, peak = rejected(path)
    (finding,) = error.findings
    assert (finding.line, finding.column) == (1, 1)
    assert f"larger than {MAX_BYTES // 2**20} MiB" in finding.message
    assert peak < 2 * MAX_BYTES


def test_every_problem_is_reported_at_once(write):
    path = write("""\
        services:
          web: {command: [app], port: 80}
        domains:
          - {name: -bad.org, service: web}
          - {name: ok.org, service: web, replicas: 0, colour: blue}
          - {service: web}
    """)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    located = [(f.line, f.column) for f in raised.value.findings]
    assert located == [(2, 31), (4, 12), (5, 44), (5, 47), (6, 5)]


def test_yaml_problems_are_reported_together(write):
    path = write("a: 1\na: 2\nb: !!python/none x\nb: 3\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert [(f.line, "duplicate" in f.message) for f in raised.value.findings] == [
        (2, True), (3, False), (4, True)]


def test_a_few_aliases_are_fine(write):
    path = write("""\
        services: {web: {command: [app], port: 9000}}
        small: &small {cpu: 100m, memory: 64Mi}
        domains:
          - {name: a.org, service: web, resources: *small}
          - {name: b.org, service: web, resources: *small}
    """)
    with pytest.raises(ConfigError) as raised:  # `small` is no field of the schema
        load_config(path)
    assert [f.message for f in raised.value.findings] == [
        "unknown field 'small'; the fields here are version, project, environment, target, state, services, domains, "
        "prometheus, alerting, backup, logs, policy, console, operators, service_accounts"]


def test_a_utf8_byte_order_mark_is_accepted(write):
    path = write(b"\xef\xbb\xbf" + (SERVICE + "domains: [{name: a.org, service: web}]\n").encode())
    assert load_config(path).config.domains[0].name == "a.org"


def test_yaml_11_line_breaks_are_ordinary_characters_as_in_editors(write):
    """U+2028, U+2029 and U+0085 end no line for editors, grep or YAML 1.2: a comment holding
    one is a comment, a value keeps it, and later lines are numbered as an editor numbers them."""
    path = write("# a comment\u2028still the comment: x\n"
                 'services: {web: {command: [app, "a\u2029b", c\u0085d], port: 9000}}\n'
                 "domains: [{name: a.org, service: web, replicas: 0}]\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert [(f.line, f.column) for f in raised.value.findings] == [(3, 49)]
    path.write_text(path.read_text().replace("replicas: 0", "replicas: 1"))
    assert load_config(path).config.services["web"].command == ["app", "a\u2029b", "c\u0085d"]


def test_a_private_use_character_escaped_in_the_file_is_kept(write):
    """The stand-ins for YAML 1.1 line breaks are characters the file holds nowhere, not even
    as an escape."""
    path = write('# \u2028\nservices: {web: {command: [app, "\\ue000", "\ue001"], port: 9000}}\ndomains: []\n')
    assert load_config(path).config.services["web"].command == ["app", "\ue000", "\ue001"]


def test_values_from_the_file_are_printed_escaped(write):
    """A key holding a line break cannot forge a finding line, nor an escape sequence drive the terminal."""
    path = write('services: {"web\\nforged.yml:1:1: everything is fine": {command: [app], port: 9000, colour: 1},\n'
                 '           "\\e[31mred": {command: [app], port: 9100}}\ndomains: []\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    lines = str(raised.value).split("\n")
    assert len(lines) == 3 and not any(line.startswith("forged.yml") for line in lines), lines
    assert lines[1].endswith(":1:84: services.web\\nforged.yml:1:1: everything is fine: unknown field 'colour'; "
                             "the fields here are command, image, port, container_port, health, metrics, tcp_ports, "
                             "volumes, servers, internal, replicas, resources, autoscale"), lines[1]
    assert "\x1b" not in str(raised.value) and "'\\x1b[31mred' is not a valid name" in lines[2]


def test_a_finding_escapes_what_is_not_printable_and_keeps_the_rest_as_written():
    assert str(Finding("domains.yml", 2, 3, "C:\\ops\tnext")) == "domains.yml:2:3: C:\\ops\\tnext"


@pytest.mark.parametrize(("duplicates", "last"), [
    (100, (101, "duplicate key 'a' (first at line 1); keep one of them")),
    (101, (101, "and 1 more findings; correct these first")),
    (105, (101, "and 5 more findings; correct these first")),
])
def test_past_a_hundred_yaml_problems_the_rest_are_counted(write, duplicates, last):
    with pytest.raises(ConfigError) as raised:
        load_config(write("a: 1\n" * (duplicates + 1)))
    findings = raised.value.findings
    assert len(findings) == min(duplicates, MAX_FINDINGS + 1)
    assert (findings[-1].line, findings[-1].message) == last


def test_past_a_hundred_schema_problems_the_rest_are_counted(write):
    domains = "".join(f"  - {{name: d{i}.org, service: web, replicas: 0}}\n" for i in range(250))
    with pytest.raises(ConfigError) as raised:
        load_config(write(SERVICE + "domains:\n" + domains))
    findings = raised.value.findings
    assert len(findings) == MAX_FINDINGS + 1
    assert (findings[-1].line, findings[-1].column, findings[-1].message) == (
        103, 46, "and 150 more findings; correct these first")


SAID_IN_FULL = {
    # name: (file content, its one finding as (line, column, message))
    "not a mapping": ("- a\n", (1, 1, "the file must be a mapping with a `domains:` list (and optionally version, "
                                      "project, environment, target, services)")),
    "two documents": ("domains: []\n---\ndomains: []\n",
                      (2, 1, "the file holds more than one YAML document; keep one")),
    "an unclosed list at the end of a last line": ("x: 1\ndomains: [a, b",
                                                   (2, 15, "YAML syntax: did not find expected ',' or ']'")),
    "an unclosed list before a final newline": ("domains: [a, b\n", (1, 15, "YAML syntax: did not find expected ',' "
                                                                            "or ']'")),
    "a NUL on the third line": ("a: 1\nb: 2\nc: \x00\n", (3, 4, "character #x0000 is not allowed in YAML")),
    "a NUL after a first empty line": ("\n\x00\n", (2, 1, "character #x0000 is not allowed in YAML")),
    "NUL bytes in a UTF-8 file": ("a: \x00\x00\n", (1, 4, "character #x0000 is not allowed in YAML")),
    "a bad byte on the third line": (b"a: 1\nb: 2\nc: \xe9\n",
                                     (3, 4, "byte 0xe9 is not UTF-8; save the file as UTF-8")),
    "a bad byte after a first empty line": (b"\n\xe9\n", (2, 1, "byte 0xe9 is not UTF-8; save the file as UTF-8")),
    "UTF-32 (little-endian)": ("domains: []\n".encode("utf-32"),
                               (1, 1, "the file is UTF-32 (it starts with a UTF-32 byte order mark), not UTF-8; save "
                                      "it as UTF-8")),
    "UTF-32 (big-endian)": (b"\x00\x00\xfe\xff" + "domains: []\n".encode("utf-32-be"),
                            (1, 1, "the file is UTF-32 (it starts with a UTF-32 byte order mark), not UTF-8; save it "
                                   "as UTF-8")),
    "UTF-16 (big-endian)": (b"\xfe\xff" + "domains: []\n".encode("utf-16-be"),
                            (1, 1, "the file is UTF-16 (it starts with a UTF-16 byte order mark), not UTF-8; save it "
                                   "as UTF-8")),
    "UTF-16 of four bytes": ("a:".encode("utf-16-le"), (1, 1, "the file is UTF-16 or UTF-32 without a byte order "
                                                              "mark (NUL bytes between its characters), not UTF-8; "
                                                              "save it as UTF-8")),
    "UTF-16 past the first 64 bytes": (("domains: []\n" * 4).encode("utf-16-le"),
                                       (1, 1, "the file is UTF-16 or UTF-32 without a byte order mark (NUL bytes "
                                              "between its characters), not UTF-8; save it as UTF-8")),
    "an escape past the last code point": ('# \u2028\nx: "\\U00110000"\n',
                                           (2, 7, "YAML syntax: found invalid Unicode character escape code")),
    "a !!null that is not one": (SERVICE + "domains: [{name: a.org, service: web, proxied: !!null x}]\n",
                                 (2, 48, "'x' is not null, as its tag !!null says; correct the value or remove the "
                                         "tag")),
    "an 80-character !!int": (SERVICE + "domains: [{name: a.org, service: web, replicas: !!int " + "x" * 80 + "}]\n",
                              (2, 49, f"'{'x' * 80}' is not a decimal integer, as its tag !!int says; correct the "
                                      "value or remove the tag")),
    "an 81-character !!int": (SERVICE + "domains: [{name: a.org, service: web, replicas: !!int " + "x" * 81 + "}]\n",
                              (2, 49, f"'{'x' * 80}'... is not a decimal integer, as its tag !!int says; correct the "
                                      "value or remove the tag")),
    "a list as a key": ("? [a]\n: 1\ndomains: []\n", (1, 3, "a key must be a plain name, not a list, mapping or "
                                                            "alias")),
    "a merge key": ("base: &b {service: web}\ndomains: [{<<: *b, name: a.org}]\n",
                    (2, 12, "merge keys (<<) are not supported; write the fields out, or alias a whole mapping")),
    "a YAML 1.1 line break in a key": ('services: {"we\u2028b": {command: [app], port: 9000}}\ndomains: []\n',
                                       (1, 12, "services: 'we\\u2028b' is not a valid name: use 1-63 lowercase "
                                               "letters, digits and hyphens, starting and ending with a letter or "
                                               "digit")),
    "null written as ~": ("project: ~\ndomains: []\n",
                          (1, 10, "project: '~' was written, which YAML reads as null; write a value")),
    "null in an integer field": (SERVICE + "domains: [{name: a.org, service: web, replicas: }]\n",
                                 (2, 49, "domains[0].replicas: input should be a valid integer")),
    "a boolean for a mapping": (SERVICE + "domains: [{name: a.org, service: web, resources: true}]\n",
                                (2, 50, "domains[0].resources: input should be a valid dictionary or instance of "
                                        "Resources")),
    "a negative base-60 number": (SERVICE + "domains: [{name: a.org, service: web, replicas: -1:30}]\n",
                                  (2, 49, "domains[0].replicas: '-1:30' is a base-60 number to YAML 1.1; write the "
                                          "number in decimal")),
    "a base-60 number with an underscore": (SERVICE + "domains: [{name: a.org, service: web, replicas: 1_0:30}]\n",
                                            (2, 49, "domains[0].replicas: '1_0:30' is a base-60 number to YAML 1.1; "
                                                    "write the number in decimal")),
    "an unknown field of 80 characters": ("x" * 80 + ": 1\ndomains: []\n",
                                          (1, 1, f"unknown field '{'x' * 80}'; the fields here are version, project, "
                                                 "environment, target, state, services, domains, prometheus, "
                                                 "alerting, backup, logs, policy, console, operators, "
                                                 "service_accounts")),
    "an unknown field of 81 characters": ("x" * 81 + ": 1\ndomains: []\n",
                                          (1, 1, f"unknown field '{'x' * 80}'...; the fields here are version, "
                                                 "project, environment, target, state, services, domains, "
                                                 "prometheus, alerting, backup, logs, policy, console, "
                                                 "operators, service_accounts")),
    "an unknown field in resources": (SERVICE + "domains: [{name: a.org, service: web, resources: {cpus: 1}}]\n",
                                      (2, 51, "domains[0].resources: unknown field 'cpus'; did you mean 'cpu'?")),
    "a service named local": ("services: {local: {command: [app], port: 99}}\ndomains: []\n",
                              (1, 42, "services.local.port: input should be greater than or equal to 1024")),
    "a missing field": (SERVICE + "domains: [{name: a.org}]\n", (2, 11, "domains[0]: missing required field "
                                                                        "'service' (the service that answers it)")),
    "a missing port": ("services: {web: {command: [app]}}\ndomains: []\n",
                       (1, 17, "services.web: missing required field 'port'")),
    "a command as one string": ('services: {web: {command: "app x", port: 9000}}\ndomains: []\n',
                                (1, 27, "services.web.command: a command is a list of arguments, never a shell string: "
                                        "write it as [program, arg, ...]")),
    "a long health path with a space": ("services: {web: {command: [app], port: 9000, health: {path: '/" + "a" * 90
                                        + " '}}}\ndomains: []\n",
                                        (1, 61, f"services.web.health.path: '/{'a' * 79}' is not a plain URL path such "
                                                "as /healthz")),
    "a bad service name": ("services: {'../x': {command: [app], port: 9000}}\ndomains: []\n",
                           (1, 12, "services: '../x' is not a valid name: use 1-63 lowercase letters, digits and "
                                   "hyphens, starting and ending with a letter or digit")),
    "a bad hostname": (SERVICE + "domains: [{name: a_b.org, service: web}]\n",
                       (2, 18, "domains[0].name: 'a_b.org' is not a valid hostname: label 'a_b' must be 1-63 letters, "
                               "digits or hyphens, not starting or ending with a hyphen")),
}


@pytest.mark.parametrize("case", list(SAID_IN_FULL))
def test_each_problem_is_located_and_said_in_full(write, case):
    content, finding = SAID_IN_FULL[case]
    with pytest.raises(ConfigError) as raised:
        load_config(write(content))
    assert [(f.line, f.column, f.message) for f in raised.value.findings] == [finding]


def test_a_problem_in_the_hcloud_target_is_located_without_its_kind(write):
    text = (REPO / "examples" / "hcloud" / "domains.yml").read_text()
    with pytest.raises(ConfigError) as raised:
        load_config(write(text.replace("  servers: 2", "  sever: 2\n  ssh_port: 0").replace(
            "    zone: ", "    proxy: false\n    zone: ")))
    assert [(f.line, f.column, f.message) for f in raised.value.findings] == [
        (10, 3, "target: unknown field 'sever'; did you mean 'servers'?"),
        (11, 13, "target.ssh_port: input should be greater than or equal to 1"),
        (15, 5, "target.cloudflare: unknown field 'proxy'; did you mean 'proxied'?")]


def test_a_file_of_the_largest_size_is_read():
    assert len(decode_source(b"#" * MAX_BYTES, "domains.yml").text) == MAX_BYTES
    with pytest.raises(ConfigError) as raised:
        decode_source(b"#" * (MAX_BYTES + 1), "domains.yml")
    assert [str(f) for f in raised.value.findings] == [
        "domains.yml:1:1: the file is larger than 8 MiB, the most a configuration may be; split it or trim it"]


def expanding(extra: str = "") -> str:
    """Exactly MAX_VALUES values once its MAX_ALIASES aliases are expanded, then `extra`."""
    return ("a: &a {k: [" + ",".join(["1"] * 2473) + "]}\nb: [" + ", ".join(["*a"] * MAX_ALIASES) + "]\n"
            "c: [" + ",".join(["1"] * 18) + "]\n" + extra)


@pytest.mark.parametrize(("text", "position"), [
    (expanding(), None),
    (expanding()[:-2] + ",1]\n", (3, 41)),  # one more value
    (expanding("d: 1\n"), (4, 1)),  # one more key
])
def test_the_bounds_on_values_and_aliases_are_exact(text, position):
    if position is None:
        assert parse(decode_source(text.encode(), "domains.yml"))["c"] == [1] * 18
        return
    with pytest.raises(ConfigError) as raised:
        parse(decode_source(text.encode(), "domains.yml"))
    assert [(f.line, f.column, f.message) for f in raised.value.findings] == [
        (*position, "the file expands to more than 250,000 values; a configuration is never that large")]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, hang_guard):
    os.mkfifo(tmp_path / "domains.yml")
    with pytest.raises(OSError) as raised:
        load_config(tmp_path / "domains.yml")
    assert (raised.value.errno, raised.value.strerror) == (
        errno.EINVAL, "it is a FIFO, not a regular file; give the path of a domains.yml")


def test_a_file_is_named_as_told_and_hashed_as_read(write):
    content = (SERVICE + "domains: [{name: a.org, service: web, replicas: 0}]\n").encode()
    path = write(content)
    with pytest.raises(ConfigError) as raised:
        load_config(path, name="domains.yml@1a2b3c")
    assert raised.value.findings[0].file == "domains.yml@1a2b3c"
    path.write_bytes(content.replace(b"replicas: 0", b"replicas: 1"))
    assert load_config(path).source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_explicit_core_tags_are_read_as_they_say(write):
    config = load_config(write("services: !!map {web: {command: [app], port: 9000}}\nproject: ! abc\ndomains: !!seq\n"
                               "  - {name: a.org, service: web, replicas: !!int 3, ssl: !!bool yes, proxied: !!null ~,"
                               " resources: ! {cpu: !!float 1.5}}\n")).config
    domain = config.domains[0]
    assert (config.project, domain.replicas, domain.ssl, domain.proxied, domain.resources.cpu) == (
        "abc", 3, True, None, "1.5")


def test_a_problem_in_an_aliased_value_is_located_at_the_alias(write):
    path = write(SERVICE + "domains:\n  - {name: a.org, service: web, resources: &r {cpu: lots}}\n"
                           "  - {name: b.org, service: web, resources: *r}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert [(f.line, f.column) for f in raised.value.findings] == [(3, 53), (4, 44)]
