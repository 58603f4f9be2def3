"""The audit trail: one CloudTrail event per call, read back with boto3 and ``aws cloudtrail
lookup-events``; no secret value anywhere on disk; ``coffer audit verify`` names tampering;
an unwritable audit log fails calls closed.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

from audit_records import as_json, decode
from conftest import REGION, coffer_bin, make_client, start_server
from test_auth import NO_RETRY, PROFILE, Secured, expect


def aws_cli(*args: str, credentials_file: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_DEFAULT_REGION": REGION,
    })
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(k, None)
    done = subprocess.run(
        [str(Path(os.sys.executable).parent / "aws"), *args, "--profile", PROFILE, "--output", "json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def verify(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([coffer_bin(), "audit", "verify", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60)


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits.extend(f"{path}: {n!r}" for n in needles if n in data)
    return hits


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("audited")
    log = tmp_path_factory.mktemp("auditlog") / "events.jsonl"
    srv = Secured.__new__(Secured)
    srv.data_dir = data_dir
    srv.server = start_server(["serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
                               "--audit-log", str(log)])
    srv.url = srv.server.url
    srv.credentials_file = data_dir / "admin-credentials"
    import configparser
    parsed = configparser.ConfigParser()
    parsed.read(srv.credentials_file)
    srv.admin_key = (parsed[PROFILE]["aws_access_key_id"], parsed[PROFILE]["aws_secret_access_key"])
    srv.log = log
    yield srv
    srv.server.stop()


def test_a_scripted_session_is_in_the_trail_with_identities_and_errors_and_no_secret_values(audited):
    admin = audited.admin()
    first, second = f"first-{secrets.token_hex(12)}", f"second-{secrets.token_hex(12)}"
    arn = admin.create_secret(Name="audit/db", SecretString=first)["ARN"]
    admin.update_secret(SecretId="audit/db", SecretString=second)
    assert admin.get_secret_value(SecretId="audit/db")["SecretString"] == second
    reader_key = audited.user("reader", {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
        "Resource": "arn:aws:secretsmanager:*:*:secret:other-*"}]})
    reader = audited.client(reader_key)
    expect(reader.get_secret_value, "AccessDeniedException", SecretId="audit/db")
    admin.delete_secret(SecretId="audit/db", ForceDeleteWithoutRecovery=True)

    found = aws_cli("cloudtrail", "lookup-events", "--endpoint-url", audited.url,
                    "--lookup-attributes", "AttributeKey=ResourceName,AttributeValue=audit/db",
                    credentials_file=audited.credentials_file)["Events"]
    names = [e["EventName"] for e in found]
    assert names == ["DeleteSecret", "GetSecretValue", "GetSecretValue", "UpdateSecret", "CreateSecret"]
    records = [json.loads(e["CloudTrailEvent"]) for e in found]
    deleted, denied, read, updated, created = records
    for r in (deleted, read, updated, created):
        assert r["userIdentity"]["type"] == "IAMUser"
        assert r["userIdentity"]["arn"] == "arn:aws:iam::000000000000:user/admin"
        assert r["userIdentity"]["accessKeyId"] == audited.admin_key[0]
        assert r["userIdentity"]["accountId"] == "000000000000"
        assert "errorCode" not in r
    assert denied["userIdentity"]["userName"] == "reader"
    assert denied["userIdentity"]["accessKeyId"] == reader_key[0]
    assert denied["errorCode"] == "AccessDenied"
    assert "not authorized to perform: secretsmanager:GetSecretValue" in denied["errorMessage"]
    assert found[1]["Username"] == "reader" and found[1]["AccessKeyId"] == reader_key[0]
    assert created["requestParameters"]["name"] == "audit/db"
    assert "secretString" not in created["requestParameters"]
    assert created["responseElements"]["arn"] == arn
    assert created["readOnly"] is False and read["readOnly"] is True
    for r in records:
        assert r["eventSource"] == "secretsmanager.amazonaws.com"
        assert r["awsRegion"] == REGION and r["recipientAccountId"] == "000000000000"
        assert r["eventType"] == "AwsApiCall" and r["managementEvent"] is True
        assert r["eventVersion"] and r["eventTime"].endswith("Z") and r["requestID"] and r["eventID"]
        assert r["sourceIPAddress"] == "127.0.0.1" and r["userAgent"]

    # Other lookup attributes, through boto3.
    trail = audited.client(audited.admin_key, service="cloudtrail")
    by_user = trail.lookup_events(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "reader"}])
    assert [e["EventName"] for e in by_user["Events"]] == ["GetSecretValue"]
    by_id = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventId", "AttributeValue": created["eventID"]}])
    assert [e["EventName"] for e in by_id["Events"]] == ["CreateSecret"]
    writes = trail.lookup_events(LookupAttributes=[{"AttributeKey": "ReadOnly", "AttributeValue": "false"}])
    assert {"CreateSecret", "UpdateSecret", "DeleteSecret"} <= {e["EventName"] for e in writes["Events"]}
    paged = trail.lookup_events(MaxResults=2)
    assert len(paged["Events"]) == 2 and paged["NextToken"]
    rest = trail.lookup_events(MaxResults=2, NextToken=paged["NextToken"])
    assert {e["EventId"] for e in rest["Events"]}.isdisjoint({e["EventId"] for e in paged["Events"]})

    # Reading the trail needs its own permission.
    expect(audited.client(reader_key, service="cloudtrail").lookup_events, "AccessDeniedException")

    # The values are nowhere: not in the data directory (database, WAL) nor in the event log.
    needles = [first.encode(), second.encode()]
    assert files_containing(audited.data_dir, needles) == []
    assert files_containing(audited.log.parent, needles) == []
    lines = audited.log.read_text().splitlines()
    assert any(json.loads(l)["eventID"] == created["eventID"] for l in lines)


def tamper(db: Path, sql: str, *params) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()


def test_verify_names_an_edited_a_removed_and_a_swapped_event(tmp_path):
    server = start_server(["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"])
    client = make_client(server.url)
    for i in range(4):
        client.create_secret(Name=f"chain-{i}", SecretString="v")
    server.stop()
    ok = verify(tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout

    db = tmp_path / "coffer.db"
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT key, value FROM records WHERE kind = 'audit.event' ORDER BY key").fetchall()
    conn.close()
    # Newest first: rows[1] is the third event of the chain.
    key, value = rows[1]
    event_id = decode(value)["event"]["eventID"]

    # Edited in the JSON form, which readers still accept.
    edited = as_json(value).replace(b"chain-2", b"chain-X")
    assert edited != value
    tamper(db, "UPDATE records SET value = ? WHERE kind = 'audit.event' AND key = ?", edited, key)
    bad = verify(tmp_path)
    assert bad.returncode != 0 and event_id in bad.stderr and "changed" in bad.stderr
    tamper(db, "UPDATE records SET value = ? WHERE kind = 'audit.event' AND key = ?", value, key)
    assert verify(tmp_path).returncode == 0

    tamper(db, "DELETE FROM records WHERE kind = 'audit.event' AND key = ?", key)
    bad = verify(tmp_path)
    newer_id = decode(rows[0][1])["event"]["eventID"]
    assert bad.returncode != 0 and "removed" in bad.stderr and newer_id in bad.stderr
    tamper(db, "INSERT INTO records (kind, key, value) VALUES ('audit.event', ?, ?)", key, value)
    assert verify(tmp_path).returncode == 0

    (k1, v1), (k2, v2) = rows[1], rows[2]
    tamper(db, "UPDATE records SET value = ? WHERE kind = 'audit.event' AND key = ?", v2, k1)
    tamper(db, "UPDATE records SET value = ? WHERE kind = 'audit.event' AND key = ?", v1, k2)
    bad = verify(tmp_path)
    assert bad.returncode != 0 and "reordered" in bad.stderr
    assert event_id in bad.stderr


def test_an_unwritable_audit_log_fails_calls_closed_and_changes_nothing(tmp_path):
    server = start_server(["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                           "--audit-log", "/dev/full"])
    client = make_client(server.url)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client.create_secret(Name="never", SecretString="v")
    assert err.value.response["Error"]["Code"] == "InternalServiceError"
    server.stop()

    server = start_server(["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"])
    client = make_client(server.url)
    assert client.list_secrets()["SecretList"] == []
    server.stop()

    server = start_server(["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                           "--audit-log", "/dev/full", "--audit-fail-open"])
    client = make_client(server.url)
    client.create_secret(Name="laptop", SecretString="v")
    assert [s["Name"] for s in client.list_secrets()["SecretList"]] == ["laptop"]
    server.stop()


def test_sts_calls_are_in_the_trail_too(audited):
    who = aws_cli("sts", "get-caller-identity", "--endpoint-url", audited.url,
                  credentials_file=audited.credentials_file)
    events = aws_cli("cloudtrail", "lookup-events", "--endpoint-url", audited.url,
                     "--lookup-attributes", "AttributeKey=EventName,AttributeValue=GetCallerIdentity",
                     credentials_file=audited.credentials_file)["Events"]
    assert events, "GetCallerIdentity was recorded"
    event = json.loads(events[0]["CloudTrailEvent"])
    assert event["eventSource"] == "sts.amazonaws.com"
    assert event["eventName"] == "GetCallerIdentity"
    assert event["userIdentity"]["arn"] == who["Arn"]
    assert event["readOnly"] is True


def test_an_in_memory_trail_keeps_only_the_newest_events_it_is_told_to():
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0", "--audit-retain-events", "5"])
    try:
        sm = make_client(srv.url)
        for i in range(12):
            sm.create_secret(Name=f"kept-{i:02}", SecretString="v")
        trail = boto3.client("cloudtrail", endpoint_url=srv.url, region_name=REGION,
                             aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x")
        events = trail.lookup_events(MaxResults=50)["Events"]
        assert len(events) == 5, [e["EventName"] for e in events]
        seen = json.dumps(events, default=str)
        # The newest events are the ones kept.
        assert "kept-11" in seen and "kept-00" not in seen
    finally:
        srv.stop()
