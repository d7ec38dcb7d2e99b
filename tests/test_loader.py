"""The loader against broken and hostile files: each rejected with a located, clear error,
in bounded memory, before anything acts on the file."""

from __future__ import annotations

import tracemalloc

import pytest

from atl_pipeline.config import load_config
from atl_pipeline.config.yaml_reader import MAX_ALIASES, MAX_BYTES, MAX_DEPTH
from atl_pipeline.findings import ConfigError

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
        "unknown field 'small'; the fields here are version, project, environment, target, state, services, domains"]


def test_a_utf8_byte_order_mark_is_accepted(write):
    path = write(b"\xef\xbb\xbf" + (SERVICE + "domains: [{name: a.org, service: web}]\n").encode())
    assert load_config(path).config.domains[0].name == "a.org"
