"""Safe, bounded YAML: plain data, and on request where each value stands in the file.

Built on libyaml's event stream rather than a composed node tree, so that every bound
holds while the file is read: the size of the file, the depth of nesting, the number
of aliases and the number of values they expand to. An alias bomb fails after a
handful of events, in bounded memory. Only the core tags (strings, numbers, booleans,
null, lists, mappings) are accepted: no Python objects, no merge keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from atl_pipeline.findings import ConfigError, Finding

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_VALUES = 500_000

YamlPath = tuple[str | int, ...]
Position = tuple[int, int]

_CORE = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_CORE + "str", _CORE + "timestamp", "!"}  # timestamps stay text
_TYPED_TAGS = {_CORE + name for name in ("int", "float", "bool", "null")}


@dataclass(frozen=True)
class Source:
    """The text of a configuration file, where it came from, and its content hash."""

    name: str
    text: str
    sha256: str


@dataclass
class Positions:
    """1-based (line, column) of each key and value read, by path from the document root."""

    keys: dict[YamlPath, Position] = field(default_factory=dict)
    values: dict[YamlPath, Position] = field(default_factory=dict)

    def of(self, path: YamlPath, *, key: bool = False) -> Position:
        """Where the value at `path` (or its key) stands, else its nearest enclosing value."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return (1, 1)


def read_source(path: Path | str, *, name: str | None = None) -> Source:
    """Read a configuration file: at most MAX_BYTES, and strictly UTF-8."""
    path = Path(path)
    name = name or str(path)
    with path.open("rb") as stream:
        data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ConfigError([Finding(name, 1, 1, f"the file is larger than {MAX_BYTES // 2**20} MiB, "
                                   "the most a configuration may be; split it or trim it")])
    return decode_source(data, name)


def decode_source(data: bytes, name: str) -> Source:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line = data.count(b"\n", 0, error.start) + 1
        column = len(data[line_start:error.start].decode("utf-8", "replace")) + 1
        byte = data[error.start]
        raise ConfigError([Finding(name, line, column,
                                   f"byte 0x{byte:02x} is not UTF-8; save the file as UTF-8")]) from None
    return Source(name, text, hashlib.sha256(data).hexdigest())


def parse(source: Source, positions: Positions | None = None) -> Any:
    """The document's data; fills `positions` when given. Raises ConfigError with every finding."""
    reader = _Reader(source, positions)
    try:
        data = reader.document()
    except _Stop as stop:
        reader.findings.append(stop.finding)
        data = None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        reader.findings.append(Finding(source.name, mark.line + 1, mark.column + 1, f"YAML syntax: {problem}"))
        data = None
    except yaml.reader.ReaderError as error:
        line, column = _line_column(source.text, error.position)
        reader.findings.append(Finding(source.name, line, column,
                                       f"character #x{error.character:04x} is not allowed in YAML"))
        data = None
    if reader.findings:
        raise ConfigError(reader.findings)
    return data


def _line_column(text: str, index: int) -> Position:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


class _Stop(Exception):
    """A finding after which the rest of the file cannot be read."""

    def __init__(self, finding: Finding):
        self.finding = finding


class _Reader:
    def __init__(self, source: Source, positions: Positions | None):
        self.name = source.name
        self.next_event = yaml.CSafeLoader(source.text).get_event
        self.positions = positions
        self.findings: list[Finding] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.aliases = 0
        self.values = 0
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.constructor.SafeConstructor()
        self.scalars: dict[tuple[str, tuple[bool, bool]], Any] = {}  # plain scalars repeat a lot

    def document(self) -> Any:
        self.next_event()  # StreamStart
        if isinstance(self.next_event(), yaml.StreamEndEvent):
            return None
        data, _ = self.node(self.next_event(), (), 0)
        self.next_event()  # DocumentEnd
        extra = self.next_event()
        if not isinstance(extra, yaml.StreamEndEvent):
            self.stop(extra, "the file holds more than one YAML document; keep one")
        return data

    def stop(self, event: yaml.Event, message: str):
        mark = event.start_mark
        raise _Stop(Finding(self.name, mark.line + 1, mark.column + 1, message))

    def note(self, event: yaml.Event, message: str) -> None:
        mark = event.start_mark
        self.findings.append(Finding(self.name, mark.line + 1, mark.column + 1, message))

    def node(self, event: yaml.Event, path: YamlPath, depth: int) -> tuple[Any, int]:
        """The value that starts with `event`, and how many values it expands to."""
        if depth > MAX_DEPTH:
            self.stop(event, f"values are nested more than {MAX_DEPTH} levels deep")
        if self.positions is not None:
            self.positions.values[path] = (event.start_mark.line + 1, event.start_mark.column + 1)
        if isinstance(event, yaml.AliasEvent):
            return self.alias(event)
        self.count(event, 1)
        if isinstance(event, yaml.ScalarEvent):
            value, size = self.scalar(event), 1
        else:
            if event.tag is not None and event.tag not in (_CORE + "seq", _CORE + "map", "!"):
                self.note(event, f"tag {_short(event.tag)} is not allowed: {_PLAIN_DATA}")
            if event.anchor:
                self.open_anchors.add(event.anchor)
            if isinstance(event, yaml.SequenceStartEvent):
                value, size = self.sequence(path, depth)
            else:
                value, size = self.mapping(path, depth)
        if event.anchor:
            self.open_anchors.discard(event.anchor)
            self.anchors[event.anchor] = (value, size)
        return value, size

    def count(self, event: yaml.Event, values: int) -> None:
        self.values += values
        if self.values > MAX_VALUES:
            self.stop(event, f"the file expands to more than {MAX_VALUES:,} values; "
                      "a configuration is never that large")

    def alias(self, event: yaml.AliasEvent) -> tuple[Any, int]:
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            self.stop(event, f"more than {MAX_ALIASES} aliases; write the values out instead")
        if event.anchor in self.open_anchors:
            self.stop(event, f"alias *{event.anchor} refers to itself")
        if event.anchor not in self.anchors:
            self.stop(event, f"alias *{event.anchor} has no anchor &{event.anchor} before it")
        value, size = self.anchors[event.anchor]
        self.count(event, size)
        return value, size

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None and (event.value, event.implicit) in self.scalars:
            return self.scalars[event.value, event.implicit]
        if tag is None:
            tag = self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag in _PLAIN_TAGS:
            value = event.value
        elif tag in _TYPED_TAGS:
            node = yaml.ScalarNode(tag, event.value)
            value = self.constructor.yaml_constructors[tag](self.constructor, node)
        else:
            self.note(event, f"tag {_short(tag)} is not allowed: {_PLAIN_DATA}")
            return event.value
        if event.tag is None and len(event.value) <= 64:
            self.scalars[event.value, event.implicit] = value
        return value

    def sequence(self, path: YamlPath, depth: int) -> tuple[list, int]:
        items, size = [], 1
        event = self.next_event()
        while not isinstance(event, yaml.SequenceEndEvent):
            value, item_size = self.node(event, (*path, len(items)), depth + 1)
            items.append(value)
            size += item_size
            event = self.next_event()
        return items, size

    def mapping(self, path: YamlPath, depth: int) -> tuple[dict, int]:
        items: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        size = 1
        key_event = self.next_event()
        while not isinstance(key_event, yaml.MappingEndEvent):
            key = self.key(key_event, path, depth)
            value, value_size = self.node(self.next_event(), (*path, key), depth + 1)
            size += value_size
            if key in first_seen:
                self.note(key_event, f"duplicate key {key!r} (first at line {first_seen[key]}); "
                          "keep one of them")
            elif key is not None:
                first_seen[key] = key_event.start_mark.line + 1
                items[key] = value
            key_event = self.next_event()
        return items, size

    def key(self, event: yaml.Event, path: YamlPath, depth: int) -> str | None:
        if not isinstance(event, yaml.ScalarEvent):
            self.node(event, path, depth + 1)
            self.note(event, "a key must be a plain name, not a list, mapping or alias")
            return None
        if event.value == "<<" and event.implicit[0]:
            self.note(event, "merge keys (<<) are not supported; write the fields out, "
                      "or alias a whole mapping")
            return None
        self.count(event, 1)
        if self.positions is not None:
            mark = event.start_mark
            self.positions.keys[(*path, event.value)] = (mark.line + 1, mark.column + 1)
        return event.value


_PLAIN_DATA = "domains.yml holds plain data only (strings, numbers, booleans, lists and mappings)"


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag
