"""AWS managed IAM policies (managed16): ``arn:aws:iam::aws:policy/...`` attached to users,
groups and roles and named as session policies, through boto3 against ``coffer serve``
(enforcing) and ``coffer serve --dev``.

What each policy allows is what its document allows (AWS's documents: ReadOnlyAccess has
secretsmanager:Describe*/List*/GetResourcePolicy, not GetSecretValue; SecretsManagerReadWrite
has secretsmanager:* and no IAM action); GetPolicy/GetPolicyVersion show AWS's ids, versions
and descriptions; ListPolicies' Scope picks AWS's or the account's; the policies cannot be
changed; an unknown one is NoSuchEntity in IAM's words."""

from __future__ import annotations

import json
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import REGION
from iam_api_support import Server

AWS_POLICY = "arn:aws:iam::aws:policy/"
ADMIN = AWS_POLICY + "AdministratorAccess"
READ_ONLY = AWS_POLICY + "ReadOnlyAccess"
SM_READ_WRITE = AWS_POLICY + "SecretsManagerReadWrite"
NOPE = AWS_POLICY + "Nope"
SERVED = {
    "AdministratorAccess": ("/", "v1"),
    "AWSKeyManagementServicePowerUser": ("/", "v2"),
    "AWSLambdaBasicExecutionRole": ("/service-role/", "v1"),
    "AWSLambdaVPCAccessExecutionRole": ("/service-role/", "v3"),
    "IAMFullAccess": ("/", "v2"),
    "IAMReadOnlyAccess": ("/", "v4"),
    "PowerUserAccess": ("/", "v12"),
    "ReadOnlyAccess": ("/", "v182"),
    "SecretsManagerReadWrite": ("/", "v5"),
}
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # The tests make many IAM changes in a row: AWS's quotas would throttle them.
    server = Server(tmp_path_factory.mktemp("managed16"), extra=["--quota-scale", "100"])
    yield server
    server.server.stop()


@pytest.fixture(scope="module")
def account(srv) -> str:
    return srv.client("sts").get_caller_identity()["Account"]


@pytest.fixture(scope="module")
def secret(srv) -> str:
    sm = srv.client("secretsmanager")
    return sm.create_secret(Name=uname("m16"), SecretString="managed16-value")["ARN"]


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def refused(call, code: str, message: str | None = None, status: int | None = None) -> dict:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert err["Code"] == code, err
    if message is not None:
        assert err["Message"] == message
    if status is not None:
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return err


def allowed(call) -> bool:
    """Whether `call` is authorized: any answer but an access denial counts as allowed."""
    try:
        call()
        return True
    except botocore.exceptions.ClientError as e:
        code = e.response["Error"]["Code"]
        if code in ("AccessDenied", "AccessDeniedException"):
            return False
        return True


def user_with_key(srv, name: str) -> tuple[str, str]:
    iam = srv.client("iam")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def what_it_may_do(srv, key, secret: str, token: str | None = None) -> dict[str, bool]:
    sm = srv.client("secretsmanager", key, token)
    iam = srv.client("iam", key, token)
    kms = srv.client("kms", key, token)
    return {
        "ListSecrets": allowed(lambda: sm.list_secrets()),
        "DescribeSecret": allowed(lambda: sm.describe_secret(SecretId=secret)),
        "GetResourcePolicy": allowed(lambda: sm.get_resource_policy(SecretId=secret)),
        "GetSecretValue": allowed(lambda: sm.get_secret_value(SecretId=secret)),
        "TagResource": allowed(lambda: sm.tag_resource(SecretId=secret, Tags=[{"Key": "k", "Value": "v"}])),
        "ListUsers": allowed(lambda: iam.list_users()),
        "CreateUser": allowed(lambda: iam.create_user(UserName=uname("made"))),
        "ListKeys": allowed(lambda: kms.list_keys()),
        "CreateKey": allowed(lambda: kms.create_key()),
    }


EVERYTHING = dict.fromkeys(
    ["ListSecrets", "DescribeSecret", "GetResourcePolicy", "GetSecretValue", "TagResource",
     "ListUsers", "CreateUser", "ListKeys", "CreateKey"], True)
# ReadOnlyAccess v182: secretsmanager:Describe*, GetResourcePolicy, List*; iam:List*; kms:List*.
READS = {**EVERYTHING, "GetSecretValue": False, "TagResource": False, "CreateUser": False, "CreateKey": False}
# SecretsManagerReadWrite v5: secretsmanager:*, kms:DescribeKey/ListAliases/ListKeys, no IAM.
SECRETS = {**EVERYTHING, "ListUsers": False, "CreateUser": False, "CreateKey": False}
NOTHING = dict.fromkeys(EVERYTHING, False)


def test_a_users_aws_managed_policy_allows_what_its_document_allows(srv, secret):
    iam = srv.client("iam")
    name = uname("m16-user")
    key = user_with_key(srv, name)
    assert what_it_may_do(srv, key, secret) == NOTHING
    iam.attach_user_policy(UserName=name, PolicyArn=READ_ONLY)
    assert what_it_may_do(srv, key, secret) == READS
    iam.detach_user_policy(UserName=name, PolicyArn=READ_ONLY)
    iam.attach_user_policy(UserName=name, PolicyArn=SM_READ_WRITE)
    assert what_it_may_do(srv, key, secret) == SECRETS
    iam.attach_user_policy(UserName=name, PolicyArn=ADMIN)
    assert what_it_may_do(srv, key, secret) == EVERYTHING
    attached = iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]
    assert sorted((p["PolicyName"], p["PolicyArn"]) for p in attached) == [
        ("AdministratorAccess", ADMIN), ("SecretsManagerReadWrite", SM_READ_WRITE)]
    # Detached, they allow nothing more.
    iam.detach_user_policy(UserName=name, PolicyArn=ADMIN)
    iam.detach_user_policy(UserName=name, PolicyArn=SM_READ_WRITE)
    assert what_it_may_do(srv, key, secret) == NOTHING


def test_a_groups_aws_managed_policy_applies_to_its_members(srv, secret):
    iam = srv.client("iam")
    name, group = uname("m16-member"), uname("m16-group")
    key = user_with_key(srv, name)
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=name)
    iam.attach_group_policy(GroupName=group, PolicyArn=READ_ONLY)
    assert what_it_may_do(srv, key, secret) == READS


def trust(account: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}]})


def role_with(srv, account: str, *policies: str) -> str:
    iam = srv.client("iam")
    name = uname("m16-role")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust(account))["Role"]["Arn"]
    for policy in policies:
        iam.attach_role_policy(RoleName=name, PolicyArn=policy)
    return arn


def session(srv, role: str, **extra) -> tuple[tuple[str, str], str]:
    creds = srv.client("sts").assume_role(RoleArn=role, RoleSessionName="managed16", **extra)["Credentials"]
    return (creds["AccessKeyId"], creds["SecretAccessKey"]), creds["SessionToken"]


def test_a_roles_aws_managed_policies_decide_what_its_sessions_may_do(srv, account, secret):
    for policies, expected in [((SM_READ_WRITE,), SECRETS), ((READ_ONLY,), READS), ((ADMIN,), EVERYTHING)]:
        key, token = session(srv, role_with(srv, account, *policies))
        assert what_it_may_do(srv, key, secret, token) == expected, policies


def test_a_session_policy_may_name_an_aws_managed_policy(srv, account, secret):
    role = role_with(srv, account, ADMIN)
    key, token = session(srv, role, PolicyArns=[{"arn": READ_ONLY}])
    assert what_it_may_do(srv, key, secret, token) == READS
    # Together with an inline session policy: what either allows (of what the role may do).
    inline = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "kms:Decrypt"], "Resource": "*"}]})
    key, token = session(srv, role, PolicyArns=[{"arn": READ_ONLY}], Policy=inline)
    assert what_it_may_do(srv, key, secret, token) == {**READS, "GetSecretValue": True}
    # One Coffer has not got is refused as one that names no policy.
    refused(lambda: session(srv, role, PolicyArns=[{"arn": NOPE}]), "MalformedPolicyDocument",
            f"Policy {NOPE} does not exist or is not attachable.", 400)


def test_get_policy_and_get_policy_version_show_awss_policy(srv):
    iam = srv.client("iam")
    policy = iam.get_policy(PolicyArn=SM_READ_WRITE)["Policy"]
    assert policy == {
        "PolicyName": "SecretsManagerReadWrite",
        "PolicyId": "ANPAI3VG7CI5BIQZQ6G2E",
        "Arn": SM_READ_WRITE,
        "Path": "/",
        "DefaultVersionId": "v5",
        "AttachmentCount": policy["AttachmentCount"],
        "PermissionsBoundaryUsageCount": 0,
        "IsAttachable": True,
        "Description": "Provides read/write access to AWS Secrets Manager via the AWS Management Console. "
                       "Note: this exludes IAM actions, so combine with IAMFullAccess if rotation "
                       "configuration is required.",
        "CreateDate": policy["CreateDate"],
        "UpdateDate": policy["UpdateDate"],
        "Tags": [],
    }
    assert policy["CreateDate"].isoformat() == "2018-04-04T18:05:29+00:00"
    assert policy["UpdateDate"].isoformat() == "2024-02-22T18:12:06+00:00"
    version = iam.get_policy_version(PolicyArn=SM_READ_WRITE, VersionId="v5")["PolicyVersion"]
    assert (version["VersionId"], version["IsDefaultVersion"]) == ("v5", True)
    assert version["CreateDate"] == policy["UpdateDate"]
    first = version["Document"]["Statement"][0]
    assert (first["Sid"], first["Effect"], first["Resource"]) == ("BasePermissions", "Allow", "*")
    assert "secretsmanager:*" in first["Action"]
    # ReadOnlyAccess reads secrets' metadata, never their values.
    read_only = iam.get_policy_version(PolicyArn=READ_ONLY, VersionId="v182")["PolicyVersion"]["Document"]
    actions = [a for s in read_only["Statement"] for a in s.get("Action", [])]
    assert [a for a in actions if a.startswith("secretsmanager:")] == [
        "secretsmanager:Describe*", "secretsmanager:GetResourcePolicy", "secretsmanager:List*"]
    versions = iam.list_policy_versions(PolicyArn=ADMIN)["Versions"]
    assert [(v["VersionId"], v["IsDefaultVersion"]) for v in versions] == [("v1", True)]
    lambda_role = AWS_POLICY + "service-role/AWSLambdaBasicExecutionRole"
    got = iam.get_policy(PolicyArn=lambda_role)["Policy"]
    assert (got["Path"], got["Arn"], got["PolicyId"]) == ("/service-role/", lambda_role, "ANPAJNCQGXC42545SKXIK")
    # Without its path, the ARN names no policy.
    refused(lambda: iam.get_policy(PolicyArn=AWS_POLICY + "AWSLambdaBasicExecutionRole"), "NoSuchEntity")


def test_attachment_count_counts_the_attachments_of_the_callers_account(srv, account):
    iam = srv.client("iam")
    policy = AWS_POLICY + "IAMReadOnlyAccess"
    before = iam.get_policy(PolicyArn=policy)["Policy"]["AttachmentCount"]
    user, group = uname("m16-count"), uname("m16-count")
    iam.create_user(UserName=user)
    iam.create_group(GroupName=group)
    role = role_with(srv, account, policy).rsplit("/", 1)[1]
    iam.attach_user_policy(UserName=user, PolicyArn=policy)
    iam.attach_group_policy(GroupName=group, PolicyArn=policy)
    assert iam.get_policy(PolicyArn=policy)["Policy"]["AttachmentCount"] == before + 3
    entities = iam.list_entities_for_policy(PolicyArn=policy)
    assert user in [u["UserName"] for u in entities["PolicyUsers"]]
    assert group in [g["GroupName"] for g in entities["PolicyGroups"]]
    assert role in [r["RoleName"] for r in entities["PolicyRoles"]]
    only_users = iam.list_entities_for_policy(PolicyArn=policy, EntityFilter="User")
    assert (only_users["PolicyGroups"], only_users["PolicyRoles"]) == ([], [])
    assert user in [u["UserName"] for u in only_users["PolicyUsers"]]
    iam.detach_user_policy(UserName=user, PolicyArn=policy)
    assert iam.get_policy(PolicyArn=policy)["Policy"]["AttachmentCount"] == before + 2
    refused(lambda: iam.list_entities_for_policy(PolicyArn=NOPE), "NoSuchEntity", f"Policy {NOPE} was not found.")


def test_list_policies_scopes(srv):
    iam = srv.client("iam")
    local = iam.create_policy(PolicyName=uname("m16-local"), PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:ListSecrets",
                                                  "Resource": "*"}]}))["Policy"]["Arn"]

    def listed(**kw) -> list[dict]:
        return [p for page in iam.get_paginator("list_policies").paginate(**kw) for p in page["Policies"]]

    aws = listed(Scope="AWS")
    assert {p["PolicyName"]: (p["Path"], p["DefaultVersionId"]) for p in aws} == SERVED
    assert all(p["Arn"] == f"{AWS_POLICY}{p['Path'][1:]}{p['PolicyName']}" for p in aws)
    assert all(p["IsAttachable"] and "Description" not in p for p in aws)
    mine = [p["Arn"] for p in listed(Scope="Local")]
    assert local in mine and not any(a.startswith(AWS_POLICY) for a in mine)
    everything = [p["Arn"] for p in listed()]
    assert sorted(everything) == sorted([p["Arn"] for p in aws] + mine)
    # Pages of 2 give each policy once.
    paged = [p["Arn"] for p in listed(Scope="All", PaginationConfig={"PageSize": 2})]
    assert paged == everything
    assert sorted(p["PolicyName"] for p in listed(Scope="AWS", PathPrefix="/service-role/")) == [
        "AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole"]
    # OnlyAttached: those attached somewhere in the account.
    user = uname("m16-attached")
    iam.create_user(UserName=user)
    iam.attach_user_policy(UserName=user, PolicyArn=AWS_POLICY + "AWSKeyManagementServicePowerUser")
    attached = [p["PolicyName"] for p in listed(Scope="AWS", OnlyAttached=True)]
    assert "AWSKeyManagementServicePowerUser" in attached and "PowerUserAccess" not in attached
    refused(lambda: boto3.client("iam", endpoint_url=srv.url, region_name=REGION, aws_access_key_id=srv.admin_key[0],
                                 aws_secret_access_key=srv.admin_key[1],
                                 config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))
            .list_policies(Scope="Mine"),
            "ValidationError", "1 validation error detected: Value 'Mine' at 'scope' failed to satisfy "
            "constraint: Member must satisfy enum value set: [All, AWS, Local]")


def test_aws_managed_policies_cannot_be_changed(srv):
    iam = srv.client("iam")
    document = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]})
    caller = srv.client("sts").get_caller_identity()["Arn"]

    def denial(action: str) -> str:
        return f"User: {caller} is not authorized to perform: iam:{action} on resource: policy {ADMIN}"

    refused(lambda: iam.create_policy_version(PolicyArn=ADMIN, PolicyDocument=document, SetAsDefault=True),
            "AccessDenied", denial("CreatePolicyVersion"), 403)
    refused(lambda: iam.set_default_policy_version(PolicyArn=ADMIN, VersionId="v1"),
            "AccessDenied", denial("SetDefaultPolicyVersion"), 403)
    refused(lambda: iam.delete_policy_version(PolicyArn=ADMIN, VersionId="v1"),
            "AccessDenied", denial("DeletePolicyVersion"), 403)
    refused(lambda: iam.delete_policy(PolicyArn=ADMIN), "AccessDenied", denial("DeletePolicy"), 403)
    policy = iam.get_policy(PolicyArn=ADMIN)["Policy"]
    assert policy["DefaultVersionId"] == "v1"
    document_now = iam.get_policy_version(PolicyArn=ADMIN, VersionId="v1")["PolicyVersion"]["Document"]
    assert document_now == {"Version": "2012-10-17",
                            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    # A customer policy of the same name is another policy, and may be changed.
    own = iam.create_policy(PolicyName="AdministratorAccess", PolicyDocument=document)["Policy"]["Arn"]
    assert own != ADMIN
    iam.create_policy_version(PolicyArn=own, PolicyDocument=document, SetAsDefault=True)
    iam.delete_policy_version(PolicyArn=own, VersionId="v1")
    iam.delete_policy(PolicyArn=own)


def test_an_unknown_aws_managed_policy_is_no_such_entity_in_iams_words(srv):
    iam = srv.client("iam")
    name = uname("m16-nope")
    iam.create_user(UserName=name)
    refused(lambda: iam.get_policy(PolicyArn=NOPE), "NoSuchEntity", f"Policy {NOPE} was not found.", 404)
    refused(lambda: iam.get_policy_version(PolicyArn=NOPE, VersionId="v1"), "NoSuchEntity",
            f"Policy {NOPE} version v1 does not exist or is not attachable.", 404)
    refused(lambda: iam.attach_user_policy(UserName=name, PolicyArn=NOPE), "NoSuchEntity",
            f"Policy {NOPE} does not exist or is not attachable.", 404)
    refused(lambda: iam.delete_policy(PolicyArn=NOPE), "NoSuchEntity", f"Policy {NOPE} was not found.", 404)
    # A version AWS has and Coffer does not serve (only the default one is).
    refused(lambda: iam.get_policy_version(PolicyArn=READ_ONLY, VersionId="v1"), "NoSuchEntity",
            f"Policy {READ_ONLY} version v1 does not exist or is not attachable.", 404)


def test_in_aws_cn_the_policies_are_named_in_its_partition(srv, account):
    cn = boto3.client("iam", endpoint_url=srv.url, region_name="cn-north-1", aws_access_key_id=srv.admin_key[0],
                      aws_secret_access_key=srv.admin_key[1], config=NO_RETRY)
    in_cn = "arn:aws-cn:iam::aws:policy/ReadOnlyAccess"
    assert cn.get_policy(PolicyArn=in_cn)["Policy"]["Arn"] == in_cn
    user = uname("m16-cn")
    cn.create_user(UserName=user)
    cn.attach_user_policy(UserName=user, PolicyArn=in_cn)
    attached = cn.list_attached_user_policies(UserName=user)["AttachedPolicies"]
    assert attached == [{"PolicyName": "ReadOnlyAccess", "PolicyArn": in_cn}]
    # The same attachment, seen from the aws partition.
    iam = srv.client("iam")
    assert iam.list_attached_user_policies(UserName=user)["AttachedPolicies"][0]["PolicyArn"] == READ_ONLY
    # An ARN of another partition than the request's names nothing, as for every IAM ARN.
    refused(lambda: cn.get_policy(PolicyArn=READ_ONLY), "InvalidInput", f"ARN {READ_ONLY} is not valid.")


def dev_client(url: str, service: str, account: str):
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id=account,
                        aws_secret_access_key="dev", config=NO_RETRY)


def test_dev_serves_them_and_counts_attachments_per_account(url):
    first, second = "111111111611", "222222222611"
    iam = dev_client(url, "iam", first)
    user = uname("m16-dev")
    iam.create_user(UserName=user)
    before = iam.get_policy(PolicyArn=READ_ONLY)["Policy"]["AttachmentCount"]
    other = dev_client(url, "iam", second).get_policy(PolicyArn=READ_ONLY)["Policy"]["AttachmentCount"]
    iam.attach_user_policy(UserName=user, PolicyArn=READ_ONLY)
    assert iam.get_policy(PolicyArn=READ_ONLY)["Policy"]["AttachmentCount"] == before + 1
    assert dev_client(url, "iam", second).get_policy(PolicyArn=READ_ONLY)["Policy"]["AttachmentCount"] == other
    refused(lambda: iam.delete_policy(PolicyArn=READ_ONLY), "AccessDenied")
