"""Certificates served by the real Caddy: inventoried, verified against its CA, renewed."""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

import certifi
import pytest

from atl_pipeline.certificates import public_certificate, renew, served_certificate
from atl_pipeline.orchestration.runner import run_deploy
from atl_pipeline.project import Project
from atl_pipeline.runtime.local import deployed_runtime
from atl_pipeline.timings import Timings

pytestmark = pytest.mark.slow  # a deployed stack: Caddy, supervisord, Terraform

API = "api.allthingslinux.org"


def test_served_certificates_are_inventoried_verified_and_renewed_near_expiry(project: Project, monkeypatch):
    stages = []
    assert run_deploy(project, on_stage=stages.append).success, stages
    assert next(s.detail for s in stages if s.stage == "certificates") == "3/3 certificates valid"
    lb = deployed_runtime(project).lb.frontend
    certificate = served_certificate(lb, API)
    assert certificate.valid and certificate.issuer.startswith("Caddy Local Authority")
    assert 59 < certificate.days_left <= 60

    renewed = []  # with every certificate due
    assert run_deploy(project, on_stage=renewed.append, timings=Timings(renew_within_days=61.0)).success
    detail = next(s.detail for s in renewed if s.stage == "certificates")
    assert re.fullmatch(r"0/3 certificates valid; renewed api\.allthingslinux\.org, docs\.allthingslinux\.org, "
                        r"www\.allthingslinux\.org", detail)
    assert next(s for s in renewed if s.stage == "certificates:certificates_valid").status == "check failed"
    again = served_certificate(lb, API)
    assert again.valid and again.serial != certificate.serial


def test_renew_makes_caddy_issue_a_new_certificate(project: Project):
    assert run_deploy(project).success
    runtime = deployed_runtime(project)
    before = served_certificate(runtime.lb.frontend, API)
    (after,) = renew(runtime.lb, runtime.restart_caddy, [API])
    assert after.valid and after.serial != before.serial


def test_a_certificate_that_does_not_verify_is_invalid(project: Project, monkeypatch):
    assert run_deploy(project).success
    frontend = deployed_runtime(project).lb.frontend
    assert not served_certificate(frontend, "unknown.example.org").valid  # no certificate for that name
    # as on hcloud, the CAs this machine trusts: Caddy's local CA is not among them
    untrusted = served_certificate(dataclasses.replace(frontend, ca_cert=None), API)
    assert not untrusted.valid and "CERTIFICATE_VERIFY_FAILED" in untrusted.error
    public_only = dataclasses.replace(frontend, ca_cert=Path(certifi.where()))
    assert "CERTIFICATE_VERIFY_FAILED" in served_certificate(public_only, API).error
    monkeypatch.setenv("SSL_CERT_FILE", str(frontend.ca_cert))  # now this machine trusts Caddy's CA
    assert served_certificate(dataclasses.replace(frontend, ca_cert=None), API).valid


def test_what_clients_get_through_the_public_name(project: Project):
    """A stand-in resolver sends the name where the serving Caddy is, as DNS sends it to Cloudflare's edge."""
    assert run_deploy(project).success
    frontend = deployed_runtime(project).lb.frontend
    at_the_edge = public_certificate(API, resolve=lambda name: "127.0.0.1", port=frontend.https_port,
                                     ca=frontend.ca_cert)
    assert at_the_edge.valid and at_the_edge.serial == served_certificate(frontend, API).serial

    def nowhere(name: str) -> str:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    unresolved = public_certificate(API, resolve=nowhere)
    assert not unresolved.valid and unresolved.error == f"{API} does not resolve: [Errno -2] Name or service not known"
    assert not public_certificate(API, resolve=lambda name: "127.0.0.1", port=frontend.https_port).valid  # no CA
