"""Policy checks on every plan: the project's rules, written in Rego, over domains.yml and
Terraform's plan; and Checkov over the rendered Terraform files.

The rules shipped with the pipeline are `rules.rego`; a project adds its own in
`policies/*.rego` beside domains.yml. Rego runs in-process (regopy: the Rego interpreter
of rego-cpp, with no OPA server to run). Each finding names the domains.yml line it comes
from when a rule gives its path. `policy.exceptions` in domains.yml lets a finding through,
with the reason recorded beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from regopy import Input, Interpreter, Output
from regopy.rego_shared import RegoError

from atl_pipeline.config import LoadedConfig
from atl_pipeline.config.model import SCANNER_FAILED
from atl_pipeline.errors import AtlError
from atl_pipeline.findings import printable
from atl_pipeline.policy.checkov import Scan, ScanFinding

QUERY = "data.atl.policy.deny"
POLICIES_DIR = "policies"


class PolicyError(AtlError):
    """A project policy could not be read or evaluated."""


@dataclass(frozen=True, order=True)
class Violation:
    where: str  # `domains.yml:31:5`, or `main.tf:12` for a finding of Checkov's in a rendered file
    policy: str  # a rule's name, or a Checkov check's id
    message: str
    domain: str | None = None
    excepted: str | None = None  # the reason the operators gave, when an exception lets it through

    def __str__(self) -> str:
        text = f"{self.where}: [{self.policy}] {self.message}"
        return f"{text} (excepted: {self.excepted})" if self.excepted else text


@dataclass(frozen=True)
class PolicyReport:
    findings: tuple[Violation, ...]
    rules: tuple[str, ...]  # the Rego files evaluated
    checkov: str  # what Checkov did: "n checks on m files", or why it did not run

    @property
    def violations(self) -> list[Violation]:
        return [finding for finding in self.findings if not finding.excepted]

    @property
    def excepted(self) -> list[Violation]:
        return [finding for finding in self.findings if finding.excepted]

    @property
    def passed(self) -> bool:
        return not self.violations


def check(loaded: LoadedConfig, policies: Path, scan: Scan, plan: Mapping | None = None) -> PolicyReport:
    """The Rego rules (shipped, and the project's in the folder `policies`) over the configuration and
    the plan, when there is one; and Checkov's findings over the rendered files; each matched against
    the exceptions."""
    modules, result = rule_files(policies), scan.result()
    found = _rules(loaded, modules, plan) + [_from_checkov(loaded, finding) for finding in result.findings]
    return PolicyReport(excepted(found, loaded.config.policy.exceptions), tuple(name for name, _ in modules),
                        result.summary)


def rule_findings(loaded: LoadedConfig, policies: Path, plan: Mapping | None = None) -> list[Violation]:
    """The Rego rules' findings alone (no Checkov), before any exception."""
    return _rules(loaded, rule_files(policies), plan)


def _rules(loaded: LoadedConfig, modules: Sequence[tuple[str, str]], plan: Mapping | None) -> list[Violation]:
    return [_located(loaded, finding) for finding in evaluate(modules, _input(loaded, plan))]


def excepted(found: Sequence[Violation], exceptions: Sequence) -> tuple[Violation, ...]:
    """Each finding once, in order, with the reason of the first exception that names it."""
    return tuple(sorted(_excepted(finding, exceptions) for finding in set(found)))


def rule_files(policies: Path) -> list[tuple[str, str]]:
    """(name, text) of the shipped rules, then of the project's."""
    shipped = resources.files(__package__) / "rules.rego"
    own = sorted(policies.glob("*.rego"))
    try:
        return [("rules.rego (shipped)", shipped.read_text()),
                *((f"{POLICIES_DIR}/{path.name}", path.read_text()) for path in own)]
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(f"cannot read the project's policies: {error}") from None


def evaluate(modules: Sequence[tuple[str, str]], document: Mapping) -> list[dict]:
    rego = Interpreter()
    try:
        for name, text in modules:
            rego.add_module(name, text)
        rego.set_input(Input(document))  # half the time of parsing its JSON text
        output = rego.query(QUERY)
    except RegoError as error:
        output = error
    if not isinstance(output, Output) or not output.ok():
        raise PolicyError(f"the policies could not be evaluated: {printable(str(output))[:600]}; check "
                          f"{POLICIES_DIR}/*.rego (each file starts with `package atl.policy` and adds to `deny`)")
    answer = json.loads(str(output))["expressions"][0]
    if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
        raise PolicyError(f"{QUERY} must be a set of objects with policy and message; it was {str(answer)[:200]}")
    return answer


def _input(loaded: LoadedConfig, plan: Mapping | None) -> dict:
    """The configuration, and of the plan each resource change's address, type, name, actions and
    values after it (what a rule asks of a plan: the rest more than doubles what Rego reads)."""
    changes = [{"address": change["address"], "type": change["type"], "name": change.get("name"),
                "actions": change["change"]["actions"], "after": change["change"].get("after")}
               for change in (plan or {}).get("resource_changes", [])]
    return {"config": loaded.config.model_dump(mode="json"), "plan": {"resource_changes": changes} if plan else None}


def _located(loaded: LoadedConfig, finding: dict) -> Violation:
    path = tuple(finding.get("path") or ())
    where = loaded.finding(path, "")
    domain = finding.get("domain")
    return Violation(f"{where.file}:{where.line}:{where.column}", str(finding.get("policy", "unnamed")),
                     str(finding.get("message", "")), None if domain is None else str(domain))


def _from_checkov(loaded: LoadedConfig, finding: ScanFinding) -> Violation:
    """Where a domain's resource is, the domain's entry in domains.yml; else the rendered file's line."""
    for index, domain in enumerate(loaded.config.domains):
        if f'"{domain.name}"' in finding.resource:
            where = loaded.finding(("domains", index), "")
            return Violation(f"{where.file}:{where.line}:{where.column}", finding.check, finding.message, domain.name)
    where = f"{finding.file}:{finding.line}" if finding.file else "checkov"
    return Violation(where, finding.check, finding.message)


def _excepted(finding: Violation, exceptions: Sequence) -> Violation:
    if finding.policy == SCANNER_FAILED:  # the schema refuses such an exception: this holds for a Config built in code
        return finding
    for exception in exceptions:
        if exception.policy == finding.policy and exception.domain in (None, finding.domain):
            return Violation(finding.where, finding.policy, finding.message, finding.domain, exception.reason)
    return finding
