"""Security regressions of issue 21 in SigV4 request authentication (findings 6, 13, 20),
through raw signed HTTP against a ``coffer serve`` without --dev.

* 6: the headers that choose and frame the operation (``X-Amz-Target``, ``Content-Type``)
  must be signed when present, and a request may not carry two of the headers (or two of
  the Authorization parameters) that decide what is verified.
* 13: a non-ASCII ``X-Amz-Date`` is an IncompleteSignature, never a panic.
* 20: an Authorization header is echoed in an error only up to a bounded length.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import JSON_CONTENT_TYPE, REGION
from test_auth import raw_call, secured  # noqa: F401  (secured is a fixture)


def sign_only(url: str, key: tuple[str, str], headers: dict[str, str], data: bytes) -> dict[str, str]:
    """Signs a POST / carrying only `headers` (plus Host and X-Amz-Date); returns the headers
    botocore produced, so more can be added afterwards, unsigned."""
    req = AWSRequest(method="POST", url=url.rstrip("/") + "/", data=data, headers=headers)
    SigV4Auth(Credentials(*key), "secretsmanager", REGION).add_auth(req)
    return dict(req.prepare().headers)


def send_raw(url: str, headers: list[tuple[str, str | bytes]], data: bytes) -> tuple[int, dict]:
    """POST / with exactly these header lines, repeated names and raw bytes included."""
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
    if not any(n.lower() == "host" for n, _ in headers):
        conn.putheader("Host", parsed.netloc)
    for name, value in headers:
        if name.lower() != "content-length":
            conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, json.loads(body) if body else {}


def refused(status: int, body: dict, code: str) -> str:
    assert status == 400, (status, body)
    assert body.get("__type") == code, body
    return body.get("Message") or ""


def test_an_unsigned_target_cannot_replay_a_describe_as_a_delete(secured):
    admin = secured.admin()
    admin.create_secret(Name="sig6/replay", SecretString="keep-me")
    data = json.dumps({"SecretId": "sig6/replay"}).encode()
    # Signed over host and x-amz-date only: neither the target nor the content type is covered.
    headers = sign_only(secured.url, secured.admin_key, {}, data)
    assert "SignedHeaders=host;x-amz-date," in headers["Authorization"]
    headers["Content-Type"] = JSON_CONTENT_TYPE
    headers["X-Amz-Target"] = "secretsmanager.DeleteSecret"
    status, body = send_raw(secured.url, list(headers.items()), data)
    message = refused(status, body, "IncompleteSignatureException")
    assert "'X-Amz-Target' must be a 'SignedHeader'" in message, message
    described = admin.describe_secret(SecretId="sig6/replay")
    assert "DeletedDate" not in described
    assert admin.get_secret_value(SecretId="sig6/replay")["SecretString"] == "keep-me"


def test_an_unsigned_content_type_is_refused(secured):
    data = b"{}"
    headers = sign_only(secured.url, secured.admin_key, {"X-Amz-Target": "secretsmanager.ListSecrets"}, data)
    assert "content-type" not in headers["Authorization"].lower()
    headers["Content-Type"] = JSON_CONTENT_TYPE
    status, body = send_raw(secured.url, list(headers.items()), data)
    message = refused(status, body, "IncompleteSignatureException")
    assert "'Content-Type' must be a 'SignedHeader'" in message, message


def test_a_signed_target_and_content_type_are_accepted(secured):
    data = b"{}"
    headers = sign_only(secured.url, secured.admin_key,
                        {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": "secretsmanager.ListSecrets"}, data)
    status, body = send_raw(secured.url, list(headers.items()), data)
    assert status == 200, body


def test_repeated_target_and_date_headers_are_refused(secured):
    data = b"{}"
    headers = sign_only(secured.url, secured.admin_key,
                        {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": "secretsmanager.ListSecrets"}, data)
    for name, extra in [("X-Amz-Target", "secretsmanager.DeleteSecret"), ("X-Amz-Date", headers["X-Amz-Date"])]:
        lines = list(headers.items()) + [(name, extra)]
        status, body = send_raw(secured.url, lines, data)
        message = refused(status, body, "IncompleteSignatureException")
        assert f"more than one '{name}' header" in message, message


def test_two_signature_parameters_are_refused(secured):
    data = b"{}"
    headers = sign_only(secured.url, secured.admin_key,
                        {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": "secretsmanager.ListSecrets"}, data)
    good = headers["Authorization"]
    for part in ("Signature", "Credential", "SignedHeaders"):
        value = good.split(f"{part}=")[1].split(",")[0]
        doubled = dict(headers)
        doubled["Authorization"] = f"{good}, {part}={value}"
        status, body = send_raw(secured.url, list(doubled.items()), data)
        message = refused(status, body, "IncompleteSignatureException")
        assert f"duplicate '{part}' parameter" in message, message


def test_a_non_ascii_amz_date_is_an_incomplete_signature_not_a_panic(secured):
    data = b"{}"
    headers = sign_only(secured.url, secured.admin_key,
                        {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": "secretsmanager.ListSecrets"}, data)
    lines: list[tuple[str, str | bytes]] = [(n, v) for n, v in headers.items() if n != "X-Amz-Date"]
    # 16 bytes, 'T' at byte 8 and 'Z' at byte 15, but an 'é' straddling bytes 5 and 6.
    lines.append(("X-Amz-Date", "20261é5T000000Z".encode()))
    status, body = send_raw(secured.url, lines, data)
    message = refused(status, body, "IncompleteSignatureException")
    assert message.startswith("Date must be in ISO-8601 'basic format'."), message
    assert "panicked" not in secured.server.output()
    # The server still answers.
    secured.admin().list_secrets()


def test_a_huge_authorization_header_is_not_echoed_whole(secured):
    data = b"{}"
    huge = "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Junk=" + "A" * 300_000
    lines = [("Host", urllib.parse.urlparse(secured.url).netloc), ("X-Amz-Date", "20260101T000000Z"),
             ("Content-Type", JSON_CONTENT_TYPE), ("X-Amz-Target", "secretsmanager.ListSecrets"),
             ("Authorization", huge)]
    status, body = send_raw(secured.url, lines, data)
    message = refused(status, body, "IncompleteSignatureException")
    assert message.startswith("Authorization header requires 'Credential' parameter."), message
    assert len(message) < 1024, len(message)
    assert message.endswith("...")


def test_boto3_and_sts_query_requests_still_authenticate(secured):
    assert secured.client(secured.admin_key, service="sts").get_caller_identity()["Account"] == "000000000000"
    assert raw_call(secured.url, secured.admin_key, "ListSecrets", {}).status_code == 200
    # A query-protocol STS call carries no X-Amz-Target.
    form = b"Action=GetCallerIdentity&Version=2011-06-15"
    req = AWSRequest(method="POST", url=secured.url.rstrip("/") + "/", data=form,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(*secured.admin_key), "sts", REGION).add_auth(req)
    status, _ = send_raw_text(secured.url, list(dict(req.prepare().headers).items()), form)
    assert status == 200


def send_raw_text(url: str, headers: list[tuple[str, str]], data: bytes) -> tuple[int, str]:
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
    if not any(n.lower() == "host" for n, _ in headers):
        conn.putheader("Host", parsed.netloc)
    for name, value in headers:
        if name.lower() != "content-length":
            conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    resp = conn.getresponse()
    return resp.status, resp.read().decode()

