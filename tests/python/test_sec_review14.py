"""Regression tests for the fourteenth adversarial review's findings (the thirteenth
session's changes: `--dev` STS and IAM, IAM renames, key last use and GetAccessKeyInfo,
the session lookup cache, IAM's words for policy documents, cross-account fidelity,
replica re-sealing, and review 13's and attack 13's fixes), and what held.

Each test drives the real binary through boto3: an enforcing server whose users, roles and
keys are made through the IAM API, or a `--dev` server.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import start_dev_server
from test_sec_review7 import Server

ACCOUNT = "000000000000"
PARTNER = "111122223333"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("review14"), ["--quota-scale", "100"])
    yield s
    s.server.stop()


@pytest.fixture(scope="module")
def dev():
    s = start_dev_server()
    yield s
    s.stop()


def code_of(fn, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def policy_of(n_resources: int, tag: str = "p") -> str:
    """An identity policy of about 70 characters per resource."""
    resources = [f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{tag}-{i:06d}"
                 for i in range(n_resources)]
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": resources}]})


def trust_for(arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "sts:AssumeRole"}]})


# ------------------------------------------ 01: policy text held by every cached session

def test_01_a_roles_inline_policies_are_bounded_as_iams(srv):
    """Each session's cached caller holds its role's parsed policies (the thirteenth
    session's session cache): without IAM's size limits a role of a few megabytes of
    inline policies made every session of it hold as much again (measured: 1.1 MB per
    session for 0.8 MB of policy text, 4,096 sessions cached), which anyone allowed to
    assume the role could multiply until the server ran out of memory. IAM refuses the
    aggregate inline policy of a role past 10,240 characters (whitespace not counted)."""
    iam = srv.any_client("iam")
    me = srv.any_client("sts").get_caller_identity()["Arn"]
    iam.create_role(RoleName="r14-big", AssumeRolePolicyDocument=trust_for(me))
    fits = policy_of(75, "a")  # ~4,900 characters
    assert len(fits) < 10240 // 2
    iam.put_role_policy(RoleName="r14-big", PolicyName="a", PolicyDocument=fits)
    # Pretty-printed: whitespace does not count.
    iam.put_role_policy(RoleName="r14-big", PolicyName="b",
                        PolicyDocument=json.dumps(json.loads(policy_of(75, "b")), indent=8))
    code, message = code_of(iam.put_role_policy, RoleName="r14-big", PolicyName="c",
                            PolicyDocument=policy_of(20, "c"))
    assert (code, message) == ("LimitExceeded",
                               "Maximum policy size of 10240 bytes exceeded for role r14-big")
    # Replacing a policy counts the new text in its place.
    iam.put_role_policy(RoleName="r14-big", PolicyName="b", PolicyDocument=policy_of(10, "b"))
    assert sorted(iam.list_role_policies(RoleName="r14-big")["PolicyNames"]) == ["a", "b"]
    # One huge document is refused the same way, and nothing is stored (within the
    # model's 131,072 characters: past them the model's ValidationError, review 16).
    code, _ = code_of(iam.put_role_policy, RoleName="r14-big", PolicyName="d",
                      PolicyDocument=policy_of(1500, "d"))
    assert code == "LimitExceeded"
    assert sorted(iam.list_role_policies(RoleName="r14-big")["PolicyNames"]) == ["a", "b"]


def test_01_users_groups_and_managed_policies_are_bounded_too(srv):
    iam = srv.any_client("iam")
    iam.create_user(UserName="r14-sized")
    iam.create_group(GroupName="r14-sized")
    iam.put_user_policy(UserName="r14-sized", PolicyName="a", PolicyDocument=policy_of(20, "u"))
    assert code_of(iam.put_user_policy, UserName="r14-sized", PolicyName="b",
                   PolicyDocument=policy_of(20, "v")) == (
        "LimitExceeded", "Maximum policy size of 2048 bytes exceeded for user r14-sized")
    iam.put_group_policy(GroupName="r14-sized", PolicyName="a", PolicyDocument=policy_of(60, "g"))
    assert code_of(iam.put_group_policy, GroupName="r14-sized", PolicyName="b",
                   PolicyDocument=policy_of(20, "h")) == (
        "LimitExceeded", "Maximum policy size of 5120 bytes exceeded for group r14-sized")
    managed = iam.create_policy(PolicyName="r14-sized", PolicyDocument=policy_of(80, "m"))["Policy"]
    too_big = policy_of(100, "n")
    assert code_of(iam.create_policy, PolicyName="r14-too-big", PolicyDocument=too_big) == (
        "LimitExceeded", "Cannot exceed quota for PolicySize: 6144")
    assert code_of(iam.create_policy_version, PolicyArn=managed["Arn"], PolicyDocument=too_big,
                   SetAsDefault=True) == ("LimitExceeded", "Cannot exceed quota for PolicySize: 6144")
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=managed["Arn"])["Versions"]] == ["v1"]


# ---------------------------------- 02: --dev sessions outliving or misnaming their user

def dev_client(url: str, service: str, key: str = "AKIAIOSFODNN7EXAMPLE", secret: str = "x" * 40,
               token: str | None = None):
    from test_sec_review7 import NO_RETRY
    import boto3
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token, config=NO_RETRY)


def test_02_dev_user_sessions_follow_their_user_as_enforcing_mode_does(dev):
    """`--dev`'s session records held a snapshot of their principal: a user's
    GetSessionToken credentials went on acting as that user after the user was deleted
    (enforcing mode refuses them at once: InvalidClientTokenId), and under the old name
    after a rename (enforcing mode follows the unique id). `--dev` authorizes nothing, so
    this is fidelity: what the credentials say they are is what enforcing mode says."""
    iam = dev_client(dev.url, "iam")
    name = f"r14-dev-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name)
    made = iam.create_access_key(UserName=name)["AccessKey"]
    creds = dev_client(dev.url, "sts", made["AccessKeyId"], made["SecretAccessKey"]).get_session_token()["Credentials"]
    session = dev_client(dev.url, "sts", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert session.get_caller_identity()["Arn"].endswith(f":user/{name}")
    iam.update_user(UserName=name, NewUserName=name + "-x")
    assert session.get_caller_identity()["Arn"].endswith(f":user/{name}-x")
    iam.delete_access_key(UserName=name + "-x", AccessKeyId=made["AccessKeyId"])
    iam.delete_user(UserName=name + "-x")
    code, _ = code_of(session.get_caller_identity)
    assert code == "InvalidClientTokenId"
    sm = dev_client(dev.url, "secretsmanager", creds["AccessKeyId"], creds["SecretAccessKey"],
                    creds["SessionToken"])
    assert code_of(sm.list_secrets)[0] == "UnrecognizedClientException"
    # The old name made again is another user: the session is not theirs.
    iam.create_user(UserName=name)
    assert code_of(session.get_caller_identity)[0] == "InvalidClientTokenId"


def test_03_dev_assume_role_bounds_the_session_policy_as_enforcing_mode_does(dev):
    """Review 13's 2,048-character bound on a session policy was applied where enforcing
    mode issues sessions only: `--dev`'s AssumeRole took any size (it keeps no policy, so
    this is fidelity: a client tested against `--dev` met AWS's refusal only in production)."""
    sts = dev_client(dev.url, "sts")
    big = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
                                                               "Resource": ["arn:aws:s3:::" + "a" * 60] * 40}]})
    assert len(big) > 2048
    code, message = code_of(sts.assume_role, RoleArn=f"arn:aws:iam::{ACCOUNT}:role/r14-any",
                            RoleSessionName="r14", Policy=big)
    assert code == "ValidationError" and "less than or equal to 2048" in message


# ------------------------------------------------------------- what held: renames

READ_ALL = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "sts:GetSessionToken"],
     "Resource": "*"}]}


def test_held_a_rename_into_a_deleted_users_name_gains_nothing_that_named_them(srv):
    """A resource policy names the user it was stored for by unique id: whoever is renamed
    into that user's name later (after the user was deleted) is not let in."""
    admin = srv.admin()
    iam = srv.any_client("iam")
    _, bob_arn = srv.iam_user("r14-bob")
    secret = admin.create_secret(Name=f"r14-named-{uuid.uuid4().hex[:6]}", SecretString="R14-NAMED")
    admin.put_resource_policy(SecretId=secret["ARN"], ResourcePolicy=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": bob_arn},
                                                "Action": "secretsmanager:GetSecretValue",
                                                "Resource": "*"}]}))
    srv.delete_iam_user("r14-bob")
    mallory_key, _ = srv.iam_user("r14-mallory", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]})
    iam.update_user(UserName="r14-mallory", NewUserName="r14-bob")
    time.sleep(0.2)
    code, _ = code_of(srv.client(mallory_key).get_secret_value, SecretId=secret["ARN"])
    assert code == "AccessDeniedException"


def test_held_a_rename_needs_both_names_and_a_free_one(srv):
    iam = srv.any_client("iam")
    may_rename_self_only = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:UpdateUser",
         "Resource": f"arn:aws:iam::{ACCOUNT}:user/r14-eve"}]}
    eve_key, _ = srv.iam_user("r14-eve", may_rename_self_only)
    srv.iam_user("r14-carol")
    eve_iam = srv.any_client("iam", eve_key)
    code, message = code_of(eve_iam.update_user, UserName="r14-eve", NewUserName="r14-admin2")
    assert code == "AccessDenied" and "user/r14-admin2" in message
    # Another user's name, in any case, is taken.
    assert code_of(iam.update_user, UserName="r14-eve", NewUserName="R14-CAROL")[0] == "EntityAlreadyExists"
    names = {u["UserName"] for u in iam.list_users()["Users"]}
    assert {"r14-eve", "r14-carol"} <= names and "r14-admin2" not in names


def test_held_a_renamed_users_session_follows_it_and_is_revoked_with_it(srv):
    """GetSessionToken's session is bound to the unique id: it acts as the renamed user,
    and AWS's revocation (a Deny on aws:TokenIssueTime) attached under the new name stops
    it, cached or not."""
    iam = srv.any_client("iam")
    key, _ = srv.iam_user("r14-dave", READ_ALL)
    secret = srv.admin().create_secret(Name=f"r14-sess-{uuid.uuid4().hex[:6]}", SecretString="R14-S")
    creds = srv.any_client("sts", key).get_session_token()["Credentials"]
    sm = srv.session_client("secretsmanager", creds)
    assert sm.get_secret_value(SecretId=secret["ARN"])["SecretString"] == "R14-S"
    iam.update_user(UserName="r14-dave", NewUserName="r14-david")
    ident = srv.session_client("sts", creds).get_caller_identity()
    assert ident["Arn"].endswith(":user/r14-david")
    assert sm.get_secret_value(SecretId=secret["ARN"])["SecretString"] == "R14-S"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 5))
    iam.put_user_policy(UserName="r14-david", PolicyName="revoke", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*",
                                                "Condition": {"DateLessThan": {"aws:TokenIssueTime": stamp}}}]}))
    assert code_of(sm.get_secret_value, SecretId=secret["ARN"])[0] == "AccessDeniedException"
    # The old name, made again, is another user: the session is not theirs.
    iam.delete_user_policy(UserName="r14-david", PolicyName="revoke")
    iam.create_user(UserName="r14-dave")
    assert srv.session_client("sts", creds).get_caller_identity()["Arn"].endswith(":user/r14-david")


# ------------------------------------------------------- what held: the session cache

def test_held_a_wrong_token_is_refused_and_evicts_nothing(srv):
    iam = srv.any_client("iam")
    me = srv.any_client("sts").get_caller_identity()["Arn"]
    iam.create_role(RoleName="r14-cached", AssumeRolePolicyDocument=trust_for(me))
    creds = srv.any_client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/r14-cached", RoleSessionName="s14")["Credentials"]
    good = srv.session_client("sts", creds)
    assert good.get_caller_identity()["Arn"].endswith(":assumed-role/r14-cached/s14")
    forged = dict(creds, SessionToken=creds["SessionToken"][:-4] + "AAAA")
    for _ in range(3):
        code, _ = code_of(srv.session_client("sts", forged).get_caller_identity)
        assert code in ("InvalidClientTokenId", "SignatureDoesNotMatch")
        assert good.get_caller_identity()["Arn"].endswith(":assumed-role/r14-cached/s14")
    # An IAM write (the cache's generation moves) with a wrong token in between.
    iam.tag_role(RoleName="r14-cached", Tags=[{"Key": "k", "Value": "v"}])
    assert code_of(srv.session_client("sts", forged).get_caller_identity)[0] in (
        "InvalidClientTokenId", "SignatureDoesNotMatch")
    assert good.get_caller_identity()["Arn"].endswith(":assumed-role/r14-cached/s14")


# --------------------------------------- what held: key last use and GetAccessKeyInfo

def test_held_key_last_use_is_told_only_in_the_keys_account(srv):
    partner_key = srv.user("r14-partner", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:*", "sts:*"], "Resource": "*"}]}, account=PARTNER)
    own_key, _ = srv.iam_user("r14-used", READ_ALL)
    srv.any_client("sts", own_key).get_caller_identity()
    partner_iam = srv.any_client("iam", partner_key)
    code, message = code_of(partner_iam.get_access_key_last_used, AccessKeyId=own_key[0])
    assert code == "NoSuchEntity" and own_key[0] in message
    # GetAccessKeyInfo names the account to anyone, as AWS's does, and nothing more.
    assert srv.any_client("sts", partner_key).get_access_key_info(AccessKeyId=own_key[0])["Account"] == ACCOUNT
    # A caller with no IAM permission learns nothing either way.
    none_key, _ = srv.iam_user("r14-nothing", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]})
    none_iam = srv.any_client("iam", none_key)
    assert code_of(none_iam.get_access_key_last_used, AccessKeyId=partner_key[0])[0] == "AccessDenied"


# ----------------------------------------------- what held: IAM's words for documents

@pytest.mark.parametrize("document", [
    "[" * 1000 + "]" * 1000,
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:x",
                                                        "Resource": "*", "Condition": {"Bool": {"a:b": [[[["x"]]]]}}}]}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "é" * 500, "Effect": "Allow",
                                                        "Action": "s3:x", "Resource": "arn:" + "ü" * 400}]}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:x",
                                                        "Resource": "*", "Condition": {"DateLessThan": {"aws:CurrentTime": "-" * 300}}}]}),
])
def test_held_crafted_documents_are_refused_in_iams_words(srv, document):
    iam = srv.any_client("iam")
    try:
        iam.create_user(UserName="r14-docs")
    except ClientError:
        pass
    code, message = code_of(iam.put_user_policy, UserName="r14-docs", PolicyName="p",
                            PolicyDocument=document)
    assert code in ("MalformedPolicyDocument", "LimitExceeded"), (code, message)
    assert len(message) <= 1024
    assert srv.any_client("sts").get_caller_identity()["Account"] == ACCOUNT
