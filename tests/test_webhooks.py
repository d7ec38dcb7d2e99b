"""Push notifications: each forge's signature, and our hook's, told apart from a forgery, a
replay or a stale one (atl_pipeline/webhooks.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from atl_pipeline.webhooks import MAX_AGE, MAX_BODY, Refused, Verifier, sign

SECRET = "s3cret-shared-with-the-forge"
BODY = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
NOW = 1_800_000_000.0
GITLAB_KEY = b"0123456789abcdef0123456789abcdef"
GITLAB_SECRET = "whsec_" + base64.b64encode(GITLAB_KEY).decode()


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def atl_hook(body: bytes = BODY, secret: str = SECRET, at: float = NOW, delivery: str = "d-1") -> dict:
    return {"X-Atl-Signature": sign(secret, body, str(int(at))), "X-Atl-Timestamp": str(int(at)),
            "X-Atl-Delivery": delivery}


def github(body: bytes = BODY, secret: str = SECRET, event: str = "push", delivery: str = "g-1") -> dict:
    return {"X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body), "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery}


def gitea(body: bytes = BODY, secret: str = SECRET, event: str = "push", delivery: str = "t-1") -> dict:
    return {"X-Gitea-Signature": hex_hmac(secret, body), "X-Gitea-Event": event, "X-Gitea-Delivery": delivery}


def forgejo(body: bytes = BODY, secret: str = SECRET, delivery: str = "f-1") -> dict:
    return {"X-Forgejo-Signature": hex_hmac(secret, body), "X-Forgejo-Event": "push", "X-Forgejo-Delivery": delivery}


def gitlab(body: bytes = BODY, key: bytes = GITLAB_KEY, at: float = NOW, delivery: str = "l-1",
           event: str = "Push Hook") -> dict:
    signed = base64.b64encode(hmac.digest(key, f"{delivery}.{int(at)}.".encode() + body, "sha256")).decode()
    return {"webhook-id": delivery, "webhook-timestamp": str(int(at)), "webhook-signature": f"v1,{signed}",
            "X-Gitlab-Event": event}


@pytest.mark.parametrize("headers, secret, sender", [
    (atl_hook(), SECRET, "git hook"),
    (github(), SECRET, "GitHub"),
    (gitea(), SECRET, "Gitea"),
    (forgejo(), SECRET, "Gitea"),
    (gitlab(), GITLAB_SECRET, "GitLab"),
])
def test_each_senders_signature_is_accepted_once(headers, secret, sender):
    verifier = Verifier(secret)
    notification = verifier.verify(headers, BODY, NOW)
    assert (notification.sender, notification.push) == (sender, True)
    with pytest.raises(Refused, match="accepted before: a replay"):
        verifier.verify(headers, BODY, NOW + 1)


@pytest.mark.parametrize("headers, secret", [
    (atl_hook(secret="another"), SECRET),
    (github(secret="another"), SECRET),
    (gitea(secret="another"), SECRET),
    (gitlab(key=b"another key of thirty-two bytes!"), GITLAB_SECRET),
])
def test_a_signature_made_with_another_secret_is_refused(headers, secret):
    with pytest.raises(Refused, match="does not match the secret") as refused:
        Verifier(secret).verify(headers, BODY, NOW)
    assert refused.value.status == 401


@pytest.mark.parametrize("headers, secret", [(atl_hook(), SECRET), (github(), SECRET), (gitea(), SECRET),
                                             (gitlab(), GITLAB_SECRET)])
def test_a_body_changed_after_signing_is_refused(headers, secret):
    tampered = BODY.replace(b"a" * 40, b"b" * 40)
    with pytest.raises(Refused, match="does not match the secret"):
        Verifier(secret).verify(headers, tampered, NOW)


@pytest.mark.parametrize("headers, secret", [(atl_hook(at=NOW - MAX_AGE - 1), SECRET),
                                             (gitlab(at=NOW + MAX_AGE + 1), GITLAB_SECRET)])
def test_a_signed_timestamp_past_its_age_is_stale(headers, secret):
    with pytest.raises(Refused, match="stale"):
        Verifier(secret).verify(headers, BODY, NOW)


def test_a_timestamp_is_part_of_what_is_signed():
    headers = {**atl_hook(at=NOW - 100), "X-Atl-Timestamp": str(int(NOW))}  # a replay made to look fresh
    with pytest.raises(Refused, match="does not match the secret"):
        Verifier(SECRET).verify(headers, BODY, NOW)


@pytest.mark.parametrize("headers, message", [
    ({}, "not signed"),
    ({"Content-Type": "application/json"}, "not signed"),
    ({"X-Gitlab-Token": SECRET}, "signs nothing"),
    ({**github(), "X-GitHub-Delivery": ""}, "x-github-delivery header is missing"),
    ({**atl_hook(), "X-Atl-Timestamp": "soon"}, "not a number"),
])
def test_what_is_not_signed_as_a_sender_signs_is_refused(headers, message):
    with pytest.raises(Refused, match=message):
        Verifier(SECRET).verify(headers, BODY, NOW)


@pytest.mark.parametrize("headers, secret", [(github(event="ping"), SECRET), (gitea(event="create"), SECRET),
                                             (gitlab(event="Tag Push Hook"), GITLAB_SECRET)])
def test_another_event_is_verified_but_asks_for_no_deploy(headers, secret):
    assert Verifier(secret).verify(headers, BODY, NOW).push is False


def test_a_body_past_the_limit_is_refused_before_anything_else():
    with pytest.raises(Refused) as refused:
        Verifier(SECRET).verify({}, b"x" * (MAX_BODY + 1), NOW)
    assert refused.value.status == 413


def test_header_names_are_read_whatever_their_case():
    headers = {name.lower(): value for name, value in github().items()}
    assert Verifier(SECRET).verify(headers, BODY, NOW).sender == "GitHub"
