"""The schema: the seed's example, defaults, and each field's rule."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import get_args

import pytest
from pydantic import BaseModel, Strict

from atl_pipeline.config import Config, load_config
from atl_pipeline.config.names import check_identifier, normalize_hostname
from atl_pipeline.config.quantity import cpu_millicores, format_bytes, memory_bytes, parse_quantity
from atl_pipeline.findings import ConfigError
from tests.conftest import REPO, SEED


def test_the_seed_example_loads_as_written(write):
    config = load_config(write(SEED)).config
    (domain,) = config.domains
    assert (domain.name, domain.service, domain.ssl, domain.monitoring, domain.replicas) == (
        "api.allthingslinux.org", "backend-api", True, True, 3)
    assert (domain.resources.millicores, domain.resources.bytes) == (500, 512 * 2**20)
    assert (config.version, config.target.kind) == (1, "local")


def test_the_repository_example_loads():
    config = load_config(REPO / "domains.yml").config
    assert len(config.domains) >= 2
    assert all(domain.service in config.services for domain in config.domains)


def test_defaults_fill_what_a_domain_leaves_out(write):
    config = load_config(write("""\
        services: {web: {command: [web], port: 9000}}
        domains: [{name: example.org, service: web}]
    """)).config
    domain = config.domains[0]
    assert (domain.ssl, domain.monitoring, domain.replicas) == (True, True, 1)
    assert (domain.resources.cpu, domain.resources.memory) == ("250m", "256Mi")
    assert config.services["web"].health.path == "/healthz"


@pytest.mark.parametrize(("text", "value"), [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("1.5", Decimal("1.5")), (".5", Decimal("0.5")),
    ("512Mi", Decimal(512 * 2**20)), ("1Gi", Decimal(2**30)), ("1G", Decimal(10**9)),
    ("128974848", Decimal(128974848)), ("129e6", Decimal(129 * 10**6)), ("1k", Decimal(1000)),
])
def test_kubernetes_quantities(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "-1", "0", "0m", "1.5Mo", "1 Gi", "Gi", "1e", "1ki", "0x10", "1e999"])
def test_bad_quantities_are_rejected(text):
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_quantities_round_up_to_whole_units():
    assert cpu_millicores("0.0001") == 1
    assert memory_bytes("1.5") == 2


@pytest.mark.parametrize(("name", "canonical"), [
    ("API.AllThingsLinux.org", "api.allthingslinux.org"),
    ("api.allthingslinux.org.", "api.allthingslinux.org"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("a-b.c0.example", "a-b.c0.example"),
    ("localhost", "localhost"),
])
def test_hostnames_are_normalized(name, canonical):
    assert normalize_hostname(name) == canonical


@pytest.mark.parametrize("name", [
    "", ".", "-api.example.org", "api-.example.org", "api..example.org", "api_x.example.org",
    "a" * 64 + ".org", ("a" * 63 + ".") * 4 + "org", "127.0.0.1", "api example.org",
    'x"}\nresource "y" {', "$(reboot).example.org", "${var.x}.example.org", "{{ 7*7 }}.example.org",
    "*.example.org", "ex\u200bample.org",
])
def test_invalid_hostnames_are_rejected(name):
    with pytest.raises(ValueError):
        normalize_hostname(name)


@pytest.mark.parametrize("name", ["Web", "web_1", "-web", "web-", "../etc", "web.app", "", "a" * 64, "wéb"])
def test_invalid_identifiers_are_rejected(name):
    with pytest.raises(ValueError):
        check_identifier(name)


@pytest.mark.parametrize(("service", "message"), [
    ('{command: "python -m app", port: 9000}', "never a shell string"),
    ("{command: [], port: 9000}", "at least 1 item"),
    ('{command: [app, "{host}"], port: 9000}', "uses {host}"),
    ('{command: [app, "{port"], port: 9000}', "literal brace"),
    ('{command: [app, "{port:>100000000}"], port: 9000}', "no format or conversion"),
    ('{command: [app, "{port!r}"], port: 9000}', "no format or conversion"),
    ("{command: [app], port: 80}", "greater than or equal to 1024"),
    ("{command: [app], port: 70000}", "less than or equal to 65535"),
    ("{command: [app], port: 9000, image: 'Not An Image'}", "container image reference"),
    ("{command: [app], port: 9000, health: {path: 'healthz'}}", "plain URL path"),
    ("{command: [app], port: 9000, health: {path: '/h\"; drop'}}", "plain URL path"),
])
def test_service_fields(write, service, message):
    path = write(f"services: {{web: {service}}}\ndomains: [{{name: example.org, service: web}}]\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    (finding,) = raised.value.findings
    assert message in finding.message
    assert finding.line == 1


def test_command_placeholders_and_numbers_are_accepted(write):
    path = write('services: {web: {command: [app, --port, "{port}", --id, "{replica}", -n, 3], port: 9000}}\n'
                 "domains: [{name: example.org, service: web}]\n")
    assert load_config(path).config.services["web"].command == [
        "app", "--port", "{port}", "--id", "{replica}", "-n", "3"]


@pytest.mark.parametrize(("domain", "message"), [
    ("{name: example.org, service: web, replicas: 0}", "greater than or equal to 1"),
    ("{name: example.org, service: web, replicas: 51}", "less than or equal to 50"),
    ("{name: example.org, service: web, replicas: three}", "'three' is not a whole number"),
    ("{name: example.org, service: web, ssl: maybe}", "'maybe' is not a boolean"),
    ("{name: example.org, service: Web}", "not a valid name"),
    ("{name: example.org}", "missing required field 'service'"),
    ("{name: example.org, service: web, resources: {cpu: lots}}", "not a Kubernetes quantity"),
])
def test_domain_fields(write, domain, message):
    path = write(f"services: {{web: {{command: [app], port: 9000}}}}\ndomains: [{domain}]\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert [message in f.message for f in raised.value.findings] == [True]


@pytest.mark.parametrize(("top", "message"), [
    ("version: 2", "input should be 1"),
    ("target: {kind: aws}", "kind must be local or hcloud"),
    ("target: {kind: hcloud}", "missing required field 'ssh_public_key'"),
    ("project: All Things", "not a valid name"),
])
def test_top_level_fields(write, top, message):
    with pytest.raises(ConfigError) as raised:
        load_config(write(f"{top}\ndomains: []\n"))
    assert message in str(raised.value)


def test_unquoted_numbers_in_string_fields_keep_what_was_written(write):
    """YAML 1.1 would read these as 83, 1.1, 90, 31, 1000, a date: the reader keeps the text."""
    path = write("environment: 0123\n"
                 "services: {web: {command: [app, 0755, 1.10, 1:30, 0x1F, 1_000, 2001-12-14, .inf, 8080], "
                 "port: 9000}}\n"
                 "domains: [{name: a.org, service: web, resources: {cpu: 1.50, memory: 2}}]\n")
    config = load_config(path).config
    assert config.environment == "0123"
    assert config.services["web"].command == ["app", "0755", "1.10", "1:30", "0x1F", "1_000", "2001-12-14", ".inf",
                                              "8080"]
    assert (config.domains[0].resources.cpu, config.domains[0].resources.memory) == ("1.50", "2")


@pytest.mark.parametrize(("word", "value"), [("yes", "true"), ("No", "false"), ("ON", "true"), ("off", "false"),
                                             ("true", "true"), ("False", "false")])
def test_a_yaml_boolean_in_a_string_field_is_refused_with_how_to_quote_it(write, word, value):
    path = write(f"services: {{web: {{command: [app, {word}], port: 9000}}}}\ndomains: []\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert [finding.message for finding in raised.value.findings] == [
        f"services.web.command[1]: '{word}' was read as the boolean {value}: YAML reads yes, no, on, off, true and "
        f'false unquoted as booleans; quote it: "{word}"']


def test_booleans_and_integers_take_no_other_types(write):
    """`ssl: 1` is no boolean and `replicas: true` or `"3"` no integer: nothing is converted silently."""
    for domain, message in (("ssl: 1", "'1' is not a boolean"), ("replicas: true", "'true' is a boolean"),
                            ('replicas: "3"', "'3' is quoted, which makes it text"),
                            ("ssl: 'yes'", "'yes' is not a boolean")):
        path = write(f"services: {{web: {{command: [app], port: 9000}}}}\ndomains: [{{name: a.org, service: web, "
                     f"{domain}}}]\n")
        with pytest.raises(ConfigError) as raised:
            load_config(path)
        assert message in str(raised.value), (domain, str(raised.value))


def test_every_integer_and_boolean_field_of_the_schema_is_strict():
    """A new field declared as a plain `int` or `bool` would take "3" or 1 and convert them."""
    loose = [f"{model.__name__}.{name}" for model in _models(Config) for name, field in model.model_fields.items()
             if _scalar(field.annotation) in (int, bool) and not any(isinstance(m, Strict) and m.strict
                                                                     for m in _metadata(field))]
    assert loose == []


def _models(model) -> list:
    found = [model]
    for field in model.model_fields.values():
        for inner in _types(field.annotation):
            if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in found:
                found += [m for m in _models(inner) if m not in found]
    return found


def _types(annotation) -> list:
    return [annotation, *[t for argument in get_args(annotation) for t in _types(argument)]]


def _scalar(annotation):
    plain = [t for t in _types(annotation) if t in (int, bool)]
    return plain[0] if plain else None


def _metadata(field) -> list:
    return [*field.metadata, *[m for t in _types(field.annotation) for m in getattr(t, "__metadata__", ())]]


LONG_ARGUMENT = "a" * 90  # a message quotes its first 80 characters


@pytest.mark.parametrize(("argument", "message"), [
    ("a}b", "argument 'a}b': Single '}' encountered in format string; write a literal brace as {{ or }}"),
    (LONG_ARGUMENT + "\x00", f"argument '{'a' * 80}' holds a NUL character, which no program can be given"),
    (LONG_ARGUMENT + "{port", f"argument '{'a' * 80}': expected '}}' before end of string; write a literal brace "
                              "as {{ or }}"),
    (LONG_ARGUMENT + "{port!r}", f"argument '{'a' * 80}': a placeholder is a bare name such as {{port}}, with no "
                                 "format or conversion"),
    (LONG_ARGUMENT + "{" + "h" * 50 + "}", f"argument '{'a' * 80}' uses {{{'h' * 40}}}; the placeholders are "
                                           "{port}, {replica}, {service}"),
])
def test_what_is_wrong_with_a_command_argument_is_said_in_full(write, argument, message):
    path = write(f"services: {{web: {{command: [app, {json.dumps(argument)}], port: 9000}}}}\ndomains: []\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert [f.message for f in raised.value.findings] == [f"services.web.command[1]: {message}"]


def test_a_target_without_a_kind_is_the_local_one(write):
    config = load_config(write("target: {http_port: 18000}\ndomains: []\n")).config
    assert (config.target.kind, config.target.http_port) == ("local", 18000)


# 253 characters as written; and once converted to IDNA (bücher is xn--bcher-kva)
@pytest.mark.parametrize("name", [("a" * 63 + ".") * 3 + "a" * 61, "bücher." + ("a" * 63 + ".") * 3 + "a" * 47])
def test_a_hostname_of_253_characters_is_accepted(name):
    assert len(normalize_hostname(name)) == 253


@pytest.mark.parametrize(("check", "name", "message"), [
    (normalize_hostname, ".", "a domain name cannot be empty"),
    (normalize_hostname, "a" * 254, "a domain name has at most 253 characters, this one 254"),
    (normalize_hostname, "a_b.org", "'a_b.org' is not a valid hostname: label 'a_b' must be 1-63 letters, digits or "
                                    "hyphens, not starting or ending with a hyphen"),
    (normalize_hostname, "example.123", "'example.123' is not a hostname: its last label is all digits"),
    (normalize_hostname, "ab--cd.org", "'ab--cd.org' is not a valid hostname: label 'ab--cd' has `--` in its third "
                                       "and fourth characters, which only an IDNA label (xn--) may have"),
    (normalize_hostname, "ex\u200bample.org", "'ex\\u200bample.org' is not a valid internationalized domain name: "
                                              "Codepoint U+200B at position 3 of 'ex\\u200bample' not allowed"),
    (check_identifier, "Web", "'Web' is not a valid name: use 1-63 lowercase letters, digits and hyphens, starting "
                              "and ending with a letter or digit"),
    (check_identifier, "-" + "a" * 79, f"'-{'a' * 79}' is not a valid name: use 1-63 lowercase letters, digits and "
                                       "hyphens, starting and ending with a letter or digit"),
    (check_identifier, "-" + "a" * 80, f"'-{'a' * 79}'... is not a valid name: use 1-63 lowercase letters, digits "
                                       "and hyphens, starting and ending with a letter or digit"),
])
def test_what_is_wrong_with_a_name_is_said_in_full(check, name, message):
    with pytest.raises(ValueError) as raised:
        check(name)
    assert str(raised.value) == message


def test_a_zero_quantity_is_refused_saying_why():
    with pytest.raises(ValueError) as raised:
        parse_quantity("0")
    assert str(raised.value) == "'0' must be greater than zero"


def test_a_quantity_may_be_32_characters_and_up_to_2_to_the_63():
    assert parse_quantity("0" * 31 + "1") == 1
    assert parse_quantity("8Ei") == 2**63


@pytest.mark.parametrize(("count", "shown"), [(3 * 2**30, "3Gi"), (3 * 2**19, "1.5Mi"), (2048, "2Ki"), (1000, "1000")])
def test_byte_counts_are_shown_in_the_largest_binary_unit(count, shown):
    assert format_bytes(count) == shown


def test_a_secret_is_a_reference_never_a_value(write):
    assert load_config(write("state: {backend: pg, conn_str: env:ATL_PG}\ndomains: []\n")).config.state.conn_str == (
        "env:ATL_PG")
    with pytest.raises(ConfigError) as raised:
        load_config(write("state: {backend: pg, conn_str: 'postgres://atl:pw@db/x'}\ndomains: []\n"))
    assert [f.message for f in raised.value.findings] == [
        "state.conn_str: a secret is never written in domains.yml: write env:NAME here and set NAME in the pipeline's "
        "environment"]
