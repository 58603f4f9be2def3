"""Security regressions of issue 21 in policy handling (findings 7, 9 and 16), through boto3
against a ``coffer serve`` without --dev.

* 7: BlockPublicPolicy (and ValidateResourcePolicy's BROAD_ACCESS_CHECK) must not take a
  condition that still matches everyone for one that pins the caller.
* 9: tag keys that differ only in case must not let one tag hide another from a Deny.
* 16: a user deleted and recreated under the same name must not inherit the grants that
  resource policies gave the old user.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from test_auth import PARTNER_ACCOUNT, expect, secured  # noqa: F401  (secured is a fixture)

PUBLIC_POLICY_MESSAGE = (
    "This resource policy contains a public policy, which is blocked by the BlockPublicPolicy parameter."
)

EVERYONE_CONDITIONS = [
    {"StringLike": {"aws:PrincipalArn": "arn:*"}},
    {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*"}},
    {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}},
    {"StringLike": {"aws:PrincipalAccount": [f"{d}*" for d in range(10)]}},
    {"IpAddress": {"aws:SourceIp": ["0.0.0.0/1", "128.0.0.0/1"]}},
    {"StringLike": {"aws:userid": "A*"}},
]


def public_policy(condition: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue",
        "Resource": "*", "Condition": condition}]})


@pytest.mark.parametrize("condition", EVERYONE_CONDITIONS, ids=lambda c: json.dumps(c)[:60])
def test_block_public_policy_refuses_conditions_that_match_everyone(secured, condition):
    admin = secured.admin()
    name = "pub7/" + hashlib.sha1(json.dumps(condition).encode()).hexdigest()[:10]
    admin.create_secret(Name=name, SecretString="not-for-everyone")
    expect(admin.put_resource_policy, "PublicPolicyException", PUBLIC_POLICY_MESSAGE,
           SecretId=name, ResourcePolicy=public_policy(condition), BlockPublicPolicy=True)
    assert "ResourcePolicy" not in admin.get_resource_policy(SecretId=name)
    report = admin.validate_resource_policy(SecretId=name, ResourcePolicy=public_policy(condition))
    assert report["PolicyValidationPassed"] is False
    assert "BROAD_ACCESS_CHECK" in [e["CheckName"] for e in report["ValidationErrors"]]


def test_a_condition_naming_one_account_is_still_accepted(secured):
    admin = secured.admin()
    admin.create_secret(Name="pub7/pinned", SecretString="v")
    pinned = public_policy({"StringEquals": {"aws:PrincipalAccount": PARTNER_ACCOUNT}})
    admin.put_resource_policy(SecretId="pub7/pinned", ResourcePolicy=pinned, BlockPublicPolicy=True)
    assert admin.validate_resource_policy(ResourcePolicy=pinned)["PolicyValidationPassed"] is True
