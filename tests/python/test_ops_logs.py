"""Logs: ``--log-format json`` writes one JSON object per stderr line, even at trace level,
and no line ever holds a secret value; one line per request names the request id, the
principal, the operation, the status and the latency; text written to a pipe carries no
ANSI colour codes."""

from __future__ import annotations

import configparser
import json
import time
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, make_client, start_server, unique_name

PROFILE = "coffer"


def lines_of(srv, wait_for: str) -> list[str]:
    srv.output_once_it_shows(wait_for)
    srv.stop()
    return list(srv.lines)


def exercise(sm, value: str) -> str:
    name = unique_name("logs")
    sm.create_secret(Name=name, SecretString=value)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == value
    sm.put_secret_value(SecretId=name, SecretString=value + "-2")
    sm.batch_get_secret_value(SecretIdList=[name])
    try:
        sm.create_secret(Name=name, SecretString=value)
    except ClientError:
        pass
    return name


def test_json_logs_at_trace_are_json_and_hold_no_value(tmp_path):
    value = "log-marker-" + uuid.uuid4().hex
    srv = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                        "--log-format", "json"], env={"COFFER_LOG": "trace"})
    exercise(make_client(srv.url), value)
    # The listening line and the data line are on stdout; everything else is stderr.
    lines = [line for line in lines_of(srv, '"operation":"BatchGetSecretValue"')
             if not line.startswith(("listening on ", "data in "))]
    assert lines
    requests_seen = []
    for line in lines:
        assert value not in line
        event = json.loads(line)
        assert "level" in event and "timestamp" in event
        if event.get("target") == "coffer::request":
            requests_seen.append(event)
    ops = [e["operation"] for e in requests_seen]
    assert ops == ["CreateSecret", "GetSecretValue", "PutSecretValue", "BatchGetSecretValue", "CreateSecret"]
    for e in requests_seen:
        assert uuid.UUID(e["request_id"])
        assert e["service"] == "secretsmanager"
        assert isinstance(e["micros"], int)
    assert [e["status"] for e in requests_seen] == [200, 200, 200, 200, 400]
    assert requests_seen[-1]["error"] == "ResourceExistsException"


def test_request_lines_name_the_principal_without_dev(tmp_path):
    data = tmp_path / "data"
    value = "log-marker-" + uuid.uuid4().hex
    srv = start_server(["serve", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--log-format", "json"],
                       env={"COFFER_LOG": "info"})
    parsed = configparser.ConfigParser()
    parsed.read(data / "admin-credentials")
    key, secret = parsed[PROFILE]["aws_access_key_id"], parsed[PROFILE]["aws_secret_access_key"]
    sm = boto3.client("secretsmanager", endpoint_url=srv.url, region_name=REGION,
                      aws_access_key_id=key, aws_secret_access_key=secret,
                      config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    name = unique_name("who")
    sm.create_secret(Name=name, SecretString=value)
    forged = boto3.client("secretsmanager", endpoint_url=srv.url, region_name=REGION,
                          aws_access_key_id=key, aws_secret_access_key="not-the-secret",
                          config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    try:
        forged.get_secret_value(SecretId=name)
    except ClientError:
        pass
    lines = lines_of(srv, '"status":403')
    events = [json.loads(line) for line in lines if line.startswith("{")]
    requests_seen = [e for e in events if e.get("target") == "coffer::request"]
    assert all(value not in line and name not in line for line in lines)
    created, forged_line = requests_seen[0], requests_seen[-1]
    assert created["operation"] == "CreateSecret" and created["status"] == 200
    assert created["principal"].startswith("arn:aws:iam::")
    assert ":user/" in created["principal"]
    assert created["access_key_id"] == key
    # A failed signature proves nothing about who sent it: no principal on that line.
    assert forged_line["operation"] == "GetSecretValue"
    assert forged_line["principal"] == "-"


def test_text_logs_to_a_pipe_have_no_colour_codes(tmp_path):
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0"], env={"COFFER_LOG": "debug"})
    make_client(srv.url).list_secrets()
    time.sleep(0.2)
    lines = lines_of(srv, "request")
    assert any("coffer::request" in line for line in lines)
    assert all("\x1b" not in line for line in lines)
