"""Managed external secrets (a secret created with a partner ``Type``): RotateSecret's
``ExternalSecretRotationRoleArn`` and ``ExternalSecretRotationMetadata``.

What AWS does that the reference settles: the configuration is stored and reported by
DescribeSecret and ListSecrets, with no RotationLambdaARN; the members are checked against
the model. What Coffer cannot do, call the partner to rotate, is refused with an
AWS-shaped InvalidRequestException that changes nothing; the configuration alone can be
stored with ``RotateImmediately=False``."""

from __future__ import annotations

import json

from conftest import expect_error, signed_request

ROLE = "arn:aws:iam::000000000000:role/partner-rotation"
METADATA = [{"Key": "apiVersion", "Value": "v1"}, {"Key": "consumerKey", "Value": "abc"}]
PARTNER = "SalesforceClientSecret"
ROTATION_KEYS = {"RotationEnabled", "RotationRules", "RotationLambdaARN", "NextRotationDate",
                 "LastRotatedDate", "ExternalSecretRotationRoleArn", "ExternalSecretRotationMetadata"}


def external(sm, name):
    return sm.create_secret(Name=name, SecretString=json.dumps({"clientSecret": "s"}), Type=PARTNER)


def test_the_configuration_is_stored_and_reported(sm, name):
    created = external(sm, name)
    resp = sm.rotate_secret(
        SecretId=name, ExternalSecretRotationRoleArn=ROLE, ExternalSecretRotationMetadata=METADATA,
        RotationRules={"ScheduleExpression": "rate(30 days)"}, RotateImmediately=False,
    )
    assert resp["ARN"] == created["ARN"] and resp["Name"] == name
    desc = sm.describe_secret(SecretId=name)
    assert desc["Type"] == PARTNER
    assert desc["RotationEnabled"] is True
    assert desc["ExternalSecretRotationRoleArn"] == ROLE
    assert desc["ExternalSecretRotationMetadata"] == METADATA
    assert desc["RotationRules"] == {"AutomaticallyAfterDays": 30, "ScheduleExpression": "rate(30 days)"}
    assert "RotationLambdaARN" not in desc
    # Nothing was rotated: the one version, no AWSPENDING.
    assert desc["VersionIdsToStages"] == {created["VersionId"]: ["AWSCURRENT"]}
    listed = [s for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
              if s["Name"] == name][0]
    assert listed["ExternalSecretRotationRoleArn"] == ROLE
    assert listed["ExternalSecretRotationMetadata"] == METADATA

    # Cancel keeps the configuration visible; a later call without members re-enables it.
    sm.cancel_rotate_secret(SecretId=name)
    desc = sm.describe_secret(SecretId=name)
    assert desc["RotationEnabled"] is False and desc["ExternalSecretRotationRoleArn"] == ROLE
    sm.rotate_secret(SecretId=name, RotateImmediately=False)
    desc = sm.describe_secret(SecretId=name)
    assert desc["RotationEnabled"] is True and desc["ExternalSecretRotationMetadata"] == METADATA


def test_rotating_now_is_refused_and_changes_nothing(sm, name):
    external(sm, name)
    expect_error(
        sm.rotate_secret, "InvalidRequestException",
        f"Secrets Manager can't rotate the managed external secret {name} here: Coffer has no "
        f"integration with the partner {PARTNER}. Call RotateSecret with RotateImmediately set "
        "to false to store the rotation configuration, and write new values with PutSecretValue.",
        SecretId=name, ExternalSecretRotationRoleArn=ROLE, ExternalSecretRotationMetadata=METADATA,
    )
    desc = sm.describe_secret(SecretId=name)
    assert not ROTATION_KEYS & set(desc)
    assert len(desc["VersionIdsToStages"]) == 1


def test_external_members_need_a_partner_secret(sm, name):
    sm.create_secret(Name=name, SecretString="plain")
    expect_error(
        sm.rotate_secret, "InvalidParameterException",
        "ExternalSecretRotationRoleArn and ExternalSecretRotationMetadata apply only to a "
        "managed external secret (a secret created with a Type).",
        SecretId=name, ExternalSecretRotationRoleArn=ROLE, RotateImmediately=False,
    )
    assert not ROTATION_KEYS & set(sm.describe_secret(SecretId=name))


def test_bad_external_members_are_refused(sm, name):
    external(sm, name)
    expect_error(
        sm.rotate_secret, "InvalidParameterException", "ExternalSecretRotationRoleArn must be the ARN of an IAM role.",
        SecretId=name, ExternalSecretRotationRoleArn="arn:aws:iam::000000000000:user/someone",
        RotateImmediately=False,
    )
    expect_error(
        sm.rotate_secret, "InvalidParameterException",
        "You can't specify both RotationLambdaARN and ExternalSecretRotationRoleArn or ExternalSecretRotationMetadata.",
        SecretId=name, ExternalSecretRotationRoleArn=ROLE,
        RotationLambdaARN="arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-random-password",
    )
    expect_error(
        sm.rotate_secret, "InvalidParameterException",
        "ExternalSecretRotationRoleArn is required to rotate a managed external secret.",
        SecretId=name, RotateImmediately=False,
    )
    assert not ROTATION_KEYS & set(sm.describe_secret(SecretId=name))


def test_the_model_bounds_the_metadata(url, name, sm):
    """Checked by the server itself (raw request, no SDK-side validation)."""
    external(sm, name)
    body = {
        "SecretId": name, "ClientRequestToken": "a" * 32, "RotateImmediately": False,
        "ExternalSecretRotationRoleArn": ROLE,
        "ExternalSecretRotationMetadata": [{"Key": "k" * 257, "Value": "v"}],
    }
    resp = signed_request(url, "RotateSecret", body)
    assert resp.status_code == 400
    assert resp.json()["__type"].endswith("ValidationException")
    assert not ROTATION_KEYS & set(sm.describe_secret(SecretId=name))
