"""Rotation with Coffer's built-in random-password rotator (no Lambda needed), through
boto3 and the AWS CLI: the same four steps and labels as with a Lambda."""

from __future__ import annotations

import json
import time

from conftest import expect_error, token
from test_cli import aws_json

BUILTIN = "arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-random-password"


def wait_current(sm, name, version_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stages = sm.describe_secret(SecretId=name).get("VersionIdsToStages", {})
        if "AWSCURRENT" in stages.get(version_id, []):
            return stages
        time.sleep(0.05)
    raise AssertionError(f"{version_id} never became AWSCURRENT: {stages}")


def test_builtin_rotator_changes_only_the_password_of_a_json_secret(sm, name):
    created = sm.create_secret(Name=name, SecretString=json.dumps({"username": "app", "password": "old", "host": "db"}))
    resp = sm.rotate_secret(SecretId=name, RotationLambdaARN=BUILTIN, RotationRules={"AutomaticallyAfterDays": 30})
    stages = wait_current(sm, name, resp["VersionId"])
    assert stages[created["VersionId"]] == ["AWSPREVIOUS"]
    value = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    assert value["username"] == "app" and value["host"] == "db"
    assert value["password"] != "old" and len(value["password"]) == 32
    # The rotation records its date when it ends, in a write after finishSecret's.
    deadline = time.monotonic() + 30
    while "LastRotatedDate" not in sm.describe_secret(SecretId=name) and time.monotonic() < deadline:
        time.sleep(0.05)
    desc = sm.describe_secret(SecretId=name)
    assert desc["RotationEnabled"] is True and desc["RotationLambdaARN"] == BUILTIN
    assert "LastRotatedDate" in desc and "NextRotationDate" in desc


def test_builtin_rotator_replaces_a_plain_value_and_rotates_again(sm, name):
    sm.create_secret(Name=name, SecretString="plain")
    first = sm.rotate_secret(SecretId=name, RotationLambdaARN=BUILTIN)
    wait_current(sm, name, first["VersionId"])
    one = sm.get_secret_value(SecretId=name)["SecretString"]
    assert one != "plain"
    second = sm.rotate_secret(SecretId=name)
    wait_current(sm, name, second["VersionId"])
    assert sm.get_secret_value(SecretId=name)["SecretString"] not in ("plain", one)


def test_a_version_pending_from_elsewhere_blocks_rotation(sm, name):
    """AWSPENDING on a version other than AWSCURRENT's: "A previous rotation isn't complete"."""
    sm.create_secret(Name=name, SecretString="v1")
    put = sm.put_secret_value(SecretId=name, SecretString="pending", ClientRequestToken=token(), VersionStages=["AWSPENDING"])
    assert put["VersionStages"] == ["AWSPENDING"]
    expect_error(
        sm.rotate_secret, "InvalidRequestException",
        "A previous rotation isn't complete. That rotation will be reattempted.",
        RotationLambdaARN=BUILTIN, SecretId=name,
    )


def test_cli_rotate_and_cancel_with_the_builtin_rotator(url, name):
    created = aws_json(url, "create-secret", "--name", name, "--secret-string", "cli-value")
    rotated = aws_json(
        url, "rotate-secret", "--secret-id", name, "--rotation-lambda-arn", BUILTIN,
        "--rotation-rules", '{"ScheduleExpression": "rate(7 days)", "Duration": "3h"}',
    )
    assert set(rotated) == {"ARN", "Name", "VersionId"} and rotated["ARN"] == created["ARN"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        desc = aws_json(url, "describe-secret", "--secret-id", name)
        if "AWSCURRENT" in desc["VersionIdsToStages"].get(rotated["VersionId"], []):
            break
        time.sleep(0.1)
    assert desc["RotationRules"] == {"AutomaticallyAfterDays": 7, "Duration": "3h", "ScheduleExpression": "rate(7 days)"}
    cancelled = aws_json(url, "cancel-rotate-secret", "--secret-id", name)
    assert set(cancelled) == {"ARN", "Name"}
    assert aws_json(url, "describe-secret", "--secret-id", name)["RotationEnabled"] is False
