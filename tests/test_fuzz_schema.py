"""The whole input boundary under a fuzzer made from the schema (tests/schema_strategies.py), so that a field
added tomorrow is fuzzed without a test of its own. Each mutation of the examples goes through `atl infra
validate`, and when it validates, the Terraform rendering and the Dagster definitions;
the importer's the same on mutations of the All Things Linux format.

The contract for every example: exit 0 or 1 (never 3: an internal error, whose traceback goes to a file),
within 5 s, no credential planted in an
address printed,
no control character printed raw, a bounded output; a file that validates renders and loads its definitions.
The budget is Hypothesis's profile (make test-fast: 50 examples a test), at most MAX_EXAMPLES in `make test`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atl_pipeline.cli import main
from atl_pipeline.config import load_config
from atl_pipeline.terraform.render import render
from tests.conftest import REPO
from tests.schema_strategies import CANARY, HOSTILE, mutations, paths, value_at

MAX_EXAMPLES = 300
SECONDS = 5
MAX_OUTPUT = 50_000  # characters: the findings are capped, and so is each value they echo
EXAMPLES = [yaml.safe_load((REPO / path).read_text()) for path in ("domains.yml", "examples/hcloud/domains.yml")]
IMPORTED = yaml.safe_load((REPO / "tests" / "fixtures" / "allthingslinux-domains.yml").read_text())
BUDGET = settings(max_examples=min(settings.default.max_examples, MAX_EXAMPLES), deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    def expired(*_) -> None:
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def atl(*argv: str, document: bool = False) -> tuple[int, str]:
    """`atl ARGV` in this process: its exit code and what it printed, kept to the contract (`document`: its
    standard output is a document made from the input, bounded by the input rather than by MAX_OUTPUT)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), within(SECONDS):
        code = main(list(argv))
    text = out.getvalue() + err.getvalue()
    assert code in (0, 1), f"exit {code}: {text[-3000:]}"  # 3: an internal error (an exception past main)
    assert f"{CANARY}@" not in text, [line[:300] for line in text.splitlines() if f"{CANARY}@" in line]
    raw = [line for line in text.splitlines() if not line.isprintable()]
    assert not raw, ascii(raw[:3])
    assert len(err.getvalue() if document else text) < MAX_OUTPUT, f"{len(text)} characters printed"
    return code, text


@contextlib.contextmanager
def project_with(document: object) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "domains.yml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8", errors="surrogatepass")
        yield path


@BUDGET
@given(st.sampled_from(EXAMPLES).flatmap(mutations))
def test_any_mutation_of_the_examples_keeps_the_contract(document: dict):
    with project_with(document) as path:
        code, _ = atl("infra", "validate", str(path))
        if code == 0:
            render(load_config(path).config, REPO / "terraform_templates")
            with _project_dir(path.parent):
                definitions = dg.load_from_defs_folder(path_within_project=REPO / "atl_pipeline" / "defs")
                dg.Definitions.validate_loadable(definitions)


@st.composite
def imported_mutations(draw) -> dict:
    """The All Things Linux file with one to three values, at paths drawn from all of its paths, made hostile
    (its format has no schema to draw from)."""
    changed = copy.deepcopy(IMPORTED)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(changed)[1:]))
        value_at(changed, path[:-1])[path[-1]] = draw(HOSTILE)
    return changed


@BUDGET
@given(imported_mutations())
def test_any_mutation_of_the_all_things_linux_format_keeps_the_contract(document: dict):
    with project_with(document) as path:
        atl("utils", "import", str(path), document=True)


@contextlib.contextmanager
def _project_dir(folder: Path) -> Iterator[None]:
    previous = os.environ.get("ATL_PROJECT_DIR")
    os.environ["ATL_PROJECT_DIR"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("ATL_PROJECT_DIR")
        else:
            os.environ["ATL_PROJECT_DIR"] = previous
