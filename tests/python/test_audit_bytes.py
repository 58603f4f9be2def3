"""The compact stored form of audit events (issue 20): the store holds each event in a
fraction of its JSON bytes, LookupEvents answers the same bytes whether the trail was
stored compact or in the JSON form of earlier builds, and such a trail still verifies,
alone or continued by compact events."""
from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import boto3
import botocore.exceptions
from botocore.config import Config

from audit_records import as_json, decode
from conftest import ACCESS_KEY, REGION, SECRET_KEY, coffer_bin, make_client, start_server


def trail_client(url: str):
    return boto3.client("cloudtrail", endpoint_url=url, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=Config(retries={"max_attempts": 1}))


def every_event(url: str) -> list[dict]:
    """Every page of LookupEvents, as boto3 parsed it (CloudTrailEvent is the event's JSON text)."""
    trail, pages, token = trail_client(url), [], None
    while True:
        page = trail.lookup_events(MaxResults=7, **({"NextToken": token} if token else {}))
        pages.extend(page["Events"])
        token = page.get("NextToken")
        if not token:
            return pages


def verify(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([coffer_bin(), "audit", "verify", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60)


def serve(data_dir: Path):
    return start_server(["serve", "--dev", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"])


def calls(url: str, tag: str) -> None:
    client = make_client(url)
    for i in range(3):
        client.create_secret(Name=f"bytes-{tag}-{i}", SecretString="v",
                             Description="quote \" back \\ é \u0001 </> \U0001F600")
        client.get_secret_value(SecretId=f"bytes-{tag}-{i}")
        client.put_secret_value(SecretId=f"bytes-{tag}-{i}", SecretString="w")
    try:
        client.get_secret_value(SecretId=f"bytes-{tag}-missing")
    except botocore.exceptions.ClientError:
        pass


def rows(db: Path) -> list[tuple[str, bytes]]:
    conn = sqlite3.connect(db)
    out = conn.execute("SELECT key, value FROM records WHERE kind = 'audit.event' ORDER BY key").fetchall()
    conn.close()
    return out


def test_old_json_records_answer_the_same_lookup_and_verify_with_compact_ones_after(tmp_path):
    server = serve(tmp_path)
    try:
        calls(server.url, "a")
        before = every_event(server.url)
    finally:
        server.stop()
    db = tmp_path / "coffer.db"
    stored = rows(db)
    assert len(stored) >= 10
    # Stored compact, at under 40% of the JSON form.
    assert all(value[0] == 0xC1 for _, value in stored)
    compact = sum(len(v) for _, v in stored)
    json_form = sum(len(as_json(v)) for _, v in stored)
    assert compact * 5 < json_form * 2, (compact, json_form)
    assert verify(tmp_path).returncode == 0

    # Rewrite the trail as earlier builds stored it: the JSON form.
    conn = sqlite3.connect(db)
    with conn:
        for key, value in stored:
            conn.execute("UPDATE records SET value = ? WHERE kind = 'audit.event' AND key = ?",
                         (as_json(value), key))
    conn.close()
    assert all(value[:1] == b"{" for _, value in rows(db))
    ok = verify(tmp_path)
    assert ok.returncode == 0, ok.stderr

    server = serve(tmp_path)
    try:
        # The lookup itself is recorded: compare what was there before it.
        after = every_event(server.url)
        old = [e for e in after if e["EventId"] in {b["EventId"] for b in before}]
        assert [e["CloudTrailEvent"] for e in old] == [e["CloudTrailEvent"] for e in before]
        assert old == before
        calls(server.url, "b")
    finally:
        server.stop()
    mixed = rows(db)
    assert {value[:1] for _, value in mixed} == {b"{", b"\xc1"}
    ok = verify(tmp_path)
    assert ok.returncode == 0, ok.stderr
    # Every event reads back, in both forms, with the fields CloudTrail's format has.
    for _, value in mixed:
        event = decode(value)["event"]
        for field in ("eventVersion", "userIdentity", "eventTime", "eventSource", "eventName",
                      "awsRegion", "sourceIPAddress", "userAgent", "requestParameters",
                      "responseElements", "eventID", "readOnly", "eventType",
                      "recipientAccountId", "eventCategory", "managementEvent"):
            assert field in event, (field, event)
