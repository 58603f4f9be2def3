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


# ---- 9: tag keys that differ only in case -------------------------------------------------------


def test_a_case_variant_tag_does_not_hide_a_restricted_tag_from_a_deny(secured):
    admin = secured.admin()
    admin.create_secret(Name="tag9/restricted", SecretString="classified",
                        Tags=[{"Key": "class", "Value": "restricted"}])
    key = secured.user("tagger9", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": {"StringEquals": {"secretsmanager:ResourceTag/class": "restricted"}}}]})
    tagger = secured.client(key)
    expect(tagger.get_secret_value, "AccessDeniedException", SecretId="tag9/restricted")
    tagger.tag_resource(SecretId="tag9/restricted", Tags=[{"Key": "Class", "Value": "public"}])
    tags = {t["Key"]: t["Value"] for t in admin.describe_secret(SecretId="tag9/restricted")["Tags"]}
    assert tags == {"class": "restricted", "Class": "public"}
    err = expect(tagger.get_secret_value, "AccessDeniedException", SecretId="tag9/restricted")
    assert "with an explicit deny in an identity-based policy" in err.response["Error"]["Message"]


def test_an_allow_on_one_tag_value_does_not_reach_a_secret_also_tagged_otherwise(secured):
    admin = secured.admin()
    admin.create_secret(Name="tag9/both", SecretString="classified",
                        Tags=[{"Key": "class", "Value": "restricted"}, {"Key": "CLASS", "Value": "public"}])
    admin.create_secret(Name="tag9/public", SecretString="open", Tags=[{"Key": "Class", "Value": "public"}])
    key = secured.user("reader9", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/class": "public"}}}]})
    reader = secured.client(key)
    assert reader.get_secret_value(SecretId="tag9/public")["SecretString"] == "open"
    expect(reader.get_secret_value, "AccessDeniedException", SecretId="tag9/both")


def test_a_tag_keys_guard_sees_case_variants_of_the_key(secured):
    admin = secured.admin()
    admin.create_secret(Name="tag9/guarded", SecretString="v")
    key = secured.user("guarded9", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["secretsmanager:TagResource", "secretsmanager:UntagResource"],
         "Resource": "*", "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["class"]}}}]})
    user = secured.client(key)
    user.tag_resource(SecretId="tag9/guarded", Tags=[{"Key": "team", "Value": "ops"}])
    for variant in ("class", "Class", "CLASS"):
        expect(user.tag_resource, "AccessDeniedException",
               SecretId="tag9/guarded", Tags=[{"Key": variant, "Value": "public"}])
    assert {t["Key"] for t in admin.describe_secret(SecretId="tag9/guarded")["Tags"]} == {"team"}


# ---- 5 (policy validation): key policies that do not parse are refused at CreateKey -----------


def key_policy(statement_extra: dict, principal=None) -> str:
    statement = {"Sid": "root", "Effect": "Allow",
                 "Principal": principal or {"AWS": "arn:aws:iam::000000000000:root"},
                 "Action": "kms:*", "Resource": "*"}
    statement.update(statement_extra)
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_create_key_refuses_a_key_policy_that_does_not_parse(secured):
    kms = secured.client(secured.admin_key, service="kms")
    before = {k["KeyId"] for k in kms.list_keys()["Keys"]}
    typo = key_policy({"Condition": {"StringNotEqual": {"aws:PrincipalAccount": "000000000000"}}})
    err = expect(kms.create_key, "MalformedPolicyDocumentException", Policy=typo)
    assert "StringNotEqual" in err.response["Error"]["Message"]
    expect(kms.create_key, "MalformedPolicyDocumentException",
           "Policy contains a statement with one or more invalid principals.",
           Policy=key_policy({}, principal={"AWS": "not-a-principal"}))
    expect(kms.create_key, "MalformedPolicyDocumentException",
           Policy=key_policy({"Actions": "kms:*"}))
    assert {k["KeyId"] for k in kms.list_keys()["Keys"]} == before
    good = key_policy({"Condition": {"StringNotEquals": {"aws:PrincipalAccount": "111122223333"}}})
    created = kms.create_key(Policy=good)["KeyMetadata"]
    assert created["KeyState"] == "Enabled"


# ---- 16: a recreated user does not inherit the old user's resource-policy grants ---------------


def test_a_recreated_user_does_not_inherit_a_resource_policy_grant(secured):
    admin = secured.admin()
    arn = admin.create_secret(Name="user16/shared", SecretString="for-the-first-bob")["ARN"]
    nothing = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]}
    first = secured.client(secured.user("bob16", nothing))
    bob_arn = "arn:aws:iam::000000000000:user/bob16"
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": bob_arn},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    admin.put_resource_policy(SecretId=arn, ResourcePolicy=json.dumps(policy))
    # While the user exists the policy reads as written.
    assert json.loads(admin.get_resource_policy(SecretId=arn)["ResourcePolicy"]) == policy
    assert first.get_secret_value(SecretId=arn)["SecretString"] == "for-the-first-bob"

    secured.coffer_admin("delete-user", "bob16")
    # Once the user is gone, the policy names its unique id, as AWS shows it.
    shown = json.loads(admin.get_resource_policy(SecretId=arn)["ResourcePolicy"])
    principal = shown["Statement"][0]["Principal"]["AWS"]
    assert principal.startswith("AIDA") and len(principal) == 20, principal

    second = secured.client(secured.user("bob16", nothing))
    expect(second.get_secret_value, "AccessDeniedException", SecretId=arn)
    # The new user with the same name is not the one the policy names.
    assert json.loads(admin.get_resource_policy(SecretId=arn)["ResourcePolicy"]) == shown


def test_a_resource_policy_naming_a_user_that_does_not_exist_is_refused(secured):
    admin = secured.admin()
    admin.create_secret(Name="user16/future", SecretString="v")
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::000000000000:user/not-yet16"]},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    expect(admin.put_resource_policy, "MalformedPolicyDocumentException",
           "This resource policy contains an unsupported principal.",
           SecretId="user16/future", ResourcePolicy=json.dumps(policy))
    assert "ResourcePolicy" not in admin.get_resource_policy(SecretId="user16/future")


def test_a_recreated_user_does_not_inherit_a_key_policy_grant(secured):
    kms_admin = secured.client(secured.admin_key, service="kms")
    nothing = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]}
    first = secured.client(secured.user("kbob16", nothing), service="kms")
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "bob", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/kbob16"},
         "Action": ["kms:Encrypt", "kms:DescribeKey"], "Resource": "*"}]}
    key_id = kms_admin.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    first.encrypt(KeyId=key_id, Plaintext=b"x")
    secured.coffer_admin("delete-user", "kbob16")
    second = secured.client(secured.user("kbob16", nothing), service="kms")
    expect(second.encrypt, "AccessDeniedException", KeyId=key_id, Plaintext=b"x")
    policy["Statement"][1]["Principal"]["AWS"] = "arn:aws:iam::000000000000:user/nobody16"
    expect(kms_admin.create_key, "MalformedPolicyDocumentException",
           "Policy contains a statement with one or more invalid principals.", Policy=json.dumps(policy))
