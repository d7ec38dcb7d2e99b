"""Load domains.yml into a typed `Config`, with every problem located in the file."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from atl_pipeline.config.model import TARGETS, Config
from atl_pipeline.config.yaml_reader import Positions, Source, YamlPath, parse, read_source
from atl_pipeline.findings import MAX_FINDINGS, ConfigError, Finding

MAX_FIELD_NAME = 64  # longer keys get no "did you mean"


@dataclass(frozen=True)
class LoadedConfig:
    """A configuration and the file it was read from, so findings can point into it."""

    config: Config
    source: Source
    templates_dir: Path | None = None  # the templates that came with the file (a git commit's); None: the project's
    policies_dir: Path | None = None  # the Rego policies that came with it, likewise

    @cached_property
    def _positions(self) -> Positions:
        positions = Positions()
        parse(self.source, positions)
        return positions

    def line(self, path: YamlPath) -> int:
        return self._positions.of(path)[0]

    def finding(self, path: YamlPath, message: str, *, key: bool = False) -> Finding:
        line, column = self._positions.of(path, key=key)
        return Finding(self.source.name, line, column, message)


SECRET_FIELD = re.compile(r"password|secret|token|credential", re.IGNORECASE)


def load_config(path: Path | str, *, name: str | None = None) -> LoadedConfig:
    return load_source(read_source(path, name=name))


def load_source(source: Source) -> LoadedConfig:
    """Parse and check the schema; raises ConfigError listing every problem at once."""
    data = parse(source)
    if not isinstance(data, dict):
        raise ConfigError([Finding(source.name, 1, 1, "the file must be a mapping with a `domains:` list "
                                   "(and optionally version, project, environment, target, services)")])
    try:
        return LoadedConfig(Config.model_validate(data), source)
    except ValidationError as error:
        positions = Positions()
        parse(source, positions)
        errors = error.errors(include_url=False)
        shown = errors[:MAX_FINDINGS + 1]  # one past the cut: where the count of the rest points
        raise ConfigError([_finding(source.name, positions, e) for e in shown],
                          more=len(errors) - len(shown)) from None


def _finding(name: str, positions: Positions, error: Any) -> Finding:
    tagged: YamlPath = error["loc"]
    loc = _untagged(tagged)
    if error["type"] == "extra_forbidden":
        where, position = loc[:-1], positions.of(loc, key=True)
        message = f"unknown field {_shown(str(loc[-1]))}" + _field_hint(str(loc[-1]), _fields_at(tagged[:-1]))
    elif error["type"] == "missing":
        where, position = loc[:-1], positions.of(loc[:-1])
        message = f"missing required field {loc[-1]!r}"
    elif loc and loc[-1] == "[key]":
        where, position = loc[:-2], positions.of(loc[:-1], key=True)
        message = _message(error, positions.words.get(loc[:-1]))
    else:
        where, position = loc, positions.of(loc)
        message = _message(error, positions.words.get(loc))
    return Finding(name, *position, f"{dotted(where)}: {message}" if where else message)


def _field_hint(key: str, fields: list[str]) -> str:
    """The field a misspelt key most likely means; the fields there when none is close. A long key
    is close to no field name, and comparing it would cost time and memory that grow with it."""
    close = difflib.get_close_matches(key, fields, n=1) if len(key) <= MAX_FIELD_NAME else []
    return f"; did you mean {close[0]!r}?" if close else f"; the fields here are {', '.join(fields)}"


def _message(error: Any, word: str | None) -> str:
    """Pydantic's message, or for a value YAML read as another type than the field's, what it was
    read as and how to write it. `word` is what was written for a boolean or null."""
    value, error_type = error["input"], error["type"]
    if error_type == "string_type" and isinstance(value, bool):
        if SECRET_FIELD.search(str(error["loc"][-1] if error["loc"] else "")):  # what was written may be a secret
            return (f"the value was read as the boolean {str(value).lower()}: write an env: reference (a password "
                    "never goes in domains.yml)")
        return (f"{word!r} was read as the boolean {str(value).lower()}: YAML reads yes, no, on, off, true and "
                f"false unquoted as booleans; quote it: \"{word}\"")
    if error_type == "string_type" and value is None:
        return f"{'nothing' if not word else repr(word)} was written, which YAML reads as null; write a value"
    if error_type == "int_type" and isinstance(value, str):
        return integer_hint(value)
    if error_type == "int_type" and isinstance(value, bool):
        return f"{word!r} is a boolean to YAML, not a number: write a whole number such as 3"
    if error_type == "bool_type":
        return f"{_shown(str(value))} is not a boolean: write true or false, unquoted"
    message: str = error["msg"].removeprefix("Value error, ")
    return message[0].lower() + message[1:]


def integer_hint(text: str) -> str:
    """Why `text` is no integer, and what to write instead. YAML 1.1 reads a leading zero as
    octal and `1:30` as base 60; this reader keeps both as written, so they land here."""
    shown = _shown(text)
    if re.fullmatch(r"[-+]?0[0-9_]+", text):
        return f"{shown} has a leading zero, which YAML 1.1 reads as octal; write the number without it"
    if ":" in text and text.lstrip("+-").replace(":", "").replace("_", "").isdigit():
        return f"{shown} is a base-60 number to YAML 1.1; write the number in decimal"
    if re.fullmatch(r"-?[0-9]{1,18}", text):
        return f"{shown} is quoted, which makes it text; write the number unquoted"
    if re.fullmatch(r"[0-9]+", text):
        return f"{shown} ({len(text):,} digits) is beyond any value allowed here"
    return f"{shown} is not a whole number in decimal digits; write one such as 3"


def _shown(text: str) -> str:
    return repr(text[:80]) + ("..." if len(text) > 80 else "")


def dotted(path: YamlPath) -> str:
    """`domains[0].resources.cpu`: a path as an operator would write it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _untagged(loc: YamlPath) -> YamlPath:
    """The path in the file: without the target kind pydantic puts after `target`."""
    if loc[:1] == ("target",) and len(loc) > 1 and loc[1] in TARGETS:
        return loc[:1] + loc[2:]
    return loc


def _fields_at(path: YamlPath) -> list[str]:
    """The field names of the model found at `path` (with its target kind) in the schema."""
    model: type[BaseModel] | None = Config
    skip_key = False
    for index, part in enumerate(path):
        if skip_key:  # the index into a list or the key of a mapping
            skip_key = False
            continue
        if index == 1 and path[0] == "target" and part in TARGETS:
            model = TARGETS[part]
            continue
        if model is None or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        skip_key = get_origin(annotation) in (list, dict)
        model = _model_in(annotation)
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        if model := _model_in(argument):
            return model
    return None
