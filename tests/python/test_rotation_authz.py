"""RotateSecret's permissions, as AWS documents them: secretsmanager:RotateSecret on the
secret and lambda:InvokeFunction on the rotation function (here a built-in rotator's
reserved ARN), through boto3 against a ``coffer serve`` without --dev."""

from __future__ import annotations

import time

from test_auth import expect, secured  # noqa: F401  (secured is a fixture)

BUILTIN = "arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-random-password"
ROTATION_KEYS = {"RotationEnabled", "RotationRules", "RotationLambdaARN"}


def test_rotate_secret_needs_lambda_invoke_function_on_the_function(secured):
    admin = secured.admin()
    admin.create_secret(Name="rot14/authz", SecretString="v")
    no_lambda = secured.client(secured.user("rot14-nolambda", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}))
    expect(no_lambda.rotate_secret, "AccessDeniedException", SecretId="rot14/authz", RotationLambdaARN=BUILTIN)
    assert not ROTATION_KEYS & set(admin.describe_secret(SecretId="rot14/authz"))
    with_lambda = secured.client(secured.user("rot14-lambda", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": BUILTIN}]}))
    version = with_lambda.rotate_secret(SecretId="rot14/authz", RotationLambdaARN=BUILTIN)["VersionId"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stages = admin.describe_secret(SecretId="rot14/authz")["VersionIdsToStages"]
        if "AWSCURRENT" in stages.get(version, []):
            break
        time.sleep(0.05)
    assert "AWSCURRENT" in stages[version]
    # Without secretsmanager:RotateSecret, lambda:InvokeFunction alone is not enough.
    lambda_only = secured.client(secured.user("rot14-lambdaonly", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:DescribeSecret", "lambda:InvokeFunction"], "Resource": "*"}]}))
    expect(lambda_only.rotate_secret, "AccessDeniedException", SecretId="rot14/authz")
