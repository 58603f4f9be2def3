"""HTTPS: ``--tls-cert``/``--tls-key`` and ``--dev --tls-self-signed``, through boto3 and the AWS
CLI with a CA bundle; TLS below 1.2 refused; ``aws:SecureTransport`` true over TLS only; a
certificate swapped with SIGHUP while clients run, with no failed call."""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, ServerProcess, coffer_bin, start_server, unique_name

HTTPS_RE = re.compile(r"listening on (https://127\.0\.0\.1:\d+)")
CERT_RE = re.compile(r"TLS certificate (\S+) \(SHA-256 ([0-9A-F:]+)\)")
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60)
PROFILE = "coffer"


def start_https(args: list[str]) -> tuple[ServerProcess, str]:
    srv = ServerProcess(args)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = HTTPS_RE.search(srv.output())
        if m:
            return srv, m.group(1)
        if srv.proc.poll() is not None:
            break
        time.sleep(0.05)
    srv.kill()
    pytest.fail(f"no https listening line:\n{srv.output()}")


def client(url: str, ca: Path, key=("AKIAIOSFODNN7EXAMPLE", "x" * 40), service="secretsmanager"):
    return boto3.client(service, endpoint_url=url, region_name=REGION, verify=str(ca),
                        aws_access_key_id=key[0], aws_secret_access_key=key[1], config=NO_RETRY)


def served_fingerprint(url: str, ca: Path) -> str:
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def make_ca(directory: Path) -> Path:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=coffer-test-ca", cwd=directory)
    return directory / "ca.pem"


def make_leaf(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by the test CA; the PEM file holds the chain."""
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=localhost", cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.leaf.pem", "-days", "2", "-extfile", "san.ext", cwd=directory)
    chain = directory / f"{name}.pem"
    chain.write_text((directory / f"{name}.leaf.pem").read_text() + (directory / "ca.pem").read_text())
    return chain, directory / f"{name}.key"


def test_self_signed_dev_server_with_boto3_and_the_cli(tmp_path):
    srv, url = start_https(["serve", "--dev", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                            "--tls-self-signed"])
    try:
        m = CERT_RE.search(srv.output())
        cert, fingerprint = Path(m.group(1)), m.group(2)
        assert cert == tmp_path / "d" / "tls" / "cert.pem"
        assert (cert.parent / "key.pem").stat().st_mode & 0o077 == 0
        assert served_fingerprint(url, cert) == fingerprint
        sm = client(url, cert)
        name = unique_name("tls")
        sm.create_secret(Name=name, SecretString="over-tls")
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "over-tls"
        assert requests.get(url + "/ready", verify=str(cert), timeout=10).status_code == 200
        env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE", AWS_SECRET_ACCESS_KEY="x" * 40,
                   AWS_DEFAULT_REGION=REGION, AWS_PAGER="", AWS_CONFIG_FILE=str(tmp_path / "none"))
        out = subprocess.run([sys.executable, "-m", "awscli", "secretsmanager", "get-secret-value",
                              "--secret-id", name, "--endpoint-url", url, "--ca-bundle", str(cert),
                              "--output", "json"], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["SecretString"] == "over-tls"
        # Without the bundle the certificate is not trusted.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/health", timeout=10)
    finally:
        srv.stop()


def test_tls_below_1_2_is_refused_and_1_2_and_1_3_are_served(tmp_path):
    srv, url = start_https(["serve", "--dev", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                            "--tls-self-signed"])
    try:
        cert = Path(CERT_RE.search(srv.output()).group(1))
        host, port = url.removeprefix("https://").split(":")
        for version, accepted in ((ssl.TLSVersion.TLSv1_1, False), (ssl.TLSVersion.TLSv1_2, True),
                                  (ssl.TLSVersion.TLSv1_3, True)):
            context = ssl.create_default_context(cafile=str(cert))
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = version
            if version == ssl.TLSVersion.TLSv1_1:
                context.set_ciphers("DEFAULT:@SECLEVEL=0")
            try:
                with socket.create_connection((host, int(port)), timeout=10) as raw:
                    with context.wrap_socket(raw, server_hostname=host) as tls:
                        negotiated = tls.version()
                assert accepted, f"{version} was accepted ({negotiated})"
                assert negotiated == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            except ssl.SSLError:
                assert not accepted, f"{version} was refused"
    finally:
        srv.stop()


def test_a_bad_key_stops_the_server_at_start(tmp_path):
    make_ca(tmp_path)
    cert, _ = make_leaf(tmp_path, "one")
    _, other_key = make_leaf(tmp_path, "two")
    done = subprocess.run([coffer_bin(), "serve", "--dev", "--listen", "127.0.0.1:0", "--tls-cert", str(cert),
                           "--tls-key", str(other_key)], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "does not fit the certificate" in done.stderr


# ---- aws:SecureTransport ------------------------------------------------------------------------

SECURE_ONLY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["secretsmanager:*", "cloudtrail:LookupEvents"], "Resource": "*"},
    {"Effect": "Deny", "Action": ["secretsmanager:*", "cloudtrail:LookupEvents"], "Resource": "*",
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}


def coffer_admin(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COFFER_MASTER_KEY"}
    done = subprocess.run([coffer_bin(), "admin", *args, "--data-dir", str(data_dir)], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def secure_only_user(data_dir: Path) -> tuple[str, str]:
    coffer_admin(data_dir, "create-user", "tlsonly")
    coffer_admin(data_dir, "attach-policy", "tlsonly", "--name", "p", "--file", "-", stdin=json.dumps(SECURE_ONLY))
    printed = configparser.ConfigParser()
    printed.read_string(coffer_admin(data_dir, "create-access-key", "tlsonly"))
    return printed["tlsonly"]["aws_access_key_id"], printed["tlsonly"]["aws_secret_access_key"]


def admin_key(data_dir: Path) -> tuple[str, str]:
    parsed = configparser.ConfigParser()
    parsed.read(data_dir / "admin-credentials")
    return parsed[PROFILE]["aws_access_key_id"], parsed[PROFILE]["aws_secret_access_key"]


def test_secure_transport_is_true_over_tls_and_false_over_plain_http(tmp_path):
    ca = make_ca(tmp_path)
    cert, key = make_leaf(tmp_path, "server")
    tls_dir, plain_dir = tmp_path / "tls-node", tmp_path / "plain-node"
    tls_srv, tls_url = start_https(["serve", "--data-dir", str(tls_dir), "--listen", "127.0.0.1:0",
                                    "--tls-cert", str(cert), "--tls-key", str(key)])
    plain_srv = start_server(["serve", "--data-dir", str(plain_dir), "--listen", "127.0.0.1:0"])
    try:
        for data_dir, url, verify in ((tls_dir, tls_url, ca), (plain_dir, plain_srv.url, None)):
            admin = boto3.client("secretsmanager", endpoint_url=url, region_name=REGION, verify=verify and str(ca),
                                 aws_access_key_id=admin_key(data_dir)[0],
                                 aws_secret_access_key=admin_key(data_dir)[1], config=NO_RETRY)
            admin.create_secret(Name="st/value", SecretString="transport")
        tls_key = secure_only_user(tls_dir)
        over_tls = client(tls_url, ca, tls_key)
        assert over_tls.get_secret_value(SecretId="st/value")["SecretString"] == "transport"
        # LookupEvents is decided with the same context: allowed over TLS, denied in clear.
        boto3.client("cloudtrail", endpoint_url=tls_url, region_name=REGION, verify=str(ca),
                     aws_access_key_id=tls_key[0], aws_secret_access_key=tls_key[1],
                     config=NO_RETRY).lookup_events(MaxResults=1)
        plain_key = secure_only_user(plain_dir)
        trail_in_clear = boto3.client("cloudtrail", endpoint_url=plain_srv.url, region_name=REGION,
                                      aws_access_key_id=plain_key[0], aws_secret_access_key=plain_key[1],
                                      config=NO_RETRY)
        with pytest.raises(ClientError) as refused:
            trail_in_clear.lookup_events(MaxResults=1)
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
        over_http = boto3.client("secretsmanager", endpoint_url=plain_srv.url, region_name=REGION,
                                 aws_access_key_id=plain_key[0], aws_secret_access_key=plain_key[1],
                                 config=NO_RETRY)
        with pytest.raises(ClientError) as denied:
            over_http.get_secret_value(SecretId="st/value")
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "explicit deny in an identity-based policy" in denied.value.response["Error"]["Message"]
    finally:
        tls_srv.stop()
        plain_srv.stop()


# ---- certificate reload ---------------------------------------------------------------------------


def test_certificate_swap_with_sighup_fails_no_call(tmp_path):
    ca = make_ca(tmp_path)
    first_cert, first_key = make_leaf(tmp_path, "first")
    second_cert, second_key = make_leaf(tmp_path, "second")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(first_cert.read_bytes())
    live_key.write_bytes(first_key.read_bytes())
    srv, url = start_https(["serve", "--dev", "--listen", "127.0.0.1:0",
                            "--tls-cert", str(live_cert), "--tls-key", str(live_key)])
    old = served_fingerprint(url, ca)
    sm = client(url, ca)
    name = unique_name("swap")
    sm.create_secret(Name=name, SecretString="steady")
    stop = threading.Event()
    failures: list[str] = []
    counts = {"kept": 0, "fresh": 0}

    def kept_connection():
        # One client, one pooled keep-alive connection, open across the swap.
        while not stop.is_set():
            try:
                assert sm.get_secret_value(SecretId=name)["SecretString"] == "steady"
                counts["kept"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                failures.append(f"kept: {e!r}")

    def fresh_connections():
        # A new connection (and handshake) for every call.
        while not stop.is_set():
            try:
                with requests.Session() as session:
                    assert session.get(url + "/health", verify=str(ca), timeout=10).status_code == 200
                counts["fresh"] += 1
            except Exception as e:  # noqa: BLE001
                failures.append(f"fresh: {e!r}")

    threads = [threading.Thread(target=kept_connection), threading.Thread(target=fresh_connections)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        # Replace both files whole (rename), as a certificate manager does, then signal.
        for source, target in ((second_cert, live_cert), (second_key, live_key)):
            staged = target.with_suffix(".new")
            staged.write_bytes(source.read_bytes())
            os.replace(staged, target)
        before = dict(counts)
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        new = old
        while new == old and time.monotonic() < deadline:
            new = served_fingerprint(url, ca)
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    try:
        assert new != old, "the new certificate was not served after SIGHUP"
        assert not failures, failures[:5]
        assert counts["kept"] > before["kept"] and counts["fresh"] > before["fresh"]
        assert "reloaded the TLS certificate" in srv.output_once_it_shows("reloaded the TLS certificate")
        # A broken file on the next reload keeps the certificate in use.
        live_key.write_text("not a key")
        srv.proc.send_signal(signal.SIGHUP)
        assert "TLS certificate not reloaded" in srv.output_once_it_shows("TLS certificate not reloaded")
        assert served_fingerprint(url, ca) == new
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "steady"
    finally:
        srv.stop()


def test_a_throwaway_certificate_outside_a_data_dir_goes_with_the_server():
    srv, url = start_https(["serve", "--dev", "--listen", "127.0.0.1:0", "--tls-self-signed"])
    cert = Path(CERT_RE.search(srv.output()).group(1))
    assert cert.exists()
    assert requests.get(url + "/health", verify=str(cert), timeout=10).status_code == 200
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.wait_exit(timeout=30) == 0
    assert not cert.parent.exists()
