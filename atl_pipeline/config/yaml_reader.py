"""Safe, bounded YAML: plain data, and on request where each value stands in the file.

Built on libyaml's event stream rather than a composed node tree, so that every bound
holds while the file is read: the size of the file, the depth of nesting, the number
of aliases and the number of values they expand to. An alias bomb fails after a
handful of events, in bounded memory. Only the core tags (strings, numbers, booleans,
null, lists, mappings) are accepted: no Python objects, no merge keys.

A value is never silently other than what was written. An unquoted scalar is a boolean
(YAML 1.1's `true`, `yes`, `on`...), null, or a decimal integer that Python prints back
exactly; anything else stays the text written: YAML 1.1's octal (`0755`), sexagesimal
(`1:30`), hexadecimal and float forms (`1.10`) are not converted, so a string field keeps
them as written and an integer field refuses them. Lines and columns count characters and
only LF line breaks, as editors and grep do.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from atl_pipeline.findings import MAX_FINDINGS, ConfigError, Finding

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_VALUES = 250_000  # 10,000 domains written out take 160,000

YamlPath = tuple[str | int, ...]
Position = tuple[int, int]

_CORE = "tag:yaml.org,2002:"
_TEXT_TAGS = {_CORE + "str", _CORE + "timestamp", "!"}  # timestamps stay text
_BOOLEANS = {word: value for value, words in ((True, "yes true on"), (False, "no false off"))
             for word in words.split() for word in (word, word.capitalize(), word.upper())}
_NULLS = {"", "~", "null", "Null", "NULL"}
_INTEGER = re.compile(r"0|-?[1-9][0-9]{0,17}")  # decimal, as Python prints it back; within 64 bits
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                    r"|\.(?:nan|NaN|NAN)")
# line breaks to YAML 1.1 (and libyaml), ordinary characters to YAML 1.2, editors and grep
_YAML11_BREAKS = "\x85\u2028\u2029"
_ESCAPED = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8}))")


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
    words: dict[YamlPath, str] = field(default_factory=dict)  # what was written for a boolean or null

    def of(self, path: YamlPath, *, key: bool = False) -> Position:
        """Where the value at `path` (or its key) stands, else its nearest enclosing value."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return (1, 1)


def read_source(path: Path | str, *, name: str | None = None) -> Source:
    """Read a configuration file: a regular file of at most MAX_BYTES, strictly UTF-8."""
    return decode_source(read_bounded(path), name or str(path))


def read_bounded(path: Path | str) -> bytes:
    """At most MAX_BYTES + 1 bytes of a regular file. Never blocks: a FIFO, socket, device or
    directory raises OSError saying what it is."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as stream:
        kind = _FILE_KINDS.get(stat.S_IFMT(os.fstat(descriptor).st_mode))
        if kind is not None:
            raise OSError(errno.EINVAL, f"it is {kind}, not a regular file; give the path of a domains.yml")
        return stream.read(MAX_BYTES + 1)


_FILE_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFDIR: "a directory"}


def decode_source(data: bytes, name: str) -> Source:
    """The configuration in `data`: at most MAX_BYTES, strictly UTF-8."""
    if len(data) > MAX_BYTES:
        raise ConfigError([Finding(name, 1, 1, f"the file is larger than {MAX_BYTES // 2**20} MiB, "
                                   "the most a configuration may be; split it or trim it")])
    if unicode := _utf16_or_32(data):
        raise ConfigError([Finding(name, 1, 1, f"the file is {unicode}, not UTF-8; save it as UTF-8")])
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


def _utf16_or_32(data: bytes) -> str | None:
    """What a file in UTF-16 or UTF-32 looks like: a byte order mark, or NUL bytes between
    its first (ASCII) characters. None for anything else."""
    for mark, encoding in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                           (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if data.startswith(mark):
            return f"{encoding} (it starts with a {encoding} byte order mark)"
    head = data[:64]
    if len(head) >= 4 and head.count(0) * 2 >= len(head):
        return "UTF-16 or UTF-32 without a byte order mark (NUL bytes between its characters)"
    return None


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
        reader.findings.append(reader.at(mark.line, mark.column, f"YAML syntax: {problem}"))
        data = None
    except yaml.reader.ReaderError as error:  # its position counts bytes of UTF-8
        index = len(reader.text.encode()[:error.position].decode(errors="ignore"))
        line_start = reader.text.rfind("\n", 0, index) + 1
        reader.findings.append(reader.at(reader.text.count("\n", 0, index), index - line_start,
                                         f"character #x{error.character:04x} is not allowed in YAML"))
        data = None
    if reader.findings:
        raise ConfigError(reader.findings, more=reader.unrecorded)
    return data


def _without_yaml11_breaks(text: str) -> tuple[str, dict[int, str]]:
    """The text with each YAML 1.1-only line break replaced by a private-use character that
    appears nowhere in it (not even as an escape), and the table that puts them back."""
    present = [char for char in _YAML11_BREAKS if char in text]
    if not present:
        return text, {}
    taken = set(text) | {chr(int(short or long, 16)) for short, long in _ESCAPED.findall(text)
                         if int(short or long, 16) < 0x110000}
    stand_ins = (chr(point) for point in range(0xE000, 0xF900) if chr(point) not in taken)
    replace = dict(zip(present, stand_ins, strict=False))
    if len(replace) < len(present):
        return text, {}  # every private-use character is taken: an absurd file; libyaml's breaks then
    return text.translate(str.maketrans(replace)), {ord(stand_in): char for char, stand_in in replace.items()}


class _Stop(Exception):
    """A finding after which the rest of the file cannot be read."""

    def __init__(self, finding: Finding):
        self.finding = finding


class _Reader:
    def __init__(self, source: Source, positions: Positions | None):
        self.name = source.name
        self.text, self.restore = _without_yaml11_breaks(source.text)
        self.next_event = yaml.CSafeLoader(self.text).get_event
        self.lines = self.text.split("\n")
        self.positions = positions
        self.findings: list[Finding] = []
        self.unrecorded = 0  # findings past MAX_FINDINGS, counted only
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.aliases = 0
        self.values = 0
        self.scalars: dict[str, Any] = {}  # plain scalars repeat a lot

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

    def at(self, line: int, column: int, message: str) -> Finding:
        """A finding at libyaml's 0-based mark; past the end of the file, at the end of its last line."""
        count = len(self.lines) - 1 if len(self.lines) > 1 and not self.lines[-1] else len(self.lines)
        if line >= count:
            line, column = count - 1, len(self.lines[count - 1])
        return Finding(self.name, line + 1, column + 1, message)

    def stop(self, event: yaml.Event, message: str):
        raise _Stop(self.at(event.start_mark.line, event.start_mark.column, message))

    def note(self, event: yaml.Event, message: str) -> None:
        if len(self.findings) >= MAX_FINDINGS:
            self.unrecorded += 1
        else:
            self.findings.append(self.at(event.start_mark.line, event.start_mark.column, message))

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
            value, size = self.scalar(event, path), 1
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

    def scalar(self, event: yaml.ScalarEvent, path: YamlPath) -> Any:
        text = event.value.translate(self.restore) if self.restore else event.value
        if event.tag is not None and event.tag not in _TEXT_TAGS:
            return self.tagged(event, text)
        if not (event.implicit[0] and event.tag is None):  # quoted, or tagged as text
            return text
        if text not in self.scalars:
            value = _plain(text)
            if len(text) > 64:
                return value
            self.scalars[text] = value
        value = self.scalars[text]
        if (value is None or isinstance(value, bool)) and self.positions is not None:
            self.positions.words[path] = text
        return value

    def tagged(self, event: yaml.ScalarEvent, text: str) -> Any:
        """A scalar with an explicit core tag: its text must be what the tag says."""
        tag = event.tag.removeprefix(_CORE)
        if tag == "int" and _INTEGER.fullmatch(text):
            return int(text)
        if tag == "bool" and text in _BOOLEANS:
            return _BOOLEANS[text]
        if tag == "null" and text in _NULLS:
            return None
        if tag == "float" and _FLOAT.fullmatch(text):
            return text  # no field is a float: the text written, for a quantity say
        if tag in ("int", "bool", "null", "float"):
            self.note(event, f"{_shown(text)} is not {_TAG_MEANS[tag]}, as its tag !!{tag} says; "
                      "correct the value or remove the tag")
        else:
            self.note(event, f"tag {_short(event.tag)} is not allowed: {_PLAIN_DATA}")
        return text

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
        key = event.value.translate(self.restore) if self.restore else event.value
        if self.positions is not None:
            mark = event.start_mark
            self.positions.keys[(*path, key)] = (mark.line + 1, mark.column + 1)
        return key


_PLAIN_DATA = "domains.yml holds plain data only (strings, numbers, booleans, lists and mappings)"
_TAG_MEANS = {"int": "a decimal integer", "bool": "true or false", "null": "null",
              "float": "a number"}


def _plain(text: str) -> Any:
    """An unquoted scalar's value: a boolean, null, a decimal integer, or else its text."""
    if text in _BOOLEANS:
        return _BOOLEANS[text]
    if text in _NULLS:
        return None
    return int(text) if _INTEGER.fullmatch(text) else text


def _shown(text: str) -> str:
    return repr(text[:80]) + ("..." if len(text) > 80 else "")


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag
