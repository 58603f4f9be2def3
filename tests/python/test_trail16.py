"""LookupEvents' ``Resources`` for IAM, STS, KMS and Secrets Manager events, as CloudTrail's
event history lists them (docs/design/audit.md, "Resources of IAM, STS and KMS events"):
IAM users, groups and roles by name, managed policies by ARN and inline ones by name, access
keys by id; STS's issued access key, the session and the role assumed by ARN; KMS keys by
ARN for key operations too; secrets by ARN. And the ``ResourceType`` and ``ResourceName``
lookup attributes finding events by these resources. The resources are derived when the
trail is read: an IAM event's stored record gains no ``resources`` member.

boto3 against a server without --dev (SQLite).
"""

from __future__ import annotations

import json
import uuid

import pytest

from iam_api_support import Server

ACCOUNT = "000000000000"
ALLOW_ALL = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("trail16"))
    yield server
    server.server.stop()


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def lookup(srv, key: str, value: str) -> list[dict]:
    """Every LookupEvents entry matching one attribute, newest first (all pages)."""
    ct = srv.client("cloudtrail")
    entries, token = [], None
    while True:
        extra = {"NextToken": token} if token else {}
        page = ct.lookup_events(LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}],
                                MaxResults=50, **extra)
        entries += page["Events"]
        token = page.get("NextToken")
        if not token:
            return entries


def entry(srv, name: str, resource_name: str) -> dict:
    """The newest entry named `name` found by the ResourceName `resource_name`."""
    found = [e for e in lookup(srv, "ResourceName", resource_name) if e["EventName"] == name]
    assert found, f"no {name} event found by ResourceName {resource_name}"
    return found[0]


def resources(e: dict) -> list[tuple[str, str]]:
    return [(r["ResourceType"], r["ResourceName"]) for r in e["Resources"]]


def trust_account() -> str:
    statement = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                 "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_iam_events_list_the_users_roles_policies_and_keys_they_touched(srv):
    iam = srv.client("iam")
    user, role, group = uname("bob"), uname("role"), uname("grp")
    iam.create_user(UserName=user)
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust_account())
    iam.create_group(GroupName=group)
    policy_arn = iam.create_policy(PolicyName=uname("pol"), PolicyDocument=ALLOW_ALL)["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=policy_arn)
    iam.attach_user_policy(UserName=user, PolicyArn=policy_arn)
    iam.put_user_policy(UserName=user, PolicyName="inline-read", PolicyDocument=ALLOW_ALL)
    iam.add_user_to_group(GroupName=group, UserName=user)
    key_id = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")

    assert resources(entry(srv, "CreateUser", user)) == [("AWS::IAM::User", user)]
    assert resources(entry(srv, "CreateRole", role)) == [("AWS::IAM::Role", role)]
    assert resources(entry(srv, "CreateGroup", group)) == [("AWS::IAM::Group", group)]
    assert resources(entry(srv, "CreatePolicy", policy_arn)) == [("AWS::IAM::Policy", policy_arn)]
    assert resources(entry(srv, "AttachRolePolicy", role)) == [
        ("AWS::IAM::Policy", policy_arn), ("AWS::IAM::Role", role)]
    assert resources(entry(srv, "AttachUserPolicy", user)) == [
        ("AWS::IAM::Policy", policy_arn), ("AWS::IAM::User", user)]
    assert resources(entry(srv, "PutUserPolicy", user)) == [
        ("AWS::IAM::Policy", "inline-read"), ("AWS::IAM::User", user)]
    assert resources(entry(srv, "AddUserToGroup", group)) == [
        ("AWS::IAM::Group", group), ("AWS::IAM::User", user)]
    created = entry(srv, "CreateAccessKey", key_id)
    assert resources(created) == [("AWS::IAM::AccessKey", key_id), ("AWS::IAM::User", user)]
    assert resources(entry(srv, "UpdateAccessKey", key_id)) == [
        ("AWS::IAM::AccessKey", key_id), ("AWS::IAM::User", user)]
    # Derived when read: the stored record holds no resources of its own.
    assert "resources" not in json.loads(created["CloudTrailEvent"])


def test_resource_lookups_find_iam_events_by_type_and_by_name(srv):
    iam = srv.client("iam")
    user = uname("carol")
    iam.create_user(UserName=user)
    key_id = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    iam.delete_access_key(UserName=user, AccessKeyId=key_id)
    by_key = {e["EventName"] for e in lookup(srv, "ResourceName", key_id)}
    assert by_key == {"CreateAccessKey", "DeleteAccessKey"}
    by_type = lookup(srv, "ResourceType", "AWS::IAM::AccessKey")
    assert {"CreateAccessKey", "DeleteAccessKey"} <= {e["EventName"] for e in by_type}
    assert all(("AWS::IAM::AccessKey" in {t for t, _ in resources(e)}) for e in by_type)
    users = lookup(srv, "ResourceType", "AWS::IAM::User")
    assert any(e["EventName"] == "CreateUser" and ("AWS::IAM::User", user) in resources(e) for e in users)
    # A type no event has finds none; the lookup is of the type, not of a name.
    assert lookup(srv, "ResourceType", "AWS::IAM::SAMLProvider") == []
    assert lookup(srv, "ResourceName", "AWS::IAM::User") == []


def test_assume_role_lists_the_issued_key_the_session_and_the_role(srv):
    iam, sts = srv.client("iam"), srv.client("sts")
    role = iam.create_role(RoleName=uname("assumed"), AssumeRolePolicyDocument=trust_account())["Role"]
    session = uname("sess")
    answer = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=session)
    key_id = answer["Credentials"]["AccessKeyId"]
    assumed = answer["AssumedRoleUser"]
    e = entry(srv, "AssumeRole", key_id)
    assert resources(e) == [
        ("AWS::IAM::AccessKey", key_id),
        ("AWS::STS::AssumedRole", assumed["Arn"]),
        ("AWS::STS::AssumedRole", assumed["AssumedRoleId"]),
        ("AWS::STS::AssumedRole", session),
        ("AWS::IAM::Role", role["Arn"]),
    ]
    # Found by the role's ARN, the session's ARN, and by the types.
    assert entry(srv, "AssumeRole", role["Arn"])["EventId"] == e["EventId"]
    assert entry(srv, "AssumeRole", assumed["Arn"])["EventId"] == e["EventId"]
    for kind in ("AWS::IAM::Role", "AWS::STS::AssumedRole", "AWS::IAM::AccessKey"):
        assert e["EventId"] in {x["EventId"] for x in lookup(srv, "ResourceType", kind)}, kind
    # A call the issued credentials make is found by their key id as a resource too.
    srv.session_client("sts", answer["Credentials"]).get_caller_identity()
    caller = [x for x in lookup(srv, "AccessKeyId", key_id) if x["EventName"] == "GetCallerIdentity"]
    assert caller and caller[0]["Resources"] == []


def test_session_and_federation_tokens_list_the_issued_key(srv):
    iam = srv.client("iam")
    user = uname("fed-issuer")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=ALLOW_ALL)
    created = iam.create_access_key(UserName=user)["AccessKey"]
    sts = srv.client("sts", (created["AccessKeyId"], created["SecretAccessKey"]))
    token = sts.get_session_token()["Credentials"]["AccessKeyId"]
    assert resources(entry(srv, "GetSessionToken", token)) == [("AWS::IAM::AccessKey", token)]
    name = uname("fed")[:32]
    fed = sts.get_federation_token(Name=name, Policy=ALLOW_ALL)
    fed_key = fed["Credentials"]["AccessKeyId"]
    assert resources(entry(srv, "GetFederationToken", fed_key)) == [
        ("AWS::IAM::AccessKey", fed_key),
        ("AWS::STS::FederatedUser", fed["FederatedUser"]["Arn"]),
        ("AWS::STS::FederatedUser", fed["FederatedUser"]["FederatedUserId"]),
        ("AWS::STS::FederatedUser", name),
    ]


def test_kms_key_operations_and_secrets_list_their_arns(srv):
    kms, sm = srv.client("kms"), srv.client("secretsmanager")
    key = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=key["KeyId"])
    kms.enable_key(KeyId=key["Arn"])
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    by_key = lookup(srv, "ResourceName", key["Arn"])
    for name in ("DisableKey", "EnableKey", "Encrypt"):
        found = [e for e in by_key if e["EventName"] == name]
        assert found and resources(found[0]) == [("AWS::KMS::Key", key["Arn"])], name
    keys = {e["EventId"] for e in lookup(srv, "ResourceType", "AWS::KMS::Key")}
    assert {e["EventId"] for e in by_key} <= keys
    secret = sm.create_secret(Name=uname("db"), SecretString="v")
    sm.describe_secret(SecretId=secret["ARN"])
    by_secret = lookup(srv, "ResourceName", secret["ARN"])
    for name in ("CreateSecret", "DescribeSecret"):
        found = [e for e in by_secret if e["EventName"] == name]
        assert found and resources(found[0]) == [("AWS::SecretsManager::Secret", secret["ARN"])], name
