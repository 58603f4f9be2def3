"""Regression tests for the fifteenth adversarial review's findings (the fourteenth
session's changes: ARN partitions, STS GetFederationToken and federated users, `--dev`
AssumeRoleWithWebIdentity, the audit trail's IAM and STS parameters and elements, IAM's
policy size limits, the SQLite writer's reads through the read cache and PostgreSQL's
remembered records), and what held (`test_held_*`).

Each test drives the real binary through boto3 (or a signed raw request): an enforcing
server whose users, roles and keys are made through the IAM API.
"""

from __future__ import annotations

import json
import uuid

import boto3
import botocore.exceptions
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import REGION
from iam_api_support import Server

CN = "cn-north-1"
GOV = "us-gov-west-1"
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=60)


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error(call) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response["Error"]
    return err["Code"], err.get("Message", "")


def allow(actions: list[str] | str, resources: list[str] | str = "*") -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]})


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("review15")
    server = Server(data, extra=["--quota-scale", "100", "--audit-log",
                                 str(data.parent / "review15-audit.log")])
    server.audit_log = data.parent / "review15-audit.log"
    yield server
    server.server.stop()


@pytest.fixture(scope="module")
def account(srv):
    return srv.client("sts").get_caller_identity()["Account"]


def client(srv, service: str, key: tuple[str, str] | None = None, token: str | None = None,
           region: str = REGION):
    key = key or srv.admin_key
    return boto3.client(service, endpoint_url=srv.url, region_name=region, aws_access_key_id=key[0],
                        aws_secret_access_key=key[1], aws_session_token=token, config=NO_RETRY)


def with_credentials(srv, service: str, creds: dict, region: str = REGION):
    return client(srv, service, (creds["AccessKeyId"], creds["SecretAccessKey"]),
                  creds["SessionToken"], region)


def user(srv, policy: str | None, prefix: str = "r15") -> tuple[str, tuple[str, str]]:
    """A user made through the IAM API with an inline policy and a key: (name, key)."""
    iam = srv.client("iam")
    name = uname(prefix)
    iam.create_user(UserName=name)
    if policy:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=policy)
    made = iam.create_access_key(UserName=name)["AccessKey"]
    return name, (made["AccessKeyId"], made["SecretAccessKey"])


def trust(principal: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})


# ------------------------------------------ 01: federated credentials calling AssumeRole

def test_01_federated_credentials_cannot_assume_a_role_named_by_its_trust(srv, account):
    """AWS: GetFederationToken's credentials "cannot call any STS operations except
    GetCallerIdentity". Coffer let them call AssumeRole, decided on the trust policy and
    the session: a trust policy naming the federated user's ARN allows on its own (a
    principal named directly needs no identity Allow in its account), so a user allowed
    nothing but sts:GetFederationToken minted that federated user with a session policy
    of `*` and took the role's credentials (and with them the role's permissions)."""
    name, key = user(srv, allow("sts:GetFederationToken"))
    fed_name = uname("f")[:32]
    fed_arn = f"arn:aws:sts::{account}:federated-user/{fed_name}"
    role = uname("r15-01")
    iam = srv.client("iam")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust(fed_arn))
    iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=allow("secretsmanager:*"))
    fed = client(srv, "sts", key).get_federation_token(Name=fed_name, Policy=allow("*"))
    creds = fed["Credentials"]
    assert with_credentials(srv, "sts", creds).get_caller_identity()["Arn"] == fed_arn
    code, message = error(lambda: with_credentials(srv, "sts", creds).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="s15"))
    assert code == "AccessDenied", message
    assert message.startswith(f"User: {fed_arn} is not authorized to perform: sts:AssumeRole")


def test_01_federated_credentials_cannot_assume_even_a_role_their_user_may(srv, account):
    """The same with a role its user may assume (trust naming the account, the user's
    policy allowing sts:AssumeRole): only GetCallerIdentity is open to federated users."""
    role = uname("r15-01b")
    srv.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust(account))
    role_arn = f"arn:aws:iam::{account}:role/{role}"
    _, key = user(srv, allow(["sts:GetFederationToken", "sts:AssumeRole"]))
    assert client(srv, "sts", key).assume_role(RoleArn=role_arn, RoleSessionName="s15")
    creds = client(srv, "sts", key).get_federation_token(Name="r15-fed", Policy=allow("*"))["Credentials"]
    code, _ = error(lambda: with_credentials(srv, "sts", creds).assume_role(
        RoleArn=role_arn, RoleSessionName="s15"))
    assert code == "AccessDenied"



# ------------------- 02: a Deny on an IAM or STS ARN passed by signing for another partition

def deny_and_allow(action: str, denied: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": action, "Resource": "*"},
        {"Effect": "Deny", "Action": action, "Resource": denied}]})


@pytest.mark.parametrize("region", [CN, GOV])
def test_02_a_deny_on_a_role_holds_whatever_partition_the_request_is_signed_for(srv, account, region):
    """IAM is global: one role, which a request signed for cn-north-1 names
    `arn:aws-cn:iam::...` (fourteenth session). A policy's Deny written with the role's
    `arn:aws:` ARN (the guardrail "anything but the admin role") did not match that name,
    so signing for a cn or gov region assumed the denied role, whose credentials then act
    in every region."""
    admin_role = uname("r15-02-admin")
    iam = srv.client("iam")
    iam.create_role(RoleName=admin_role, AssumeRolePolicyDocument=trust(account))
    iam.put_role_policy(RoleName=admin_role, PolicyName="p", PolicyDocument=allow("secretsmanager:*"))
    secret = uname("r15-02")
    srv.client("secretsmanager").create_secret(Name=secret, SecretString="R15-02-VALUE")
    denied = f"arn:aws:iam::{account}:role/{admin_role}"
    name, key = user(srv, deny_and_allow("sts:AssumeRole", denied))
    partition = "aws-cn" if region == CN else "aws-us-gov"
    assert error(lambda: client(srv, "sts", key).assume_role(
        RoleArn=denied, RoleSessionName="s15"))[0] == "AccessDenied"
    code, message = error(lambda: client(srv, "sts", key, region=region).assume_role(
        RoleArn=f"arn:{partition}:iam::{account}:role/{admin_role}", RoleSessionName="s15"))
    assert (code, message) == ("AccessDenied", f"User: arn:{partition}:iam::{account}:user/{name} is "
                               f"not authorized to perform: sts:AssumeRole on resource: arn:{partition}"
                               f":iam::{account}:role/{admin_role}")


def test_02_a_deny_on_ones_own_user_holds_in_the_iam_api_of_another_partition(srv, account):
    """The same through the IAM API: a user allowed `iam:*` but denied changing its own
    policies (by its `arn:aws:` ARN) gave itself any permission by signing for cn-north-1."""
    name = uname("r15-02-self")
    iam = srv.client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=deny_and_allow(
        "iam:*", f"arn:aws:iam::{account}:user/{name}"))
    made = iam.create_access_key(UserName=name)["AccessKey"]
    key = (made["AccessKeyId"], made["SecretAccessKey"])
    grant = allow("secretsmanager:*")
    assert error(lambda: client(srv, "iam", key).put_user_policy(
        UserName=name, PolicyName="more", PolicyDocument=grant))[0] == "AccessDenied"
    code, _ = error(lambda: client(srv, "iam", key, region=CN).put_user_policy(
        UserName=name, PolicyName="more", PolicyDocument=grant))
    assert code == "AccessDenied"
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["p"]


def test_02_a_denied_federated_name_is_not_minted_through_another_partition(srv, account):
    """GetFederationToken's resource is the federated user's ARN: a Deny on
    `arn:aws:sts::<account>:federated-user/admin` did not cover the name a cn request
    gives it, and the federated user so minted is the same one everywhere, granted past its
    session policy by a resource policy that names it."""
    admin = srv.client("secretsmanager")
    secret = uname("r15-02-fed")
    admin.create_secret(Name=secret, SecretString="R15-02-FED-VALUE")
    fed_arn = f"arn:aws:sts::{account}:federated-user/r15-admin"
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": fed_arn},
           "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    admin.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps(doc))
    _, key = user(srv, deny_and_allow("sts:GetFederationToken", fed_arn))
    assert error(lambda: client(srv, "sts", key).get_federation_token(Name="r15-admin"))[0] \
        == "AccessDenied"
    code, _ = error(lambda: client(srv, "sts", key, region=CN).get_federation_token(Name="r15-admin"))
    assert code == "AccessDenied"



def test_02_a_deny_written_in_aws_cn_holds_for_a_request_signed_in_aws(srv, account):
    """The other way: a Deny written with the role's `arn:aws-cn:` ARN holds for a request
    signed for us-east-1, which names the same role `arn:aws:`."""
    admin_role = uname("r15-02-cnadmin")
    srv.client("iam").create_role(RoleName=admin_role, AssumeRolePolicyDocument=trust(account))
    _, key = user(srv, deny_and_allow("sts:AssumeRole", f"arn:aws-cn:iam::{account}:role/{admin_role}"))
    code, _ = error(lambda: client(srv, "sts", key).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{admin_role}", RoleSessionName="s15"))
    assert code == "AccessDenied"


def test_02_a_deny_on_a_policy_arn_condition_holds_in_another_partition(srv, account):
    """`iam:PolicyARN` holds an IAM ARN too: a Deny on attaching the admin policy, written
    with its `arn:aws:` ARN, holds for a cn request naming it `arn:aws-cn:`."""
    iam = srv.client("iam")
    policy = iam.create_policy(PolicyName=uname("r15-02-pol"), PolicyDocument=allow("secretsmanager:*"))
    arn = policy["Policy"]["Arn"]
    name = uname("r15-02-att")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:AttachUserPolicy", "Resource": "*",
             "Condition": {"ArnEquals": {"iam:PolicyARN": arn}}}]}))
    made = iam.create_access_key(UserName=name)["AccessKey"]
    key = (made["AccessKeyId"], made["SecretAccessKey"])
    code, _ = error(lambda: client(srv, "iam", key, region=CN).attach_user_policy(
        UserName=name, PolicyArn=arn.replace("arn:aws:", "arn:aws-cn:", 1)))
    assert code == "AccessDenied"
    assert iam.list_attached_user_policies(UserName=name)["AttachedPolicies"] == []


def test_held_allows_written_in_a_partition_serve_its_requests_only(srv, account):
    """What the fix keeps: an Allow is read as written (an ARN of another partition names
    nothing in it): a policy written in cn ARNs allows cn requests, not us-east-1 ones, and
    only what it names."""
    role = uname("r15-cn-ok")
    srv.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust(account))
    _, key = user(srv, allow("sts:AssumeRole", f"arn:aws-cn:iam::{account}:role/{role}"))
    assert client(srv, "sts", key, region=CN).assume_role(
        RoleArn=f"arn:aws-cn:iam::{account}:role/{role}", RoleSessionName="s15")["Credentials"]
    code, _ = error(lambda: client(srv, "sts", key).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="s15"))
    assert code == "AccessDenied"
    other = uname("r15-cn-other")
    srv.client("iam").create_role(RoleName=other, AssumeRolePolicyDocument=trust(account))
    code, _ = error(lambda: client(srv, "sts", key, region=CN).assume_role(
        RoleArn=f"arn:aws-cn:iam::{account}:role/{other}", RoleSessionName="s15"))
    assert code == "AccessDenied"


@pytest.mark.parametrize("region", [REGION, CN])
def test_held_a_deny_with_not_resource_reads_the_same_in_every_partition(srv, account, region):
    """A guardrail written "Deny everything but these roles" (`NotResource` in `arn:aws:`
    ARNs) still lets the roles it excepts be assumed, by their name in any partition, and
    refuses the others."""
    ok, other = uname("r15-nr-ok"), uname("r15-nr-no")
    for role in (ok, other):
        srv.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust(account))
    _, key = user(srv, json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
        {"Effect": "Deny", "Action": "sts:AssumeRole",
         "NotResource": f"arn:aws:iam::{account}:role/{ok}"}]}))
    partition = "aws-cn" if region == CN else "aws"
    sts = client(srv, "sts", key, region=region)
    assert sts.assume_role(RoleArn=f"arn:{partition}:iam::{account}:role/{ok}", RoleSessionName="s15")
    code, _ = error(lambda: sts.assume_role(RoleArn=f"arn:{partition}:iam::{account}:role/{other}",
                                            RoleSessionName="s15"))
    assert code == "AccessDenied"



@pytest.mark.parametrize("region", [CN, GOV])
def test_02_a_deny_naming_the_caller_holds_for_the_secrets_of_another_partition(srv, account, region):
    """One IAM serves every partition: a Deny keyed on the caller's `arn:aws:` ARN
    (`aws:PrincipalArn`) holds when the caller signs for a cn or gov region, where it is
    `arn:aws-cn:...`, for that region's secrets and keys as for us-east-1's."""
    name = uname("r15-02-intern")
    iam = srv.client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["secretsmanager:*", "kms:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": ["secretsmanager:GetSecretValue", "kms:Decrypt"], "Resource": "*",
             "Condition": {"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{account}:user/{name}"}}}]}))
    made = iam.create_access_key(UserName=name)["AccessKey"]
    key = (made["AccessKeyId"], made["SecretAccessKey"])
    secret = uname("r15-02-regional")
    client(srv, "secretsmanager", region=region).create_secret(Name=secret, SecretString="R15-02-REGIONAL")
    assert error(lambda: client(srv, "secretsmanager", key, region=region).get_secret_value(
        SecretId=secret))[0] == "AccessDeniedException"
    kms = client(srv, "kms", region=region)
    blob = kms.encrypt(KeyId=kms.create_key()["KeyMetadata"]["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    assert error(lambda: client(srv, "kms", key, region=region).decrypt(CiphertextBlob=blob))[0] \
        == "AccessDeniedException"


# ------------------------------------------------------------------- what held: federation

def test_held_a_federated_user_gets_no_sts_call_but_get_caller_identity(srv, account):
    """GetSessionToken and GetFederationToken with federated credentials stay refused."""
    _, key = user(srv, allow(["sts:*"]))
    creds = client(srv, "sts", key).get_federation_token(Name="r15-sts", Policy=allow("*"))["Credentials"]
    fed = with_credentials(srv, "sts", creds)
    assert fed.get_caller_identity()["Arn"] == f"arn:aws:sts::{account}:federated-user/r15-sts"
    assert error(fed.get_session_token)[0] == "AccessDenied"
    assert error(lambda: fed.get_federation_token(Name="r15-again", Policy=allow("*")))[0] == "AccessDenied"
    # Nor the IAM API: IAM does not know session credentials without MFA.
    code, _ = error(with_credentials(srv, "iam", creds).list_users)
    assert code == "InvalidClientTokenId"


def test_held_a_session_policy_of_star_gives_no_more_than_the_user_has(srv):
    """Effective permissions are the user's policies intersected with the session policy:
    `*` in the session policy adds nothing the user lacks, by any route to a value (the
    single read, the batch by id and by filter, a version by id or by label)."""
    admin = srv.client("secretsmanager")
    secret = uname("r15-fed-star")
    made = admin.create_secret(Name=secret, SecretString="R15-STAR-VALUE")
    _, key = user(srv, allow(["sts:GetFederationToken", "secretsmanager:ListSecrets",
                              "secretsmanager:BatchGetSecretValue", "secretsmanager:DescribeSecret"]))
    creds = client(srv, "sts", key).get_federation_token(Name="r15-star", Policy=allow("*"))["Credentials"]
    sm = with_credentials(srv, "secretsmanager", creds)
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    assert error(lambda: sm.get_secret_value(SecretId=made["ARN"], VersionId=made["VersionId"]))[0] \
        == "AccessDeniedException"
    batch = sm.batch_get_secret_value(SecretIdList=[secret])
    assert batch["SecretValues"] == [] and batch["Errors"][0]["ErrorCode"] == "AccessDeniedException"
    filtered = sm.batch_get_secret_value(Filters=[{"Key": "name", "Values": [secret]}])
    assert "R15-STAR-VALUE" not in json.dumps(filtered, default=str)


def test_held_a_resource_policy_for_everyone_does_not_pass_the_session_policy(srv, account):
    """A resource policy whose principal is `*` (or the account) is not one naming the
    federated user: without a session policy the federated user still reads nothing,
    though its user could. Only a statement naming its own ARN grants past it."""
    admin = srv.client("secretsmanager")
    secret = uname("r15-everyone")
    admin.create_secret(Name=secret, SecretString="R15-EVERYONE-VALUE")
    for principal in ["*", {"AWS": "*"}, {"AWS": account}, {"AWS": f"arn:aws:iam::{account}:root"}]:
        doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": principal,
               "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
        admin.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps(doc),
                                  BlockPublicPolicy=False)
        _, key = user(srv, allow(["sts:GetFederationToken", "secretsmanager:GetSecretValue"]))
        creds = client(srv, "sts", key).get_federation_token(Name="r15-nobody")["Credentials"]
        sm = with_credentials(srv, "secretsmanager", creds)
        assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException", principal
    # A wildcard in a principal ARN names nobody (principals match exactly).
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
           "Principal": {"AWS": f"arn:aws:sts::{account}:federated-user/*"},
           "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    admin.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps(doc), BlockPublicPolicy=False)
    creds = client(srv, "sts", key).get_federation_token(Name="r15-wild")["Credentials"]
    sm = with_credentials(srv, "secretsmanager", creds)
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"


def test_held_a_federated_name_is_not_the_iam_user_of_that_name(srv, account):
    """A federated user named as an IAM user is not that user: a resource policy naming
    the IAM user (bound to its unique id) does not grant the federated user of its name,
    and the IAM user's own policies do not apply to it."""
    admin = srv.client("secretsmanager")
    victim, victim_key = user(srv, allow("secretsmanager:GetSecretValue"), prefix="r15-v")
    secret = uname("r15-named")
    admin.create_secret(Name=secret, SecretString="R15-NAMED-VALUE")
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
           "Principal": {"AWS": f"arn:aws:iam::{account}:user/{victim}"},
           "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    admin.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps(doc))
    _, key = user(srv, allow("sts:GetFederationToken"))
    creds = client(srv, "sts", key).get_federation_token(
        Name=victim[:32], Policy=allow("secretsmanager:GetSecretValue"))["Credentials"]
    sm = with_credentials(srv, "secretsmanager", creds)
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    assert client(srv, "secretsmanager", victim_key).get_secret_value(SecretId=secret)["SecretString"] \
        == "R15-NAMED-VALUE"


def test_held_a_federated_session_ends_with_its_user_and_follows_its_policy(srv):
    """The user's policies are read at each request: removing them (or the user, or making
    the user again under its name) ends what the federated user may do."""
    admin = srv.client("secretsmanager")
    secret = uname("r15-follow")
    admin.create_secret(Name=secret, SecretString="R15-FOLLOW-VALUE")
    iam = srv.client("iam")
    name, key = user(srv, allow(["sts:GetFederationToken", "secretsmanager:GetSecretValue"]))
    creds = client(srv, "sts", key).get_federation_token(
        Name="r15-follow", Policy=allow(["secretsmanager:GetSecretValue", "kms:Decrypt"]))["Credentials"]
    sm = with_credentials(srv, "secretsmanager", creds)
    assert sm.get_secret_value(SecretId=secret)["SecretString"] == "R15-FOLLOW-VALUE"
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=allow("sts:GetFederationToken"))
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    iam.put_user_policy(UserName=name, PolicyName="p",
                        PolicyDocument=allow(["sts:GetFederationToken", "secretsmanager:GetSecretValue"]))
    assert sm.get_secret_value(SecretId=secret)["SecretString"] == "R15-FOLLOW-VALUE"
    # Deleted and made again under the same name, with the same policy: a new user.
    for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
    iam.delete_user_policy(UserName=name, PolicyName="p")
    iam.delete_user(UserName=name)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p",
                        PolicyDocument=allow(["sts:GetFederationToken", "secretsmanager:GetSecretValue"]))
    code, _ = error(lambda: sm.get_secret_value(SecretId=secret))
    assert code in ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException"), code



def partner_user(srv, account: str, policy: str) -> tuple[str, str]:
    """A user of another account, made with `coffer admin` on the running server's store."""
    import configparser
    name = uname("r15-partner")
    srv.coffer_admin("create-user", name, "--account", account)
    srv.coffer_admin("attach-policy", name, "--name", "p", "--file", "-", "--account", account, stdin=policy)
    printed = configparser.ConfigParser()
    printed.read_string(srv.coffer_admin("create-access-key", name, "--account", account))
    return printed[name]["aws_access_key_id"], printed[name]["aws_secret_access_key"]


def test_held_across_accounts_a_resource_policy_naming_a_federated_user_does_not_pass_its_session(srv, account):
    """A resource policy naming a federated user grants past its session policy within its
    account only: from another account the caller's own limits (its user's policies and
    the session policy) still apply, as AWS evaluates a cross-account request."""
    partner = "111122223333"
    key = partner_user(srv, partner, allow(["sts:GetFederationToken", "secretsmanager:GetSecretValue",
                                            "kms:Decrypt"]))
    kms = srv.client("kms")
    key_id = kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{partner}:root"}, "Action": "kms:Decrypt",
         "Resource": "*"}]}))["KeyMetadata"]["KeyId"]
    sm = srv.client("secretsmanager")
    made = sm.create_secret(Name=uname("r15-xacct"), SecretString="R15-XACCT-VALUE", KmsKeyId=key_id)
    fed = f"arn:aws:sts::{partner}:federated-user/r15-x"
    sm.put_resource_policy(SecretId=made["ARN"], ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": fed}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}))
    sts = client(srv, "sts", key)
    narrow = sts.get_federation_token(Name="r15-x", Policy=allow("sts:GetCallerIdentity"))["Credentials"]
    code, _ = error(lambda: with_credentials(srv, "secretsmanager", narrow).get_secret_value(SecretId=made["ARN"]))
    assert code == "AccessDeniedException"
    bare = sts.get_federation_token(Name="r15-x")["Credentials"]
    code, _ = error(lambda: with_credentials(srv, "secretsmanager", bare).get_secret_value(SecretId=made["ARN"]))
    assert code == "AccessDeniedException"
    # The route is open when the session policy allows it: the refusals above are the
    # session policy's, not a broken cross-account path.
    wide = sts.get_federation_token(Name="r15-x", Policy=allow(["secretsmanager:GetSecretValue",
                                                               "kms:Decrypt"]))["Credentials"]
    value = with_credentials(srv, "secretsmanager", wide).get_secret_value(SecretId=made["ARN"])
    assert value["SecretString"] == "R15-XACCT-VALUE"


# ------------------------------------------------------------------- what held: partitions

def test_held_a_cn_caller_reaches_no_secret_or_key_by_an_arn_of_another_partition(srv, account):
    """Signing for cn-north-1: an `arn:aws:` ARN of a cn-north-1 secret or key names
    nothing, nor does an us-east-1 secret's ARN (another region), by any route."""
    cn = client(srv, "secretsmanager", region=CN)
    name = uname("r15-cn")
    made = cn.create_secret(Name=name, SecretString="R15-CN-VALUE")
    assert made["ARN"].startswith(f"arn:aws-cn:secretsmanager:{CN}:{account}:secret:{name}-")
    wrong = made["ARN"].replace("arn:aws-cn:", "arn:aws:", 1)
    assert error(lambda: cn.get_secret_value(SecretId=wrong))[0] == "ResourceNotFoundException"
    batch = cn.batch_get_secret_value(SecretIdList=[wrong])
    assert batch["SecretValues"] == [] and batch["Errors"]
    east = srv.client("secretsmanager").create_secret(Name=uname("r15-east"), SecretString="R15-EAST")
    assert error(lambda: cn.get_secret_value(SecretId=east["ARN"]))[0] == "ResourceNotFoundException"
    batch = cn.batch_get_secret_value(SecretIdList=[east["ARN"]])
    assert "R15-EAST" not in json.dumps(batch, default=str)
    kms = client(srv, "kms", region=CN)
    key = kms.create_key()["KeyMetadata"]
    assert key["Arn"].startswith(f"arn:aws-cn:kms:{CN}:{account}:key/")
    bad = key["Arn"].replace("arn:aws-cn:", "arn:aws:", 1)
    assert error(lambda: kms.encrypt(KeyId=bad, Plaintext=b"x"))[0] in ("NotFoundException",
                                                                         "InvalidKeyIdException",
                                                                         "ValidationException")
    code, _ = error(lambda: cn.create_secret(Name=uname("r15-cn-k"), SecretString="v", KmsKeyId=bad))
    assert code in ("ResourceNotFoundException", "ValidationException", "KMSInvalidStateException",
                    "InvalidParameterException", "AccessDeniedException"), code
    kms.create_alias(AliasName="alias/r15-cn", TargetKeyId=key["KeyId"])
    wrong_alias = f"arn:aws:kms:{CN}:{account}:alias/r15-cn"
    assert error(lambda: kms.encrypt(KeyId=wrong_alias, Plaintext=b"x"))[0] in (
        "NotFoundException", "InvalidKeyIdException", "ValidationException")


def test_held_iam_arns_of_another_partition_name_no_one(srv, account):
    """A cn request naming a user or role by an `arn:aws:` ARN: a resource policy is
    refused, a role cannot be assumed, a grant cannot be made."""
    who, key = user(srv, allow(["sts:AssumeRole", "secretsmanager:*", "kms:*"]))
    role = uname("r15-role")
    srv.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust(account))
    cn_sts = client(srv, "sts", key, region=CN)
    code, _ = error(lambda: cn_sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}",
                                               RoleSessionName="s15"))
    assert code == "AccessDenied"
    assert cn_sts.assume_role(RoleArn=f"arn:aws-cn:iam::{account}:role/{role}", RoleSessionName="s15")
    cn = client(srv, "secretsmanager", region=CN)
    name = uname("r15-cn-pol")
    cn.create_secret(Name=name, SecretString="v")
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
           "Principal": {"AWS": f"arn:aws:iam::{account}:user/{who}"},
           "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    code, _ = error(lambda: cn.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(doc)))
    assert code == "MalformedPolicyDocumentException"
    kms = client(srv, "kms", region=CN)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    code, _ = error(lambda: kms.create_grant(KeyId=key_id, Operations=["Decrypt"],
                                             GranteePrincipal=f"arn:aws:iam::{account}:user/{who}"))
    assert code == "ValidationException"


# ------------------------------------------------------------------- what held: the trail

def raw_query(srv, service: str, form: dict, key=None, region: str = REGION) -> requests.Response:
    """A signed query-protocol POST (IAM or STS), any action and members."""
    key = key or srv.admin_key
    body = "&".join(f"{k}={requests.utils.quote(str(v), safe='')}" for k, v in form.items())
    req = AWSRequest(method="POST", url=srv.url + "/", data=body.encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(*key), service, region).add_auth(req)
    return requests.post(srv.url + "/", data=body.encode(), headers=dict(req.prepare().headers), timeout=30)


def test_held_no_credential_or_value_reaches_the_trail(srv, account):
    """Every IAM, STS, KMS and Secrets Manager call that carries secret material, answered
    or refused: none of the secrets (access key secrets, session tokens, MFA codes,
    passwords, plaintexts, secret values) is in LookupEvents' answer or the --audit-log
    file."""
    secrets: list[str] = []
    iam = srv.client("iam")
    name, key = user(srv, allow(["sts:*", "secretsmanager:*", "kms:*"]))
    secrets.append(key[1])
    made = iam.create_access_key(UserName=name)["AccessKey"]
    secrets.append(made["SecretAccessKey"])
    sts = client(srv, "sts", key)
    fed = sts.get_federation_token(Name="r15-trail", Policy=allow("*"))["Credentials"]
    secrets += [fed["SecretAccessKey"], fed["SessionToken"]]
    session = sts.get_session_token()["Credentials"]
    secrets += [session["SecretAccessKey"], session["SessionToken"]]
    role = uname("r15-trail")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust(account))
    role_arn = f"arn:aws:iam::{account}:role/{role}"
    assumed = sts.assume_role(RoleArn=role_arn, RoleSessionName="s15")["Credentials"]
    secrets += [assumed["SecretAccessKey"], assumed["SessionToken"]]
    # MFA codes, answered and refused; a password and a private key to actions Coffer does
    # not serve; a web identity token that is refused.
    r = raw_query(srv, "sts", {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role_arn,
                               "RoleSessionName": "s15", "SerialNumber": "arn:aws:iam::1:mfa/x",
                               "TokenCode": "R15MFA1"}, key)
    secrets.append("R15MFA1")
    assert r.status_code in (200, 403), r.text
    raw_query(srv, "sts", {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role_arn + "x",
                           "RoleSessionName": "s15", "TokenCode": "R15MFA2"}, key)
    raw_query(srv, "sts", {"Action": "GetSessionToken", "Version": "2011-06-15",
                           "DurationSeconds": "1", "TokenCode": "R15MFA3"}, key)
    secrets += ["R15MFA2", "R15MFA3"]
    raw_query(srv, "iam", {"Action": "CreateLoginProfile", "Version": "2010-05-08", "UserName": name,
                           "Password": "R15-PASSWORD-1"})
    raw_query(srv, "iam", {"Action": "ChangePassword", "Version": "2010-05-08",
                           "OldPassword": "R15-PASSWORD-2", "NewPassword": "R15-PASSWORD-3"})
    raw_query(srv, "iam", {"Action": "UploadServerCertificate", "Version": "2010-05-08",
                           "ServerCertificateName": "c", "CertificateBody": "b",
                           "PrivateKey": "R15-PRIVATE-KEY"})
    raw_query(srv, "sts", {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                           "RoleArn": role_arn, "RoleSessionName": "s15",
                           "WebIdentityToken": "eyJR15.eyJR15TOKEN.R15SIG"})
    raw_query(srv, "sts", {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                           "RoleArn": "bad", "RoleSessionName": "s15",
                           "WebIdentityToken": "R15TOKEN2" * 3})
    secrets += ["R15-PASSWORD-1", "R15-PASSWORD-2", "R15-PASSWORD-3", "R15-PRIVATE-KEY", "eyJR15TOKEN",
                "R15TOKEN2"]
    # KMS and Secrets Manager: plaintexts and values, answered and refused.
    kms = client(srv, "kms", key)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    import base64
    secrets.append(base64.b64encode(data_key["Plaintext"]).decode())
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"R15-KMS-PLAINTEXT")["CiphertextBlob"]
    kms.decrypt(CiphertextBlob=blob)
    secrets.append(base64.b64encode(b"R15-KMS-PLAINTEXT").decode())
    error(lambda: kms.encrypt(KeyId="alias/r15-none", Plaintext=b"R15-KMS-REFUSED"))
    secrets.append(base64.b64encode(b"R15-KMS-REFUSED").decode())
    sm = client(srv, "secretsmanager", key)
    secret = uname("r15-trail")
    sm.create_secret(Name=secret, SecretString="R15-SM-VALUE-1")
    sm.put_secret_value(SecretId=secret, SecretString="R15-SM-VALUE-2")
    sm.get_secret_value(SecretId=secret)
    sm.batch_get_secret_value(SecretIdList=[secret])
    error(lambda: sm.put_secret_value(SecretId=secret + "-none", SecretString="R15-SM-VALUE-3"))
    error(lambda: sm.create_secret(Name=secret, SecretString="R15-SM-VALUE-4"))
    password = sm.get_random_password(PasswordLength=40)["RandomPassword"]
    secrets += ["R15-SM-VALUE-1", "R15-SM-VALUE-2", "R15-SM-VALUE-3", "R15-SM-VALUE-4", password]

    trail = srv.client("cloudtrail")
    events, token = [], None
    for _ in range(50):
        page = trail.lookup_events(MaxResults=50, **({"NextToken": token} if token else {}))
        events += page["Events"]
        token = page.get("NextToken")
        if not token:
            break
    recorded = json.dumps(events, default=str)
    assert "GetFederationToken" in recorded and "CreateAccessKey" in recorded
    import time
    time.sleep(0.5)
    log = srv.audit_log.read_text()
    assert "GetFederationToken" in log
    for value in secrets:
        assert value not in recorded, value
        assert value not in log, value
        assert value not in srv.server.output(), value


# ------------------------------------------- what held: the SQLite writer's cached reads

# How Secrets Manager refuses a value sealed (or opened) under a key that may not be used.
REFUSED_KEY = ("KMSInvalidStateException", "EncryptionFailure", "DecryptionFailure")


def test_held_a_key_disabled_or_deleted_is_refused_at_once_by_the_writer(srv):
    """The SQLite writer reads KMS key records its batch has not touched through the read
    cache (fourteenth session): a key record readers cached before DisableKey, or before
    ScheduleKeyDeletion, must not seal the next write, and a deleted secret must not take
    one. Each refusal comes on the call right after the change, over many rounds."""
    kms, sm = srv.client("kms"), srv.client("secretsmanager")
    for round_ in range(5):
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        name = uname(f"r15-w{round_}")
        sm.create_secret(Name=name, SecretString="v0", KmsKeyId=key_id)
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "v0"  # warms the cache
        sm.put_secret_value(SecretId=name, SecretString="v1")
        kms.disable_key(KeyId=key_id)
        assert error(lambda: sm.put_secret_value(SecretId=name, SecretString="v2"))[0] \
            in REFUSED_KEY
        assert error(lambda: sm.get_secret_value(SecretId=name))[0] in REFUSED_KEY
        assert error(lambda: sm.update_secret(SecretId=name, SecretString="v3"))[0] \
            in REFUSED_KEY
        kms.enable_key(KeyId=key_id)
        assert sm.put_secret_value(SecretId=name, SecretString="v4")
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        assert error(lambda: sm.put_secret_value(SecretId=name, SecretString="v5"))[0] \
            in REFUSED_KEY
        kms.cancel_key_deletion(KeyId=key_id)
        kms.enable_key(KeyId=key_id)
        sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        assert error(lambda: sm.put_secret_value(SecretId=name, SecretString="v6"))[0] \
            == "ResourceNotFoundException"


def test_held_an_alias_moved_is_followed_by_the_next_write(srv):
    """A secret sealed under an alias: the alias moved to another key (or deleted) right
    before a write decides the key that write uses (no stale alias record)."""
    kms, sm = srv.client("kms"), srv.client("secretsmanager")
    a, b = (kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2))
    alias = f"alias/{uname('r15')}"
    kms.create_alias(AliasName=alias, TargetKeyId=a)
    name = uname("r15-alias")
    sm.create_secret(Name=name, SecretString="v0", KmsKeyId=alias)
    sm.get_secret_value(SecretId=name)
    kms.update_alias(AliasName=alias, TargetKeyId=b)
    kms.disable_key(KeyId=b)
    assert error(lambda: sm.put_secret_value(SecretId=name, SecretString="v1"))[0] \
        in REFUSED_KEY
    kms.enable_key(KeyId=b)
    kms.delete_alias(AliasName=alias)
    code, _ = error(lambda: sm.put_secret_value(SecretId=name, SecretString="v2"))
    assert code in (*REFUSED_KEY, "ResourceNotFoundException"), code


def test_held_a_resource_policy_change_applies_to_the_next_write(srv, account):
    """A Deny put in a secret's resource policy applies to the very next write, through
    the writer's cached read of the secret."""
    sm = srv.client("secretsmanager")
    name = uname("r15-deny")
    sm.create_secret(Name=name, SecretString="v0")
    _, key = user(srv, allow("secretsmanager:*"))
    mine = client(srv, "secretsmanager", key)
    for i in range(3):
        assert mine.put_secret_value(SecretId=name, SecretString=f"ok{i}")
        doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",
               "Action": "secretsmanager:PutSecretValue", "Resource": "*",
               "Condition": {"StringNotEquals": {"aws:PrincipalArn": f"arn:aws:iam::{account}:root"}}}]}
        sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(doc), BlockPublicPolicy=False)
        assert error(lambda: mine.put_secret_value(SecretId=name, SecretString="no"))[0] \
            == "AccessDeniedException"
        sm.delete_resource_policy(SecretId=name)


def test_held_a_deprecated_versions_token_replays_and_refuses_as_before(srv):
    """PutSecretValue reads only the labelled versions and the one its token names
    (`labelled_versions`): the token of a version that lost its labels still replays (same
    value: no new version, no label moved) and is refused with another value."""
    sm = srv.client("secretsmanager")
    name = uname("r15-replay")
    sm.create_secret(Name=name, SecretString="v0")
    old = str(uuid.uuid4())
    sm.put_secret_value(SecretId=name, SecretString="old-value", ClientRequestToken=old)
    for i in range(3):
        sm.put_secret_value(SecretId=name, SecretString=f"v{i + 1}")
    versions = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]
    assert [v for v in versions if v["VersionId"] == old][0].get("VersionStages", []) == []
    current = sm.get_secret_value(SecretId=name)["VersionId"]
    again = sm.put_secret_value(SecretId=name, SecretString="old-value", ClientRequestToken=old)
    assert again["VersionId"] == old
    assert sm.get_secret_value(SecretId=name)["VersionId"] == current
    code, _ = error(lambda: sm.put_secret_value(SecretId=name, SecretString="other", ClientRequestToken=old))
    assert code in ("ResourceExistsException", "InvalidRequestException"), code
    after = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]
    assert len(after) == len(versions)
