"""Client-certificate authentication (``--tls-client-ca``): an extra to SigV4, never a
replacement. Without a certificate from the configured CA the handshake is refused (and
counted in ``/metrics``); with one, requests are still authenticated by SigV4 and authorized
by IAM exactly as without it."""

from __future__ import annotations

import configparser
import re
import subprocess
import time
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
import requests
from botocore.config import Config

from conftest import REGION, coffer_bin
from test_ops_metrics import parse, value
from test_ops_tls import PROFILE, make_ca, make_leaf, openssl, start_https

METRICS_RE = re.compile(r"metrics on (http://127\.0\.0\.1:\d+)/metrics")
REFUSED = (botocore.exceptions.SSLError, botocore.exceptions.ConnectionClosedError,
           botocore.exceptions.EndpointConnectionError)


def make_client_cert(directory: Path, ca_dir: Path, name: str) -> tuple[Path, Path]:
    """A client certificate (extended key usage clientAuth) signed by the CA in `ca_dir`."""
    (directory / f"{name}.ext").write_text("extendedKeyUsage=clientAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.csr"),
            "-subj", f"/CN={name}", cwd=directory)
    openssl("x509", "-req", "-in", str(directory / f"{name}.csr"), "-CA", str(ca_dir / "ca.pem"),
            "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-out", str(directory / f"{name}.pem"),
            "-days", "2", "-extfile", str(directory / f"{name}.ext"), cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"


@pytest.fixture(scope="module")
def mtls(tmp_path_factory):
    server_ca_dir = tmp_path_factory.mktemp("server-ca")
    server_ca = make_ca(server_ca_dir)
    cert, key = make_leaf(server_ca_dir, "server")
    client_ca_dir = tmp_path_factory.mktemp("client-ca")
    client_ca = make_ca(client_ca_dir)
    other_ca_dir = tmp_path_factory.mktemp("other-ca")
    make_ca(other_ca_dir)
    certs = tmp_path_factory.mktemp("client-certs")
    trusted = make_client_cert(certs, client_ca_dir, "trusted-client")
    stranger = make_client_cert(certs, other_ca_dir, "stranger-client")
    data_dir = tmp_path_factory.mktemp("mtls-data")
    srv, url = start_https(["serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
                            "--tls-cert", str(cert), "--tls-key", str(key),
                            "--tls-client-ca", str(client_ca),
                            "--metrics-listen", "127.0.0.1:0"])
    deadline = time.monotonic() + 10
    while not METRICS_RE.search(srv.output()) and time.monotonic() < deadline:
        time.sleep(0.05)
    metrics_url = METRICS_RE.search(srv.output()).group(1)
    parsed = configparser.ConfigParser()
    parsed.read(data_dir / "admin-credentials")
    admin = (parsed[PROFILE]["aws_access_key_id"], parsed[PROFILE]["aws_secret_access_key"])
    yield {"url": url, "ca": server_ca, "trusted": trusted, "stranger": stranger,
           "admin": admin, "metrics": metrics_url}
    srv.stop()


def sm(m, key, cert=None):
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                    read_timeout=30, client_cert=tuple(map(str, cert)) if cert else None)
    return boto3.client("secretsmanager", endpoint_url=m["url"], region_name=REGION,
                        verify=str(m["ca"]), aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=config)


def handshake_failures(m) -> float:
    text = requests.get(m["metrics"] + "/metrics", timeout=10).text
    return value(parse(text), "coffer_tls_handshake_failures_total")


def test_a_certificate_from_the_client_ca_and_a_valid_signature_are_both_needed(mtls):
    client = sm(mtls, mtls["admin"], mtls["trusted"])
    client.create_secret(Name="mtls-secret", SecretString="v")
    assert client.get_secret_value(SecretId="mtls-secret")["SecretString"] == "v"
    # The certificate does not stand in for SigV4: a wrong secret key is still refused...
    wrong = sm(mtls, (mtls["admin"][0], "x" * 40), mtls["trusted"])
    with pytest.raises(botocore.exceptions.ClientError) as err:
        wrong.get_secret_value(SecretId="mtls-secret")
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    # ... and so is an unknown access key.
    unknown = sm(mtls, ("AKIAIOSFODNN7EXAMPLE", "x" * 40), mtls["trusted"])
    with pytest.raises(botocore.exceptions.ClientError) as err:
        unknown.get_secret_value(SecretId="mtls-secret")
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"


@pytest.mark.parametrize("cert", [None, "stranger"])
def test_without_a_certificate_from_the_client_ca_the_connection_is_refused(mtls, cert):
    before = handshake_failures(mtls)
    client = sm(mtls, mtls["admin"], mtls[cert] if cert else None)
    with pytest.raises(REFUSED):
        client.list_secrets()
    # The refusal happened in the handshake, before any request was read.
    deadline = time.monotonic() + 5
    while handshake_failures(mtls) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handshake_failures(mtls) > before


def test_a_client_ca_needs_tls_and_a_usable_file(tmp_path):
    (tmp_path / "not-a-ca.pem").write_text("not a certificate\n")
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    make_ca(ca_dir)
    cert, key = make_leaf(ca_dir, "server")
    for extra, needle in [
        (["--tls-client-ca", str(ca_dir / "ca.pem")], "needs TLS"),
        (["--tls-cert", str(cert), "--tls-key", str(key),
          "--tls-client-ca", str(tmp_path / "not-a-ca.pem")], "client CA"),
        (["--tls-cert", str(cert), "--tls-key", str(key),
          "--tls-client-ca", str(tmp_path / "missing.pem")], "client CA"),
    ]:
        done = subprocess.run([coffer_bin(), "serve", "--dev", "--listen", "127.0.0.1:0", *extra],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and needle in done.stderr, done.stderr
