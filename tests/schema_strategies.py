"""Hypothesis strategies made from the domains.yml schema itself (pydantic's JSON schema of `Config`): every
field, its type, its bounds, its pattern, and hostile values beside them. A field added to the schema tomorrow
is generated without anyone naming it in a test.

`mutations(document)` draws a change at any path of a valid document: a field replaced by a value its schema
allows (which the rules across fields may still refuse), by a hostile one, or an optional field the document
leaves out added."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from atl_pipeline.config.model import Config

SCHEMA = Config.model_json_schema()
DEFINITIONS = SCHEMA["$defs"]
# planted where a credential could go, never to be printed; built at run time, as Hypothesis mixes the string
# constants of the code it tests into the text it draws (which would plant it anywhere)
CANARY = "-".join(["canary", "s3cr3t", str(9 * 1021)])
NAME = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
HOSTILE = st.one_of(
    st.sampled_from([None, True, 0, -1, 2**63, 1e308, "", [], {}, "x" * 200_000, "a\nb: c", "\x1b[31mred",
                     "\u2028", "{{ 7*7 }}", "${jndi:x}", "$(id)", "../../etc/passwd", "/", "~",
                     f"https://user:{CANARY}@example.org/", f"sftp:user:{CANARY}@host:/srv", f"env:{CANARY}x!",
                     "0 0 31 4 *", "*/61 * * * *", "99999d", "65536", "0"]),
    st.text(max_size=8), st.integers(), st.lists(st.integers(), max_size=2))


def resolved(schema: dict) -> dict:
    while "$ref" in schema:
        schema = DEFINITIONS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def values(schema: dict) -> st.SearchStrategy:
    """What the schema at this point allows, as far as types, bounds and patterns say."""
    schema = resolved(schema)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if options := schema.get("anyOf") or schema.get("oneOf"):
        return st.one_of([values(option) for option in options])
    kind = schema.get("type")
    if kind == "string":
        return _strings(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(10**6)), schema.get("maximum", 10**6))
    if kind == "number":
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(values(schema.get("items", {})), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object":
        return _objects(schema)
    return HOSTILE


def _strings(schema: dict) -> st.SearchStrategy:
    if pattern := schema.get("pattern"):
        return st.from_regex(pattern, fullmatch=True).filter(lambda text: len(text) <= 300)
    formats = {"ipv4": st.ip_addresses(v=4).map(str), "ipv4network": st.sampled_from(["10.0.0.0/16", "10.9.0.0/24"]),
               "ipvanynetwork": st.sampled_from(["0.0.0.0/0", "203.0.113.0/24", "::/0", "2001:db8::/32"])}
    return formats.get(schema.get("format"), st.text(max_size=min(schema.get("maxLength", 40), 40)))


def _objects(schema: dict) -> st.SearchStrategy:
    properties = schema.get("properties")
    if properties:
        required = set(schema.get("required", []))
        return st.fixed_dictionaries({key: values(value) for key, value in properties.items() if key in required},
                                     optional={key: values(value) for key, value in properties.items()
                                               if key not in required})
    extra = schema.get("additionalProperties")
    return st.dictionaries(NAME, values(extra) if isinstance(extra, dict) else HOSTILE,
                           max_size=min(schema.get("maxProperties", 2), 2))


def at(schema: dict, document: Any, path: tuple) -> dict | None:
    """The schema of what `path` names in `document`: the branch of a union its value takes."""
    for key in path:
        schema = _branch(resolved(schema), document)
        if isinstance(key, int):
            schema = schema.get("items")
        else:
            schema = (schema.get("properties") or {}).get(key) or (
                schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None)
        if schema is None:
            return None
        document = document.get(key) if isinstance(document, dict) else (
            document[key] if isinstance(document, list) and isinstance(key, int) and key < len(document) else None)
    return schema


def _branch(schema: dict, value: Any) -> dict:
    """Of a union, the option whose `kind` (a target's) or type the value has."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if not options:
        return schema
    for option in map(resolved, options):
        kind = (option.get("properties") or {}).get("kind", {})
        if isinstance(value, dict) and kind.get("const", value.get("kind", "local")) == value.get("kind", "local"):
            return option
        if isinstance(value, list) and option.get("type") == "array" or isinstance(value, str) and option.get(
                "type") == "string":
            return option
    return resolved(options[0])


def paths(document: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*path, index))
    return found


@st.composite
def mutations(draw, document: dict) -> dict:
    """`document` with one to three changes, each at a path drawn from all of its paths."""
    changed = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(changed)))
        schema = at(SCHEMA, changed, path)
        target = value_at(changed, path)
        absent = [key for key in ((resolved(_branch(resolved(schema), target)).get("properties") or {})
                                  if schema and isinstance(target, dict) else {}) if key not in target]
        if absent and draw(st.booleans()):  # a field the document leaves out, added
            key = draw(st.sampled_from(absent))
            target[key] = draw(st.one_of(values(at(SCHEMA, changed, (*path, key))), HOSTILE))
        elif path:
            value = draw(st.one_of(values(schema), HOSTILE) if schema else HOSTILE)
            value_at(changed, path[:-1])[path[-1]] = value
    return changed


def value_at(document: Any, path: tuple) -> Any:
    for key in path:
        document = document[key]
    return document
