"""What review 16 found and left (docs/design/review16.md, "Follow-up (leftover16)"): a
body declared past the limit answered before it is read, and OIDC providers' tags given to
authorization as the other IAM entities' are.

Each test drives the real binary: raw sockets for what a client library would not send,
boto3 against an enforcing server for authorization.
"""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from conftest import start_server
from iam_api_support import Server
from test_sec_review15 import client, error, user

LIMIT = 1024 * 1024
TOO_LARGE = f"The request body exceeds the limit of {LIMIT} bytes."
AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64)


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    # A short body timeout: a server that waits for a body the client never sends answers
    # RequestTimeout after it, so the test fails on the answer rather than hanging.
    server = start_server(["serve", "--dev", "--listen", "127.0.0.1:0", "--body-timeout", "2"])
    yield server
    server.stop()


# What each protocol sends: the service signed for, its headers, and how its 413 reads.
PROTOCOLS = {
    "secretsmanager": ("secretsmanager", {"X-Amz-Target": "secretsmanager.GetSecretValue",
                                          "Content-Type": "application/x-amz-json-1.1"}),
    "kms": ("kms", {"X-Amz-Target": "TrentService.Encrypt",
                    "Content-Type": "application/x-amz-json-1.1"}),
    "cloudtrail": ("cloudtrail", {
        "X-Amz-Target": "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents",
        "Content-Type": "application/x-amz-json-1.1"}),
    "sts": ("sts", {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}),
}


def head_only(server, path: str, protocol: str, length: int, expect: bool) -> bytes:
    """Sends a request's headers declaring `length` bytes of body and none of it; returns
    the first response head the server sends (an interim `100 Continue` included)."""
    host, port = server.url.removeprefix("http://").split(":")
    service, headers = PROTOCOLS[protocol]
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Authorization: {AUTH.format(service=service)}",
             *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {length}"]
    if expect:
        lines.append("Expect: 100-continue")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                head, _, rest = answer.partition(b"\r\n\r\n")
                if head.startswith(b"HTTP/1.1 100"):
                    return answer
                declared = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
                            if ln.lower().startswith(b"content-length:")]
                if declared and len(rest) >= int(declared[0]):
                    return answer
        return answer


@pytest.mark.parametrize("expect", [True, False], ids=["expect-100-continue", "no-expect"])
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("path", ["/", "/x"], ids=["post-root-shortcut", "router"])
def test_a_body_declared_past_the_limit_is_refused_before_it_is_read(dev, path, protocol, expect):
    """Review 16 left: a request declaring a `Content-Length` past the 1 MiB body limit got
    `100 Continue` (with `Expect: 100-continue`) and its body was read up to the limit
    before the 413; without `Expect`, the server waited for a body the client had not sent
    (here until the body timeout). The 413 is now answered from the headers, on `POST /`
    (answered without the router) and through the router alike, as the general path
    answers a body found too large while read."""
    answer = head_only(dev, path, protocol, LIMIT + 1, expect)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    if protocol == "sts":
        text = body.decode()
        assert "<Code>RequestEntityTooLarge" in text and f"<Message>{TOO_LARGE}</Message>" in text, text
    else:
        error = json.loads(body)
        message = error.get("message" if protocol == "kms" else "Message")
        assert (error["__type"], message) == ("RequestEntityTooLargeException", TOO_LARGE), error


def test_a_body_declared_within_the_limit_is_still_read(dev):
    """The limit itself is a body that is read: the 100 Continue comes, as before."""
    answer = head_only(dev, "/", "secretsmanager", LIMIT, True)
    assert answer.startswith(b"HTTP/1.1 100"), answer[:300]


# ------------------------------------------------ OIDC providers' tags as resource tags

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("leftover16"), extra=["--quota-scale", "100"])
    yield server
    server.server.stop()


def provider(srv, tags: list[dict]) -> str:
    url = f"https://oidc.lo16-{uuid.uuid4().hex[:8]}.example.test/id"
    return srv.client("iam").create_open_id_connect_provider(
        Url=url, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["c" * 40],
        Tags=tags)["OpenIDConnectProviderArn"]


@pytest.mark.parametrize("key", ["aws:ResourceTag/protected", "iam:ResourceTag/protected"])
def test_a_deny_on_a_resource_tag_protects_an_oidc_provider(srv, key):
    """Review 16's finding 04 gave IAM's calls the tags of the user, role or managed policy
    they act on (`aws:ResourceTag/<key>`, `iam:ResourceTag/<key>`) and left OIDC
    providers': a user allowed IAM but denied what is tagged `protected=true` deleted the
    protected provider (and with it every role's federation through it). Their tags are
    given now, as IAM gives a provider's."""
    protected = provider(srv, [{"Key": "protected", "Value": "true"}])
    other = provider(srv, [{"Key": "protected", "Value": "false"}])
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "iam:*", "Resource": "*",
         "Condition": {"StringEquals": {key: "true"}}}]})
    _, k = user(srv, policy, prefix="lo16")
    iam = client(srv, "iam", k)
    for call in (lambda: iam.get_open_id_connect_provider(OpenIDConnectProviderArn=protected),
                 lambda: iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=protected)):
        code, message = error(call)
        assert code == "AccessDenied", message
    assert srv.client("iam").get_open_id_connect_provider(
        OpenIDConnectProviderArn=protected)["Tags"] == [{"Key": "protected", "Value": "true"}]
    # A provider without the tag's value stays open to the same user.
    iam.get_open_id_connect_provider(OpenIDConnectProviderArn=other)
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=other)
