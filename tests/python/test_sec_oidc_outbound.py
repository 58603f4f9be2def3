"""Outbound OIDC fetches connect only to public addresses unless the operator allows a
network (ssrf11): an issuer URL is chosen by any account's administrators, and a web
identity call naming it (unsigned) had the server GET its discovery document from any
address, its own loopback and the cloud metadata endpoint included.

Each test registers an issuer on a local listener that counts the connections it accepts
and serves a valid discovery document and key set, then calls AssumeRoleWithWebIdentity
with a token that issuer signed. Without ``--oidc-allow-net`` every spelling of a loopback
address is refused before a connection is made (the listener accepts none) and the caller
gets the same IDPCommunicationError an unreachable issuer gives; the server's log names the
reason. With the flag (or its environment variable) the same issuer works.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import urllib.parse
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from conftest import coffer_bin
from test_iam_api_web_identity import AUDIENCE, Issuer
from test_sec_review7 import Server

IDP_MESSAGE = ("Couldn't retrieve verification key from your identity provider, please reference "
               "AssumeRoleWithWebIdentity documentation for requirements")
REFUSED_LOG = "refused to fetch from an OIDC provider"


class CountingIssuer(http.server.ThreadingHTTPServer):
    """A local OIDC issuer on 127.0.0.1 that counts every connection it accepts."""

    def __init__(self):
        self.connections = 0
        self.documents: dict[str, bytes] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the handler's name is fixed)
                body = server.documents.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def get_request(self):
        self.connections += 1
        return super().get_request()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def serve_issuer(self, url: str, issuer: Issuer) -> None:
        """Answers discovery for `url` (as the server will ask it) with keys on this listener."""
        keys = f"http://127.0.0.1:{self.port}/keys"
        discovery = urllib.parse.urlsplit(url).path.rstrip("/") + "/.well-known/openid-configuration"
        self.documents[discovery] = json.dumps({"issuer": url, "jwks_uri": keys}).encode()
        self.documents["/keys"] = issuer.jwks().encode()


@pytest.fixture(scope="module")
def closed(tmp_path_factory):
    """A server as shipped: no network allowed beyond public addresses."""
    s = Server(tmp_path_factory.mktemp("oidc-closed"))
    yield s
    s.server.stop()


@pytest.fixture(scope="module")
def opened(tmp_path_factory):
    """A server whose operator let loopback through, with the environment variable."""
    saved = os.environ.get("COFFER_OIDC_ALLOW_NET")
    os.environ["COFFER_OIDC_ALLOW_NET"] = "127.0.0.0/8,::1/128"
    try:
        s = Server(tmp_path_factory.mktemp("oidc-opened"))
    finally:
        if saved is None:
            del os.environ["COFFER_OIDC_ALLOW_NET"]
        else:
            os.environ["COFFER_OIDC_ALLOW_NET"] = saved
    yield s
    s.server.stop()


@pytest.fixture
def listener():
    httpd = CountingIssuer()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def assume(srv, url: str, issuer: Issuer):
    """Registers `url` as a provider with a role trusting it, and calls
    AssumeRoleWithWebIdentity with a token `issuer` signed for it."""
    iam = srv.any_client("iam")
    arn = iam.create_open_id_connect_provider(Url=url, ClientIDList=[AUDIENCE], ThumbprintList=["e" * 40])[
        "OpenIDConnectProviderArn"]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": arn}, "Action": "sts:AssumeRoleWithWebIdentity"}]}
    name = f"oidc-out-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    anonymous = boto3.client("sts", endpoint_url=srv.url, region_name="us-east-1",
                             config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}))
    return anonymous.assume_role_with_web_identity(RoleArn=role, RoleSessionName="outbound",
                                                   WebIdentityToken=issuer.token(iss=url))


def refused(srv, url: str, issuer: Issuer, reason: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        assume(srv, url, issuer)
    err = e.value.response["Error"]
    # Exactly what an unreachable issuer gets: nothing tells which check refused it.
    assert (err["Code"], err["Message"]) == ("IDPCommunicationError", IDP_MESSAGE)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    log = srv.server.output_once_it_shows(reason)
    assert REFUSED_LOG in log and reason in log


def test_a_loopback_issuer_is_not_reached_without_the_flag(closed, listener, tmp_path):
    url = f"http://127.0.0.1:{listener.port}"
    issuer = Issuer(tmp_path, url)
    listener.serve_issuer(url, issuer)
    refused(closed, url, issuer, "loopback")
    assert listener.connections == 0


@pytest.mark.parametrize("host", ["localhost", "[::ffff:127.0.0.1]", "2130706433", "0x7f.1"])
def test_every_spelling_of_loopback_is_refused(closed, listener, tmp_path, host):
    """A name resolving to loopback, the IPv4-mapped IPv6 literal, and the decimal and hex
    forms getaddrinfo reads as 127.0.0.1: each decided on the address, not the text."""
    url = f"http://{host}:{listener.port}"
    issuer = Issuer(tmp_path, url)
    listener.serve_issuer(url, issuer)
    refused(closed, url, issuer, "loopback")
    assert listener.connections == 0


def test_the_cloud_metadata_address_is_refused(closed, tmp_path):
    url = "http://169.254.169.254/latest"
    refused(closed, url, Issuer(tmp_path, url), "link-local (cloud metadata)")


def test_with_loopback_allowed_the_same_issuer_works(opened, listener, tmp_path):
    for host in ("127.0.0.1", "localhost"):
        url = f"http://{host}:{listener.port}/{host}"
        issuer = Issuer(tmp_path, url)
        listener.serve_issuer(url, issuer)
        before = listener.connections
        creds = assume(opened, url, issuer)["Credentials"]
        assert creds["AccessKeyId"].startswith("ASIA")
        assert listener.connections > before
    # Allowing loopback lets no other non-public network through.
    url = "http://169.254.169.254/opened"
    refused(opened, url, Issuer(tmp_path, url), "link-local (cloud metadata)")


def test_the_allow_list_is_checked_at_start_and_in_config_files(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('oidc-allow-net = "10.0.0.0/8,fd00::/8,192.168.1.7"\n')
    done = subprocess.run([coffer_bin(), "config", "check", str(good)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('oidc-allow-net = "10.0.0.0/33"\n')
    done = subprocess.run([coffer_bin(), "config", "check", str(bad)], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "is not a network" in done.stderr
    done = subprocess.run([coffer_bin(), "serve", "--dev", "--oidc-allow-net", "internal"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "is not a network" in done.stderr
