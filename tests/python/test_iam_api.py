"""The IAM API (issue 18, part 1): users, access keys, inline and managed policies and
groups through boto3's ``iam`` client and ``aws iam``, with IAM's exact errors, every call
authorized by the caller's ``iam:*`` permissions, and what IAM changes taking effect on the
next signed request.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import botocore.exceptions
import pytest

from conftest import REGION
from iam_api_support import STORES, serve

ACCOUNT = "000000000000"
READ_SECRETS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:ListSecrets"], "Resource": "*"}],
}


@pytest.fixture(scope="module", params=STORES)
def srv(request, tmp_path_factory):
    return serve(request, tmp_path_factory, "iam")


@pytest.fixture
def iam(srv):
    return srv.client("iam")


def uname(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def expect(fn, code: str, message: str | None = None, status: int | None = None, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        fn(**kwargs)
    err = excinfo.value.response["Error"]
    assert err["Code"] == code, err
    if message is not None:
        assert err["Message"] == message
    if status is not None:
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return excinfo.value


def user_with_key(iam, policy: dict | None = None) -> tuple[str, tuple[str, str]]:
    name = uname()
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return name, (key["AccessKeyId"], key["SecretAccessKey"])


def can_list_secrets(srv, key) -> bool:
    try:
        srv.client("secretsmanager", key).list_secrets()
        return True
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDeniedException", e.response
        return False


# ---- users ------------------------------------------------------------------------------------


def test_users_are_created_read_listed_tagged_and_deleted(iam):
    name = uname()
    created = iam.create_user(UserName=name, Path="/team/", Tags=[{"Key": "team", "Value": "blue"}])["User"]
    assert created["UserName"] == name
    assert created["UserId"].startswith("AIDA")
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/team/{name}"
    got = iam.get_user(UserName=name)["User"]
    assert got["UserId"] == created["UserId"]
    assert got["Tags"] == [{"Key": "team", "Value": "blue"}]
    assert name in [u["UserName"] for u in iam.list_users()["Users"]]
    assert [u["UserName"] for u in iam.list_users(PathPrefix="/team/")["Users"]] == [name]
    expect(iam.create_user, "EntityAlreadyExists", f"User with name {name} already exists.", 409, UserName=name)
    iam.tag_user(UserName=name, Tags=[{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "red"}])
    tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
    assert tags == {"team": "red", "env": "prod"}
    iam.untag_user(UserName=name, TagKeys=["team"])
    assert iam.list_user_tags(UserName=name)["Tags"] == [{"Key": "env", "Value": "prod"}]
    iam.delete_user(UserName=name)
    expect(iam.get_user, "NoSuchEntity", f"The user with name {name} cannot be found.", 404, UserName=name)
    expect(iam.delete_user, "NoSuchEntity", f"The user with name {name} cannot be found.", UserName=name)


def test_get_user_without_a_name_is_the_caller(iam):
    me = iam.get_user()["User"]
    assert me["UserName"] == "admin"
    assert me["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"


def test_invalid_user_names_are_validation_errors(iam):
    expect(iam.create_user, "ValidationError", status=400, UserName="bad name")


# ---- access keys ------------------------------------------------------------------------------


def test_a_third_access_key_is_refused_and_inactive_keys_do_not_authenticate(srv, iam):
    name, key = user_with_key(iam, READ_SECRETS)
    second = iam.create_access_key(UserName=name)["AccessKey"]
    assert second["Status"] == "Active" and len(second["SecretAccessKey"]) == 40
    expect(iam.create_access_key, "LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", 409, UserName=name)
    listed = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert sorted(k["AccessKeyId"] for k in listed) == sorted([key[0], second["AccessKeyId"]])
    assert all("SecretAccessKey" not in k for k in listed)
    assert can_list_secrets(srv, key)
    iam.update_access_key(UserName=name, AccessKeyId=key[0], Status="Inactive")
    assert iam.list_access_keys(UserName=name)["AccessKeyMetadata"][0]["Status"] in ("Active", "Inactive")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        srv.client("secretsmanager", key).list_secrets()
    assert excinfo.value.response["Error"]["Code"] == "UnrecognizedClientException"
    iam.update_access_key(UserName=name, AccessKeyId=key[0], Status="Active")
    assert can_list_secrets(srv, key)
    expect(
        iam.update_access_key,
        "NoSuchEntity",
        "The Access Key with id AKIANOTAKEY000000000 cannot be found.",
        UserName=name,
        AccessKeyId="AKIANOTAKEY000000000",
        Status="Active",
    )
    expect(iam.delete_user, "DeleteConflict", "Cannot delete entity, must delete access keys first.", 409, UserName=name)
    iam.delete_access_key(UserName=name, AccessKeyId=key[0])
    iam.delete_access_key(UserName=name, AccessKeyId=second["AccessKeyId"])
    with pytest.raises(botocore.exceptions.ClientError):
        srv.client("secretsmanager", key).list_secrets()
    expect(iam.delete_user, "DeleteConflict", "Cannot delete entity, must delete policies first.", UserName=name)
    iam.delete_user_policy(UserName=name, PolicyName="p")
    iam.delete_user(UserName=name)


def test_a_user_manages_its_own_keys_without_naming_itself(srv, iam):
    self_service = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["iam:ListAccessKeys", "iam:CreateAccessKey"], "Resource": "*"}],
    }
    name, key = user_with_key(iam, self_service)
    own = srv.client("iam", key)
    assert [k["AccessKeyId"] for k in own.list_access_keys()["AccessKeyMetadata"]] == [key[0]]
    assert own.create_access_key()["AccessKey"]["UserName"] == name


# ---- inline policies --------------------------------------------------------------------------


def test_inline_user_policies_grant_on_the_next_request(srv, iam):
    name, key = user_with_key(iam)
    assert not can_list_secrets(srv, key)
    expect(
        iam.put_user_policy, "MalformedPolicyDocument", "Syntax errors in policy.", 400,
        UserName=name, PolicyName="p", PolicyDocument="{not json",
    )
    iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=json.dumps(READ_SECRETS))
    assert can_list_secrets(srv, key)
    got = iam.get_user_policy(UserName=name, PolicyName="read")
    assert got["PolicyDocument"] == READ_SECRETS
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["read"]
    expect(
        iam.get_user_policy, "NoSuchEntity", "The user policy with name nope cannot be found.",
        UserName=name, PolicyName="nope",
    )
    iam.delete_user_policy(UserName=name, PolicyName="read")
    assert not can_list_secrets(srv, key)


# ---- managed policies -------------------------------------------------------------------------


def test_managed_policies_attach_detach_and_refuse_deletion_while_attached(srv, iam):
    name, key = user_with_key(iam)
    pname = uname("pol")
    policy = iam.create_policy(PolicyName=pname, PolicyDocument=json.dumps(READ_SECRETS), Description="read")["Policy"]
    arn = policy["Arn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/{pname}"
    assert policy["DefaultVersionId"] == "v1" and policy["PolicyId"].startswith("ANPA")
    expect(
        iam.create_policy, "EntityAlreadyExists",
        f"A policy called {pname} already exists. Duplicate names are not allowed.",
        PolicyName=pname, PolicyDocument=json.dumps(READ_SECRETS),
    )
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert version["Document"] == READ_SECRETS and version["IsDefaultVersion"] is True
    assert arn in [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]]
    assert not can_list_secrets(srv, key)
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    assert can_list_secrets(srv, key)
    assert iam.list_attached_user_policies(UserName=name)["AttachedPolicies"] == [{"PolicyName": pname, "PolicyArn": arn}]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    expect(iam.delete_policy, "DeleteConflict", "Cannot delete a policy attached to entities.", 409, PolicyArn=arn)
    expect(iam.delete_user, "DeleteConflict", "Cannot delete entity, must delete access keys first.", UserName=name)
    iam.detach_user_policy(UserName=name, PolicyArn=arn)
    assert not can_list_secrets(srv, key)
    expect(iam.detach_user_policy, "NoSuchEntity", f"Policy {arn} was not found.", UserName=name, PolicyArn=arn)
    iam.delete_policy(PolicyArn=arn)
    expect(iam.get_policy, "NoSuchEntity", f"Policy {arn} was not found.", PolicyArn=arn)
    missing = f"arn:aws:iam::{ACCOUNT}:policy/none"
    expect(
        iam.attach_user_policy, "NoSuchEntity", f"Policy {missing} does not exist or is not attachable.",
        UserName=name, PolicyArn=missing,
    )


# ---- groups -----------------------------------------------------------------------------------


def test_group_policies_apply_to_members(srv, iam):
    name, key = user_with_key(iam)
    group = uname("g")
    created = iam.create_group(GroupName=group)["Group"]
    assert created["GroupId"].startswith("AGPA") and created["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/{group}"
    expect(iam.create_group, "EntityAlreadyExists", f"Group with name {group} already exists.", GroupName=group)
    iam.put_group_policy(GroupName=group, PolicyName="read", PolicyDocument=json.dumps(READ_SECRETS))
    assert not can_list_secrets(srv, key)
    iam.add_user_to_group(GroupName=group, UserName=name)
    assert can_list_secrets(srv, key)
    assert [u["UserName"] for u in iam.get_group(GroupName=group)["Users"]] == [name]
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"]] == [group]
    assert iam.get_group_policy(GroupName=group, PolicyName="read")["PolicyDocument"] == READ_SECRETS
    expect(iam.delete_group, "DeleteConflict", "Cannot delete entity, must remove users from group first.", GroupName=group)
    iam.remove_user_from_group(GroupName=group, UserName=name)
    assert not can_list_secrets(srv, key)
    iam.delete_group_policy(GroupName=group, PolicyName="read")
    iam.delete_group(GroupName=group)
    expect(iam.get_group, "NoSuchEntity", f"The group with name {group} cannot be found.", GroupName=group)


# ---- roles (definitions; sessions are in test_iam_api_roles.py) --------------------------------


def test_roles_are_created_with_a_trust_policy(iam):
    role = uname("r")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}],
    }
    created = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=7200)["Role"]
    assert created["RoleId"].startswith("AROA") and created["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/{role}"
    got = iam.get_role(RoleName=role)["Role"]
    assert got["AssumeRolePolicyDocument"] == trust and got["MaxSessionDuration"] == 7200
    assert role in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    expect(iam.create_role, "EntityAlreadyExists", f"Role with name {role} already exists.",
           RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    expect(iam.create_role, "MalformedPolicyDocument", RoleName=uname("r"), AssumeRolePolicyDocument="[]")
    iam.put_role_policy(RoleName=role, PolicyName="read", PolicyDocument=json.dumps(READ_SECRETS))
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["read"]
    expect(iam.delete_role, "DeleteConflict", "Cannot delete entity, must delete policies first.", RoleName=role)
    iam.delete_role_policy(RoleName=role, PolicyName="read")
    iam.delete_role(RoleName=role)
    expect(iam.get_role, "NoSuchEntity", f"The role with name {role} cannot be found.", RoleName=role)


# ---- authorization and audit ------------------------------------------------------------------


def test_every_iam_call_needs_its_iam_permission(srv, iam):
    name, key = user_with_key(iam, READ_SECRETS)
    other = srv.client("iam", key)
    target = uname()
    expect(
        other.create_user,
        "AccessDenied",
        f"User: arn:aws:iam::{ACCOUNT}:user/{name} is not authorized to perform: iam:CreateUser on resource: "
        f"arn:aws:iam::{ACCOUNT}:user/{target} because no identity-based policy allows the iam:CreateUser action",
        403,
        UserName=target,
    )
    expect(other.list_users, "AccessDenied", status=403)
    # The caller cannot give itself more rights either.
    expect(other.put_user_policy, "AccessDenied", UserName=name, PolicyName="x",
           PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    scoped = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:GetUser", "Resource": f"arn:aws:iam::{ACCOUNT}:user/{name}"}],
    }
    iam.put_user_policy(UserName=name, PolicyName="self", PolicyDocument=json.dumps(scoped))
    assert other.get_user()["User"]["UserName"] == name
    expect(other.get_user, "AccessDenied", UserName="admin")


def test_iam_calls_are_audited_without_the_secret_access_key(srv, iam):
    name = uname()
    iam.create_user(UserName=name)
    secret = iam.create_access_key(UserName=name)["AccessKey"]["SecretAccessKey"]
    trail = srv.client("cloudtrail")
    events = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateAccessKey"}])["Events"]
    assert events, "CreateAccessKey was not audited"
    record = json.loads(events[0]["CloudTrailEvent"])
    assert record["eventSource"] == "iam.amazonaws.com"
    assert record["userIdentity"]["arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    dumped = json.dumps([json.loads(e["CloudTrailEvent"]) for e in events])
    assert secret not in dumped


def test_unknown_iam_actions_are_invalid(srv):
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="POST", url=srv.url + "/", data="Action=FlyToTheMoon&Version=2010-05-08",
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(*srv.admin_key), "iam", "us-east-1").add_auth(req)
    resp = requests.post(srv.url + "/", data=req.body, headers=dict(req.headers), timeout=10)
    assert resp.status_code == 400
    assert "<Code>InvalidAction</Code>" in resp.text
    assert "Could not find operation FlyToTheMoon for version 2010-05-08" in resp.text


# ---- the AWS CLI ------------------------------------------------------------------------------


def test_aws_iam_through_the_cli(srv, tmp_path):
    env = dict(os.environ)
    env.update({
        "AWS_SHARED_CREDENTIALS_FILE": str(srv.credentials_file),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_MAX_ATTEMPTS": "1",
    })
    name = uname("cli")

    def aws(*args: str) -> dict:
        done = subprocess.run(
            ["aws", *args, "--endpoint-url", srv.url, "--profile", "coffer", "--output", "json"],
            capture_output=True, text=True, env=env, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}

    assert aws("iam", "create-user", "--user-name", name)["User"]["UserName"] == name
    assert name in [u["UserName"] for u in aws("iam", "list-users")["Users"]]
    key = aws("iam", "create-access-key", "--user-name", name)["AccessKey"]
    aws("iam", "update-access-key", "--user-name", name, "--access-key-id", key["AccessKeyId"], "--status", "Inactive")
    assert aws("iam", "list-access-keys", "--user-name", name)["AccessKeyMetadata"][0]["Status"] == "Inactive"
    aws("iam", "delete-access-key", "--user-name", name, "--access-key-id", key["AccessKeyId"])
    aws("iam", "delete-user", "--user-name", name)


def test_policy_versions_change_what_applies_on_the_next_request(srv, iam):
    name, key = user_with_key(iam)
    nothing = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:DescribeSecret", "Resource": "*"}]}
    arn = iam.create_policy(PolicyName=uname("ver"), PolicyDocument=json.dumps(nothing))["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    assert not can_list_secrets(srv, key)
    v2 = iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(READ_SECRETS), SetAsDefault=True)["PolicyVersion"]
    assert v2["VersionId"] == "v2" and v2["IsDefaultVersion"] is True
    assert can_list_secrets(srv, key)
    versions = {v["VersionId"]: v["IsDefaultVersion"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]}
    assert versions == {"v1": False, "v2": True}
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v1")
    assert not can_list_secrets(srv, key)
    expect(iam.delete_policy_version, "DeleteConflict", "Cannot delete the default version of a policy.", PolicyArn=arn, VersionId="v1")
    for _ in range(3):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(nothing))
    expect(iam.create_policy_version, "LimitExceeded", status=409, PolicyArn=arn, PolicyDocument=json.dumps(nothing))
    iam.detach_user_policy(UserName=name, PolicyArn=arn)
    expect(iam.delete_policy, "DeleteConflict", PolicyArn=arn)
    for v in ("v2", "v3", "v4", "v5"):
        iam.delete_policy_version(PolicyArn=arn, VersionId=v)
    iam.delete_policy(PolicyArn=arn)


def test_roles_are_tagged(iam):
    role = uname("r")
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=doc, Tags=[{"Key": "team", "Value": "blue"}])
    iam.tag_role(RoleName=role, Tags=[{"Key": "env", "Value": "prod"}])
    assert {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role)["Tags"]} == {"team": "blue", "env": "prod"}
    iam.untag_role(RoleName=role, TagKeys=["team"])
    assert iam.get_role(RoleName=role)["Role"]["Tags"] == [{"Key": "env", "Value": "prod"}]
    iam.delete_role(RoleName=role)


def test_listings_page_with_max_items_and_marker(iam):
    prefix = f"/page-{uuid.uuid4().hex[:6]}/"
    names = sorted(uname("p") for _ in range(5))
    for n in names:
        iam.create_user(UserName=n, Path=prefix)
    first = iam.list_users(PathPrefix=prefix, MaxItems=2)
    assert first["IsTruncated"] is True and len(first["Users"]) == 2
    pages = iam.get_paginator("list_users").paginate(PathPrefix=prefix, PaginationConfig={"PageSize": 2})
    seen = [u["UserName"] for p in pages for u in p["Users"]]
    assert seen == names
    expect(iam.list_users, "ValidationError", MaxItems=1001)


def test_an_iam_change_whose_event_cannot_be_written_is_not_made(tmp_path):
    from conftest import start_server
    from iam_api_support import Server

    first = Server(tmp_path)
    first.server.stop()
    full = start_server(["serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0", "--audit-log", "/dev/full"])
    try:
        first.url = full.url
        name = uname("never")
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            first.client("iam").create_user(UserName=name)
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    finally:
        full.stop()
    again = Server(tmp_path)
    try:
        expect(again.client("iam").get_user, "NoSuchEntity", UserName=name)
    finally:
        again.server.stop()
