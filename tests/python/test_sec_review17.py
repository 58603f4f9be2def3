"""Regression tests for review 17: an adversarial review of the sixteenth session's changes
(AWS managed policies, the implied actions of CreateSecret/CreateKey/ValidateResourcePolicy,
replica overwrites and re-keys, bounded tag merges, IAM's tag context, STS reading its form
once, the trail's derived resources, the one validation-message builder). Findings are
`test_NN_*` (each seen failing before its fix), what held `test_held_*`.

Each test drives the real binary through boto3 or a signed raw request: an enforcing server
whose users, roles and policies are made through the IAM API.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import REGION
from iam_api_support import Server

# Review 15's helpers (same server shape); the `account` fixture there reads this `srv`.
from test_sec_review15 import account, allow, client, error, uname, user  # noqa: F401
from test_trail16 import lookup


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("review17")
    server = Server(data, extra=["--quota-scale", "100"])
    yield server
    server.server.stop()


def signed_form(srv, service: str, pairs: list[tuple[str, str]], key=None) -> requests.Response:
    """A signed query-protocol POST of exactly these pairs, in this order (names may repeat)."""
    body = "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in pairs).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    req = AWSRequest(method="POST", url=srv.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(*(key or srv.admin_key)), service, REGION).add_auth(req)
    return requests.post(srv.url + "/", data=body, headers=dict(req.prepare().headers), timeout=60)


def trust_account(account: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "sts:AssumeRole"}]})


def event_of(srv, name: str, key_id: str) -> dict:
    """The CloudTrail record of the call named `name` that issued the access key `key_id`."""
    found = [e for e in lookup(srv, "ResourceName", key_id) if e["EventName"] == name]
    assert found, f"no {name} event lists {key_id}"
    return json.loads(found[0]["CloudTrailEvent"])


# ------------------------------------ 01: a repeated STS member, acted on and recorded apart

def test_01_assume_role_records_the_role_it_assumed_when_role_arn_repeats(srv, account):
    """STS's handlers read a repeated form member's first value (`FormValues`), the audit
    trail's request parameters read its last (`Form`). A caller allowed a sensitive role
    assumed it with `RoleArn=<sensitive>&RoleArn=<decoy>`: the event recorded the decoy as
    `roleArn`, and LookupEvents listed the decoy as the event's `AWS::IAM::Role`, so a
    search of the trail by the sensitive role's ARN did not find the assumption."""
    iam = srv.client("iam")
    sensitive, decoy = uname("r17-admin"), uname("r17-decoy")
    arns = {}
    for role in (sensitive, decoy):
        arns[role] = iam.create_role(RoleName=role,
                                     AssumeRolePolicyDocument=trust_account(account))["Role"]["Arn"]
    answer = signed_form(srv, "sts", [
        ("Action", "AssumeRole"), ("Version", "2011-06-15"), ("RoleArn", arns[sensitive]),
        ("RoleSessionName", "s1"), ("RoleArn", arns[decoy]), ("RoleSessionName", "s2")])
    assert answer.status_code == 200, answer.text
    assumed = re.search(r"<Arn>([^<]*)</Arn>", answer.text).group(1)
    key_id = re.search(r"<AccessKeyId>([^<]*)</AccessKeyId>", answer.text).group(1)
    event = event_of(srv, "AssumeRole", key_id)
    acted = f"assumed-role/{event['requestParameters']['roleArn'].rsplit('/', 1)[1]}/" \
            f"{event['requestParameters']['roleSessionName']}"
    assert assumed.endswith(acted), (assumed, event["requestParameters"])
    found = {e["EventId"] for e in lookup(srv, "ResourceName", arns[sensitive])}
    assert json.loads(json.dumps(event))["eventID"] in found


def test_01_get_federation_token_records_the_name_it_federated(srv):
    answer = signed_form(srv, "sts", [
        ("Action", "GetFederationToken"), ("Version", "2011-06-15"), ("Name", "acted"),
        ("Name", "recorded"), ("Policy", allow("sts:GetCallerIdentity"))])
    assert answer.status_code == 200, answer.text
    arn = re.search(r"<Arn>([^<]*)</Arn>", answer.text).group(1)
    key_id = re.search(r"<AccessKeyId>([^<]*)</AccessKeyId>", answer.text).group(1)
    event = event_of(srv, "GetFederationToken", key_id)
    assert arn.endswith(":federated-user/" + event["requestParameters"]["name"]), \
        (arn, event["requestParameters"])


def test_01_an_iam_call_decides_acts_on_and_records_one_value_of_a_repeated_member(srv):
    """The IAM API reads its members, decides and records from one `Form`: a user allowed
    to create users under one name prefix only, naming an allowed name and a denied one,
    gets the user its authorization was decided on, and the event names that user."""
    allowed = uname("r17-ok")
    denied = uname("r17-no")
    _, key = user(srv, allow("iam:CreateUser", f"arn:aws:iam::*:user/r17-ok-*"), prefix="r17")
    answer = signed_form(srv, "iam", [("Action", "CreateUser"), ("Version", "2010-05-08"),
                                      ("UserName", allowed), ("UserName", denied)], key)
    assert answer.status_code == 200, answer.text
    assert f"<UserName>{allowed}</UserName>" in answer.text
    iam = srv.client("iam")
    assert error(lambda: iam.get_user(UserName=denied))[0] == "NoSuchEntity"
    event = [json.loads(e["CloudTrailEvent"]) for e in lookup(srv, "ResourceName", allowed)
             if e["EventName"] == "CreateUser"][0]
    assert event["requestParameters"]["userName"] == allowed
    # The other order: decided on the denied name, nothing made.
    answer = signed_form(srv, "iam", [("Action", "CreateUser"), ("Version", "2010-05-08"),
                                      ("UserName", denied), ("UserName", uname("r17-ok"))], key)
    assert answer.status_code == 403, answer.text
    assert error(lambda: iam.get_user(UserName=denied))[0] == "NoSuchEntity"


# ------------------------------------------------------- what held: AWS managed policies

ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


def test_held_an_aws_managed_session_policy_never_widens_the_role(srv, account):
    """PolicyArns naming AdministratorAccess bounds a session by it; the session still does
    only what its role's own policies allow (a session policy only narrows)."""
    iam = srv.client("iam")
    role = uname("r17-narrow")
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust_account(account))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="p",
                        PolicyDocument=allow("secretsmanager:DescribeSecret"))
    secret = uname("r17-s")
    srv.client("secretsmanager").create_secret(Name=secret, SecretString="held-value")
    creds = srv.client("sts").assume_role(RoleArn=arn, RoleSessionName="s17",
                                          PolicyArns=[{"arn": ADMIN}])["Credentials"]
    sm = srv.session_client("secretsmanager", creds)
    sm.describe_secret(SecretId=secret)
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    assert error(lambda: srv.session_client("iam", creds).list_users())[0] == "AccessDenied"


@pytest.mark.parametrize("region", [REGION, "cn-north-1"])
def test_held_a_deny_on_attaching_administrator_access_holds(srv, region):
    """AWS's guard on escalation by managed policy (Deny the attach calls when
    `iam:PolicyARN` is AdministratorAccess) holds for users, groups and roles, whatever
    the partition the request is signed for; another managed policy is attached."""
    guard = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["iam:AttachUserPolicy", "iam:AttachGroupPolicy",
                                      "iam:AttachRolePolicy"], "Resource": "*",
         "Condition": {"ArnEquals": {"iam:PolicyARN": ADMIN}}}]})
    name, key = user(srv, guard, prefix="r17")
    iam = client(srv, "iam", key, region=region)
    partition = "aws-cn" if region.startswith("cn-") else "aws"
    admin = ADMIN.replace("arn:aws:", f"arn:{partition}:")
    group, role = uname("r17-g"), uname("r17-r")
    srv.client("iam").create_group(GroupName=group)
    srv.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust_account("000000000000"))
    for attach in (lambda: iam.attach_user_policy(UserName=name, PolicyArn=admin),
                   lambda: iam.attach_group_policy(GroupName=group, PolicyArn=admin),
                   lambda: iam.attach_role_policy(RoleName=role, PolicyArn=admin)):
        assert error(attach)[0] == "AccessDenied"
    # Spelled otherwise, it names no policy at all: the guard cannot be stepped around.
    for other in (admin.replace("AdministratorAccess", "administratoraccess"),
                  admin.replace(f"arn:{partition}:", "arn:AWS:")):
        assert error(lambda: iam.attach_user_policy(UserName=name, PolicyArn=other))[0] in (
            "NoSuchEntity", "InvalidInput")
    assert srv.client("iam").list_attached_user_policies(UserName=name)["AttachedPolicies"] == []
    read_only = admin.replace("AdministratorAccess", "ReadOnlyAccess")
    iam.attach_user_policy(UserName=name, PolicyArn=read_only)


# ------------------------------------- 02: RoleSessionName refused in two sets of words

def unsigned_form(srv, pairs: list[tuple[str, str]]) -> requests.Response:
    body = "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in pairs).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    return requests.post(srv.url + "/", data=body, headers=headers, timeout=60)


def message_of(answer: requests.Response) -> str:
    return re.search(r"<Message>([^<]*)</Message>", answer.text).group(1)


@pytest.mark.parametrize("name", ["a", "x" * 65, "bad name"])
def test_02_role_session_name_is_refused_in_the_same_words_by_both_assume_calls(srv, account, name):
    """AssumeRole and AssumeRoleWithWebIdentity accept the same session names (2 to 64 of
    `[\\w+=,.@-]`), but AssumeRoleWithWebIdentity named the pattern for every refusal,
    a name too short or too long included, where AssumeRole (and AWS's model) names the
    length bound the name breaks."""
    role = f"arn:aws:iam::{account}:role/r17-any"
    assume = signed_form(srv, "sts", [("Action", "AssumeRole"), ("Version", "2011-06-15"),
                                      ("RoleArn", role), ("RoleSessionName", name)])
    web = unsigned_form(srv, [("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"),
                              ("RoleArn", role), ("RoleSessionName", name),
                              ("WebIdentityToken", "x" * 20)])
    assert (assume.status_code, web.status_code) == (400, 400), (assume.text, web.text)
    assert message_of(web) == message_of(assume)
    if len(name) < 2:
        assert "Member must have length greater than or equal to 2" in message_of(web)


def test_held_aws_managed_policy_listings_show_only_the_callers_account(url):
    """AWS managed policies exist in every account under one ARN; what names them there
    (ListEntitiesForPolicy, AttachmentCount, ListPolicies' OnlyAttached) reads the caller's
    account's attachments only (`--dev`, where any 12-digit key id is its account)."""
    import boto3
    from botocore.config import Config

    def iam_of(account: str):
        return boto3.client("iam", endpoint_url=url, region_name=REGION, aws_access_key_id=account,
                            aws_secret_access_key="dev",
                            config=Config(retries={"total_max_attempts": 1}))

    first, second = iam_of("111111111717"), iam_of("222222222717")
    read_only = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    user, role = uname("r17-u"), uname("r17-r")
    first.create_user(UserName=user)
    first.attach_user_policy(UserName=user, PolicyArn=read_only)
    first.create_role(RoleName=role, AssumeRolePolicyDocument=trust_account("111111111717"))
    first.attach_role_policy(RoleName=role, PolicyArn=read_only)
    listed = first.list_entities_for_policy(PolicyArn=read_only)
    assert user in [u["UserName"] for u in listed["PolicyUsers"]]
    assert role in [r["RoleName"] for r in listed["PolicyRoles"]]
    other = second.list_entities_for_policy(PolicyArn=read_only)
    names = [u["UserName"] for u in other["PolicyUsers"]] + [r["RoleName"] for r in other["PolicyRoles"]]
    assert user not in names and role not in names
    attached = second.list_policies(Scope="AWS", OnlyAttached=True)["Policies"]
    assert read_only not in [p["Arn"] for p in attached]


# ------------- 03: a member an operation does not take gave its authorization a request key

def signed_json(srv, target: str, body: dict, key) -> requests.Response:
    """A signed JSON 1.1 call of `target` with exactly this body (members the operation
    does not take included, which boto3 would refuse to send)."""
    data = json.dumps(body).encode()
    service = "secretsmanager" if target.startswith("secretsmanager.") else "kms"
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
    req = AWSRequest(method="POST", url=srv.url + "/", data=data, headers=headers)
    SigV4Auth(Credentials(*key), service, REGION).add_auth(req)
    return requests.post(srv.url + "/", data=data, headers=dict(req.prepare().headers), timeout=60)


# Creating and tagging a team's secrets is allowed with the team's tag; the statement
# lists DeleteSecret too, which takes no tags and so is never allowed by it on AWS.
TAGGED_ONLY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["secretsmanager:CreateSecret", "secretsmanager:TagResource",
                                   "secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"],
     "Resource": "*", "Condition": {"StringEquals": {"aws:RequestTag/team": "ops"}}}]})


def test_03_a_secrets_manager_call_gets_no_request_tag_from_a_member_it_does_not_take(srv):
    """Authorization read its request keys (`aws:RequestTag/<key>`, `secretsmanager:Name`,
    `...:ForceDeleteWithoutRecovery`, `kms:EncryptionContext:*`, ...) from every member of
    the body, the operation's or not: the model checker ignores unknown members, as AWS
    does, and `auth::Requested` was read from the raw body. AWS gives an operation only the
    keys of its own parameters. So `Tags` added to a GetSecretValue or DeleteSecret body
    met a condition that operation never meets on AWS, and the secret was read and
    deleted."""
    _, key = user(srv, TAGGED_ONLY, prefix="r17")
    name = uname("r17-03")
    srv.client("secretsmanager").create_secret(Name=name, SecretString="not-for-this-caller")
    tags = [{"Key": "team", "Value": "ops"}]
    read = signed_json(srv, "secretsmanager.GetSecretValue", {"SecretId": name, "Tags": tags}, key)
    assert read.status_code == 400 and "AccessDeniedException" in read.text, read.text
    assert "not-for-this-caller" not in read.text
    gone = signed_json(srv, "secretsmanager.DeleteSecret",
                       {"SecretId": name, "ForceDeleteWithoutRecovery": True, "Tags": tags}, key)
    assert gone.status_code == 400 and "AccessDeniedException" in gone.text, gone.text
    srv.client("secretsmanager").describe_secret(SecretId=name)
    # The operations that take tags still read them.
    created = signed_json(srv, "secretsmanager.CreateSecret",
                          {"Name": uname("r17-03b"), "SecretString": "v", "Tags": tags,
                           "ClientRequestToken": str(uuid.uuid4())}, key)
    assert created.status_code == 200, created.text


def test_03_an_iam_call_gets_no_request_tag_from_a_member_it_does_not_take(srv):
    """The IAM API's calls read `Tags.member.N` and `TagKeys.member.N` from every form
    (review 16, finding 03): a DeleteUser or CreateAccessKey form carrying `Tags` met a
    condition on `aws:RequestTag/<key>` that those calls never meet on AWS."""
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:CreateUser", "iam:TagUser", "iam:CreateAccessKey",
                                       "iam:DeleteUser"],
         "Resource": "*", "Condition": {"StringEquals": {"aws:RequestTag/team": "ops"}}}]})
    _, key = user(srv, policy, prefix="r17")
    victim = uname("r17-victim")
    srv.client("iam").create_user(UserName=victim)
    tags = [("Tags.member.1.Key", "team"), ("Tags.member.1.Value", "ops")]
    minted = signed_form(srv, "iam", [("Action", "CreateAccessKey"), ("Version", "2010-05-08"),
                                      ("UserName", victim), *tags], key)
    assert minted.status_code == 403, minted.text
    assert srv.client("iam").list_access_keys(UserName=victim)["AccessKeyMetadata"] == []
    deleted = signed_form(srv, "iam", [("Action", "DeleteUser"), ("Version", "2010-05-08"),
                                       ("UserName", victim), *tags], key)
    assert deleted.status_code == 403, deleted.text
    srv.client("iam").get_user(UserName=victim)
    made = signed_form(srv, "iam", [("Action", "CreateUser"), ("Version", "2010-05-08"),
                                    ("UserName", uname("r17-made")), *tags], key)
    assert made.status_code == 200, made.text


def test_03_a_kms_call_gets_no_encryption_context_from_a_member_it_does_not_take(srv, account):
    """The same in KMS, where it gave control of a key: a key policy allowing a principal
    `kms:*` only with one encryption context allows, on AWS, the cryptographic operations
    with that context and nothing else (DescribeKey, PutKeyPolicy, ScheduleKeyDeletion take
    no encryption context). An `EncryptionContext` added to a PutKeyPolicy or
    ScheduleKeyDeletion body met the condition: the key's policy was rewritten."""
    name, key = user(srv, allow("kms:*"), prefix="r17")
    principal = f"arn:aws:iam::{account}:user/{name}"
    admin = f"arn:aws:iam::{account}:user/admin"
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": admin}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:*", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:project": "alpha"}}}]})
    kms = srv.client("kms")
    key_id = kms.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    context = {"project": "alpha"}
    # What the statement is for still works.
    mine = client(srv, "kms", key)
    blob = mine.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext=context)["CiphertextBlob"]
    assert mine.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == b"x"
    taken = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:*", "Resource": "*"}]})
    put = signed_json(srv, "TrentService.PutKeyPolicy",
                      {"KeyId": key_id, "PolicyName": "default", "Policy": taken,
                       "EncryptionContext": context}, key)
    assert put.status_code == 400 and "AccessDeniedException" in put.text, put.text
    assert json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]) == json.loads(policy)
    doomed = signed_json(srv, "TrentService.ScheduleKeyDeletion",
                         {"KeyId": key_id, "PendingWindowInDays": 7, "EncryptionContext": context}, key)
    assert doomed.status_code == 400 and "AccessDeniedException" in doomed.text, doomed.text
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
