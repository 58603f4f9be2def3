"""Web identity (issue 18, part 3): OIDC providers through the IAM API and STS
AssumeRoleWithWebIdentity with JWTs signed by a test issuer (openssl, RS256), whose keys the
server reads from a JWKS file (``coffer:jwks-file``) or fetches through the issuer's
discovery document served locally; refusals for a wrong audience, an unregistered issuer, an
expired token, a forged signature and a trust policy for another subject; and the AWS CLI's
own ``web_identity_token_file`` profile reading a secret with no static key.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import REGION
from iam_api_support import STORES, serve

AUDIENCE = "sts.amazonaws.com"
SUBJECT = "system:serviceaccount:payments:api"
READ_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:ListSecrets"], "Resource": "*"}],
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """A test OIDC issuer: an RSA key made by openssl and tokens signed with it."""

    def __init__(self, directory: Path, url: str, kid: str = "k1"):
        self.url = url
        self.kid = kid
        self.key = directory / f"{kid}-{uuid.uuid4().hex[:6]}.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(self.key), "2048"], check=True, capture_output=True)
        modulus = subprocess.run(
            ["openssl", "rsa", "-in", str(self.key), "-noout", "-modulus"], check=True, capture_output=True, text=True
        ).stdout.strip().split("=", 1)[1]
        self.jwk = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                    "n": b64url(bytes.fromhex(modulus)), "e": b64url((65537).to_bytes(3, "big"))}

    def jwks(self) -> str:
        return json.dumps({"keys": [self.jwk]})

    def token(self, sub: str = SUBJECT, aud: str = AUDIENCE, iss: str | None = None, exp_in: int = 600, signer: "Issuer | None" = None) -> str:
        now = int(time.time())
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        claims = b64url(json.dumps({"iss": iss or self.url, "sub": sub, "aud": aud, "iat": now, "nbf": now - 5, "exp": now + exp_in}).encode())
        signing_input = f"{header}.{claims}".encode()
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str((signer or self).key)],
            input=signing_input, check=True, capture_output=True,
        ).stdout
        return f"{header}.{claims}.{b64url(signature)}"


@pytest.fixture(scope="module", params=STORES)
def srv(request, tmp_path_factory):
    return serve(request, tmp_path_factory, "webid")


@pytest.fixture(scope="module")
def secret(srv):
    name = f"wi-secret-{uuid.uuid4().hex[:8]}"
    srv.client("secretsmanager").create_secret(Name=name, SecretString="web-identity-value")
    return name


@pytest.fixture(scope="module")
def file_issuer(srv, tmp_path_factory):
    """An issuer the server cannot reach (a cluster's API server): its JWKS in a file."""
    directory = tmp_path_factory.mktemp("issuer")
    issuer = Issuer(directory, f"https://oidc.cluster-{uuid.uuid4().hex[:6]}.example.test/id")
    jwks = directory / "jwks.json"
    jwks.write_text(issuer.jwks())
    arn = srv.client("iam").create_open_id_connect_provider(
        Url=issuer.url, ClientIDList=[AUDIENCE], ThumbprintList=["a" * 40],
        Tags=[{"Key": "coffer:jwks-file", "Value": str(jwks)}],
    )["OpenIDConnectProviderArn"]
    issuer.arn = arn
    return issuer


def web_role(srv, issuer, sub: str = SUBJECT) -> str:
    hp = issuer.arn.split(":oidc-provider/", 1)[1]
    trust = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": issuer.arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{hp}:sub": sub, f"{hp}:aud": AUDIENCE}},
        }],
    }
    iam = srv.client("iam")
    name = f"wi-role-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="read", PolicyDocument=json.dumps(READ_ALL))
    return arn


def refusal(srv, **kwargs) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        srv.anonymous_sts().assume_role_with_web_identity(**kwargs)
    err = excinfo.value.response["Error"]
    return err["Code"], err.get("Message", "")


def test_oidc_providers_through_the_iam_api(srv, file_issuer):
    iam = srv.client("iam")
    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=file_issuer.arn)
    assert got["ClientIDList"] == [AUDIENCE]
    assert file_issuer.url.endswith(got["Url"])
    assert file_issuer.arn in [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        iam.create_open_id_connect_provider(Url=file_issuer.url, ClientIDList=[AUDIENCE], ThumbprintList=["a" * 40])
    assert excinfo.value.response["Error"]["Code"] == "EntityAlreadyExists"
    other = iam.create_open_id_connect_provider(Url="https://other.example.test", ClientIDList=["x"], ThumbprintList=["b" * 40])
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=other["OpenIDConnectProviderArn"])
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        iam.get_open_id_connect_provider(OpenIDConnectProviderArn=other["OpenIDConnectProviderArn"])
    assert excinfo.value.response["Error"]["Code"] == "NoSuchEntity"


def test_a_web_identity_token_buys_a_session_that_reads_a_secret(srv, secret, file_issuer):
    role_arn = web_role(srv, file_issuer)
    got = srv.anonymous_sts().assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="pod-1", WebIdentityToken=file_issuer.token()
    )
    assert got["SubjectFromWebIdentityToken"] == SUBJECT
    assert got["Audience"] == AUDIENCE
    assert got["AssumedRoleUser"]["Arn"].endswith("/pod-1")
    creds = got["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    sm = srv.session_client("secretsmanager", creds)
    assert sm.get_secret_value(SecretId=secret)["SecretString"] == "web-identity-value"


def test_web_identity_refusals(srv, file_issuer, tmp_path):
    role_arn = web_role(srv, file_issuer)
    base = {"RoleArn": role_arn, "RoleSessionName": "pod-1"}
    code, message = refusal(srv, WebIdentityToken=file_issuer.token(aud="someone-else"), **base)
    assert (code, message) == ("InvalidIdentityToken", "Incorrect token audience")
    stranger = Issuer(tmp_path, "https://unregistered.example.test")
    code, message = refusal(srv, WebIdentityToken=stranger.token(), **base)
    assert code == "InvalidIdentityToken"
    assert message == "No OpenIDConnect provider found in your account for https://unregistered.example.test"
    code, message = refusal(srv, WebIdentityToken=file_issuer.token(exp_in=-60), **base)
    assert code == "ExpiredTokenException" and message.startswith("Token expired: current date/time")
    # Claims the registered issuer's, signed by another key.
    code, _ = refusal(srv, WebIdentityToken=file_issuer.token(signer=stranger), **base)
    assert code == "InvalidIdentityToken"
    # A trust policy for another service account.
    other_role = web_role(srv, file_issuer, sub="system:serviceaccount:payments:other")
    code, message = refusal(srv, RoleArn=other_role, RoleSessionName="pod-1", WebIdentityToken=file_issuer.token())
    assert code == "AccessDenied"
    assert message == "Not authorized to perform sts:AssumeRoleWithWebIdentity"


class _Discovery(http.server.BaseHTTPRequestHandler):
    documents: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (the handler's name is fixed)
        body = self.documents.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_keys_are_fetched_through_the_issuers_discovery_document(srv, secret, tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        issuer = Issuer(tmp_path, url)
        _Discovery.documents = {
            "/.well-known/openid-configuration": json.dumps({"issuer": url, "jwks_uri": f"{url}/keys"}).encode(),
            "/keys": issuer.jwks().encode(),
        }
        issuer.arn = srv.client("iam").create_open_id_connect_provider(
            Url=url, ClientIDList=[AUDIENCE], ThumbprintList=["c" * 40]
        )["OpenIDConnectProviderArn"]
        role_arn = web_role(srv, issuer)
        creds = srv.anonymous_sts().assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName="ci-job", WebIdentityToken=issuer.token()
        )["Credentials"]
        assert srv.session_client("secretsmanager", creds).get_secret_value(SecretId=secret)["SecretString"] == "web-identity-value"
    finally:
        httpd.shutdown()


def test_the_aws_cli_uses_a_web_identity_token_file(srv, secret, file_issuer, tmp_path):
    role_arn = web_role(srv, file_issuer)
    token_file = tmp_path / "token"
    token_file.write_text(file_issuer.token())
    config = tmp_path / "config"
    config.write_text(
        "[profile workload]\n"
        f"role_arn = {role_arn}\n"
        f"web_identity_token_file = {token_file}\n"
        "role_session_name = cli-pod\n"
        f"region = {REGION}\n"
        f"endpoint_url = {srv.url}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_MAX_ATTEMPTS": "1"})
    done = subprocess.run(
        ["aws", "secretsmanager", "get-secret-value", "--secret-id", secret, "--profile", "workload", "--output", "json"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["SecretString"] == "web-identity-value"
