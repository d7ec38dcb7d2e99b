"""`atl utils import`: the All Things Linux format of domains.yml, turned into this schema.

That format (`configs/domains.yml` in allthingslinux/infra) keys each domain by an id, with
its server, bare service names, subdomains, TCP ports and network, then shared
infrastructure and global settings. This module reads it with the safe reader, so that
every decision and finding is located `file:line:col`, and writes a domains.yml for the
hcloud target that says everything explicitly: each service's image, port, health, metrics
and volumes come from the catalog (`catalog.yml`), or from the file's own `services:`,
which overrides it. Every choice is a `Decision` (what was mapped how, what was dropped and
why, what needs a person's review); what cannot be mapped is a `Finding`, and then nothing
is written. The result is loaded and validated before it is returned: an import that
succeeds is a file `atl infra validate` accepts.

Comments come along where they attach to an entry: the comment lines just above a key or
list item of the source, and a comment at the end of its line, are written at the entry it
becomes. Nothing else is kept from the source's layout: the output is written anew.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from atl_pipeline.config.catalog import ROLES, Entry, by_subdomain, catalog
from atl_pipeline.config.loader import dotted, load_source
from atl_pipeline.config.model import _SSH_PUBLIC_KEY, HCLOUD_LOCATIONS, PORT_BLOCK, Service
from atl_pipeline.config.names import check_identifier, normalize_hostname
from atl_pipeline.config.yaml_reader import Positions, Source, YamlPath, decode_source, parse, read_source
from atl_pipeline.findings import ConfigError, Finding, echoed, printable, without_credentials

NETWORK = ipaddress.IPv4Network("10.0.0.0/16")  # the schema's default target.network and subnet
SUBNET = ipaddress.IPv4Network("10.0.1.0/24")
FIRST_FREE_PORT = 10100  # past the catalog's blocks: where a service the file declares gets one
PLACEHOLDER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlaceholderReplaceWithTheOperatorsOwnKey000000 replace-me"
PLACEHOLDER_FROM = "203.0.113.0/24"  # TEST-NET-3: documentation only, reaches nobody
RETIRED_TYPES = {"cx11", "cx21", "cx31", "cx41", "cx51"}
EU_ONLY_PREFIX = "cx"  # the cx types are offered in the EU locations only
MAX_LINE = 120  # what `atl quality lint` allows
APEX = "@"  # `subdomains: [{"@": service}]`: the service that answers the bare domain

DOMAIN_KEYS = {"enabled", "group", "required", "domain", "port", "server", "services", "subdomains", "ports",
               "network", "features", "monitoring", "external", "provider", "note"}
SHARED_KEYS = {"enabled", "group", "domain", "server", "servers", "services", "network", "note"}
SERVER_KEYS = {"type", "location", "count"}
SHARED_SERVER_KEYS = {"type", "location", "role"}
NETWORK_KEYS = {"subnet", "ip"}
MONITORING_KEYS = {"enabled", "critical"}
TOP_KEYS = {"domains", "shared_infrastructure", "global", "services"}


@dataclass(frozen=True, order=True)
class Decision:
    """What the importer did with one entry of the source, located there."""

    file: str
    line: int
    column: int
    category: str  # mapped, dropped, review (a person must look), placeholder (a value the file lacks)
    message: str

    def __str__(self) -> str:
        return printable(f"{self.file}:{self.line}:{self.column}: {self.category}: {self.message}")

    def as_json(self) -> dict:
        return {"file": self.file, "line": self.line, "column": self.column, "category": self.category,
                "message": self.message}


@dataclass(frozen=True)
class Options:
    """What the source lacks, given on the command line; None: a placeholder and a decision."""

    zone_ids: tuple[str, ...] = ()  # --zone-id as written: ZONE=ID, or an ID alone for a file of one zone
    ssh_public_key: str | None = None
    ssh_from: tuple[str, ...] = ()
    output_name: str = "domains.yml"  # how findings in the result are located


@dataclass
class ImportResult:
    text: str | None  # the domains.yml; None when findings in the source stopped the import
    decisions: list[Decision]
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings


def option_problems(options: Options) -> list[str]:
    """What is wrong with the values given on the command line (a usage error each)."""
    problems = []
    zones: list[str] = []
    for written in options.zone_ids:
        zone, _, zone_id = written.rpartition("=")
        if not re.fullmatch(r"[0-9a-f]{32}", zone_id):
            problems.append("--zone-id: a Cloudflare zone ID is 32 hex digits (the zone's Overview page)")
        try:
            zones.append(normalize_hostname(zone) if zone else "")
        except ValueError as error:
            problems.append(f"--zone-id: {error}")
    if len(set(zones)) < len(zones) or ("" in zones and len(zones) > 1):
        problems.append("--zone-id: once per zone, as ZONE=ID; an ID alone is for a file of one zone")
    if options.ssh_public_key is not None and not _SSH_PUBLIC_KEY.fullmatch(options.ssh_public_key.strip()):
        problems.append("--ssh-public-key: not an SSH public key such as `ssh-ed25519 AAAA... comment`; never a "
                        "private key")
    for network in options.ssh_from:
        try:
            ipaddress.ip_network(network)
        except ValueError as error:
            problems.append(f"--ssh-from: {error}")
    return problems


def given_zone_ids(options: Options) -> dict[str, str]:
    """--zone-id's IDs by zone; "" for an ID given alone. The options are checked (option_problems)."""
    found = {}
    for written in options.zone_ids:
        zone, _, zone_id = written.rpartition("=")
        found[normalize_hostname(zone) if zone else ""] = zone_id
    return found


def import_file(path: Path | str, options: Options = Options(), *, name: str | None = None) -> ImportResult:
    return import_source(read_source(path, name=name), options)


def import_text(text: str, options: Options = Options(), *, name: str = "domains.yml") -> ImportResult:
    return import_source(decode_source(text.encode(), name), options)


def import_source(source: Source, options: Options = Options()) -> ImportResult:
    """The source, in this schema: its text, every decision, and the findings that stopped it."""
    positions = Positions()
    try:
        data = parse(source, positions)
    except ConfigError as error:
        return ImportResult(None, [], error.findings)
    importer = _Importer(source, positions, options)
    text = importer.run(data)
    if importer.findings:
        return ImportResult(None, sorted(importer.decisions), sorted(importer.findings))
    return ImportResult(text, sorted(importer.decisions), importer.in_source(_validated(text, options.output_name),
                                                                             text))


def _validated(text: str, name: str) -> list[Finding]:
    """The findings of loading and validating the result: none for an import that succeeds."""
    from atl_pipeline.validation import validate

    try:
        return list(validate(load_source(decode_source(text.encode(), name))).findings)
    except ConfigError as error:
        return error.findings


# --- the source -------------------------------------------------------------------------------


@dataclass
class _Unit:
    """A domain id or a piece of shared infrastructure: a server group and what it runs."""

    key: str
    path: YamlPath
    shared: bool
    enabled: bool = True
    group: str | None = None  # the server group's name, once declared
    label: str | None = None  # the domain's `group`, a label for people
    services: list[str] = field(default_factory=list)


@dataclass
class _Placed:
    """A service of the output: where it came from and what it becomes."""

    name: str
    unit: _Unit
    path: YamlPath  # its item in the unit's `services`
    entry: Entry | None  # the catalog's service of that name, if any (the file's `services:` may override it)
    fields: dict  # services.<name>, in the schema's terms
    names: list[str] = field(default_factory=list)  # domains routed to it
    tcp_ports: list[tuple[int, str | None]] = field(default_factory=list)  # (port, its comment)


class _Importer:
    def __init__(self, source: Source, positions: Positions, options: Options):
        self.source = source
        self.positions = positions
        self.options = options
        self.lines = source.text.split("\n")
        self.decisions: list[Decision] = []
        self.findings: list[Finding] = []
        self.catalog = catalog()
        self.catalog_ports = {entry.port for entry in self.catalog.values() if entry.port}
        self.next_free = FIRST_FREE_PORT  # where the search for a free port block resumes
        self.declared: dict[str, dict] = {}  # the file's own services.<name>
        self.refused: set[str] = set()  # services.<name> with findings: not reported again where they are listed
        self.placed: dict[str, _Placed] = {}
        self.groups: dict[str, tuple[dict, _Unit]] = {}
        self.domains: list[dict] = []  # {"fields", "above", "trailing", "unit", "comments"}
        self.settings: dict[str, Any] = {"project": None, "environment": None, "ssl": True, "monitoring": True,
                                         "proxied": True, "min_tls_version": None, "sshd": {}, "docker_logs": {},
                                         "prometheus": {}}
        self.setting_comments: dict[str, list[str]] = {}
        self.header: list[str] = []
        self.zones: dict[str, str] = {}  # each Cloudflare zone and its ID
        self.placeholder_ids: set[str] = set()  # the zones whose ID is a placeholder
        self.data: dict = {}

    # locations

    def in_source(self, findings: list[Finding], text: str) -> list[Finding]:
        """The result's findings, each at the line and column of the source it came from (the result is not
        written when it has findings: a line of it would point at nothing)."""
        positions = Positions()
        parse(decode_source(text.encode(), "imported"), positions)
        at = {position: path for path, position in [*positions.values.items(), *positions.keys.items()]}
        located = []
        for finding in findings:
            path = at.get((finding.line, finding.column), ())
            located.append(Finding(self.source.name, *self.where(self._origin(path), key=False),
                                   f"the result would not validate ({dotted(path) or 'the file'}): {finding.message}"))
        return sorted(located)

    def _origin(self, path: YamlPath) -> YamlPath:
        """Where in the source what the result has at `path` came from: a domain's unit, a service's item, or
        the domains as a whole."""
        if path[:1] == ("domains",) and len(path) > 1 and isinstance(path[1], int) and path[1] < len(self.domains):
            return self.domains[path[1]]["unit"].path
        if path[:1] == ("services",) and len(path) > 1 and path[1] in self.placed:
            return self.placed[path[1]].path
        return ("domains",)

    def where(self, path: YamlPath, *, key: bool = True) -> tuple[int, int]:
        return self.positions.of(path, key=key)

    def decide(self, path: YamlPath, category: str, message: str) -> None:
        self.decisions.append(Decision(self.source.name, *self.where(path), category, echoed(message)))

    def find(self, path: YamlPath, message: str, *, key: bool = False) -> None:
        self.findings.append(Finding(self.source.name, *self.where(path, key=key), echoed(message)))

    # comments

    def above(self, path: YamlPath) -> list[str]:
        """The comment lines just above the key (or list item) at `path`, without their `#`."""
        line = self.where(path)[0]
        found = []
        for number in range(line - 2, -1, -1):
            text = self.lines[number].strip()
            if not text.startswith("#"):
                break
            found.append(_comment(text[1:]))
        return found[::-1]

    def trailing(self, path: YamlPath) -> str | None:
        """The comment at the end of the line of the scalar at `path`."""
        line, column = self.where(path, key=False)
        text = self.lines[line - 1]
        quote = None
        for index in range(column - 1, len(text)):
            char = text[index]
            if quote:
                quote = None if char == quote else quote
            elif char in "\"'" and (index == column - 1 or text[index - 1] in " [{,"):
                quote = char
            elif char == "#" and index > 0 and text[index - 1] in " \t":
                return _comment(text[index + 1:])
        return None

    # typed reads of the source, each mistake a finding

    def mapping(self, value: Any, path: YamlPath, allowed: set[str] | None, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.find(path, f"{dotted(path)}: {what} is a mapping")
            return {}
        for key in value:
            if allowed is not None and key not in allowed:
                self.find((*path, key), f"{dotted((*path, key))}: unknown field; the fields here are "
                          f"{', '.join(sorted(allowed))}", key=True)
        return value

    def boolean(self, spec: dict, path: YamlPath, key: str, default: bool) -> bool:
        value = spec.get(key, default)
        if not isinstance(value, bool):
            self.find((*path, key), f"{dotted((*path, key))}: write true or false")
            return default
        return value

    def text(self, spec: dict, path: YamlPath, key: str) -> str | None:
        value = spec.get(key)
        if value is not None and (not isinstance(value, str | int) or isinstance(value, bool)):
            self.find((*path, key), f"{dotted((*path, key))}: write a text")
            return None
        return None if value is None else str(value)

    def strings(self, spec: dict, path: YamlPath, key: str) -> list[tuple[Any, YamlPath]]:
        value = spec.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.find((*path, key), f"{dotted((*path, key))}: write a list")
            return []
        return [(item, (*path, key, index)) for index, item in enumerate(value)]

    def identifier(self, written: str, path: YamlPath, what: str) -> str | None:
        """`written` as a name of this schema: `_` becomes `-`, as in `atl_tools` -> `atl-tools`."""
        name = written.lower().replace("_", "-")
        try:
            return check_identifier(name)
        except ValueError as error:
            self.find(path, f"{dotted(path)}: {what} {written!r} cannot become a name: {error}")
            return None

    # the whole file

    def run(self, data: Any) -> str | None:
        if not isinstance(data, dict) or not isinstance(data.get("domains"), dict):
            shown = isinstance(data, dict) and isinstance(data.get("domains"), list)
            self.find((), "this file is already in the pipeline's format (a `domains:` list): nothing to import"
                      if shown else "the All Things Linux format is a mapping with `domains:` keyed by id "
                      "(and shared_infrastructure, global)")
            return None
        for key in data:
            if key not in TOP_KEYS:
                self.find((key,), f"{key}: unknown top-level field; the fields here are "
                          f"{', '.join(sorted(TOP_KEYS))}", key=True)
        self.data = data
        self.header = self._header()
        self._declared(self.mapping(data.get("services"), ("services",), None, "services"))
        self._global(self.mapping(data.get("global"), ("global",), None, "global"))
        domains = data["domains"]
        self._placeholders()
        self.zones = self._zone_ids(self._zones(domains))
        units = [self._domain(key, spec) for key, spec in domains.items()]
        shared = self.mapping(data.get("shared_infrastructure"), ("shared_infrastructure",), None,
                              "shared_infrastructure")
        units += [self._shared(key, spec) for key, spec in shared.items()]
        units = [unit for unit in units if unit is not None]
        self._ports(units)
        self._blocks_apart()
        self._route()
        self._create_groups(units)
        location = self._location()
        if self.findings:
            return None
        return _Writer(self, location).text()

    def _header(self) -> list[str]:
        """The comment lines that open the source, before its first key."""
        found: list[str] = []
        for line in self.lines:
            text = line.strip()
            if text == "---" or (not text and not found):
                continue
            if text and not text.startswith("#"):
                break
            found.append(_comment(text[1:]) if text else "")
        while found and not found[-1]:
            found.pop()
        return found

    # services the file declares in this schema's terms

    def _declared(self, services: dict) -> None:
        for name, spec in services.items():
            path = ("services", name)
            try:
                check_identifier(name if isinstance(name, str) else "")
            except ValueError as error:
                self.find(path, f"services.{name}: {error}", key=True)
                continue
            if not isinstance(spec, dict):
                self.find(path, f"services.{name}: a mapping of the schema's service fields")
                continue
            base = self.catalog[name].service() if name in self.catalog and self.catalog[name].is_service else {}
            merged = {**base, **spec}
            merged.setdefault("port", 0)  # allocated below when the file gives none
            try:
                Service.model_validate({**merged, "port": merged["port"] or FIRST_FREE_PORT})
            except ValidationError as error:
                for problem in error.errors(include_url=False):
                    where = (*path, *problem["loc"]) if problem["loc"] else path
                    self.find(where, f"{dotted(where)}: {problem['msg'].removeprefix('Value error, ')}")
                self.refused.add(name)
                continue
            if not merged.get("image"):
                self.find(path, f"services.{name}: needs an image: the hcloud target runs each service as a "
                          "container", key=True)
                self.refused.add(name)
                continue
            self.declared[name] = merged
            entry = self.catalog.get(name)
            self.decide(path, "mapped", f"services.{name}: declared in this file" + (
                " (not in the catalog)" if entry is None else ", over the catalog's entry" if entry.is_service
                else f", over the catalog's entry ({ROLES[entry.role]})"))

    # global settings

    def _global(self, settings: dict) -> None:
        _GlobalWalker(self).walk(settings, ("global",))

    # domain ids

    def _zones(self, domains: dict) -> dict[str, tuple[YamlPath, bool]]:
        """The Cloudflare zones: each id's domain (an external one's too: every domain must be in a zone),
        unless it lies in another id's, whose zone holds it. Each with where it is written, and whether it is
        external."""
        apexes: dict[str, tuple[YamlPath, bool]] = {}
        for key, spec in domains.items():
            if isinstance(spec, dict) and isinstance(spec.get("domain"), str):
                try:
                    apexes.setdefault(normalize_hostname(spec["domain"]), (("domains", key, "domain"),
                                                                           spec.get("external") is True))
                except ValueError:
                    continue  # reported where the id is read
        return {name: where for name, where in apexes.items()
                if not any(name.endswith(f".{other}") for other in apexes)}

    def _zone_ids(self, zones: dict[str, tuple[YamlPath, bool]]) -> dict[str, str]:
        """Each zone's ID: from --zone-id, else a placeholder of its own (zones may not share an ID)."""
        given = given_zone_ids(self.options)
        for zone in given.keys() - zones.keys() - {""}:
            self.find((), f"--zone-id {zone}=...: {zone} is not a zone of this file; its zones are "
                      f"{', '.join(zones)}")
        if "" in given:
            if len(zones) == 1:
                given = {next(iter(zones)): given[""]}
            else:
                self.find((), f"--zone-id {given['']}: an ID alone is for a file of one zone, and this one has "
                          f"{len(zones)} ({', '.join(zones)}): write --zone-id ZONE=ID for each")
        ids = {}
        for number, (zone, (path, external)) in enumerate(zones.items(), 1):
            why = ("an external domain's zone (every domain must be in a zone; atl changes nothing in a zone that "
                   "holds none of its records); " if external else "")
            ids[zone] = given.get(zone) or f"{number:032x}"
            if zone in given:
                self.decide(path, "mapped", f"target.cloudflare.zones.{zone}: {why}its ID from --zone-id")
            else:
                self.placeholder_ids.add(zone)
                self.decide(path, "placeholder", f"target.cloudflare.zones.{zone}: {why}a placeholder ID, which the "
                            f"file cannot give: replace it (the zone's Overview page), or import again with "
                            f"--zone-id {zone}=ID")
        return ids

    def _placeholders(self) -> None:
        options = self.options
        for missing, setting, option in ((options.ssh_public_key is None, "target.ssh_public_key", "--ssh-public-key"),
                                         (not options.ssh_from, "target.ssh_from", "--ssh-from")):
            if missing:
                self.decide((), "placeholder", f"{setting}: a placeholder, which the file cannot give: replace it, "
                            f"or import again with {option}")

    def _domain(self, key: Any, spec: Any) -> _Unit | None:
        path = ("domains", key)
        if not isinstance(key, str):
            self.find(path, "a domain id is a name such as atl_tools", key=True)
            return None
        spec = self.mapping(spec, path, DOMAIN_KEYS, "a domain")
        unit = _Unit(key, path, shared=False, enabled=self.boolean(spec, path, "enabled", True))
        external = self.boolean(spec, path, "external", False)
        required = self.boolean(spec, path, "required", False)
        monitoring = self._monitoring(spec, path)
        if (label := self.text(spec, path, "group")) is not None:
            unit.label = self.identifier(label, (*path, "group"), "group")
        written = self.text(spec, path, "domain")
        if written is None:
            self.find(path, f"domains.{key}: missing `domain`, the name it serves", key=True)
            return None
        try:
            apex = normalize_hostname(written)
        except ValueError as error:
            self.find((*path, "domain"), f"domains.{key}.domain: {error}")
            return None
        common = {"group": unit.label, "required": required, "monitoring": monitoring, "enabled": unit.enabled}
        comments = self.above(path)
        if (note := self.text(spec, path, "note")) is not None:
            comments += [_comment(line) for line in note.splitlines()]
            self.decide((*path, "note"), "mapped", f"domains.{key}.note: a comment above its domain")
        if "features" in spec:
            flags = self.mapping(spec["features"], (*path, "features"), None, "features")
            self.decide((*path, "features"), "dropped", f"domains.{key}.features ({', '.join(map(str, flags))}): "
                        "flags for the old playbooks, which configured the servers by hand (a pubnix's accounts, "
                        "SSO wiring...); the schema deploys services, and has no such switches")
        if "port" in spec:
            self.decide((*path, "port"), "dropped", f"domains.{key}.port ({spec['port']}): the port the old reverse "
                        "proxy sent the domain to; on hcloud the ports are the pipeline's (each service's block)")
        if external:
            return self._external(unit, spec, apex, common, comments)
        unit.group = self.identifier(key, path, "domain id")
        self._placement(unit, spec)
        names = self._names(unit, spec, apex)
        self._domain_entries(unit, names, common, comments)
        return unit

    def _monitoring(self, spec: dict, path: YamlPath) -> bool:
        where = (*path, "monitoring")
        monitoring = spec.get("monitoring")
        if monitoring is None:
            return self.settings["monitoring"]
        if isinstance(monitoring, bool):
            return monitoring
        monitoring = self.mapping(monitoring, where, MONITORING_KEYS, "monitoring")
        if "critical" in monitoring:
            self.decide((*where, "critical"), "dropped", f"{dotted((*where, 'critical'))}: the schema gives every "
                        "monitored domain the same SLO alerts; it has no severity per domain")
        return self.boolean(monitoring, where, "enabled", self.settings["monitoring"])

    def _external(self, unit: _Unit, spec: dict, name: str, common: dict, comments: list[str]) -> _Unit:
        path = unit.path
        for key in ("server", "services", "subdomains", "ports", "network"):
            if key in spec:
                self.decide((*path, key), "dropped", f"domains.{unit.key}.{key}: an external domain is served "
                            "elsewhere; nothing of it is deployed")
        entry: dict = {"name": name, "external": True}
        if (provider := self.text(spec, path, "provider")) is not None:
            entry["provider"] = self.identifier(provider, (*path, "provider"), "provider")
            if entry["provider"] != provider:
                self.decide((*path, "provider"), "mapped", f"provider {provider!r} -> {entry['provider']} (a name "
                            "of this schema: [a-z0-9-])")
        self._add_domain(path, entry, common, comments, unit)
        self.decide(path, "mapped", f"domains.{unit.key} -> {name}: external (served by {entry.get('provider', '?')}"
                    "): declared and checked, never deployed, its DNS left alone")
        return unit

    # servers

    def _placement(self, unit: _Unit, spec: dict) -> None:
        """The unit's server group and its services."""
        path = unit.path
        group: dict = {}
        if unit.shared and "servers" in spec:
            group = self._server_list(unit, spec["servers"])
        elif "server" in spec:
            server = self.mapping(spec["server"], (*path, "server"), SERVER_KEYS, "server")
            count = server.get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
                self.find((*path, "server", "count"), f"{dotted((*path, 'server', 'count'))}: a group has 1 to 10 "
                          "servers")
            group = {"count": count, **self._type_location(server, (*path, "server"))}
        elif unit.enabled:
            self.find(path, f"{dotted(path)}: missing `server` (type, location, count)", key=True)
        network = self.mapping(spec.get("network"), (*path, "network"), NETWORK_KEYS, "network")
        if "ip" in network:
            self._private_ip(unit, network, group)
        if "subnet" in network:
            self._docker_subnet(unit, network, group)
        for item, where in self.strings(spec, path, "services"):
            self._service(unit, item, where)
        if unit.enabled and unit.group:
            if unit.group in self.groups:
                other = self.groups[unit.group][1]
                self.find(path, f"{dotted(path)} becomes server group {unit.group}, as {dotted(other.path)} (line "
                          f"{self.where(other.path)[0]}) does: rename one", key=True)
            self.groups[unit.group] = (group, unit)

    def _type_location(self, server: dict, path: YamlPath) -> dict:
        found = {}
        kind, location = server.get("type"), server.get("location")
        if kind is not None:
            if not isinstance(kind, str) or not re.fullmatch(r"[a-z]{2,4}[0-9]{2,3}", kind):
                self.find((*path, "type"), f"{dotted((*path, 'type'))}: a Hetzner server type such as cx33")
            else:
                found["type"] = kind
        if location is not None:
            if not isinstance(location, str) or location not in HCLOUD_LOCATIONS:
                self.find((*path, "location"), f"{dotted((*path, 'location'))}: a Hetzner location, one of "
                          f"{', '.join(HCLOUD_LOCATIONS)}")
            else:
                found["location"] = location
        if "type" in found:
            self._review_type(found["type"], found.get("location"), (*path, "type"))
        return found

    def _review_type(self, kind: str, location: str | None, path: YamlPath) -> None:
        reasons = []
        if kind in RETIRED_TYPES:
            reasons.append(f"{kind} is of the cx11-cx51 line, which Hetzner no longer sells")
        if kind.startswith(EU_ONLY_PREFIX) and location not in (None, "fsn1", "nbg1", "hel1"):
            reasons.append(f"the cx types are offered in fsn1, nbg1 and hel1 only, not in {location}")
        if reasons:
            self.decide(path, "review", f"type {kind} kept as written, but {'; and '.join(reasons)}: Hetzner will "
                        "refuse it when the servers are created; choose a type it offers there (cpx or ccx outside "
                        "the EU)")

    def _server_list(self, unit: _Unit, servers: Any) -> dict:
        """Shared infrastructure's `servers` list: one group of as many servers, of one type and location."""
        path = (*unit.path, "servers")
        if not isinstance(servers, list) or not servers:
            self.find(path, f"{dotted(path)}: a list of servers (type, location, role)")
            return {}
        specs = [self.mapping(server, (*path, index), SHARED_SERVER_KEYS, "a server")
                 for index, server in enumerate(servers)]
        first = self._type_location(specs[0], (*path, 0))
        for index, spec in enumerate(specs[1:], 1):
            if {key: spec.get(key) for key in ("type", "location")} != {key: specs[0].get(key) for key in
                                                                          ("type", "location")}:
                self.find((*path, index), f"{dotted((*path, index))}: the servers of one group share a type and a "
                          "location (the schema's groups have one of each): make them equal, or split the group")
        roles = [str(spec["role"]) for spec in specs if "role" in spec]
        if roles:
            self.decide(path, "review", f"{dotted(path)}: roles {', '.join(roles)} -> one group of {len(specs)} "
                        "servers; the schema has no replication: the pipeline spreads a service's replicas over the "
                        "servers, it does not copy data between them, so each database here runs 1 replica (on the "
                        "first server) and a replica database is yours to set up")
        return {"count": len(specs), **first}

    def _private_ip(self, unit: _Unit, network: dict, group: dict) -> None:
        path = (*unit.path, "network", "ip")
        try:
            address = ipaddress.IPv4Address(str(network["ip"]))
        except ValueError:
            self.find(path, f"{dotted(path)}: an IPv4 address")
            return
        taken = [other for other, (spec, _) in self.groups.items() if spec.get("private_ip") == str(address)]
        if taken:
            self.find(path, f"{dotted(path)}: {address} is already server group {taken[0]}'s")
            return
        if address not in SUBNET or group.get("count", 1) != 1:
            self.find(path, f"{dotted(path)}: {address} cannot be kept: a fixed private_ip needs a group of one "
                      f"server and an address in the servers' subnet {SUBNET}; remove it, or choose one there")
            return
        group["private_ip"] = str(address)

    def _docker_subnet(self, unit: _Unit, network: dict, group: dict) -> None:
        path = (*unit.path, "network", "subnet")
        try:
            subnet = ipaddress.IPv4Network(str(network["subnet"]))
        except ValueError:
            self.find(path, f"{dotted(path)}: a network such as 172.20.0.0/16")
            return
        if subnet.overlaps(NETWORK):
            self.find(path, f"{dotted(path)}: {subnet} overlaps the private network {NETWORK}, which the servers "
                      "must reach: choose another range")
            return
        group["docker_subnet"] = str(subnet)

    # services

    def _service(self, unit: _Unit, item: Any, path: YamlPath) -> None:
        if not isinstance(item, str):
            self.find(path, f"{dotted(path)}: a service's name")
            return
        if item in self.refused:
            return
        entry = self.catalog.get(item)
        if item in self.placed or item in unit.services:
            first = self.placed[item].path if item in self.placed else path
            self.find(path, f"{item} is listed a second time (first at line {self.where(first)[0]}): a service runs "
                      "on one server group; declare a second one under another name in `services:`")
            return
        if item not in self.declared:
            if entry is None:
                self.find(path, f"service {item!r} is not in the catalog: add `services.{item}: {{image: ..., "
                          f"port: ...}}` (the schema's service fields) to this file, or an entry to "
                          "atl_pipeline/config/catalog.yml")
                return
            if not entry.is_service:
                self.decide(path, "dropped", f"{item}: {ROLES[entry.role]}: {entry.reason}")
                return
        fields = dict(self.declared.get(item) or entry.service())
        if not fields.get("port"):
            fields["port"] = self._free_port()
            self.decide(path, "mapped", f"services.{item}.port: {fields['port']}, the first free block of "
                        f"{PORT_BLOCK} ports")
        unit.services.append(item)
        self.placed[item] = _Placed(item, unit, path, entry if entry is not None and entry.is_service else None,
                                    fields)

    def _blocks_apart(self) -> None:
        """A port the file gives a service keeps its block apart from the others' (the catalog's are apart, and
        a free block is free)."""
        for name, placed in self.placed.items():
            if not self.declared.get(name, {}).get("port"):
                continue
            port = placed.fields["port"]
            clash = next((other for other in self.placed.values() if other is not placed
                          and abs(port - other.fields["port"]) < PORT_BLOCK), None)
            if clash is not None:
                self.find(("services", name, "port"), f"services.{name}.port {port}: its {PORT_BLOCK} ports meet "
                          f"those of {clash.name} (from {clash.fields['port']}); give it a port of its own")

    def _free_port(self) -> int:
        """The first block after the last one given whose ports meet no other service's (each call starts where
        the last left off: linear in the services, not cubic)."""
        used = sorted({placed.fields.get("port") or 0 for placed in self.placed.values()} | self.catalog_ports)
        port = self.next_free
        while (index := bisect.bisect_right(used, port - PORT_BLOCK)) < len(used) and used[index] < port + PORT_BLOCK:
            port += PORT_BLOCK
        self.next_free = port + PORT_BLOCK
        return port

    # names

    def _names(self, unit: _Unit, spec: dict, apex: str) -> list[tuple[str, str, YamlPath]]:
        """(name, service, where) of each name the unit serves: the apex, then each subdomain."""
        names: list[tuple[str, str, YamlPath]] = []
        explicit_apex = False
        for item, path in self.strings(spec, unit.path, "subdomains"):
            if isinstance(item, dict) and len(item) == 1:
                [(label, service)] = item.items()
                path = (*path, label)
                explicit_apex |= label == APEX
                self._name(unit, label, service, path, apex, names, explicit=True)
            elif isinstance(item, str):
                service = by_subdomain().get(item)
                if service is None:
                    self.find(path, f"subdomain {item!r}: no service of the catalog answers it; write "
                              f"`- {item}: <service>`")
                    continue
                self._name(unit, item, service, path, apex, names, explicit=False)
            else:
                self.find(path, f"{dotted(path)}: a subdomain (`auth`), or `label: service`")
        if not explicit_apex:
            self._apex(unit, apex, names)
        return names

    def _name(self, unit: _Unit, label: Any, service: Any, path: YamlPath, apex: str,
              names: list[tuple[str, str, YamlPath]], *, explicit: bool) -> None:
        if not isinstance(label, str) or not isinstance(service, str):
            self.find(path, f"{dotted(path)}: `label: service`")
            return
        try:
            name = apex if label == APEX else normalize_hostname(f"{label}.{apex}")
        except ValueError as error:
            self.find(path, f"{dotted(path)}: {error}")
            return
        entry = self.catalog.get(service)
        if service not in unit.services:
            if entry is not None and not entry.is_service and service not in self.declared:
                self.decide(path, "dropped", f"{name}: its service, {service}, is {ROLES[entry.role]}: {entry.reason}")
            elif service not in self._listed(unit):  # else listed, and already reported
                self.find(path, f"{name}: its service, {service}, is not among {dotted((*unit.path, 'services'))}; "
                          "add it there" + ("" if explicit else f", or name the service: `- {label}: <service>`"))
            return
        if entry is not None and entry.internal and service not in self.declared:
            self.find(path, f"{name}: {service} never answers a domain (a database, or another internal service)")
            return
        names.append((name, service, path))

    def _listed(self, unit: _Unit) -> set[str]:
        listed = self._spec(unit).get("services")
        return {item for item in listed if isinstance(item, str)} if isinstance(listed, list) else set()

    def _spec(self, unit: _Unit) -> dict:
        node: Any = self.data
        for part in unit.path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}

    def _apex(self, unit: _Unit, apex: str, names: list[tuple[str, str, YamlPath]]) -> None:
        front = next((service for service in unit.services
                      if self.placed[service].entry is not None and self.placed[service].entry.apex), None)
        if front is None:
            self.decide((*unit.path, "domain"), "dropped", f"{apex}: no service of domains.{unit.key} answers a bare "
                        "domain (the catalog's `apex`), so the name is not served; to serve it, write "
                        f"`- \"{APEX}\": <service>` under its subdomains")
            return
        names.insert(0, (apex, front, (*unit.path, "domain")))
        self.decide((*unit.path, "domain"), "mapped", f"{apex} -> {front}, the first of its services that answers a "
                    "bare domain (the catalog's `apex`)")

    def _domain_entries(self, unit: _Unit, names: list[tuple[str, str, YamlPath]], common: dict,
                        comments: list[str]) -> None:
        """A domain entry per name; the comments above the domain id go above the first."""
        first = True
        for name, service, path in names:
            placed = self.placed[service]
            entry = {"name": name, "service": service}
            above = (comments if first else []) + (self.above(path) if path[-1] != "domain" else [])
            trailing = self.trailing(path) if path[-1] != "domain" else None
            self._add_domain(path, entry, common, above, unit, trailing=trailing)
            placed.names.append(name)
            if path[-1] != "domain":
                self.decide(path, "mapped", f"{name} -> {service}")
            first = False

    def _add_domain(self, path: YamlPath, entry: dict, common: dict, above: list[str], unit: _Unit,
                    trailing: str | None = None) -> None:
        if common["group"]:
            entry["group"] = common["group"]
        if common["required"]:
            entry["required"] = True
        if not self.settings["ssl"]:
            entry["ssl"] = False
        if not common["monitoring"]:
            entry["monitoring"] = False
        if not common["enabled"]:
            entry["enabled"] = False
        enabled_comment = self.trailing((*unit.path, "enabled")) if "enabled" in self._spec(unit) else None
        self.domains.append({"fields": entry, "above": above, "trailing": trailing, "unit": unit,
                             "comments": {"enabled": enabled_comment}})

    # TCP ports, then routed or internal

    def _ports(self, units: list[_Unit]) -> None:
        for unit in units:
            for item, path in self.strings(self._spec(unit), unit.path, "ports"):
                self._port(unit, item, path)

    def _port(self, unit: _Unit, item: Any, path: YamlPath) -> None:
        if not isinstance(item, int) or isinstance(item, bool) or not 1 <= item <= 65535:
            self.find(path, f"{dotted(path)}: a TCP port number")
            return
        owners = [service for service in unit.services if item in self._tcp_of(service)]
        if not owners:
            listed = [name for name in self._listed(unit) if item in self._tcp_of(name)]
            if listed:
                self.decide(path, "dropped", f"port {item}: {listed[0]} listens on it, and it is not imported")
                return
            self.find(path, f"port {item}: no service of {dotted((*unit.path, 'services'))} listens on it in the "
                      "catalog; declare it in this file's `services.<name>.tcp_ports`")
            return
        if item < 1024:
            self.find(path, f"port {item}: the schema's tcp_ports start at 1024")
            return
        self.placed[owners[0]].tcp_ports.append((item, self.trailing(path)))
        self.decide(path, "mapped", f"port {item} -> services.{owners[0]}.tcp_ports: the load balancer passes it to "
                    "the servers as it is")

    def _tcp_of(self, service: str) -> list[int]:
        """The TCP ports a service may take: the file's own `tcp_ports` for it, else the catalog's."""
        if "tcp_ports" in self.declared.get(service, {}):
            return list(self.declared[service]["tcp_ports"])
        return list(self.catalog[service].tcp_ports) if service in self.catalog else []

    def _route(self) -> None:
        """Each service placed: routed to its names, internal, or (disabled) run nowhere."""
        for name, placed in self.placed.items():
            unit, entry = placed.unit, placed.entry
            placed.fields["servers"] = unit.group
            if placed.tcp_ports and "tcp_ports" not in self.declared.get(name, {}):
                placed.fields["tcp_ports"] = [port for port, _ in placed.tcp_ports]
            elif entry is not None and entry.tcp_ports and not placed.tcp_ports:
                self.decide(placed.path, "review", f"{name}: its TCP ports ({', '.join(map(str, entry.tcp_ports))}) "
                            f"are not published: {dotted((*unit.path, 'ports'))} lists none of them")
            if placed.names:
                self._routed(placed)
            if not unit.enabled:
                self.decide(placed.path, "review", f"services.{name}: defined, but runs nowhere while "
                            f"{dotted(unit.path)} is disabled")
                continue
            if placed.names:
                continue
            placed.fields["internal"] = True
            if entry is not None and entry.resources is not None:
                placed.fields["resources"] = entry.resources.model_dump()
            if unit.shared:
                why = "shared infrastructure"
            elif entry is not None and entry.internal:
                why = "it answers no domain (the catalog's `internal`)"
            else:
                hint = f"`{entry.subdomain}` (its catalog subdomain)" if entry and entry.subdomain else "a subdomain"
                why = (f"no name of domains.{unit.key} routes to it; to publish it, add {hint} to its `subdomains`")
            self.decide(placed.path, "mapped", f"services.{name}: internal on server group {unit.group}: {why}")
        self._tcp_domains()
        self._gaps()

    def _routed(self, placed: _Placed) -> None:
        entry = placed.entry
        if entry is not None and entry.resources is not None:
            for domain in self.domains:
                if domain["fields"].get("service") == placed.name:
                    domain["fields"]["resources"] = entry.resources.model_dump()

    def _tcp_domains(self) -> None:
        """The names of a unit whose services take TCP ports go unproxied: Cloudflare's proxy passes HTTP only."""
        for domain in self.domains:
            unit = domain["unit"]
            if domain["fields"].get("external"):
                continue
            tcp = [port for service in unit.services for port, _ in self.placed[service].tcp_ports]
            if tcp:
                domain["fields"]["proxied"] = False
                self.decide((*unit.path, "ports"), "mapped", f"{domain['fields']['name']}: proxied: false, so that "
                            f"TCP clients reach the load balancer at its address ({', '.join(map(str, tcp))}; "
                            "Cloudflare's proxy passes HTTP only)")

    def _gaps(self) -> None:
        for name, placed in self.placed.items():
            if placed.entry is None or not placed.unit.enabled:
                continue
            ours = placed.entry.service()  # a file that gives its own image or health vouches for it
            vouched = any(placed.fields.get(key) != ours.get(key) for key in ("image", "health"))
            gap = None if vouched else placed.entry.gap()
            if gap:
                self.decide(placed.path, "review", f"{name} ({placed.entry.image}) {gap}")
            if placed.entry.note:
                self.decide(placed.path, "review", f"{name}: {placed.entry.note}")

    def _location(self) -> str | None:
        """target.location: the first group's. One network zone for all: the private network lives in one, with
        the load balancer."""
        first = None
        for name, (group, unit) in self.groups.items():
            location = group.get("location")
            if location is None:
                continue
            if first is None:
                first = location
            elif HCLOUD_LOCATIONS[location] != HCLOUD_LOCATIONS[first]:
                self.find((*unit.path, "server", "location"), f"server group {name} is in {location} "
                          f"({HCLOUD_LOCATIONS[location]}), the first in {first} ({HCLOUD_LOCATIONS[first]}): one "
                          "private network holds every group, in one network zone")
        return first

    # shared infrastructure

    def _shared(self, key: Any, spec: Any) -> _Unit | None:
        path = ("shared_infrastructure", key)
        if not isinstance(key, str):
            self.find(path, "a name such as database_cluster", key=True)
            return None
        spec = self.mapping(spec, path, SHARED_KEYS, "shared infrastructure")
        unit = _Unit(key, path, shared=True, enabled=self.boolean(spec, path, "enabled", True))
        unit.group = self.identifier(key, path, "name")
        if (label := self.text(spec, path, "group")) is not None:
            self.decide((*path, "group"), "dropped", f"{dotted(path)}.group ({label}): a label for domains; a server "
                        "group carries none")
        if (name := self.text(spec, path, "domain")) is not None:
            self.decide((*path, "domain"), "dropped", f"{dotted(path)}.domain ({name}): a host name in the old "
                        "inventory, not a public domain; the servers are addressed by their private addresses")
        if (note := self.text(spec, path, "note")) is not None:
            self.decide((*path, "note"), "dropped", f"{dotted(path)}.note: {note}")
        self._placement(unit, spec)
        return unit

    def _create_groups(self, units: list[_Unit]) -> None:
        """The groups that run something; a disabled domain's is not created."""
        created = {}
        for name, (group, unit) in self.groups.items():
            runs = [service for service in unit.services if self.placed[service].names
                    or self.placed[service].fields.get("internal")]
            if not runs:
                self.decide(unit.path, "dropped", f"server group {name}: not created: none of its services runs "
                            "here (their decisions say why)")
                continue
            created[name] = (group, unit)
            server = f"{group.get('count', 1)} x {group.get('type', 'the smallest type that fits')} in " \
                     f"{group.get('location', 'target.location')}"
            extra = "".join(f", {key} {group[key]}" for key in ("private_ip", "docker_subnet") if key in group)
            self.decide(unit.path, "mapped", f"{dotted(unit.path)} -> server group {name} ({server}{extra}) running "
                        f"{', '.join(runs)}")
        for unit in units:
            if not unit.enabled and unit.group and not unit.shared:
                self.decide((*unit.path, "enabled"), "review", f"domains.{unit.key} is disabled: its names are "
                            "declared with enabled: false, and its server group is not created (the schema cannot "
                            "switch a group off); import again once it is enabled")
        self.groups = created


def _name_setting(setting: str) -> Any:
    def handle(walker: _GlobalWalker, where: YamlPath, value: Any) -> None:
        if not isinstance(value, str):
            walker.importer.find(where, f"{dotted(where)}: a name")
            return
        name = walker.importer.identifier(value, where, setting)
        if name is not None:
            walker.settings[setting] = name
            walker.decide(where, "mapped", f"{setting}: {name}")
    return handle


class _GlobalWalker:
    """`global`, setting by setting: each mapped or dropped with its reason."""

    def __init__(self, importer: _Importer):
        self.importer = importer
        self.settings = importer.settings

    def walk(self, settings: dict, path: YamlPath) -> None:
        for key, value in settings.items():
            where = (*path, key)
            dotted_key = ".".join(str(part) for part in where[1:])
            handler = HANDLERS.get(dotted_key)
            if handler is not None:
                handler(self, where, value)
            elif dotted_key in SECTIONS and isinstance(value, dict):
                self.walk(value, where)
            else:
                self.importer.find(where, f"{dotted(where)}: a setting the importer does not know; remove it, or "
                                   "map it by hand", key=True)

    def decide(self, where: YamlPath, category: str, message: str) -> None:
        self.importer.decide(where, category, f"{dotted(where)}: {message}")

    def comment(self, setting: str, where: YamlPath) -> None:
        """The comment above a section (`# Docker Configuration`) goes above the setting it becomes."""
        for part in range(2, len(where) + 1):
            found = self.importer.above(where[:part])
            if found:
                self.importer.setting_comments.setdefault(setting, found)


def _flag(setting: str, message: str) -> Any:
    def handle(walker: _GlobalWalker, where: YamlPath, value: Any) -> None:
        if not isinstance(value, bool):
            walker.importer.find(where, f"{dotted(where)}: write true or false")
            return
        walker.settings[setting] = value
        walker.decide(where, "mapped", message.format(value=str(value).lower()))
    return handle


def _dropped(reason: str) -> Any:
    def handle(walker: _GlobalWalker, where: YamlPath, value: Any) -> None:
        walker.decide(where, "dropped", reason)
    return handle


def _expected(expected: Any, mapped: str, otherwise: str) -> Any:
    """Mapped when the value is what the pipeline does anyway; else a review with the reason it cannot be kept."""
    def handle(walker: _GlobalWalker, where: YamlPath, value: Any) -> None:
        if value == expected or (isinstance(expected, tuple) and value in expected):
            walker.decide(where, "mapped", mapped)
        else:
            walker.decide(where, "review", f"{json.dumps(value)} cannot be kept: {otherwise}")
    return handle


def _setting(section: str, key: str, pattern: str, *, integer: bool = False) -> Any:
    def handle(walker: _GlobalWalker, where: YamlPath, value: Any) -> None:
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        if text is None or not re.fullmatch(pattern, text):
            walker.importer.find(where, f"{dotted(where)}: {json.dumps(value)} is not a value {section}.{key} takes")
            return
        walker.settings[section][key] = int(text) if integer else text
        walker.comment(section, where)
        walker.decide(where, "mapped", f"{_SECTION_PATHS[section]}.{key}: {walker.settings[section][key]}")
    return handle


def _organization(walker: _GlobalWalker, where: YamlPath, value: Any) -> None:
    values = value if isinstance(value, dict) else {}
    shown = ", ".join(str(values[key]) for key in ("name", "short_name", "contact_email") if key in values)
    if shown:
        walker.importer.header.append(f"{shown} (global.organization)")
    walker.decide(where, "dropped", "the schema has no field for the organization; its name and contact are a "
                  "comment at the top")


def _tls_versions(walker: _GlobalWalker, where: YamlPath, value: Any) -> None:
    """The lowest version listed becomes the Cloudflare zone's: the load balancer's are Hetzner's."""
    versions = [re.fullmatch(r"TLSv?(1\.[0-3])", item) if isinstance(item, str) else None
                for item in (value if isinstance(value, list) else [None])]
    if not versions or None in versions:
        walker.importer.find(where, f"{dotted(where)}: a list of TLS versions such as TLSv1.2")
        return
    lowest = min(match.group(1) for match in versions)
    walker.settings["min_tls_version"] = lowest
    walker.comment("min_tls_version", where)
    walker.decide(where, "mapped", f"target.cloudflare.min_tls_version: {lowest}, the lowest listed, for visitors "
                  "of the proxied names at Cloudflare's edge; the load balancer, which unproxied names meet, offers "
                  "TLS 1.2 and 1.3 and has no setting for it")


def _allowed_ports(walker: _GlobalWalker, where: YamlPath, value: Any) -> None:
    ports = walker.importer.mapping(value, where, {"tcp", "udp"}, "allowed_ports")
    tcp, udp = ports.get("tcp") or [], ports.get("udp") or []
    if not isinstance(tcp, list) or not isinstance(udp, list):
        walker.importer.find(where, f"{dotted(where)}: lists of ports under tcp and udp")
        return
    other = [port for port in tcp if port not in (80, 443)]
    walker.decide(where, "dropped" if not other and not udp else "review",
                  f"tcp {tcp}: 80 and 443 reach the servers through the load balancer, over the private network "
                  "(which Hetzner's firewalls do not filter), so the servers' firewall opens SSH only"
                  + (f"; {other}: a service's TCP ports pass the load balancer (its tcp_ports)" if other else "")
                  + (f"; udp {udp}: the schema carries no UDP" if udp else "; udp []: none"))


HANDLERS: dict[str, Any] = {
    "environment": _name_setting("environment"),
    "project_name": _name_setting("project"),
    "default_user": _dropped("the pipeline deploys as root with the operator's key (Hetzner's images log in as "
                             "root) and creates no other user"),
    "monitoring_enabled": _flag("monitoring", "the default of each domain's monitoring ({value})"),
    "backup_enabled": _dropped("backups are not managed by the pipeline yet"),
    "ssl_enabled": _flag("ssl", "each domain's ssl ({value}; true is the schema's default)"),
    "cloudflare_proxy": _flag("proxied", "target.cloudflare.proxied: {value}"),
    "organization": _organization,
    "system.timezone": _dropped("no setting: the servers keep their image's timezone (UTC on Hetzner's Debian), "
                                "and each container its image's"),
    "system.locale": _dropped("no setting: the services run in containers, with their images' locales"),
    "system.ntp_servers": _dropped("no setting: the servers keep their image's time synchronisation"),
    "security.ssh.pubkey_auth": _expected(True, "keys only: the servers' sshd always takes them",
                                          "the deployment logs in with a key"),
    "security.ssh.password_auth": _expected(False, "target.sshd.password_auth is always false",
                                            "password logins are never allowed"),
    "security.ssh.root_login": _expected(
        ("prohibit-password", "without-password"), "target.sshd.root_login: prohibit-password",
        "the pipeline deploys as root, with the operator's key: root logs in with that key only "
        "(prohibit-password), and password logins stay refused for every user"),
    "security.ssh.max_auth_tries": _setting("sshd", "max_auth_tries", r"[1-9]|10", integer=True),
    "security.firewall.default_policy": _expected("deny", "the servers' firewall denies everything but SSH from "
                                                  "target.ssh_from (always)", "the firewall denies all but SSH"),
    "security.firewall.logging": _dropped("Hetzner's firewalls keep no log"),
    "security.firewall.allowed_ports": _allowed_ports,
    "docker.daemon_config.log_driver": _expected("json-file", "every container logs with json-file (always)",
                                                 "the pipeline's containers log with json-file"),
    "docker.daemon_config.log_opts.max_size": _setting("docker_logs", "max_size", r"[1-9][0-9]{0,5}[kmg]"),
    "docker.daemon_config.log_opts.max_file": _setting("docker_logs", "max_file", r"[1-9][0-9]?|100",
                                                       integer=True),
    "docker.container_defaults.restart_policy": _expected("unless-stopped", "every replica restarts "
                                                          "unless-stopped (always)", "replicas restart unless-stopped"),
    "docker.container_defaults.network_mode": _expected("bridge", "each server's containers share one Compose "
                                                        "bridge network (its group's docker_subnet)",
                                                        "containers run on a bridge network"),
    "ssl.provider": _expected(("letsencrypt", "lets-encrypt"), "the load balancer's managed certificate is Let's "
                              "Encrypt's, requested and renewed by Hetzner", "the certificate is Hetzner's managed "
                              "Let's Encrypt certificate"),
    "ssl.email": _dropped("Hetzner requests the certificate: there is no ACME account to give an email to"),
    "ssl.protocols": _tls_versions,
    "monitoring.prometheus.retention_time": _setting("prometheus", "retention", r"[1-9][0-9]{0,4}(h|d|w|y)"),
    "monitoring.prometheus.scrape_interval": _setting("prometheus", "scrape_interval", r"[1-9][0-9]{0,3}s"),
    "monitoring.grafana": _dropped("Grafana's own settings are the grafana service's to configure; the schema "
                                   "passes no environment to a service"),
    "monitoring.logging": _dropped("central logs are not managed yet: each container logs to json-file on its "
                                   "server (target.docker_logs)"),
    "backup": _dropped("backups are not managed by the pipeline yet (the backup group's jobs are dropped too)"),
}
SECTIONS = {"system", "security", "security.ssh", "security.firewall", "docker", "docker.daemon_config",
            "docker.daemon_config.log_opts", "docker.container_defaults", "ssl", "monitoring",
            "monitoring.prometheus"}
_SECTION_PATHS = {"sshd": "target.sshd", "docker_logs": "target.docker_logs", "prometheus": "prometheus"}


def _comment(text: str) -> str:
    """A comment's text, safe on one line (a line break, YAML 1.1's other line breaks included, would end it
    early; a control character would reach the terminal that shows it) and without the credentials of an
    address: the result is a new file, for git."""
    return printable(without_credentials((text[1:] if text.startswith(" ") else text).rstrip()))


# --- the output -------------------------------------------------------------------------------


@dataclass
class _Item:
    key: str | None
    value: Any
    above: list[str] = field(default_factory=list)
    trailing: str | None = None


@dataclass
class _Map:
    items: list[_Item]
    flow: bool = False


@dataclass
class _Seq:
    items: list[_Item]
    flow: bool = False


class _Writer:
    """The output's YAML, written by hand so that comments sit where they belong."""

    def __init__(self, importer: _Importer, location: str | None):
        self.importer = importer
        self.location = location

    def text(self) -> str:
        importer = self.importer
        settings = importer.settings
        name = Path(importer.source.name).name
        document = _Map([])
        add = document.items.append
        add(_Item("version", 1, above=[f"domains.yml for the hcloud target, imported by `atl utils import` from "
                                       f"{name}", "(the All Things Linux format): review the decisions it printed "
                                       "(docs/importing.md).", *([""] + importer.header if importer.header else [])]))
        if settings["project"]:
            add(_Item("project", settings["project"]))
        if settings["environment"]:
            add(_Item("environment", settings["environment"]))
        add(_Item("target", self.target()))
        if settings["prometheus"]:
            add(_Item("prometheus", _flow(settings["prometheus"]), above=importer.setting_comments.get("prometheus",
                                                                                                       [])))
        # by port: the catalog's order, which no move or addition in the file changes, so a diff shows only that
        services = sorted(importer.placed.values(), key=lambda placed: placed.fields["port"])
        add(_Item("services", _Map([self.service(placed) for placed in services])))
        add(_Item("domains", _Seq([self.domain(domain) for domain in importer.domains])))
        lines = _emit(document, 0)
        text = "\n".join(lines) + "\n"
        if parse(decode_source(text.encode(), "imported")) != _plain(document):
            raise AssertionError("the imported YAML does not read back as what was written")
        return text

    def target(self) -> _Map:
        importer, options, settings = self.importer, self.importer.options, self.importer.settings
        items = [_Item("kind", "hcloud")]
        if self.location:
            items.append(_Item("location", self.location, trailing="the load balancer's: where the server groups "
                               "are"))
        key = options.ssh_public_key or PLACEHOLDER_KEY
        items.append(_Item("ssh_public_key", key, trailing=None if options.ssh_public_key else
                           "placeholder: --ssh-public-key"))
        ssh_from = list(options.ssh_from) or [PLACEHOLDER_FROM]
        items.append(_Item("ssh_from", _Seq([_Item(None, network) for network in ssh_from], flow=True),
                           trailing=None if options.ssh_from else "placeholder: --ssh-from"))
        zones = [_Item(zone, zone_id, trailing=f"placeholder: --zone-id {zone}=ID" if zone in importer.placeholder_ids
                       else None) for zone, zone_id in importer.zones.items()]
        cloudflare = [_Item("zones", _Map(zones))]
        if not settings["proxied"]:
            cloudflare.append(_Item("proxied", False))
        if settings["min_tls_version"]:
            cloudflare.append(_Item("min_tls_version", settings["min_tls_version"],
                                    above=importer.setting_comments.get("min_tls_version", [])))
        items.append(_Item("cloudflare", _Map(cloudflare)))
        if settings["sshd"]:
            items.append(_Item("sshd", _flow(settings["sshd"]), above=importer.setting_comments.get("sshd", [])))
        if settings["docker_logs"]:
            items.append(_Item("docker_logs", _flow(settings["docker_logs"]),
                               above=importer.setting_comments.get("docker_logs", [])))
        groups = []
        for name, (group, unit) in importer.groups.items():
            above = importer.above(unit.path)
            groups.append(_Item(name, _Map([_Item(key, group[key]) for key in
                                            ("count", "type", "location", "private_ip", "docker_subnet")
                                            if key in group]), above=above))
        items.append(_Item("server_groups", _Map(groups)))
        return _Map(items)

    def service(self, placed: _Placed) -> _Item:
        fields = dict(placed.fields)
        items = []
        for key in ("image", "port", "container_port", "command", "health", "metrics", "volumes", "tcp_ports",
                    "servers", "internal", "replicas", "resources"):
            if key not in fields:
                continue
            value = fields[key]
            if key == "tcp_ports" and placed.tcp_ports and not (placed.name in self.importer.declared and
                                                                self.importer.declared[placed.name].get("tcp_ports")):
                value = _Seq([_Item(None, port, trailing=comment) for port, comment in placed.tcp_ports],
                             flow=not any(comment for _, comment in placed.tcp_ports))
            else:
                value = _flow(value)
            items.append(_Item(key, value))
        above = self.importer.above(placed.path)
        return _Item(placed.name, _Map(items), above=above, trailing=self.importer.trailing(placed.path))

    def domain(self, domain: dict) -> _Item:
        fields = domain["fields"]
        items = []
        for key in ("name", "service", "external", "provider", "proxied", "ssl", "monitoring", "enabled", "required",
                    "group", "replicas", "resources"):
            if key in fields:
                items.append(_Item(key, _flow(fields[key]), trailing=domain["comments"].get(key)))
        return _Item(None, _Map(items), above=list(domain["above"]), trailing=domain["trailing"])


def _flow(value: Any) -> Any:
    """A value as written inline: a small mapping or list in flow style."""
    if isinstance(value, dict):
        return _Map([_Item(key, _flow(item)) for key, item in value.items()], flow=True)
    if isinstance(value, list):
        return _Seq([_Item(None, _flow(item)) for item in value], flow=True)
    return value


def _emit(node: _Map | _Seq, indent: int) -> list[str]:
    """Block-style YAML of `node` at `indent`, its comments where they belong. A line past MAX_LINE (what
    `atl quality lint` allows) has its end-of-line comment moved above it, then its flow value written as a block."""
    pad = " " * indent
    lines: list[str] = []
    for item in node.items:
        lines += [f"{pad}#{' ' + line if line else ''}" for text in item.above
                  for line in map(_comment, text.splitlines() or [""])]  # a source's value may hold line breaks
        lead = f"{pad}{_scalar(item.key)}:" if isinstance(node, _Map) else f"{pad}-"
        trailing, value = item.trailing, item.value
        flow = isinstance(value, _Map | _Seq) and (value.flow or not value.items)
        if not isinstance(value, _Map | _Seq) or flow:
            if len(f"{lead} {_block(value)}  # {trailing}") > MAX_LINE and trailing:
                lines.append(f"{pad}# {trailing}")
                trailing = None
            if len(f"{lead} {_block(value)}") > MAX_LINE and flow and value.items:
                value = type(value)(value.items, flow=False)
        end = f"  # {trailing}" if trailing else ""
        if not isinstance(value, _Map | _Seq) or value.flow or not value.items:
            lines.append(f"{lead} {_block(value)}{end}")
        elif isinstance(node, _Map):
            lines.append(f"{lead}{end}")
            lines += _emit(value, indent + 2)
        elif isinstance(value, _Map):
            inner = _emit(value, indent + 2)
            first = next(index for index, line in enumerate(inner) if not line.lstrip().startswith("#"))
            inner[first] = f"{pad}- {inner[first][indent + 2:]}{end}"
            lines += inner
        else:
            lines.append(f"{lead}{end}")
            lines += _emit(value, indent + 2)
    return lines


def _block(value: Any) -> str:
    """A value after `key: ` or `- ` in block style: a scalar there may hold a colon (an image's tag)."""
    return _inline(value) if isinstance(value, _Map | _Seq) else _scalar(value)


def _inline(value: Any) -> str:
    if isinstance(value, _Map):
        return "{" + ", ".join(f"{_scalar(item.key, flow=True)}: {_inline(item.value)}" for item in value.items) + "}"
    if isinstance(value, _Seq):
        return "[" + ", ".join(_inline(item.value) for item in value.items) + "]"
    return _scalar(value, flow=True)


_PLAIN = re.compile(r"(?:--?(?=[A-Za-z0-9_.]))?[A-Za-z0-9_./~][A-Za-z0-9_./~@+=-]*")
_NUMERIC = re.compile(r"[-+]?[0-9][0-9._:]*|[-+]?\.[0-9].*")
_WORDS = {"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"}


def _scalar(value: Any, *, flow: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    colon = not flow and ":" in text and not text.endswith(":") and ": " not in text
    plain = _PLAIN.fullmatch(text.replace(":", "") if colon else text)
    if plain and not _NUMERIC.fullmatch(text) and text.lower() not in _WORDS:
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    return re.sub("[\x7f-\x9f\u2028\u2029]", lambda match: f"\\u{ord(match.group()):04x}", quoted)


def _plain(node: Any) -> Any:
    """What the emitted YAML reads back as."""
    if isinstance(node, _Map):
        return {item.key: _plain(item.value) for item in node.items}
    if isinstance(node, _Seq):
        return [_plain(item.value) for item in node.items]
    return node
