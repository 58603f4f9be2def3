"""Rotation functions at an https:// Lambda endpoint: the runner serves TLS with a
certificate from a throwaway CA. Coffer trusts it when given that CA (``--lambda-ca``),
and, without it, checks the endpoint against the system roots, which do not hold the
throwaway CA: then the function cannot be invoked (AWS's AccessDeniedException) and nothing
is stored."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time

import pytest
from conftest import ACCESS_KEY, REGION, SECRET_KEY, ServerProcess, expect_error, make_client, start_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lambda_runner import Runner, TemplateRotation

FUNCTION = "arn:aws:lambda:us-east-1:000000000000:function:rotator"
MSG_CANNOT_INVOKE = (
    "Secrets Manager cannot invoke the specified Lambda function. Ensure that the function "
    "policy grants access to the principal secretsmanager.amazonaws.com."
)


def make_ca_and_leaf(directory):
    """A CA certificate and a server certificate for 127.0.0.1 it signed (PEM files)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coffer test lambda CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = directory / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem = directory / "cert.pem"
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem = directory / "key.pem"
    key_pem.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_ca_and_leaf(tmp_path_factory.mktemp("lambda-tls"))


@pytest.fixture(scope="module")
def tls_runner(pki):
    _, cert, key = pki
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    r = Runner(ssl_context=context)
    assert r.url.startswith("https://")
    yield r
    r.stop()


def wait_current(sm, name, version_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "AWSCURRENT" in sm.describe_secret(SecretId=name)["VersionIdsToStages"].get(version_id, []):
            return
        time.sleep(0.05)
    raise AssertionError(f"{version_id} never became AWSCURRENT")


def test_an_https_endpoint_trusted_through_lambda_ca_runs_the_rotation(pki, tls_runner, name):
    ca, _, _ = pki
    server = start_server(["serve", "--dev", "--listen", "127.0.0.1:0",
                           "--lambda-endpoint", tls_runner.url, "--lambda-ca", str(ca)])
    try:
        sm = make_client(server.url)
        tls_runner.functions["rotator"] = TemplateRotation(server.url, REGION, ACCESS_KEY, SECRET_KEY)
        sm.create_secret(Name=name, SecretString="initial")
        before = len(tls_runner.events())
        rotated = sm.rotate_secret(SecretId=name, RotationLambdaARN=FUNCTION)
        wait_current(sm, name, rotated["VersionId"])
        assert tls_runner.steps()[before:] == ["createSecret", "setSecret", "testSecret", "finishSecret"]
        assert sm.get_secret_value(SecretId=name)["SecretString"] != "initial"
    finally:
        server.stop()


def test_without_the_ca_the_system_roots_refuse_the_endpoint(tls_runner, name):
    server = start_server(["serve", "--dev", "--listen", "127.0.0.1:0", "--lambda-endpoint", tls_runner.url])
    try:
        sm = make_client(server.url)
        tls_runner.functions["rotator"] = TemplateRotation(server.url, REGION, ACCESS_KEY, SECRET_KEY)
        sm.create_secret(Name=name, SecretString="initial")
        before = len(tls_runner.events())
        expect_error(sm.rotate_secret, "AccessDeniedException", MSG_CANNOT_INVOKE,
                     SecretId=name, RotationLambdaARN=FUNCTION)
        desc = sm.describe_secret(SecretId=name)
        assert "RotationEnabled" not in desc and "RotationLambdaARN" not in desc
        assert len(desc["VersionIdsToStages"]) == 1
        assert tls_runner.events()[before:] == []
    finally:
        server.stop()


@pytest.mark.parametrize(
    "problem,says",
    [("not-a-file", "cannot read"), ("not-pem", "holds no certificate"), ("http-endpoint", "https://")],
)
def test_a_lambda_ca_that_cannot_be_used_stops_the_server(pki, tmp_path, problem, says):
    ca, _, _ = pki
    endpoint = "https://127.0.0.1:9"
    if problem == "not-a-file":
        ca = tmp_path / "missing.pem"
    elif problem == "not-pem":
        ca = tmp_path / "garbage.pem"
        ca.write_text("not a certificate\n")
    else:
        endpoint = "http://127.0.0.1:9"
    proc = ServerProcess(["serve", "--dev", "--listen", "127.0.0.1:0",
                          "--lambda-endpoint", endpoint, "--lambda-ca", str(ca)])
    try:
        rc = proc.wait_exit()
        assert rc not in (None, 0), proc.output()
        assert "--lambda-ca" in proc.output() and says in proc.output(), proc.output()
    finally:
        proc.kill()
