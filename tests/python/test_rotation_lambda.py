"""Rotation through a Lambda-compatible endpoint: RotateSecret's AWS semantics (the
AWSPENDING placeholder, RotateImmediately, re-rotation from the stored configuration, the
in-progress refusal), failures in each step and their recovery, a value written during a
pending rotation, CancelRotateSecret, and the rotation members of DescribeSecret."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest
from conftest import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    expect_error,
    make_client,
    msg_no_stage,
    start_server,
    token,
)
from lambda_runner import TemplateRotation

FUNCTION = "arn:aws:lambda:us-east-1:000000000000:function:rotator"
MISSING = "arn:aws:lambda:us-east-1:000000000000:function:missing"
MSG_PREVIOUS = "A previous rotation isn't complete. That rotation will be reattempted."
MSG_CANNOT_INVOKE = (
    "Secrets Manager cannot invoke the specified Lambda function. Ensure that the function "
    "policy grants access to the principal secretsmanager.amazonaws.com."
)
ROTATION_KEYS = {"RotationEnabled", "RotationRules", "RotationLambdaARN", "LastRotatedDate", "NextRotationDate"}


@pytest.fixture(scope="module")
def server(runner):
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0", "--lambda-endpoint", runner.url])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sm(server):
    return make_client(server.url)


@pytest.fixture
def rotator(runner, server):
    fn = TemplateRotation(server.url, REGION, ACCESS_KEY, SECRET_KEY)
    runner.functions["rotator"] = fn
    yield fn
    for gate in fn.gates.values():
        gate.set()


def trail_events(server, arn):
    """(EventName, event) of the trail's events about the secret `arn`, newest first: every
    page, as the test's own polling by name (DescribeSecret) is found by the ARN too."""
    trail = boto3.client(
        "cloudtrail", endpoint_url=server.url, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    )
    pages = trail.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": arn}])
    return [(e["EventName"], json.loads(e["CloudTrailEvent"])) for page in pages for e in page["Events"]]


def wait_for(predicate, timeout=90.0):
    # A deadline, not a timing: three attempts with 1 s and 2 s backoff, each running its
    # handler's boto3 calls, took ~8 s on a machine loaded by eight compilers and once
    # passed 30 s there.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached before the deadline")


def current_is(sm, name, version_id):
    return "AWSCURRENT" in sm.describe_secret(SecretId=name).get("VersionIdsToStages", {}).get(version_id, [])


def create(sm, name, value="initial"):
    return sm.create_secret(Name=name, SecretString=value)


def test_full_rotation_runs_four_steps_and_reports_dates(sm, runner, rotator, name):
    created = create(sm, name)
    before = len(runner.events())
    resp = sm.rotate_secret(
        SecretId=name, RotationLambdaARN=FUNCTION, RotationRules={"AutomaticallyAfterDays": 30}
    )
    new = resp["VersionId"]
    assert set(resp) - {"ResponseMetadata"} == {"ARN", "Name", "VersionId"}
    wait_for(lambda: current_is(sm, name, new))
    # The rotation ends after finishSecret has returned (the function moves AWSCURRENT
    # within it), and records its date then, in a write of its own: wait for that end.
    wait_for(lambda: "LastRotatedDate" in sm.describe_secret(SecretId=name))
    events = runner.events()[before:]
    assert [e["Step"] for e in events] == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    for e in events:
        assert e["SecretId"] == created["ARN"]
        assert e["ClientRequestToken"] == new
        assert e["RotationToken"]
    desc = sm.describe_secret(SecretId=name)
    assert desc["RotationEnabled"] is True
    assert desc["RotationLambdaARN"] == FUNCTION
    assert desc["RotationRules"] == {"AutomaticallyAfterDays": 30}
    assert "LastRotatedDate" in desc and "NextRotationDate" in desc
    # NextRotationDate is the last second of the UTC day 30 days after the rotation.
    next_date = desc["NextRotationDate"]
    assert (next_date.hour, next_date.minute, next_date.second) == (23, 59, 59)
    assert desc["VersionIdsToStages"][created["VersionId"]] == ["AWSPREVIOUS"]
    assert sm.get_secret_value(SecretId=name)["SecretString"] != "initial"
    listed = [s for s in sm.list_secrets()["SecretList"] if s["Name"] == name][0]
    assert listed["RotationEnabled"] is True and listed["RotationRules"] == {"AutomaticallyAfterDays": 30}


def test_never_rotated_secret_has_no_rotation_keys(sm, name):
    create(sm, name)
    assert not ROTATION_KEYS & set(sm.describe_secret(SecretId=name))


def test_pending_placeholder_has_no_value_and_blocks_another_rotation(sm, rotator, name):
    create(sm, name)
    rotator.gates["createSecret"] = threading.Event()
    rotator.entered["createSecret"] = threading.Event()
    resp = sm.rotate_secret(SecretId=name, RotationLambdaARN=FUNCTION)
    pending = resp["VersionId"]
    assert rotator.entered["createSecret"].wait(30)
    assert sm.describe_secret(SecretId=name)["VersionIdsToStages"][pending] == ["AWSPENDING"]
    expect_error(
        sm.get_secret_value, "ResourceNotFoundException", msg_no_stage("AWSPENDING"),
        SecretId=name, VersionStage="AWSPENDING",
    )
    expect_error(sm.get_secret_value, "ResourceNotFoundException", SecretId=name, VersionId=pending)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "initial"
    expect_error(sm.rotate_secret, "InvalidRequestException", MSG_PREVIOUS, SecretId=name)
    # The same request again (an SDK retry) is answered like the first.
    again = sm.rotate_secret(SecretId=name, ClientRequestToken=pending)
    assert again["VersionId"] == pending
    rotator.gates["createSecret"].set()
    wait_for(lambda: current_is(sm, name, pending))


def test_rotate_immediately_false_runs_only_test_secret_and_keeps_the_value(sm, runner, rotator, name):
    create(sm, name)
    before = len(runner.events())
    resp = sm.rotate_secret(
        SecretId=name, RotationLambdaARN=FUNCTION, RotateImmediately=False,
        RotationRules={"ScheduleExpression": "rate(10 days)"},
    )
    wait_for(lambda: resp["VersionId"] not in sm.describe_secret(SecretId=name)["VersionIdsToStages"])
    assert [e["Step"] for e in runner.events()[before:]] == ["testSecret"]
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "initial"
    desc = sm.describe_secret(SecretId=name)
    assert desc["RotationEnabled"] is True
    assert desc["RotationRules"] == {"AutomaticallyAfterDays": 10, "ScheduleExpression": "rate(10 days)"}
    assert "LastRotatedDate" not in desc
    # Nothing left pending: a rotation may start at once.
    new = sm.rotate_secret(SecretId=name)["VersionId"]
    wait_for(lambda: current_is(sm, name, new))


def test_rotate_again_from_the_stored_configuration(sm, runner, rotator, name):
    create(sm, name)
    first = sm.rotate_secret(SecretId=name, RotationLambdaARN=FUNCTION, RotationRules={"AutomaticallyAfterDays": 7})
    wait_for(lambda: current_is(sm, name, first["VersionId"]))
    value = sm.get_secret_value(SecretId=name)["SecretString"]
    second = sm.rotate_secret(SecretId=name)
    assert second["VersionId"] != first["VersionId"]
    wait_for(lambda: current_is(sm, name, second["VersionId"]))
    assert sm.get_secret_value(SecretId=name)["SecretString"] != value
    stages = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert stages[first["VersionId"]] == ["AWSPREVIOUS"]
    assert sm.describe_secret(SecretId=name)["RotationRules"] == {"AutomaticallyAfterDays": 7}


@pytest.mark.parametrize("step", ["createSecret", "setSecret", "testSecret", "finishSecret"])
def test_a_failing_step_leaves_awspending_and_recovers(sm, server, runner, rotator, name, step):
    created = create(sm, name)
    rotator.fail_in = step
    pending = sm.rotate_secret(SecretId=name, RotationLambdaARN=FUNCTION)["VersionId"]
    # Tried three times in all (with backoff), then left as AWS leaves it.
    wait_for(lambda: [e for n, e in trail_events(server, created["ARN"]) if n == "RotationFailed"][2:])
    tried = [e["Step"] for e in runner.events() if e["ClientRequestToken"] == pending]
    assert tried.count(step) == 3
    stages = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert stages[created["VersionId"]] == ["AWSCURRENT"]
    assert stages[pending] == ["AWSPENDING"]
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "initial"
    expect_error(sm.rotate_secret, "InvalidRequestException", MSG_PREVIOUS, SecretId=name)
    # Recovery: fix the function, take AWSPENDING off the stuck version, rotate again.
    rotator.fail_in = None
    sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=pending)
    new = sm.rotate_secret(SecretId=name)["VersionId"]
    wait_for(lambda: current_is(sm, name, new))
    assert sm.get_secret_value(SecretId=name)["SecretString"] != "initial"


def test_a_step_that_fails_once_is_retried_and_the_rotation_completes(sm, runner, rotator, name):
    create(sm, name)
    rotator.fail_in = "setSecret"
    rotator.fail_times = 1
    new = sm.rotate_secret(SecretId=name, RotationLambdaARN=FUNCTION)["VersionId"]
    wait_for(lambda: current_is(sm, name, new))
    assert "AWSPENDING" in sm.describe_secret(SecretId=name)["VersionIdsToStages"][new]


def test_a_value_written_during_a_pending_rotation_abandons_it(sm, server, runner, rotator, name):
    created = create(sm, name)
    rotator.gates["setSecret"] = threading.Event()
    rotator.entered["setSecret"] = threading.Event()
    pending = sm.rotate_secret(SecretId=name, RotationLambdaARN=FUNCTION)["VersionId"]
    assert rotator.entered["setSecret"].wait(30)
    written = sm.put_secret_value(SecretId=name, SecretString="by hand", ClientRequestToken=token())
    stages = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert stages[written["VersionId"]] == ["AWSCURRENT"]
    assert not any("AWSPENDING" in s for s in stages.values())
    assert "RotationAbandoned" in [n for n, _ in trail_events(server, created["ARN"])]
    rotator.gates["setSecret"].set()
    # The rest of the rotation does not run: the value written stays current.
    steps_before = len(runner.events())
    time.sleep(1)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "by hand"
    assert "finishSecret" not in [e["Step"] for e in runner.events()[steps_before:] if e["ClientRequestToken"] == pending]
    # A new rotation may start.
    new = sm.rotate_secret(SecretId=name)["VersionId"]
    wait_for(lambda: current_is(sm, name, new))


def test_an_uninvocable_function_is_access_denied_and_nothing_is_stored(sm, name):
    create(sm, name)
    expect_error(
        sm.rotate_secret, "AccessDeniedException", MSG_CANNOT_INVOKE,
        SecretId=name, RotationLambdaARN=MISSING, RotationRules={"AutomaticallyAfterDays": 1},
    )
    desc = sm.describe_secret(SecretId=name)
    assert not ROTATION_KEYS & set(desc)
    assert list(desc["VersionIdsToStages"].values()) == [["AWSCURRENT"]]


def test_cancel_turns_rotation_off_and_keeps_the_configuration(sm, rotator, name):
    create(sm, name)
    expect_error(sm.cancel_rotate_secret, "InvalidRequestException", SecretId=name)
    first = sm.rotate_secret(SecretId=name, RotationLambdaARN=FUNCTION, RotationRules={"ScheduleExpression": "cron(0 16 1,15 * ? *)", "Duration": "2h"})
    wait_for(lambda: current_is(sm, name, first["VersionId"]))
    desc = sm.describe_secret(SecretId=name)
    assert desc["RotationRules"]["ScheduleExpression"] == "cron(0 16 1,15 * ? *)"
    assert desc["RotationRules"]["Duration"] == "2h"
    assert desc["RotationRules"]["AutomaticallyAfterDays"] >= 1
    assert (desc["NextRotationDate"].hour, desc["NextRotationDate"].minute) == (17, 59)
    resp = sm.cancel_rotate_secret(SecretId=name)
    assert set(resp) - {"ResponseMetadata"} == {"ARN", "Name"}
    desc = sm.describe_secret(SecretId=name)
    assert desc["RotationEnabled"] is False
    assert desc["RotationLambdaARN"] == FUNCTION
    assert "NextRotationDate" not in desc
    # RotateSecret turns it on again.
    again = sm.rotate_secret(SecretId=name)
    wait_for(lambda: current_is(sm, name, again["VersionId"]))
    assert sm.describe_secret(SecretId=name)["RotationEnabled"] is True


def test_cancel_during_a_rotation_reports_the_pending_version(sm, rotator, name):
    create(sm, name)
    rotator.gates["createSecret"] = threading.Event()
    rotator.entered["createSecret"] = threading.Event()
    pending = sm.rotate_secret(SecretId=name, RotationLambdaARN=FUNCTION)["VersionId"]
    assert rotator.entered["createSecret"].wait(30)
    resp = sm.cancel_rotate_secret(SecretId=name)
    assert resp["VersionId"] == pending
    # Labels are left as they are: AWSPENDING stays on its version.
    assert sm.describe_secret(SecretId=name)["VersionIdsToStages"][pending] == ["AWSPENDING"]


@pytest.mark.parametrize(
    "rules",
    [
        {"AutomaticallyAfterDays": 5, "ScheduleExpression": "rate(5 days)"},
        {"ScheduleExpression": "rate(2 hours)"},
        {"ScheduleExpression": "cron(15 16 * * ? *)"},
        {"ScheduleExpression": "cron(0 16 * * * *)"},
        {"ScheduleExpression": "cron(0 16 * * ? 2030)"},
        {"AutomaticallyAfterDays": 1, "Duration": "25h"},
        {"ScheduleExpression": "rate(4 hours)", "Duration": "5h"},
    ],
)
def test_bad_rotation_rules_are_refused_and_change_nothing(sm, name, rules):
    create(sm, name)
    expect_error(sm.rotate_secret, "InvalidParameterException", SecretId=name, RotationLambdaARN=FUNCTION, RotationRules=rules)
    assert not ROTATION_KEYS & set(sm.describe_secret(SecretId=name))


def test_rotation_service_events_are_in_the_trail(sm, server, rotator, name):
    create(sm, name)
    rotator.fail_in = "setSecret"
    rotator.fail_times = 1
    new = sm.rotate_secret(SecretId=name, RotationLambdaARN=FUNCTION)["VersionId"]
    wait_for(lambda: current_is(sm, name, new))
    arn = sm.describe_secret(SecretId=name)["ARN"]

    def names():
        return trail_events(server, arn)

    got = wait_for(lambda: (lambda n: n if "RotationSucceeded" in [x for x, _ in n] else None)(names()))
    by_name = {n: e for n, e in got}
    assert {"RotationStarted", "RotationFailed", "RotationSucceeded"} <= set(by_name)
    failed = by_name["RotationFailed"]
    assert failed["eventType"] == "AwsServiceEvent"
    assert failed["errorMessage"] == f"Error when executing lambda {FUNCTION} during setSecret step"
