"""The AWS JSON 1.1 wire protocol seen through raw HTTP: headers, error bodies, parsing, check order."""

import base64
import json
import socket
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import (
    ACCESS_KEY,
    JSON_CONTENT_TYPE,
    MSG_INVALID_NAME,
    MSG_NOT_FOUND,
    MSG_TOKEN_REQUIRED,
    REGION,
    SECRET_KEY,
    error_of,
    signed_request,
    token,
    unique_name,
)


def call(url, target, body):
    return signed_request(url, target, body)


def assert_error(resp, code, message=None, status=400):
    assert resp.status_code == status, (resp.status_code, resp.text)
    got_code, got_message = error_of(resp)
    assert got_code == code, resp.text
    if message is not None:
        assert got_message == message
    assert_protocol_headers(resp)


def assert_protocol_headers(resp):
    assert resp.headers.get("Content-Type") == JSON_CONTENT_TYPE, resp.headers
    request_id = resp.headers.get("x-amzn-RequestId")
    assert request_id, resp.headers


def create_raw(url, name, value="v"):
    resp = call(url, "CreateSecret", {"Name": name, "SecretString": value, "ClientRequestToken": token()})
    assert resp.status_code == 200, resp.text
    return resp.json()


# --- Headers and bodies -----------------------------------------------------------------


def test_success_has_json_content_type_and_request_id(url):
    resp = call(url, "ListSecrets", {})
    assert resp.status_code == 200, resp.text
    assert_protocol_headers(resp)
    assert "SecretList" in resp.json()


def test_request_ids_differ_between_requests(url):
    ids = {call(url, "ListSecrets", {}).headers.get("x-amzn-RequestId") for _ in range(3)}
    assert len(ids) == 3 and None not in ids


def test_not_found_error_body_has_type_and_capital_message(url):
    resp = call(url, "DescribeSecret", {"SecretId": unique_name("raw-missing")})
    assert_error(resp, "ResourceNotFoundException", MSG_NOT_FOUND)
    body = resp.json()
    assert body == {"__type": "ResourceNotFoundException", "Message": MSG_NOT_FOUND}


def test_wire_timestamps_are_epoch_seconds_with_fraction(url):
    name = unique_name("raw-ts")
    create_raw(url, name)
    desc = call(url, "DescribeSecret", {"SecretId": name}).json()
    for key in ("CreatedDate", "LastChangedDate"):
        assert isinstance(desc[key], (int, float)) and not isinstance(desc[key], bool), desc
        assert 1.5e9 < desc[key] < 5e9
    put = call(url, "PutSecretValue", {"SecretId": name, "SecretString": "v2", "ClientRequestToken": token()})
    assert put.status_code == 200
    later = call(url, "DescribeSecret", {"SecretId": name}).json()
    # Two writes well inside one second must still be ordered: whole seconds are not enough.
    assert later["LastChangedDate"] > desc["LastChangedDate"]
    assert later["LastChangedDate"] - desc["LastChangedDate"] < 5


def test_binary_is_base64_on_the_wire(url):
    name = unique_name("raw-bin")
    resp = call(
        url, "CreateSecret", {"Name": name, "SecretBinary": "Zm9vdGVzdA==", "ClientRequestToken": token()}
    )
    assert resp.status_code == 200, resp.text
    got = call(url, "GetSecretValue", {"SecretId": name}).json()
    assert got["SecretBinary"] == "Zm9vdGVzdA=="
    assert base64.b64decode(got["SecretBinary"]) == b"footest"
    assert isinstance(got["CreatedDate"], (int, float))
    assert "SecretString" not in got


def test_create_response_is_exactly_arn_name_version(url):
    tok = token()
    name = unique_name("raw-create")
    resp = call(url, "CreateSecret", {"Name": name, "SecretString": "v", "ClientRequestToken": tok})
    assert resp.json() == {"ARN": resp.json()["ARN"], "Name": name, "VersionId": tok}


# --- Protocol errors ----------------------------------------------------------------------


def test_unknown_operation(url):
    assert_error(call(url, "NoSuchOperation", {}), "UnknownOperationException")


@pytest.mark.parametrize("body", ['{"SecretId":', "not json at all", '{"SecretId": "a",}', "[1, 2"])
def test_malformed_json_is_serialization_exception(url, body):
    assert_error(call(url, "DescribeSecret", body), "SerializationException")


@pytest.mark.parametrize(
    "target, body",
    [
        ("DescribeSecret", {"SecretId": 123}),
        ("DescribeSecret", {"SecretId": ["a"]}),
        ("ListSecrets", {"MaxResults": "ten"}),
        ("DeleteSecret", {"SecretId": "x", "ForceDeleteWithoutRecovery": "yes"}),
        ("CreateSecret", {"Name": "x", "SecretString": {"a": 1}, "ClientRequestToken": str(uuid.uuid4())}),
        ("TagResource", {"SecretId": "x", "Tags": {"Key": "a", "Value": "b"}}),
        ("GetRandomPassword", {"PasswordLength": "long"}),
    ],
)
def test_wrong_member_type_is_serialization_exception(url, target, body):
    assert_error(call(url, target, body), "SerializationException")


def test_missing_required_member_is_validation_exception(url):
    assert_error(call(url, "DescribeSecret", {}), "ValidationException")


def test_password_length_zero_is_validation_exception(url):
    assert_error(call(url, "GetRandomPassword", {"PasswordLength": 0}), "ValidationException")


def test_request_without_authorization_is_rejected(url):
    resp = signed_request(url, "ListSecrets", {}, sign=False)
    assert 400 <= resp.status_code < 500, resp.status_code
    code, _ = error_of(resp)
    assert code == "MissingAuthenticationTokenException"


def _raw_post(url: str, target: str, body: bytes) -> tuple[int | None, bytes]:
    """Send a request over a plain socket and read whatever answer arrives.

    The server may answer before reading a huge body and close the connection; a plain socket
    lets the test read that early answer instead of failing on a broken pipe.
    """
    endpoint = url.rstrip("/") + "/"
    req = AWSRequest(
        method="POST",
        url=endpoint,
        data=body,
        headers={"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": f"secretsmanager.{target}"},
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "secretsmanager", REGION).add_auth(req)
    headers = dict(req.prepare().headers)
    parts = urlsplit(endpoint)
    head = f"POST / HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    for k, v in headers.items():
        if k.lower() not in {"host", "content-length"}:
            head += f"{k}: {v}\r\n"
    head += "\r\n"
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    try:
        try:
            sock.sendall(head.encode())
            sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        sock.close()
    status = None
    if data.startswith(b"HTTP/1."):
        status = int(data.split(b" ", 2)[1])
    return status, data


def test_multi_megabyte_body_is_refused_and_server_survives(fresh_server):
    url = fresh_server.url
    big = json.dumps(
        {"Name": "huge", "SecretString": "x" * (6 * 1024 * 1024), "ClientRequestToken": token()}
    ).encode()
    status, data = _raw_post(url, "CreateSecret", big)
    assert status is not None, f"no HTTP answer to a 6 MiB body: {data[:200]!r}"
    assert 400 <= status < 500, data[:500]
    assert fresh_server.proc.poll() is None, "server died"
    # Still serving, and the oversized secret was not stored.
    ok = call(url, "ListSecrets", {})
    assert ok.status_code == 200
    assert [s["Name"] for s in ok.json()["SecretList"]] == []


# --- ClientRequestToken and order of checks ---------------------------------------------


def test_create_without_token_is_invalid_request(url):
    resp = call(url, "CreateSecret", {"Name": unique_name("raw-notok"), "SecretString": "v"})
    assert_error(resp, "InvalidRequestException", MSG_TOKEN_REQUIRED)


@pytest.mark.parametrize("exists", [True, False])
@pytest.mark.parametrize(
    "target, extra",
    [
        ("UpdateSecret", {"SecretString": "new"}),
        ("PutSecretValue", {"SecretString": "new"}),
    ],
)
def test_value_write_without_token_is_invalid_request_even_for_missing_secret(url, target, extra, exists):
    name = unique_name("raw-notok")
    if exists:
        create_raw(url, name)
    resp = call(url, target, {"SecretId": name, **extra})
    assert_error(resp, "InvalidRequestException", MSG_TOKEN_REQUIRED)


@pytest.mark.parametrize("exists", [True, False])
def test_rotate_without_token_is_invalid_parameter(url, exists):
    name = unique_name("raw-notok")
    if exists:
        create_raw(url, name)
    resp = call(url, "RotateSecret", {"SecretId": name})
    assert_error(resp, "InvalidParameterException", MSG_TOKEN_REQUIRED)


def test_token_becomes_version_id_on_raw_create(url):
    tok = token()
    name = unique_name("raw-tok")
    resp = call(url, "CreateSecret", {"Name": name, "SecretString": "v", "ClientRequestToken": tok})
    assert resp.json()["VersionId"] == tok


# --- Invalid names ------------------------------------------------------------------------

BAD_CHARS = [" ", "*", "?", "]", "\\"]


def _bad_name_bodies(bad: str):
    sid = f"bad{bad}name"
    tags = [{"Key": "k", "Value": "v"}]
    return [
        ("CreateSecret", {"Name": sid, "SecretString": "v", "ClientRequestToken": token()}),
        ("DeleteSecret", {"SecretId": sid}),
        ("DescribeSecret", {"SecretId": sid}),
        ("GetSecretValue", {"SecretId": sid}),
        ("ListSecretVersionIds", {"SecretId": sid}),
        ("PutSecretValue", {"SecretId": sid, "SecretString": "v", "ClientRequestToken": token()}),
        ("TagResource", {"SecretId": sid, "Tags": tags}),
        ("UntagResource", {"SecretId": sid, "TagKeys": ["k"]}),
        ("UpdateSecret", {"SecretId": sid, "Description": "d", "ClientRequestToken": token()}),
        ("ValidateResourcePolicy", {"SecretId": sid, "ResourcePolicy": '{"Version":"2012-10-17","Statement":[]}'}),
    ]


@pytest.mark.parametrize("bad", BAD_CHARS, ids=["space", "star", "question", "bracket", "backslash"])
@pytest.mark.parametrize("index", range(10), ids=lambda i: _bad_name_bodies("x")[i][0])
def test_invalid_name_is_validation_exception_before_existence_check(url, bad, index):
    target, body = _bad_name_bodies(bad)[index]
    assert_error(call(url, target, body), "ValidationException", MSG_INVALID_NAME)


def test_name_longer_than_512_is_validation_exception(url):
    body = {"Name": "n" * 513, "SecretString": "v", "ClientRequestToken": token()}
    assert_error(call(url, "CreateSecret", body), "ValidationException")


def test_boto3_sees_validation_message_in_error_block(sm):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as excinfo:
        sm.describe_secret(SecretId="has space")
    err = excinfo.value.response["Error"]
    assert err["Code"] == "ValidationException"
    assert err["Message"] == MSG_INVALID_NAME


def test_requests_survive_keep_alive_reuse(url):
    with requests.Session() as s:
        for _ in range(5):
            req = AWSRequest(
                method="POST",
                url=url + "/",
                data=b"{}",
                headers={"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": "secretsmanager.ListSecrets"},
            )
            SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "secretsmanager", REGION).add_auth(req)
            resp = s.post(url + "/", data=b"{}", headers=dict(req.prepare().headers), timeout=10)
            assert resp.status_code == 200
