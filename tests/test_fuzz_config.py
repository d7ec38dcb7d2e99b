"""Property-based tests of the input boundary (Hypothesis): configurations generated from the
schema and mutated, each answered with a configuration or located findings, never anything
else; and unquoted values read exactly as written, or refused with how to quote them.

The budget is fixed by Hypothesis's profile: `ci` (the default, about a minute in all) or
`fast` (HYPOTHESIS_PROFILE=fast, for the edit loop)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atl_pipeline.config import load_config
from atl_pipeline.findings import MAX_FINDINGS, ConfigError
from atl_pipeline.validation import validate
from tests.conftest import REPO

EXAMPLES = [(REPO / "domains.yml").read_text(), (REPO / "examples" / "hcloud" / "domains.yml").read_text()]
# what YAML, the schema and the rules give a meaning to, and characters that have tripped readers
TOKENS = ["\n", " ", ": ", "- ", "{", "}", "[", "]", ",", "#", "&a ", "*a", "!!int ", "!!bool ", "!!float ",
          "!!str ", "!!python/object:os.system ", "%TAG !e! tag:yaml.org,2002:\n---\n", "<<: ", "? ", "|\n", ">\n",
          "'", '"', "\\", "\t", "0", "0755", "1:30", "0x1F", "1e999", "9" * 30, "-1", ".inf", "~", "null", "yes",
          "no", "on", "\u2028", "\u2029", "\x85", "\x00", "\ufeff", "é", "\U0001f600", "xn--", "--", "..",
          "{port}", "{service}", "{{", "sh", "env", "replicas", "port", "service", "kind", "hcloud", "local",
          "enabled", "cpu", "memory", "500m", "1Gi", "65535", "80", "8080", "---\n", "...\n"]

text_mutation = st.one_of(
    st.tuples(st.just("insert"), st.sampled_from(TOKENS)),
    st.tuples(st.just("insert"), st.text(min_size=1, max_size=3)),
    st.tuples(st.just("delete"), st.integers(1, 40)),
    st.tuples(st.just("duplicate"), st.integers(1, 200)),
)


def mutated(text: str, data: st.DataObject) -> str:
    for kind, argument in data.draw(st.lists(text_mutation, min_size=1, max_size=6)):
        at = data.draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + argument + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + argument:]
        else:
            text = text[:at] + text[at:at + argument] + text[at:]
    return text


def answered(text: str) -> None:
    """Loading and validating `text` gives a configuration or findings that each point into the
    file, print as one line, and number at most MAX_FINDINGS and the count of the rest."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "domains.yml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            findings = list(validate(load_config(path)).findings)
        except ConfigError as error:
            findings = error.findings
    lines = text.split("\n")
    for finding in findings:
        assert 1 <= finding.line <= max(1, len(lines) - (not lines[-1] and len(lines) > 1)), finding
        assert finding.column >= 1 and "\n" not in str(finding), finding
    assert len(findings) <= MAX_FINDINGS + 1


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(EXAMPLES), st.data())
def test_any_mutation_of_the_examples_is_answered(example: str, data: st.DataObject):
    answered(mutated(example, data))


# plain scalars that YAML 1.1 reads as numbers, dates or booleans, and ordinary words
SCALARS = st.one_of(
    st.from_regex(r"\A[-+]?(0[0-7_]{1,6}|0x[0-9a-fA-F_]{1,6}|0b[01_]{1,6}|[1-9][0-9_]{0,5}(:[0-5]?[0-9]){1,3})\Z"),
    st.from_regex(r"\A[-+]?([0-9]{1,4}\.[0-9]{0,4}|\.[0-9]{1,3})([eE][-+]?[0-9]{1,3})?\Z"),
    st.from_regex(r"\A[-+]?\.(inf|Inf|INF|nan|NaN|NAN)\Z"),
    st.from_regex(r"\A[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}\Z"),
    st.from_regex(r"\A-?[0-9]{1,25}\Z"),
    st.sampled_from(["yes", "Yes", "YES", "no", "NO", "on", "On", "off", "OFF", "true", "True", "false", "FALSE",
                     "y", "n", "null", "Null", "~", "=", "<<"]),
    st.from_regex(r"\A[a-zA-Z][a-zA-Z0-9_./-]{0,12}\Z"),
)
BOOLEAN_OR_NULL = {"yes", "Yes", "YES", "no", "NO", "on", "On", "off", "OFF", "true", "True", "false", "FALSE",
                   "null", "Null", "~"}


@given(st.lists(SCALARS, min_size=1, max_size=12))
def test_unquoted_arguments_are_read_exactly_as_written(arguments: list[str]):
    """Each argument written as a plain scalar is the text written, or the file is refused
    with that argument located and told to be quoted."""
    text = (f"services: {{web: {{command: [app, {', '.join(arguments)}], port: 9000}}}}\n"
            "domains: [{name: a.org, service: web}]\n")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "domains.yml"
        path.write_text(text)
        try:
            command = load_config(path).config.services["web"].command
        except ConfigError as error:
            refused = {int(f.message.split("[", 1)[1].split("]", 1)[0]) for f in error.findings}
            assert refused and all(arguments[index - 1] in BOOLEAN_OR_NULL for index in refused), error
            assert all("was written, which YAML reads as null" in f.message or "quote it" in f.message
                       for f in error.findings), error
            return
    assert command == ["app", *arguments], json.dumps(arguments)
