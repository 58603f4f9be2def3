"""IAM tag keys of users and roles (fidelity17): one key whatever its case, the case given
last kept, through boto3 against ``coffer serve``.

AWS's User Guide (*Tagging IAM resources*): tag keys of IAM users and roles are not case
sensitive but case is preserved, so a user cannot hold both ``Department`` and
``department``; for IAM's other resource types keys are case sensitive. Real IAM, as its
users have reported it: a role tagged ``Test`` then ``test`` lists ``test`` alone, and a
CreateRole or TagRole giving one key twice in different case is refused with
``InvalidInput``, "Duplicate tag keys found. Please note that Tag keys are case
insensitive."
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from conftest import REGION
from iam_api_support import NO_RETRY, Server
from test_iam_api import expect

DUPLICATE = "Duplicate tag keys found. Please note that Tag keys are case insensitive."
TRUST = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
                   "Action": "sts:AssumeRole"}],
})


@pytest.fixture(scope="module")
def iam(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("tags17"), extra=["--quota-scale", "100"])
    yield server.client("iam")
    server.server.stop()


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def tags(*pairs: tuple[str, str]) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in pairs]


def test_a_users_tag_given_again_in_another_case_replaces_it_key_and_value(iam):
    name = uname("t17u")
    iam.create_user(UserName=name, Tags=tags(("Team", "blue"), ("env", "prod")))
    iam.tag_user(UserName=name, Tags=tags(("team", "red")))
    listed = iam.list_user_tags(UserName=name)["Tags"]
    assert sorted(listed, key=lambda t: t["Key"]) == tags(("env", "prod"), ("team", "red"))
    got = iam.get_user(UserName=name)["User"]["Tags"]
    assert sorted(got, key=lambda t: t["Key"]) == tags(("env", "prod"), ("team", "red"))


def test_a_roles_tag_given_again_in_another_case_replaces_it_key_and_value(iam):
    role = uname("t17r")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST, Tags=tags(("Test", "1")))
    iam.tag_role(RoleName=role, Tags=tags(("test", "2")))
    assert iam.list_role_tags(RoleName=role)["Tags"] == tags(("test", "2"))
    assert iam.get_role(RoleName=role)["Role"]["Tags"] == tags(("test", "2"))


def test_untagging_removes_a_users_or_roles_key_given_in_any_case(iam):
    name, role = uname("t17u"), uname("t17r")
    iam.create_user(UserName=name, Tags=tags(("Department", "finance"), ("env", "prod")))
    iam.untag_user(UserName=name, TagKeys=["DEPARTMENT"])
    assert iam.list_user_tags(UserName=name)["Tags"] == tags(("env", "prod"))
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST, Tags=tags(("Owner", "ops")))
    iam.untag_role(RoleName=role, TagKeys=["owner"])
    assert iam.list_role_tags(RoleName=role)["Tags"] == []


@pytest.mark.parametrize("given", [
    (("Team", "a"), ("team", "b")),
    (("env", "a"), ("env", "a")),
])
def test_a_user_or_role_created_with_one_key_twice_is_refused_and_not_created(iam, given):
    name, role = uname("t17u"), uname("t17r")
    expect(iam.create_user, "InvalidInput", DUPLICATE, 400, UserName=name, Tags=tags(*given))
    expect(iam.get_user, "NoSuchEntity", UserName=name)
    expect(iam.create_role, "InvalidInput", DUPLICATE, 400, RoleName=role,
           AssumeRolePolicyDocument=TRUST, Tags=tags(*given))
    expect(iam.get_role, "NoSuchEntity", RoleName=role)


def test_tagging_with_one_key_twice_is_refused_whole(iam):
    name, role = uname("t17u"), uname("t17r")
    iam.create_user(UserName=name, Tags=tags(("Team", "blue")))
    expect(iam.tag_user, "InvalidInput", DUPLICATE, 400, UserName=name,
           Tags=tags(("env", "prod"), ("team", "red"), ("TEAM", "green")))
    assert iam.list_user_tags(UserName=name)["Tags"] == tags(("Team", "blue"))
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST)
    expect(iam.tag_role, "InvalidInput", DUPLICATE, 400, RoleName=role,
           Tags=tags(("Name", "a"), ("name", "b")))
    assert iam.list_role_tags(RoleName=role)["Tags"] == []


def test_a_managed_policys_tag_keys_stay_case_sensitive(iam):
    doc = json.dumps({"Version": "2012-10-17",
                      "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]})
    arn = iam.create_policy(PolicyName=uname("t17p"), PolicyDocument=doc,
                            Tags=tags(("Team", "a"), ("team", "b")))["Policy"]["Arn"]
    got = iam.get_policy(PolicyArn=arn)["Policy"]["Tags"]
    assert sorted(got, key=lambda t: t["Key"]) == tags(("Team", "a"), ("team", "b"))


def test_a_deny_that_ignores_case_holds_a_users_tag_against_its_other_spellings(iam):
    """TEAM now replaces or removes a user's `team`, as in AWS: a Deny naming `team` in
    `aws:TagKeys` holds against other spellings only with an operator that ignores case
    (or an allow-list of keys)."""
    name = uname("t17g")
    iam.create_user(UserName=name, Tags=tags(("team", "ops")))
    guard = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["iam:TagUser", "iam:UntagUser"], "Resource": "*",
         "Condition": {"ForAnyValue:StringEqualsIgnoreCase": {"aws:TagKeys": ["team"]}}},
    ]}
    iam.put_user_policy(UserName=name, PolicyName="guard", PolicyDocument=json.dumps(guard))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    own = boto3.client("iam", endpoint_url=iam.meta.endpoint_url, region_name=REGION, config=NO_RETRY,
                       aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    expect(own.tag_user, "AccessDenied", UserName=name, Tags=tags(("TEAM", "finance")))
    expect(own.untag_user, "AccessDenied", UserName=name, TagKeys=["Team"])
    assert iam.list_user_tags(UserName=name)["Tags"] == tags(("team", "ops"))
    own.tag_user(UserName=name, Tags=tags(("env", "dev")))
