"""The one place the pipeline starts programs.

Always a list of arguments, never a shell, so no value can be read as shell syntax; a time
limit on every wait. tests/test_security.py reads the package's syntax tree and fails when
any other module starts a process (or imports what could).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import NoReturn

# what callers need of subprocess, so that none of them imports it
CompletedProcess = subprocess.CompletedProcess
Popen = subprocess.Popen
TimeoutExpired = subprocess.TimeoutExpired
SubprocessError = subprocess.SubprocessError
PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT

Argv = Sequence[str | os.PathLike]


def run(argv: Argv, *, timeout: float, **options) -> subprocess.CompletedProcess:
    """Run a program to its end (`subprocess.run`'s options, but never `shell`)."""
    return subprocess.run(_checked(argv), timeout=timeout, shell=False, **options)


def start(argv: Argv, **options) -> subprocess.Popen:
    """Start a program and return at once (`subprocess.Popen`'s options, but never `shell`)."""
    return subprocess.Popen(_checked(argv), shell=False, **options)


def become(argv: Argv, env: Mapping[str, str]) -> NoReturn:
    """Replace this process with the program (found on PATH), in `env`."""
    argv = _checked(argv)
    os.execvpe(argv[0], argv, dict(env))


def _checked(argv: Argv) -> list[str]:
    arguments = [os.fspath(argument) for argument in argv]
    if not arguments or not all(isinstance(argument, str) and "\0" not in argument for argument in arguments):
        raise ValueError(f"not a program's argument list: {arguments!r}")
    return arguments
