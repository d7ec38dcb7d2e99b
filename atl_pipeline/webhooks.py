"""Push notifications: a forge's webhook, or our own git hook, told apart from a forgery.

Each sender signs the request's body with a shared secret (HMAC-SHA256), each its own way:

- `atl utils git-hook install`'s hook: `X-Atl-Signature: sha256=<hex>` over `<timestamp>.<body>`,
  with `X-Atl-Timestamp` and `X-Atl-Delivery`;
- GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body, `X-GitHub-Delivery`;
- Gitea and Forgejo: `X-Gitea-Signature` (or `X-Forgejo-Signature`): the hex over the body, `X-Gitea-Delivery`;
- GitLab's signing token (Standard Webhooks): `webhook-signature: v1,<base64>` over
  `<webhook-id>.<webhook-timestamp>.<body>`, keyed by the token's base64 after `whsec_`. GitLab's
  older `X-Gitlab-Token` sends the secret itself, signs nothing, and is refused.

A notification carries no instruction: whatever it says, the pipeline asks the branch for its head
and deploys what the git_push sensor would. So a replayed or stale one can at most ask again;
it is refused all the same (a delivery seen before, a timestamp older than MAX_AGE).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

MAX_AGE = 300.0  # seconds a signed timestamp stays fresh, either way (clocks drift)
MAX_BODY = 1 << 20  # bytes: a push event of thousands of commits is far less
REMEMBERED = 1000  # deliveries kept to refuse a replay


@dataclass(frozen=True)
class Notification:
    """A verified push notification: who sent it, and whether it asks for a deploy (a push) or not (a ping)."""

    sender: str
    delivery: str
    push: bool


class Refused(Exception):
    """Why a notification is refused, said to the sender; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


class Verifier:
    """Verifies notifications against one secret, remembering the last deliveries it accepted."""

    def __init__(self, secret: str):
        if not secret:
            raise ValueError("a webhook secret must not be empty")
        self.secret = secret
        self.seen: OrderedDict[str, None] = OrderedDict()

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Notification:
        headers = {name.lower(): value for name, value in headers.items()}
        if len(body) > MAX_BODY:
            raise Refused(f"a notification is at most {MAX_BODY} bytes", 413)
        sender, delivery, push = self._signed(headers, body, now)
        if delivery in self.seen:
            raise Refused(f"delivery {delivery} was accepted before: a replay")
        self.seen[delivery] = None
        while len(self.seen) > REMEMBERED:
            self.seen.popitem(last=False)
        return Notification(sender, delivery, push)

    def _signed(self, headers: dict[str, str], body: bytes, now: float) -> tuple[str, str, bool]:
        """The sender, the delivery id and whether it is a push, once its signature holds."""
        key = self.secret.encode()
        if "x-atl-signature" in headers:
            timestamp = _fresh(headers.get("x-atl-timestamp", ""), now)
            _expect(headers["x-atl-signature"], sign(self.secret, body, timestamp))
            return "git hook", _required(headers, "x-atl-delivery"), True
        if "x-hub-signature-256" in headers:
            _expect(headers["x-hub-signature-256"], "sha256=" + _hex(key, body))
            return "GitHub", _required(headers, "x-github-delivery"), headers.get("x-github-event") == "push"
        if signature := headers.get("x-gitea-signature") or headers.get("x-forgejo-signature"):
            _expect(signature, _hex(key, body))
            event = headers.get("x-gitea-event") or headers.get("x-forgejo-event")
            delivery = headers.get("x-gitea-delivery") or _required(headers, "x-forgejo-delivery")
            return "Gitea", delivery, event == "push"
        if "webhook-signature" in headers:
            delivery = _required(headers, "webhook-id")
            _standard_signature(headers, delivery, body, _standard_key(self.secret), now)
            return "GitLab", delivery, headers.get("x-gitlab-event") == "Push Hook"
        if "x-gitlab-token" in headers:
            raise Refused("GitLab's secret token signs nothing: give the webhook a signing token instead")
        raise Refused("the notification is not signed")


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """The git hook's `X-Atl-Signature` of `body` sent at `timestamp`."""
    return "sha256=" + _hex(secret.encode(), timestamp.encode() + b"." + body)


def _hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _expect(offered: str, expected: str) -> None:
    if not hmac.compare_digest(offered.strip().lower().encode(), expected.encode()):
        raise Refused("the signature does not match the secret")


def _required(headers: dict[str, str], name: str) -> str:
    if not (value := headers.get(name, "").strip()):
        raise Refused(f"the {name} header is missing", 400)
    return value


def _fresh(timestamp: str, now: float) -> str:
    """The timestamp as signed, once it is a number of seconds within MAX_AGE of now."""
    if not timestamp.isdigit():
        raise Refused("the signed timestamp is missing or not a number of seconds", 400)
    if abs(now - int(timestamp)) > MAX_AGE:
        raise Refused(f"the notification is stale: signed {now - int(timestamp):.0f} s from now "
                      f"(at most {MAX_AGE:.0f} s either way)")
    return timestamp


def _standard_signature(headers: dict[str, str], delivery: str, body: bytes, key: bytes, now: float) -> None:
    """Standard Webhooks: one of the space-separated `v1,<base64>` is the HMAC of `<id>.<timestamp>.<body>`."""
    timestamp = _fresh(headers.get("webhook-timestamp", ""), now)
    expected = base64.b64encode(hmac.digest(key, f"{delivery}.{timestamp}.".encode() + body, "sha256")).decode()
    offered = [part.partition(",")[2] for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    if not any(hmac.compare_digest(candidate.encode(), expected.encode()) for candidate in offered):
        raise Refused("the signature does not match the secret")


def _standard_key(secret: str) -> bytes:
    """A Standard Webhooks secret (`whsec_<base64>`) as its key; any other secret as its bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass
    return secret.encode()
