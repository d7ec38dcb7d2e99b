"""Logs of every replica, of Caddy's access log and of the pipeline's stages, in one store.

rsyslog (Debian's `rsyslog`), a program of the project's supervisord, reads the replicas' output
(supervisord's files, `svc_<service>_<release>_s<slot>_<r>.log`) and Caddy's JSON access log with
`imfile`, and takes the pipeline's own lines on a unix socket (`imuxsock`). Each line gets its
labels (source, service, domain, release, replica, server), has every secret the configuration
references redacted before it is written, and is stored as one JSON document in its source's file
under `.atl/logs/`: `<service>.jsonl`, `caddy.jsonl`, `pipeline.jsonl`. A file rolls at a quarter
of `logs.max_size`, three rolled files kept and none older than `logs.retention`, so one source
that floods its log fills neither the disk nor the others' files. `read` and `follow` merge them
in time order for `atl utils logs`.
"""

from __future__ import annotations

import heapq
import json
import logging
import logging.handlers
import os
import stat
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from atl_pipeline import processes
from atl_pipeline.config.model import Config, duration_seconds
from atl_pipeline.config.quantity import memory_bytes
from atl_pipeline.errors import AtlError
from atl_pipeline.files import replace_file, update_file
from atl_pipeline.project import Project
from atl_pipeline.runtime.caddy import ACCESS_LOG
from atl_pipeline.runtime.supervisor import Supervisor
from atl_pipeline.secrets import SECRET_REF

ROLLED = 3  # rolled files kept per source
PROGRAM = "logs"  # the collector's name under supervisord
RSYSLOGD = "/usr/sbin/rsyslogd"  # Debian's, outside the PATH of users other than root
PIPELINE, CADDY = "pipeline", "caddy"
SECRETS = "secrets.conf"  # the redaction of each secret's value: the one file that holds them (0600)


class LogError(AtlError):
    """The collector's configuration was refused, or the store cannot be read."""


def store(project: Project) -> Path:
    return project.state_dir / "logs"


def socket_path(project: Project) -> Path:
    """Where the collector takes the pipeline's own lines."""
    return project.state_dir / "runtime" / "collector.sock"


class Collector:
    """rsyslog under the project's supervisord, configured for the sources of one configuration."""

    def __init__(self, project: Project, supervisor: Supervisor, config: Config, environ: Mapping[str, str]):
        self.project, self.supervisor, self.config = project, supervisor, config
        self.root = supervisor.root / "collector"
        self.secrets = sorted({environ[name] for name in _secret_names(config) if environ.get(name)}, key=len,
                              reverse=True)  # the longest first: a secret inside another is masked whole

    def apply(self) -> bool:
        """Write and check the configuration; (re)start rsyslog when it changed. True when it did."""
        self.root.mkdir(parents=True, exist_ok=True)
        store(self.project).mkdir(parents=True, exist_ok=True)
        sources = sorted(self.config.workloads()) + [CADDY, PIPELINE]
        for source in sources:
            self._roll_script(source)
        redactions = "".join(f"set $!message = replace($!message, '{_quoted(secret)}', '***');\n"
                             for secret in self.secrets)
        changed = update_file(self.root / SECRETS, redactions, mode=0o600) | _write_tables(self.root, self.config)
        candidate, current = self.root / "next.conf", self.root / "rsyslog.conf"
        replace_file(candidate, self.configuration(sources))
        if changed or not current.exists() or current.read_bytes() != candidate.read_bytes():
            changed = True
            try:
                check = processes.run([RSYSLOGD, "-N1", "-f", str(candidate)], timeout=30, capture_output=True,
                                      text=True)
            except FileNotFoundError:
                raise LogError("rsyslogd is not installed: apt-get install rsyslog (make run does)") from None
            if check.returncode != 0:
                raise LogError(f"rsyslogd refused the collector's configuration: {check.stderr.strip()[-500:]}")
            candidate.replace(current)
        started = self.supervisor.ensure_program(PROGRAM, [RSYSLOGD, "-n", "-f", str(current), "-i",
                                                           str(self.root / "rsyslogd.pid")])
        if changed and not started:
            self.supervisor.rpc.stopProcess(PROGRAM, True)
            self.supervisor.rpc.startProcess(PROGRAM, True)
        return changed or started

    def configuration(self, sources: Sequence[str]) -> str:
        logs, files = self.supervisor.logs, store(self.project)
        size = memory_bytes(self.config.logs.max_size) // (ROLLED + 1)
        outputs = "".join(
            f'    {"if" if index == 0 else "else if"} $!source == "{source}" then action(type="omfile" '
            f'file="{files / source}.jsonl" template="line" rotation.sizeLimit="{size}" '
            f'rotation.sizeLimitCommand="{self.root / ("roll-" + source)}")\n'
            for index, source in enumerate(sources))
        return f"""\
# Written by atl-pipeline; edits are overwritten. The log collector (atl_pipeline/operations/logs.py).
global(workDirectory="{self.root}" maxMessageSize="64k")
module(load="imfile" mode="polling" pollingInterval="1")
module(load="imuxsock" SysSock.Use="off")
module(load="mmjsonparse")
lookup_table(name="domains" file="{self.root / 'domains.json'}")
lookup_table(name="services" file="{self.root / 'services.json'}")
template(name="line" type="list" option.jsonf="on") {{
    property(outname="time" name="timegenerated" dateFormat="rfc3339" format="jsonf")
    property(outname="source" name="$!source" format="jsonf")
    property(outname="service" name="$!service" format="jsonf")
    property(outname="domain" name="$!domain" format="jsonf")
    property(outname="release" name="$!release" format="jsonf")
    property(outname="replica" name="$!replica" format="jsonf")
    property(outname="server" name="hostname" format="jsonf")
    property(outname="message" name="$!message" format="jsonf")
}}
ruleset(name="store") {{
    include(file="{self.root / SECRETS}")
{outputs}}}
ruleset(name="replicas") {{
    set $!service = re_extract($!metadata!filename, 'svc_([a-z0-9-]+)_[0-9a-f]+_s[01]_[0-9]+\\\\.log', 0, 1, '');
    set $!source = $!service;
    set $!release = re_extract($!metadata!filename, '_([0-9a-f]+)_s[01]_[0-9]+\\\\.log', 0, 1, '');
    set $!replica = re_extract($!metadata!filename, '_s[01]_([0-9]+)\\\\.log', 0, 1, '');
    set $!domain = lookup("domains", $!service);
    set $!message = $msg;
    call store
}}
ruleset(name="caddy") {{
    action(type="mmjsonparse" cookie="")
    set $!source = "{CADDY}";
    set $!domain = re_extract($!request!host, '^([^:]+)', 0, 1, '');
    set $!service = lookup("services", $!domain);
    set $!message = $!request!method & " " & $!request!uri & " " & $!status;
    call store
}}
ruleset(name="pipeline") {{
    set $!source = "{PIPELINE}";
    set $!message = ltrim($msg);
    call store
}}
input(type="imfile" file="{logs}/svc_*.log" tag="replica" addMetadata="on" ruleset="replicas" maxLinesAtOnce="1000")
input(type="imfile" file="{logs / ACCESS_LOG}" tag="caddy" ruleset="caddy")
input(type="imuxsock" socket="{socket_path(self.project)}" createPath="on" ruleset="pipeline")
"""

    def _roll_script(self, source: str) -> None:
        """What rsyslog runs when the source's file reaches its size (it passes no argument we can use)."""
        script = self.root / f"roll-{source}"
        text = (f"#!{sys.executable} -I\nfrom atl_pipeline.operations.logroll import roll\n"
                f"roll({str(store(self.project) / source)!r} + '.jsonl', {ROLLED}, "
                f"{duration_seconds(self.config.logs.retention)})\n")
        update_file(script, text, mode=stat.S_IRWXU)


def _write_tables(root: Path, config: Config) -> bool:
    """rsyslog's lookup tables: each service's domains, each domain's service. True when one changed."""
    domains: dict[str, list[str]] = {}
    for domain in config.serving:
        domains.setdefault(domain.service, []).append(domain.name)
    tables = {"domains": {service: ",".join(names) for service, names in domains.items()},
              "services": {domain.name: domain.service for domain in config.serving}}
    return any([update_file(root / f"{name}.json", json.dumps({"version": 1, "nomatch": "", "type": "string", "table": [
        {"index": key, "value": value} for key, value in sorted(table.items())]})) for name, table in tables.items()])


def _secret_names(config: Config) -> set[str]:
    """The variables of every `env:NAME` the configuration references."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str) and (match := SECRET_REF.fullmatch(value)):
            found.add(match.group(1))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(config.model_dump())
    return found


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


# the pipeline's own lines


def pipeline_line(project: Project, text: str) -> None:
    """One line of the pipeline's into the store, when the collector runs; never fails the caller."""
    path = socket_path(project)
    if not path.exists():
        return
    handler = logging.handlers.SysLogHandler(address=str(path))
    try:
        handler.emit(logging.LogRecord("atl", logging.INFO, "", 0, f"atl: {text}", None, None))
    finally:
        handler.close()


# reading


@dataclass(frozen=True)
class Line:
    time: datetime
    fields: dict

    def text(self) -> str:
        f = self.fields
        where = " ".join(part for part in (f.get("source"), f.get("release") and f"release {f['release']}",
                                           f.get("replica") and f"replica {f['replica']}") if part)
        return f"{self.time.isoformat(timespec='milliseconds')} {where}: {f.get('message', '')}"


def read(project: Project, config: Config, selection: str | None = None, since: float | None = None,
         grep: str | None = None) -> Iterator[Line]:
    """The stored lines of `selection` (a service or a domain; none: everything), in time order."""
    sources = _sources(project, config, selection)
    return heapq.merge(*(_filtered(_lines(files), selection, since, grep, config) for files in sources.values()),
                       key=lambda line: line.time)


def follow(project: Project, config: Config, selection: str | None, grep: str | None,
           poll: float = 0.2) -> Iterator[Line]:
    """The lines stored from now on, as they come (each poll's in time order); runs until stopped."""
    positions = {name: _end(files[-1]) for name, files in _sources(project, config, selection).items()}
    while True:
        fresh: list[Line] = []
        for name, files in _sources(project, config, selection).items():
            texts, positions[name] = _appended(files, positions.get(name, (None, 0)))
            fresh += _filtered(_parsed(texts), selection, None, grep, config)
        yield from sorted(fresh, key=lambda line: line.time)
        time.sleep(poll)


def _appended(files: Sequence[Path], position: tuple[int | None, int]) -> tuple[list[str], tuple[int | None, int]]:
    """The whole lines written since `position` (inode, offset): the rest of the file read last, which
    may have rolled meanwhile, then every newer one."""
    inode, offset = position
    texts: list[str] = []
    newer = False  # past the file read last: what follows is new
    for path in files:
        try:
            with path.open("rb") as handle:
                found = os.fstat(handle.fileno()).st_ino
                if found == inode:
                    newer, start = True, offset
                elif newer or path == files[-1]:
                    newer, start = True, 0
                else:
                    continue
                handle.seek(start)
                chunk = handle.read()
        except FileNotFoundError:  # rolled away meanwhile
            continue
        complete = chunk[:chunk.rfind(b"\n") + 1]
        texts += complete.decode(errors="replace").splitlines()
        inode, offset = found, start + len(complete)
    return texts, (inode, offset)


def _sources(project: Project, config: Config, selection: str | None) -> dict[str, list[Path]]:
    """Each source's files, the oldest first."""
    folder = store(project)
    names = sorted({path.name.split(".jsonl")[0] for path in folder.glob("*.jsonl*")}) if folder.is_dir() else []
    if selection is not None:
        services = {d.service for d in config.domains if d.name == selection} | (
            {selection} if selection in config.services else set())
        if not services:
            raise LogError(f"{selection} is neither a service nor a domain of domains.yml")
        names = [name for name in names if name in services or (name == CADDY and selection not in services)]
    return {name: _files(folder, name) for name in names}


def _files(folder: Path, source: str) -> list[Path]:
    """A source's files, the oldest first."""
    return [*sorted(folder.glob(f"{source}.jsonl.*"), key=lambda p: -int(p.suffix[1:])), folder / f"{source}.jsonl"]


def source_lines(project: Project, source: str) -> Iterator[Line]:
    """The stored lines of one source, oldest first."""
    return _lines(_files(store(project), source))


def _end(path: Path) -> tuple[int | None, int]:
    return (path.stat().st_ino, path.stat().st_size) if path.exists() else (None, 0)


def _lines(files: Sequence[Path]) -> Iterator[Line]:
    for path in files:
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                yield from _parsed(handle)
        except FileNotFoundError:  # rolled away meanwhile
            continue


def _parsed(texts) -> Iterator[Line]:
    for text in texts:
        try:
            fields = json.loads(text)
            yield Line(datetime.fromisoformat(fields["time"]), fields)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a full disk, say: the others still count


def _filtered(lines, selection: str | None, since: float | None, grep: str | None, config: Config):
    domains = {d.name for d in config.domains}
    for line in lines:
        if since is not None and line.time.timestamp() < since:
            continue
        if grep is not None and grep not in line.fields.get("message", ""):
            continue
        if selection in domains and selection not in line.fields.get("domain", "").split(","):
            continue
        yield line

