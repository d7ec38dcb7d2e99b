"""Checkov, imported once, scanning folders on request over a unix socket.

`python checkov_server.py SOCKET IDLE_SECONDS`, run by Checkov's own Python (its virtualenv),
so it imports nothing of atl_pipeline. Importing Checkov takes seconds and a scan of a few
files a fraction of one: a plan asks this process instead of starting Checkov, and each scan runs
in a fork of it, with Checkov as it was once imported. The same files asked about again (from
another project's folder, say) get the answer kept under the key the client names them by. A
request is one JSON line, {"arguments": [...], "key": "..."} (the key optional), answered by
{"exit": N, "output": "..."}; the process leaves after IDLE_SECONDS without one.
"""

import contextlib
import io
import json
import os
import socket
import sys
from collections import OrderedDict

KEPT = 64  # answers kept: the same files in another folder (another checkout, a stage run again) answered at once


def main(path: str, idle: float) -> None:
    server = _bind(path)
    if server is None:
        return  # another one serves
    from checkov.main import Checkov  # the slow part, once; requests wait in the backlog meanwhile

    server.settimeout(idle)
    answers: OrderedDict[str, dict] = OrderedDict()  # by what was asked and the files' contents
    while True:
        try:
            connection, _ = server.accept()
        except TimeoutError:
            break
        with connection:
            connection.settimeout(None)
            request = connection.makefile("rb").readline()
            key = _key(request)
            answer = answers.get(key) or _scan(Checkov, request)
            if key and answer["exit"] == 0:
                answers[key] = answer
                while len(answers) > KEPT:
                    answers.popitem(last=False)
            with contextlib.suppress(OSError):  # a client gone meanwhile
                connection.sendall(json.dumps(answer).encode())
    server.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _key(request: bytes) -> str | None:
    """What the client names the files' contents by (the arguments being the client's constant ones)."""
    try:
        return json.loads(request).get("key")
    except (ValueError, AttributeError):
        return None  # `_scan` answers what is wrong with it


def _scan(checkov: type, request: bytes) -> dict:
    """One request's answer, from a copy of this process: Checkov keeps state from one run to the next
    (a file it read before is not read again, its parse errors not reported again)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                code = checkov(json.loads(request)["arguments"]).run()
            answer = {"exit": code or 0, "output": output.getvalue()}
        except BaseException as error:  # a bad request, or a scan that fails, is an answer too
            answer = {"exit": -1, "output": f"{type(error).__name__}: {error}"}
        with os.fdopen(write, "wb") as stream:
            stream.write(json.dumps(answer).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as stream:
        answer = stream.read()
    os.waitpid(child, 0)
    return json.loads(answer) if answer else {"exit": -1, "output": "the scan's process died"}


def _bind(path: str) -> socket.socket | None:
    """The listening socket, or None when a live server holds the path (a dead one's is removed)."""
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(path)
    except OSError:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(path)
            return None
        except OSError:
            os.unlink(path)
            server.bind(path)
    server.listen(16)
    return server


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
