"""Checkov, imported once, scanning folders on request over a unix socket.

`python checkov_server.py SOCKET IDLE_SECONDS`, run by Checkov's own Python (its virtualenv),
so it imports nothing of atl_pipeline. Importing Checkov takes seconds and a scan of a few
files a fraction of one: a plan asks this process instead of starting Checkov. A request is
one JSON line, {"arguments": [...]}, answered by {"exit": N, "output": "..."}; the process
leaves after IDLE_SECONDS without one.
"""

import contextlib
import io
import json
import os
import socket
import sys


def main(path: str, idle: float) -> None:
    server = _bind(path)
    if server is None:
        return  # another one serves
    from checkov.main import Checkov  # the slow part, once; requests wait in the backlog meanwhile

    server.settimeout(idle)
    while True:
        try:
            connection, _ = server.accept()
        except TimeoutError:
            break
        with connection:
            connection.settimeout(None)
            request = json.loads(connection.makefile("rb").readline())
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                code = Checkov(request["arguments"]).run()
            connection.sendall(json.dumps({"exit": code or 0, "output": output.getvalue()}).encode())
    server.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


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
