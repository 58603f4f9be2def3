"""DeleteSecret and RestoreSecret: recovery windows, forced deletion, and what a scheduled secret allows."""

from datetime import datetime, timedelta, timezone

import pytest

from conftest import (
    MSG_CREATE_SCHEDULED,
    MSG_MARKED_FOR_DELETION,
    MSG_NOT_FOUND,
    expect_error,
    keys,
    unique_name,
)


def close_to(actual, expected, slack=timedelta(minutes=2)):
    return abs(actual - expected) < slack


def test_delete_schedules_with_default_thirty_day_window(sm, name):
    arn = sm.create_secret(Name=name, SecretString="v")["ARN"]
    resp = sm.delete_secret(SecretId=name)
    assert keys(resp) == {"ARN", "DeletionDate", "Name"}
    assert resp["ARN"] == arn
    assert resp["Name"] == name
    assert close_to(resp["DeletionDate"], datetime.now(timezone.utc) + timedelta(days=30))
    # The model's docs disagree on whether DeletedDate is the request time or the planned
    # deletion time, and aws-behaviours.md does not say, so only its presence is checked.
    assert "DeletedDate" in sm.describe_secret(SecretId=name)


@pytest.mark.parametrize("days", [7, 30])
def test_delete_honours_recovery_window(sm, name, days):
    sm.create_secret(Name=name, SecretString="v")
    resp = sm.delete_secret(SecretId=name, RecoveryWindowInDays=days)
    assert close_to(resp["DeletionDate"], datetime.now(timezone.utc) + timedelta(days=days))


@pytest.mark.parametrize("days", [6, 31])
def test_recovery_window_outside_seven_to_thirty_is_invalid_parameter(sm, name, days):
    sm.create_secret(Name=name, SecretString="v")
    expect_error(sm.delete_secret, "InvalidParameterException", SecretId=name, RecoveryWindowInDays=days)
    assert "DeletedDate" not in sm.describe_secret(SecretId=name)


def test_recovery_window_with_force_delete_is_invalid_parameter(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    expect_error(
        sm.delete_secret, "InvalidParameterException",
        SecretId=name, RecoveryWindowInDays=7, ForceDeleteWithoutRecovery=True,
    )
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"


def test_force_delete_removes_at_once_and_returns_deletion_date(sm, name):
    arn = sm.create_secret(Name=name, SecretString="v")["ARN"]
    resp = sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    assert keys(resp) == {"ARN", "DeletionDate", "Name"}
    assert resp["ARN"] == arn
    assert resp["Name"] == name
    assert close_to(resp["DeletionDate"], datetime.now(timezone.utc))
    expect_error(sm.describe_secret, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name)
    expect_error(sm.get_secret_value, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name)


def test_force_delete_of_missing_secret_answers_as_if_it_existed(sm, name):
    resp = sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    assert keys(resp) == {"ARN", "DeletionDate", "Name"}
    assert resp["Name"] == name
    assert resp["ARN"].startswith("arn:aws:secretsmanager:us-east-1:000000000000:secret:" + name)


def test_plain_delete_of_missing_secret_is_resource_not_found(sm, name):
    expect_error(sm.delete_secret, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name)


def test_name_is_reusable_after_force_delete_with_a_new_arn_suffix(sm, name):
    first = sm.create_secret(Name=name, SecretString="old")["ARN"]
    sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    second = sm.create_secret(Name=name, SecretString="new")["ARN"]
    assert second != first
    assert second[:-6] == first[:-6]
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "new"
    # The old ARN names the deleted secret, not its successor.
    expect_error(sm.get_secret_value, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=first)


def test_force_delete_of_scheduled_secret_works(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    resp = sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    assert keys(resp) == {"ARN", "DeletionDate", "Name"}
    expect_error(sm.describe_secret, "ResourceNotFoundException", SecretId=name)
    sm.create_secret(Name=name, SecretString="again")


def test_create_with_name_scheduled_for_deletion_is_invalid_request(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    sm.delete_secret(SecretId=name)
    expect_error(sm.create_secret, "InvalidRequestException", MSG_CREATE_SCHEDULED, Name=name, SecretString="w")


def test_get_value_of_scheduled_secret_is_invalid_request(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    sm.delete_secret(SecretId=name)
    expect_error(sm.get_secret_value, "InvalidRequestException", SecretId=name)


@pytest.mark.parametrize(
    "op, kwargs",
    [
        ("tag_resource", {"Tags": [{"Key": "k", "Value": "v"}]}),
        ("untag_resource", {"TagKeys": ["k"]}),
    ],
)
def test_tagging_scheduled_secret_is_invalid_request(sm, name, op, kwargs):
    sm.create_secret(Name=name, SecretString="v", Tags=[{"Key": "k", "Value": "orig"}])
    sm.delete_secret(SecretId=name)
    expect_error(getattr(sm, op), "InvalidRequestException", MSG_MARKED_FOR_DELETION, SecretId=name, **kwargs)
    assert sm.describe_secret(SecretId=name)["Tags"] == [{"Key": "k", "Value": "orig"}]


def test_restore_returns_arn_and_name_and_makes_secret_usable(sm, name):
    arn = sm.create_secret(Name=name, SecretString="v")["ARN"]
    sm.delete_secret(SecretId=name)
    resp = sm.restore_secret(SecretId=name)
    assert keys(resp) == {"ARN", "Name"}
    assert resp["ARN"] == arn
    assert resp["Name"] == name
    assert "DeletedDate" not in sm.describe_secret(SecretId=name)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"
    sm.tag_resource(SecretId=name, Tags=[{"Key": "k", "Value": "v"}])
    sm.put_secret_value(SecretId=name, SecretString="after-restore")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "after-restore"


def test_restore_keeps_versions_and_labels(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = sm.put_secret_value(SecretId=name, SecretString="v2")["VersionId"]
    sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    sm.restore_secret(SecretId=name)
    assert sm.describe_secret(SecretId=name)["VersionIdsToStages"] == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]}


def test_delete_by_arn(sm):
    n = unique_name("del")
    arn = sm.create_secret(Name=n, SecretString="v")["ARN"]
    resp = sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    assert resp["ARN"] == arn
    assert resp["Name"] == n
