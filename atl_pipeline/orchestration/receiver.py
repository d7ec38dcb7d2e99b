"""The push receiver: `POST /hooks/git` on a loopback port (the console's front routes to it).

A push notification verified with the secret of one of the forges' accounts (atl_pipeline/webhooks.py)
deploys the branch at once, as the git_push sensor would (orchestration/push.py); anything else is
refused with its reason and launches nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from atl_pipeline.orchestration.push import PushNotLaunched, deploy_push
from atl_pipeline.webhooks import MAX_BODY, Notification, Refused, Verifier

PATH = "/hooks/git"
SECRET_VARIABLE = "ATL_WEBHOOK_SECRET"


class Receiver(ThreadingHTTPServer):
    """Serves PATH on `address`, launching runs through the webserver at `webserver` (a URL); `secrets`:
    each account's, by name."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], webserver: str, secrets: Mapping[str, str]):
        super().__init__(address, _Handler)
        self.webserver = webserver
        self.one_at_a_time = threading.Lock()  # two notifications of one push launch it once
        self.verifiers: dict[str, Verifier] = {}
        self.accept(secrets)

    def accept(self, secrets: Mapping[str, str]) -> None:
        """From now on, these accounts' secrets only (an account's deliveries seen stay remembered)."""
        with self.one_at_a_time:
            kept = {name: verifier for name, verifier in self.verifiers.items() if secrets.get(name) == verifier.secret}
            self.verifiers = {name: kept.get(name) or Verifier(secret) for name, secret in secrets.items()}

    def answer(self, headers, body: bytes) -> tuple[int, dict]:
        with self.one_at_a_time:
            try:
                account, notification = self._verified(headers, body)
            except Refused as refused:
                return refused.status, {"refused": str(refused)}
            if not notification.push:
                return 200, {"ignored": f"not a push event (from {notification.sender})"}
            try:
                outcome = deploy_push(self.webserver, via=f"{notification.sender}, account {account}")
            except PushNotLaunched as error:
                return 503, {"error": str(error)}
        return 200, {"launched": list(outcome.launched), "reason": outcome.reason}

    def _verified(self, headers, body: bytes) -> tuple[str, Notification]:
        """The account whose secret signed the notification, and the notification."""
        refusals = []
        for account, verifier in self.verifiers.items():
            try:
                return account, verifier.verify(headers, body, time.time())
            except Refused as refused:
                refusals.append(refused)
        raise refusals[0] if refusals else Refused("no forge's account is declared: nothing is accepted")

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="push receiver", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != PATH:
            return self._send(404, {"refused": f"only {PATH} is served here"})
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_BODY:
            return self._send(413, {"refused": f"a notification has a Content-Length of at most {MAX_BODY} bytes"})
        status, answer = self.server.answer(self.headers, self.rfile.read(int(length)))
        self._send(status, answer)

    def _send(self, status: int, answer: dict) -> None:
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
