"""`atl quality lint` and `atl quality policy`: everything that can be checked before a deploy,
without running one.

- the schema and the semantic rules (the `validated_config` stage's own checks);
- the Terraform rendered from the templates: python-hcl2's read-back check and
  `terraform fmt -check`;
- the YAML style of domains.yml: trailing spaces, CRLF line ends, a missing final newline,
  blank lines at the end (all fixed by `--fix`), and lines over 120 characters.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from atl_pipeline import policy
from atl_pipeline.config import LoadedConfig
from atl_pipeline.config.loader import load_config, load_source
from atl_pipeline.config.yaml_reader import MAX_BYTES, decode_source, read_bounded
from atl_pipeline.files import replace_file
from atl_pipeline.findings import ConfigError, capped, printable
from atl_pipeline.policy import POLICIES_DIR, PolicyReport
from atl_pipeline.policy.checkov import Scan
from atl_pipeline.targets import target_of
from atl_pipeline.terraform.cli import Terraform, TerraformError
from atl_pipeline.terraform.hcl_check import check_rendered
from atl_pipeline.terraform.render import RenderError, render, write
from atl_pipeline.validation import validate

MAX_LINE = 120


@dataclass(frozen=True, order=True)
class LintFinding:
    file: str
    line: int
    column: int
    rule: str
    message: str
    fixable: bool = False

    def __str__(self) -> str:
        return printable(f"{self.file}:{self.line}:{self.column}: [{self.rule}] {self.message}")


def lint(path: Path, templates: Path, tool_home: Path, *, name: str | None = None) -> list[LintFinding]:
    """Every finding, at most MAX_FINDINGS of them and how many more. OSError when `path` cannot
    be read or is no regular file."""
    name = name or str(path)
    data = read_bounded(path)
    findings = style(data[:MAX_BYTES].decode("utf-8", errors="replace"), name)
    try:
        loaded = load_source(decode_source(data, name))
    except ConfigError as error:
        return capped(findings + [_from(f, "schema") for f in error.findings])
    validated = validate(loaded)
    findings += [_from(f, "rules") for f in validated.findings]
    if validated.ok:
        findings += terraform_findings(loaded, templates, tool_home)
    return capped(findings)


def style(text: str, name: str) -> list[LintFinding]:
    found = []
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if line.endswith("\r"):
            found.append(LintFinding(name, number, len(line), "style/crlf", "CRLF line end; use LF", True))
            line = line[:-1]
        if line != line.rstrip():
            found.append(LintFinding(name, number, len(line.rstrip()) + 1, "style/trailing-space",
                                     "trailing whitespace", True))
        if len(line) > MAX_LINE:
            found.append(LintFinding(name, number, MAX_LINE + 1, "style/line-length",
                                     f"line is {len(line)} characters; keep it to {MAX_LINE}"))
    if text and not text.endswith("\n"):
        found.append(LintFinding(name, len(lines), len(lines[-1]) + 1, "style/final-newline",
                                 "no newline at the end of the file", True))
    elif text.endswith("\n\n"):
        blank = len(text) - len(text.rstrip("\n")) - 1
        found.append(LintFinding(name, len(lines) - blank, 1, "style/trailing-blank-lines",
                                 f"{blank} blank lines at the end of the file", True))
    return found


def fix(path: Path) -> int:
    """Apply the mechanical style fixes, only if the configuration reads the same after them;
    returns how many findings were fixed."""
    try:
        before = read_bounded(path).decode("utf-8")  # read_text would hide CRLF line ends
    except UnicodeDecodeError:
        return 0  # lint reports where the bad byte is
    fixable = [finding for finding in style(before, str(path)) if finding.fixable]
    if not fixable:
        return 0
    after = "\n".join(line.rstrip() for line in before.replace("\r\n", "\n").split("\n")).rstrip("\n") + "\n"
    try:
        same = (load_source(decode_source(before.encode(), str(path))).config
                == load_source(decode_source(after.encode(), str(path))).config)
    except ConfigError:
        same = False
    if not same:
        return 0  # only a human can fix a file that does not load, or whose meaning would change
    replace_file(path, after)
    return len(fixable)


def terraform_findings(loaded: LoadedConfig, templates: Path, tool_home: Path) -> list[LintFinding]:
    """The templates rendered for this configuration: read back by python-hcl2, and `terraform fmt -check`."""
    target = target_of(loaded.config)
    where = str(templates / target.kind)
    try:
        rendered = render(loaded.config, templates)
        check_rendered(rendered)
    except RenderError as error:
        return [LintFinding(where, 1, 1, "terraform/hcl", str(error))]
    with tempfile.TemporaryDirectory(prefix="atl-lint-") as folder:
        write(rendered, Path(folder))
        try:
            unformatted = Terraform(Path(folder), tool_home).unformatted()
        except TerraformError as error:
            return [LintFinding(where, 1, 1, "terraform/fmt", str(error))]
    return [LintFinding(f"{where}/{name}.j2", 1, 1, "terraform/fmt",
                        "renders to Terraform that `terraform fmt` would rewrite; align the template")
            for name in unformatted]


def policy_report(path: Path, templates: Path, *, name: str) -> PolicyReport:
    """The policy check of every plan (atl_pipeline.policy), on the configuration and its rendered
    files, without Terraform: rules on the plan itself have none to read. ConfigError when the file
    does not load or breaks a rule; OSError when it cannot be read."""
    loaded = load_config(path, name=name)
    validated = validate(loaded)
    if not validated.ok:
        raise ConfigError(validated.findings)
    with tempfile.TemporaryDirectory(prefix="atl-policy-") as folder:
        scan = Scan(render(loaded.config, templates).files, Path(folder))
        return policy.check(loaded, path.parent / POLICIES_DIR, scan)


def _from(finding, rule: str) -> LintFinding:
    return LintFinding(finding.file, finding.line, finding.column, rule, finding.message)
