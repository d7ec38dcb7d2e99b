"""The fast tier's guard: no real tool starts under `pytest -m "not slow"`.

With ATL_TEST_REAL_PROCESSES set to a file's path, starting one of the programs below
(a server, Terraform, git, a browser...) raises, and the program's name is added to that
file, where tests/conftest.py finds it and fails the test: a test that starts one belongs
to the slow tier (`@pytest.mark.slow`). The conftest imports this module; child Pythons
(`atl` run as a command, say) import it at start-up as `sitecustomize`, this folder being
first on their PYTHONPATH, so what a test's child starts is refused too.
"""

from __future__ import annotations

import os
import subprocess

LOG = "ATL_TEST_REAL_PROCESSES"
TOOLS = frozenset({
    "terraform", "caddy", "supervisord", "supervisorctl", "prometheus", "prometheus-blackbox-exporter", "promtool",
    "alertmanager", "amtool", "sshd", "ssh", "postgres", "initdb", "pg_ctl", "psql", "git", "dagster",
    "dagster-webserver", "dagster-daemon", "chromium", "restic",
    "node",  # Playwright's driver, which starts Chromium
})
MODULES = ("supervisor", "dagster", "dagster_webserver", "atl_pipeline.sample_service")  # `python -m`, submodules too
WRAPPERS = frozenset({"su", "sudo", "env", "sh", "bash", "setsid", "nice", "timeout"})  # their arguments are read


class RealProcessInFastTier(RuntimeError):
    pass


def real_tool(args) -> str | None:
    """The real tool that the argument list `args` (Popen's) starts, if any."""
    if isinstance(args, str | bytes | os.PathLike):  # a command line (shell=True), or a program alone
        args = os.fsdecode(args).split()
    words = [os.fsdecode(word) for word in args]
    if not words:
        return None
    program = os.path.basename(words[0])
    if program in TOOLS:
        return program
    if program.startswith("python") and "-m" in words[1:-1]:
        module = words[words.index("-m") + 1]
        if any(module == name or module.startswith(name + ".") for name in MODULES):
            return f"python -m {module}"
    if program in WRAPPERS:  # `su postgres -c 'initdb ...'`
        for word in words[1:]:
            if found := real_tool(word.replace("'", " ").replace('"', " ")):
                return found
    return None


def watch() -> None:
    """From now on, refuse every real tool this process starts while ATL_TEST_REAL_PROCESSES names
    a file, and add the tool's name to that file. Once per process."""
    if getattr(subprocess.Popen, "_atl_watched", False):
        return
    start = subprocess.Popen._execute_child

    def _execute_child(self, args, executable, *rest):
        log = os.environ.get(LOG)
        tool = log and (real_tool(args) or (executable and real_tool([executable])))
        if tool:
            with open(log, "a") as record:
                record.write(f"{tool}\n")
            raise RealProcessInFastTier(f"{tool} started under -m 'not slow': mark the test slow")
        return start(self, args, executable, *rest)

    subprocess.Popen._execute_child = _execute_child
    subprocess.Popen._atl_watched = True


if os.environ.get(LOG):
    watch()
