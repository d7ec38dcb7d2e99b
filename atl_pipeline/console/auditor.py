"""The auditor: every GraphQL POST of a signed-in operator passes through it to the webserver.

A mutation (a launch, a re-execution, a sensor or schedule switched, a run canceled...) is
recorded in the audit trail with who asked (the user the front authenticated, in X-Atl-User),
what, how it ended and the runs it launched, and those runs are tagged `atl/user` with that
name, so the run's own record, written when it ends, says who started it. A launch must pass
its parameters as variables, as the UI does: those are where the tag is set. Queries pass as
they are. (The front lets no other write reach the webserver: console/__init__.py.)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    parse,
)

from atl_pipeline.operations import audit
from atl_pipeline.project import Project

USER_HEADER = "X-Atl-User"
MAX_BODY = 8 * 1024 * 1024
# the mutations that launch runs, each with the arguments that carry the launch's tags
LAUNCHES = {"launchPipelineExecution", "launchRun", "launchMultipleRuns", "launchPipelineReexecution",
            "launchRunReexecution", "launchPartitionBackfill"}


class Auditor(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], webserver: str, project: Project, programs: frozenset[str]):
        super().__init__(address, _Handler)
        self.webserver, self.project, self.programs = webserver, project, programs

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="auditor", daemon=True)
        thread.start()
        return thread

    def pass_on(self, user: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        try:
            request = json.loads(body)
            fields = mutation_fields(request)
        except (ValueError, TypeError, GraphQLError) as error:
            return 400, _error(f"not a GraphQL request: {error}")
        except InlineLaunch as error:
            return 400, _error(str(error))
        if fields:
            request["variables"] = tagged(request.get("variables") or {}, user)
            body = json.dumps(request).encode()
        response = requests.post(f"{self.webserver}/graphql", data=body, headers={"Content-Type": content_type},
                                  timeout=120)
        if fields:
            audit.append(self.project, {"who": user, "via": "api" if user in self.programs else "console",
                                        "action": ", ".join(fields), **_outcome(response),
                                        "detail": json.dumps(request.get("variables"))[:500]})
        return response.status_code, response.content


class InlineLaunch(ValueError):
    """A launch whose parameters are written in the document, where the auditor does not tag them."""


def mutation_fields(request: dict) -> list[str]:
    """The fields of the mutation the request runs (its operation, by name when it holds several); [] for a
    query. GraphQLError when the document does not parse: the webserver, which reads it alike, would refuse it;
    InlineLaunch for a launch whose arguments are not variables."""
    document = parse(request["query"])
    operations = [d for d in document.definitions if hasattr(d, "operation")]
    name = request.get("operationName")
    chosen = [op for op in operations if name is None or (op.name and op.name.value == name)]
    if not any(op.operation == OperationType.MUTATION for op in chosen):
        return []
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    fields = [field for op in chosen for field in _fields(op.selection_set, fragments)]
    for field in fields:
        if field.name.value in LAUNCHES and any(not isinstance(a.value, VariableNode) for a in field.arguments):
            raise InlineLaunch(f"refused by the console: pass {field.name.value}'s parameters as variables (as "
                               "the UI does), so that the run is tagged with who launched it")
    return [field.name.value for field in fields]


def _fields(selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> Iterator[FieldNode]:
    """The fields a selection set selects, through its fragments (`... on Mutation { launchRun(...) }`)."""
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            yield from _fields(fragments.pop(selection.name.value).selection_set, fragments)


def tagged(value, user: str):
    """The variables, with `atl/user` set to `user` in every launch's tags (any value it had is replaced):
    execution parameters (those with a `selector`), re-execution parameters and backfill parameters."""
    if isinstance(value, list):
        return [tagged(item, user) for item in value]
    if not isinstance(value, dict):
        return value
    result = {key: tagged(item, user) for key, item in value.items()}
    if "selector" in result:
        metadata = result.get("executionMetadata") or {}
        result["executionMetadata"] = {**metadata, "tags": _with_user(metadata.get("tags"), user)}
    if "parentRunId" in result and "strategy" in result:
        result["extraTags"] = _with_user(result.get("extraTags"), user)
    if isinstance(result.get("backfillParams"), dict):
        params = result["backfillParams"]
        result["backfillParams"] = {**params, "tags": _with_user(params.get("tags"), user)}
    return result


def _with_user(tags: list | None, user: str) -> list[dict]:
    return [*(tag for tag in tags or [] if tag.get("key") != audit.USER_TAG), {"key": audit.USER_TAG, "value": user}]


def _error(message: str) -> bytes:
    return json.dumps({"errors": [{"message": message}]}).encode()


def _outcome(response: requests.Response) -> dict:
    """How the mutation ended, and the runs (or backfill) it launched: the UI asks for a run's `id`, a
    program perhaps for its `runId`."""
    try:
        answer = response.json()
    except ValueError:
        return {"outcome": f"HTTP {response.status_code}"}
    data = answer.get("data") or {}
    runs = list(dict.fromkeys(run.get("runId") or run.get("id") for run in _values(data, "run")
                              if isinstance(run, dict) and (run.get("runId") or run.get("id"))))
    backfills = [value for value in _values(data, "backfillId") if isinstance(value, str)]
    kinds = sorted({kind for kind in _values(data, "__typename") if isinstance(kind, str) and kind.endswith("Error")})
    errors = [error.get("message", "") for error in answer.get("errors") or []]
    outcome = "refused: " + ", ".join(kinds + errors) if kinds or errors else "done"
    launched = {"run_id": runs[0]} if len(runs) == 1 else {"run_ids": runs} if runs else {}
    return {"outcome": outcome[:300], **launched, **({"backfill_id": backfills[0]} if backfills else {})}


def _values(value, key: str) -> Iterator:
    """Every value under `key` in a JSON document, at any depth."""
    if isinstance(value, dict):
        for name, item in value.items():
            if name == key:
                yield item
            yield from _values(item, key)
    elif isinstance(value, list):
        for item in value:
            yield from _values(item, key)


class _Handler(BaseHTTPRequestHandler):
    server: Auditor

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = self.headers.get("Content-Length", "")
        user = self.headers.get(USER_HEADER, "")
        if not length.isdigit() or int(length) > MAX_BODY or not user:
            return self._send(400, b'{"errors": [{"message": "refused by the console"}]}')
        status, body = self.server.pass_on(user, self.rfile.read(int(length)),
                                           self.headers.get("Content-Type", "application/json"))
        self._send(status, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass
