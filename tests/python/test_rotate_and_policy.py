"""RotateSecret's failure modes and the resource-policy operations' response shapes."""

import json

from conftest import expect_error, keys

ROTATION_KEYS = {"RotationEnabled", "RotationRules", "RotationLambdaARN"}
MSG_NO_LAMBDA = "No Lambda rotation function ARN is associated with this secret."
MSG_LAMBDA_DENIED = (
    "Secrets Manager cannot invoke the specified Lambda function. Ensure that the function policy "
    "grants access to the principal secretsmanager.amazonaws.com."
)
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
        }
    ],
}


def test_rotate_without_lambda_on_never_rotated_secret_is_invalid_request(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    expect_error(sm.rotate_secret, "InvalidRequestException", MSG_NO_LAMBDA, SecretId=name)
    assert not (ROTATION_KEYS & set(sm.describe_secret(SecretId=name)))


def test_rotate_with_uninvocable_lambda_is_access_denied_and_leaves_no_rotation_keys(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v")["VersionId"]
    expect_error(
        sm.rotate_secret, "AccessDeniedException", MSG_LAMBDA_DENIED,
        SecretId=name,
        RotationLambdaARN="arn:aws:lambda:us-east-1:000000000000:function:rotator",
        RotationRules={"AutomaticallyAfterDays": 30},
    )
    desc = sm.describe_secret(SecretId=name)
    assert not (ROTATION_KEYS & set(desc)), desc
    assert desc["VersionIdsToStages"] == {v1: ["AWSCURRENT"]}


def test_put_and_get_resource_policy_shapes(sm, name):
    arn = sm.create_secret(Name=name, SecretString="v")["ARN"]
    put = sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(POLICY))
    assert keys(put) == {"ARN", "Name"}
    assert put["ARN"] == arn
    got = sm.get_resource_policy(SecretId=name)
    assert keys(got) == {"ARN", "Name", "ResourcePolicy"}
    assert isinstance(got["ResourcePolicy"], str)
    assert json.loads(got["ResourcePolicy"]) == POLICY


def test_delete_resource_policy_removes_it(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(POLICY))
    resp = sm.delete_resource_policy(SecretId=name)
    assert keys(resp) == {"ARN", "Name"}
    assert "ResourcePolicy" not in sm.get_resource_policy(SecretId=name)
