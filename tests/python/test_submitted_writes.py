"""PutSecretValue on SQLite hands its write to the store's writer thread and awaits it without
holding a thread (`coffer-server/src/submitted.rs`), as do UpdateSecret and CreateSecret: a client
that goes away mid-put leaves the whole put (its version, its trail event, its audit-log line) or
none of it."""

import json
import socket
import struct
import time
import uuid
from urllib.parse import urlparse

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ACCESS_KEY, REGION, SECRET_KEY, make_client, start_server


def put_and_go_away(url: str, op: str, secret_id: str, value: str, token: str) -> None:
    """Sends a signed `op` (PutSecretValue, UpdateSecret) of a new value and resets the
    connection without reading the answer."""
    body = json.dumps({"SecretId": secret_id, "SecretString": value,
                       "ClientRequestToken": token}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1",
               "X-Amz-Target": f"secretsmanager.{op}"}
    req = AWSRequest(method="POST", url=url.rstrip("/") + "/", data=body, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "secretsmanager", REGION).add_auth(req)
    prepared = req.prepare()
    parsed = urlparse(url)
    head = f"POST / HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in prepared.headers.items()
                    if k.lower() not in ("host", "content-length"))
    with socket.create_connection((parsed.hostname, parsed.port)) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        # Closed with a reset, at once: the server sees the client gone mid-call.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("op", ["PutSecretValue", "UpdateSecret"])
def test_a_put_whose_client_went_away_is_whole_or_absent(tmp_path, op):
    log = tmp_path / "audit.log"
    server = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "data"),
                           "--listen", "127.0.0.1:0", "--audit-log", str(log),
                           "--quota-scale", "100"])
    try:
        client = make_client(server.url)
        name = f"gone-{uuid.uuid4().hex[:8]}"
        client.create_secret(Name=name, SecretString="v0")
        tokens = []
        # Most calls are dropped before they begin; rounds until some got to their write.
        for _ in range(10):
            round_tokens = [str(uuid.uuid4()) for _ in range(60)]
            for token in round_tokens:
                put_and_go_away(server.url, op, name, f"v{len(tokens)}", token)
                tokens.append(token)
            time.sleep(0.5)
            if len(client.list_secret_version_ids(SecretId=name, IncludeDeprecated=True,
                                                  MaxResults=100)["Versions"]) > 1:
                break

        def state():
            versions = {v["VersionId"] for v in client.list_secret_version_ids(
                SecretId=name, IncludeDeprecated=True, MaxResults=100)["Versions"]}
            logged = set()
            for line in log.read_text().splitlines():
                event = json.loads(line)
                if event.get("eventName") == op and "errorCode" not in event:
                    logged.add(event["requestParameters"]["clientRequestToken"])
            return versions, logged

        # Every put the server began has ended once two looks a while apart agree.
        before = None
        for _ in range(50):
            now = state()
            if now == before:
                break
            before = now
            time.sleep(0.2)
        versions, logged = before
        put = {t for t in tokens if t in versions}
        assert put, "no put whose client went away got to its write"
        assert put == {t for t in tokens if t in logged}, (
            f"versions without their audit-log line: {sorted(put - logged)}; "
            f"lines without their version: {sorted((logged & set(tokens)) - put)}")
        # The trail has each put's event, committed with its version.
        trail = set()
        cloudtrail = boto3.client("cloudtrail", endpoint_url=server.url, region_name=REGION,
                                  aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        paginator = cloudtrail.get_paginator("lookup_events")
        for page in paginator.paginate(LookupAttributes=[
                {"AttributeKey": "EventName", "AttributeValue": op}]):
            for event in page["Events"]:
                record = json.loads(event["CloudTrailEvent"])
                if "errorCode" not in record:
                    trail.add(record["requestParameters"]["clientRequestToken"])
        assert put == {t for t in tokens if t in trail}
        # The server answers as before.
        client.put_secret_value(SecretId=name, SecretString="after")
        assert client.get_secret_value(SecretId=name)["SecretString"] == "after"
    finally:
        server.stop()
