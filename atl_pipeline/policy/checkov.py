"""Checkov over the rendered Terraform files: its Terraform checks and its secrets scan.

Checkov lives in a virtualenv of its own (`make` links its program beside `atl`): its pinned
dependencies conflict with Dagster's. Importing it takes seconds, a scan of a plan's files a
fraction of one, so one process of Checkov's Python (checkov_server.py) serves every scan of
this user, started by the first and gone after IDLE seconds without one. A scan starts before
Terraform plans and is read after, so the two overlap; its result is kept by the files'
digest, so unchanged files are not scanned again. Checkov missing, failing or unable to read
a file is a finding (policy `checkov`), never a silent pass: an exception may let it through.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from atl_pipeline import files, processes
from atl_pipeline.config.model import SCANNER_FAILED
from atl_pipeline.terraform.render import files_digest

TIMEOUT = 300.0
START_TIMEOUT = 60.0
IDLE = 300.0
CACHE = "checkov.json"
# not --quiet: it leaves out the names of the files Checkov could not read
ARGUMENTS = ["--framework", "terraform", "secrets", "--output", "json", "--compact", "--skip-download", "--soft-fail"]
SERVER = Path(__file__).with_name("checkov_server.py")
# no call to Prisma Cloud for its guidelines; no file skipped for its size (Checkov passes over a file above
# 5 MB in silence: a large project's rendered main.tf would go unscanned); and its frameworks one after the
# other in each scan's process: a worker of Checkov's own for each costs more than a plan's files take
SERVER_ENVIRONMENT = {"BC_SKIP_MAPPING": "TRUE", "CHECKOV_MAX_FILE_SIZE": str(2**40),
                      "CHECKOV_MAX_IAC_FILE_SIZE": str(2**40), "CHECKOV_PARALLELIZATION_TYPE": "none"}


class CheckovUnavailable(Exception):
    pass


@dataclass(frozen=True)
class ScanFinding:
    check: str
    message: str
    resource: str = ""
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class ScanResult:
    findings: tuple[ScanFinding, ...]
    summary: str


class Scan:
    """Checkov asked about `files` (name -> text), written under `folder`; `result` waits for its answer."""

    def __init__(self, files: dict[str, str], folder: Path):
        self.folder, self.digest = folder, files_digest(files)
        self.cached = self._cached()
        self.answer: ScanResult | None = None
        if self.cached:
            return
        scanned = folder / "files"
        shutil.rmtree(scanned, ignore_errors=True)
        scanned.mkdir(parents=True)
        for name, text in files.items():
            (scanned / name).write_text(text)
        self.thread = threading.Thread(target=self._ask, args=(scanned,), name="checkov", daemon=True)
        self.thread.start()

    def result(self) -> ScanResult:
        if self.cached:
            return self.cached
        self.thread.join()
        return self.answer

    def _ask(self, scanned: Path) -> None:
        try:
            answer = ask(["--directory", str(scanned), *ARGUMENTS], key=self.digest)
        except (CheckovUnavailable, OSError, ValueError) as error:
            self.answer = _failed(f"Checkov could not be asked: {error}")
            return
        if answer["exit"] != 0:
            self.answer = _failed(f"Checkov failed (exit {answer['exit']}): {answer['output'][-300:]}")
            return
        try:
            self.answer = _read(json.loads(answer["output"]))
        except (ValueError, KeyError, TypeError):
            self.answer = _failed(f"Checkov's output is not the JSON report expected: {answer['output'][:200]!r}")
            return
        (self.folder / CACHE).write_text(json.dumps({"digest": self.digest, "summary": self.answer.summary,
                                                     "findings": [asdict(f) for f in self.answer.findings]}))

    def _cached(self) -> ScanResult | None:
        try:
            cached = json.loads((self.folder / CACHE).read_text())
        except (OSError, ValueError):
            return None
        if cached.get("digest") != self.digest:
            return None
        return ScanResult(tuple(ScanFinding(**finding) for finding in cached["findings"]), cached["summary"])


def ask(arguments: list[str], key: str | None = None) -> dict:
    """Checkov's answer to one command line, from the server (started when none serves); `key` names the
    files' contents, under which the server keeps the answer for the same files in another folder."""
    path = str(files.private_folder() / "checkov.sock")  # one server for all of this user's projects
    server, deadline = None, time.monotonic() + START_TIMEOUT
    while True:
        try:
            return _request(path, {"arguments": arguments, **({"key": key} if key else {})})
        except (FileNotFoundError, ConnectionRefusedError):
            if server is None:
                server = _start_server(path)
            elif server.poll():
                raise CheckovUnavailable(f"Checkov's server stopped (exit {server.returncode}); its log: "
                                         f"{Path(path).with_suffix('.log')}") from None
            if time.monotonic() > deadline:
                raise CheckovUnavailable(f"Checkov's server did not start within {START_TIMEOUT:.0f} s "
                                         f"(its socket: {path})") from None
            time.sleep(0.1)


def _request(path: str, request: dict) -> dict:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(TIMEOUT)
        connection.connect(path)
        connection.sendall(json.dumps(request).encode() + b"\n")
        try:
            reply = connection.makefile("rb").read()
        except TimeoutError:
            raise CheckovUnavailable(f"Checkov did not answer within {TIMEOUT:.0f} s") from None
    if not reply:
        raise CheckovUnavailable("Checkov's server closed the connection without an answer (it may have crashed)")
    return json.loads(reply)


def _start_server(path: str) -> processes.Popen:
    python = interpreter()
    if python is None:
        raise CheckovUnavailable("Checkov is not installed: `make` installs it beside atl (or put `checkov` on PATH)")
    with Path(path).with_suffix(".log").open("a") as log:
        # -I: not the script's folder on sys.path, where our checkov.py would hide Checkov's package
        # its own folder to work in: Checkov reads the working directory, and the caller's may be removed
        return processes.start([python, "-I", str(SERVER), path, str(IDLE)], stdin=processes.DEVNULL, stdout=log,
                               stderr=log, start_new_session=True, cwd=Path(path).parent,
                               env={**_plain(os.environ), **SERVER_ENVIRONMENT})


def _plain(environ) -> dict[str, str]:
    """Not the pipeline's environment, which holds its secrets: Checkov needs none of it."""
    return {name: environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if name in environ}


def interpreter() -> str | None:
    """The Python that runs Checkov: the one its program's first line names."""
    beside = Path(sys.executable).parent / "checkov"
    program = beside if beside.is_file() else shutil.which("checkov")
    if program is None:
        return None
    first = Path(program).read_bytes()[:500].split(b"\n", 1)[0]
    return first[2:].decode().strip() if first.startswith(b"#!") else None


def _read(report: dict | list) -> ScanResult:
    """Checkov's JSON: one report per framework that found something, or one summary when none did."""
    reports = report if isinstance(report, list) else [report]
    findings, passed = [], 0
    for one in reports:
        results = one.get("results", {})
        passed += len(results.get("passed_checks", []))
        for failed in results.get("failed_checks", []):
            findings.append(ScanFinding(failed["check_id"], failed["check_name"], failed.get("resource", ""),
                                        failed["file_path"].lstrip("/"), failed["file_line_range"][0]))
        for path in results.get("parsing_errors", []):
            findings.append(ScanFinding(SCANNER_FAILED, f"Checkov could not read {Path(path).name}: its checks did not "
                                        "run on it", file=Path(path).name))
    return ScanResult(tuple(findings), f"{passed} passed, {len(findings)} failed")


def _failed(message: str) -> ScanResult:
    return ScanResult((ScanFinding(SCANNER_FAILED, message),), message)


