"""UpdateSecret, the seed operation: metadata-only updates, new versions, idempotency, errors."""

import time

import boto3

from conftest import (
    ACCESS_KEY,
    MSG_MARKED_FOR_DELETION,
    MSG_NOT_FOUND,
    REGION,
    SECRET_KEY,
    expect_error,
    keys,
    stages,
    token,
)

SEED_DESCRIPTION = "This is a new description for the secret."
SEED_VALUE = '{"username":"anika","password":"a different password"}'


def version_ids(sm, name, include_deprecated=True):
    resp = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=include_deprecated)
    return {v["VersionId"] for v in resp["Versions"]}


def test_update_description_only_returns_arn_and_name_and_creates_no_version(sm, name):
    created = sm.create_secret(Name=name, SecretString="v1")
    before = version_ids(sm, name)
    resp = sm.update_secret(SecretId=name, Description=SEED_DESCRIPTION)
    assert keys(resp) == {"ARN", "Name"}
    assert resp["ARN"] == created["ARN"]
    assert resp["Name"] == name
    assert version_ids(sm, name) == before
    desc = sm.describe_secret(SecretId=name)
    assert desc["Description"] == SEED_DESCRIPTION
    assert desc["VersionIdsToStages"] == {created["VersionId"]: ["AWSCURRENT"]}
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v1"


def test_update_description_only_with_explicit_token_creates_no_version(sm, name):
    created = sm.create_secret(Name=name, SecretString="v1")
    tok = token()
    resp = sm.update_secret(SecretId=name, Description=SEED_DESCRIPTION, ClientRequestToken=tok)
    assert keys(resp) == {"ARN", "Name"}
    assert version_ids(sm, name) == {created["VersionId"]}


def test_update_kms_key_only_returns_arn_and_name_and_is_reported_by_describe(sm, url, name):
    kms = boto3.client(
        "kms",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    SEED_KMS_KEY = kms.create_key()["KeyMetadata"]["Arn"]
    created = sm.create_secret(Name=name, SecretString="v1")
    assert "KmsKeyId" not in sm.describe_secret(SecretId=name)
    resp = sm.update_secret(SecretId=name, KmsKeyId=SEED_KMS_KEY)
    assert keys(resp) == {"ARN", "Name"}
    assert version_ids(sm, name) == {created["VersionId"]}
    assert sm.describe_secret(SecretId=name)["KmsKeyId"] == SEED_KMS_KEY
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v1"


def test_update_with_nothing_but_secret_id_returns_arn_and_name(sm, name):
    created = sm.create_secret(Name=name, SecretString="v1")
    resp = sm.update_secret(SecretId=name)
    assert keys(resp) == {"ARN", "Name"}
    assert version_ids(sm, name) == {created["VersionId"]}


def test_update_with_string_creates_version_and_moves_current_and_previous(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    resp = sm.update_secret(SecretId=name, SecretString=SEED_VALUE)
    assert keys(resp) == {"ARN", "Name", "VersionId"}
    v2 = resp["VersionId"]
    assert v2 != v1
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]}
    assert sm.get_secret_value(SecretId=name)["SecretString"] == SEED_VALUE
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"] == "v1"


def test_update_third_value_deprecates_the_oldest_version(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = sm.update_secret(SecretId=name, SecretString="v2")["VersionId"]
    v3 = sm.update_secret(SecretId=name, SecretString="v3")["VersionId"]
    assert stages(sm, name) == {v2: ["AWSPREVIOUS"], v3: ["AWSCURRENT"]}
    assert version_ids(sm, name, include_deprecated=False) == {v2, v3}
    assert version_ids(sm, name, include_deprecated=True) == {v1, v2, v3}


def test_update_with_binary_creates_binary_version(sm, name):
    sm.create_secret(Name=name, SecretString="text")
    resp = sm.update_secret(SecretId=name, SecretBinary=b"\x00\xffbin")
    assert keys(resp) == {"ARN", "Name", "VersionId"}
    got = sm.get_secret_value(SecretId=name)
    assert got["SecretBinary"] == b"\x00\xffbin"
    assert "SecretString" not in got


def test_update_with_value_and_description_does_both(sm, name):
    sm.create_secret(Name=name, SecretString="v1", Description="old")
    resp = sm.update_secret(SecretId=name, SecretString="v2", Description="new")
    assert keys(resp) == {"ARN", "Name", "VersionId"}
    assert sm.describe_secret(SecretId=name)["Description"] == "new"
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v2"


def test_update_value_of_secret_created_without_value_makes_first_current(sm, name):
    sm.create_secret(Name=name)
    v1 = sm.update_secret(SecretId=name, SecretString="first")["VersionId"]
    assert stages(sm, name) == {v1: ["AWSCURRENT"]}
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "first"


def test_update_client_request_token_becomes_version_id(sm, name):
    sm.create_secret(Name=name, SecretString="v1")
    tok = token()
    resp = sm.update_secret(SecretId=name, SecretString="v2", ClientRequestToken=tok)
    assert resp["VersionId"] == tok
    assert sm.get_secret_value(SecretId=name)["VersionId"] == tok


def test_update_same_token_and_same_value_is_idempotent(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    tok = token()
    first = sm.update_secret(SecretId=name, SecretString="v2", ClientRequestToken=tok)
    again = sm.update_secret(SecretId=name, SecretString="v2", ClientRequestToken=tok)
    assert keys(again) == {"ARN", "Name", "VersionId"}
    assert again["VersionId"] == first["VersionId"] == tok
    assert version_ids(sm, name) == {v1, tok}
    # The retry must not demote the version it just made.
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], tok: ["AWSCURRENT"]}


def test_update_same_token_with_different_value_is_resource_exists(sm, name):
    sm.create_secret(Name=name, SecretString="v1")
    tok = token()
    sm.update_secret(SecretId=name, SecretString="v2", ClientRequestToken=tok)
    expect_error(
        sm.update_secret, "ResourceExistsException",
        SecretId=name, SecretString="different", ClientRequestToken=tok,
    )
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v2"


def test_update_with_string_and_binary_is_invalid_parameter(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    expect_error(
        sm.update_secret, "InvalidParameterException",
        SecretId=name, SecretString="s", SecretBinary=b"b",
    )
    assert version_ids(sm, name) == {v1}


def test_update_of_secret_scheduled_for_deletion_is_invalid_request(sm, name):
    sm.create_secret(Name=name, SecretString="v1")
    sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    expect_error(
        sm.update_secret, "InvalidRequestException", MSG_MARKED_FOR_DELETION,
        SecretId=name, SecretString="v2",
    )
    expect_error(
        sm.update_secret, "InvalidRequestException", MSG_MARKED_FOR_DELETION,
        SecretId=name, Description="d",
    )


def test_update_of_unknown_secret_is_resource_not_found(sm, name):
    expect_error(sm.update_secret, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name, SecretString="v")


def test_update_by_arn_works(sm, name):
    arn = sm.create_secret(Name=name, SecretString="v1")["ARN"]
    resp = sm.update_secret(SecretId=arn, Description="via arn")
    assert resp["ARN"] == arn
    assert sm.describe_secret(SecretId=name)["Description"] == "via arn"


def test_update_with_unchanged_value_still_creates_version(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="same")["VersionId"]
    v2 = sm.update_secret(SecretId=name, SecretString="same")["VersionId"]
    assert v2 != v1
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]}


def test_last_changed_date_rises_strictly_across_quick_updates(sm, name):
    sm.create_secret(Name=name, SecretString="v0")
    dates = []
    start = time.monotonic()
    for i in range(3):
        sm.update_secret(SecretId=name, SecretString=f"v{i + 1}")
        dates.append(sm.describe_secret(SecretId=name)["LastChangedDate"])
    elapsed = time.monotonic() - start
    assert dates[0] < dates[1] < dates[2], (dates, elapsed)
