"""STS GetFederationToken (enforcing and ``--dev``) and ``--dev``'s AssumeRoleWithWebIdentity
(sts14): two STS operations that test code written for moto and LocalStack, and teams that
host Coffer themselves, call.

GetFederationToken is called with an IAM user's long-term key; the federated user it names
acts with the intersection of the user's identity policies and the session policies passed
(none passed: no permissions at all, as AWS documents), as
``arn:aws:sts::<account>:federated-user/<name>`` with user id ``<account>:<name>``."""

from __future__ import annotations

import base64
import datetime
import json
import time
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from conftest import REGION, start_dev_server
from iam_api_support import Server

UNCHECKED = Config(parameter_validation=False, retries={"total_max_attempts": 1, "mode": "standard"})
DEV_ACCOUNT = "000000000000"


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error(call) -> tuple[str, str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response["Error"]
    return err["Code"], err.get("Message", ""), e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def client(url: str, service: str, key: str, secret: str, token: str | None = None):
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token, config=UNCHECKED)


def with_credentials(url: str, service: str, creds: dict):
    return client(url, service, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


def seconds_left(creds: dict) -> float:
    return (creds["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


def allow(actions: list[str], resources: list[str] | str = "*") -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]})


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("sts14"))
    yield server
    server.server.stop()


@pytest.fixture(scope="module")
def account(srv):
    return srv.client("sts").get_caller_identity()["Account"]


class User:
    def __init__(self, srv, policy: str | None):
        iam = srv.client("iam")
        self.name = uname("fed-user")
        iam.create_user(UserName=self.name)
        if policy:
            iam.put_user_policy(UserName=self.name, PolicyName="p", PolicyDocument=policy)
        key = iam.create_access_key(UserName=self.name)["AccessKey"]
        self.key = (key["AccessKeyId"], key["SecretAccessKey"])
        self.srv = srv

    def client(self, service: str):
        return client(self.srv.url, service, *self.key)


@pytest.fixture(scope="module")
def secrets(srv):
    sm = srv.client("secretsmanager")
    names = [uname("fed-a"), uname("fed-b")]
    arns = [sm.create_secret(Name=n, SecretString=f"value-{n}")["ARN"] for n in names]
    return list(zip(names, arns))


@pytest.fixture(scope="module")
def reader(srv):
    """A user allowed to federate (with session tags: sts:TagSession, as AWS requires) and
    to read every secret (not to delete them)."""
    return User(srv, allow(["sts:GetFederationToken", "sts:TagSession",
                            "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]))


def test_get_federation_token_answers_aws_shape(srv, account, reader):
    answer = reader.client("sts").get_federation_token(
        Name="bob", Policy=allow(["secretsmanager:GetSecretValue"]),
        Tags=[{"Key": "team", "Value": "blue"}])
    assert set(answer) - {"ResponseMetadata"} == {"Credentials", "FederatedUser", "PackedPolicySize"}
    creds = answer["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["SecretAccessKey"]) == 40
    assert abs(seconds_left(creds) - 43_200) < 120
    assert answer["FederatedUser"] == {"FederatedUserId": f"{account}:bob",
                                       "Arn": f"arn:aws:sts::{account}:federated-user/bob"}
    assert 1 <= answer["PackedPolicySize"] <= 100
    who = with_credentials(srv.url, "sts", creds).get_caller_identity()
    assert who["Arn"] == f"arn:aws:sts::{account}:federated-user/bob"
    assert who["UserId"] == f"{account}:bob"
    assert who["Account"] == account
    short = reader.client("sts").get_federation_token(Name="bob", DurationSeconds=900)
    assert abs(seconds_left(short["Credentials"]) - 900) < 120
    assert "PackedPolicySize" not in short


NAME_LENGTH = "1 validation error detected: Value '{}' at 'name' failed to satisfy constraint: Member must have length {}"


@pytest.mark.parametrize("kwargs,code,message", [
    ({}, "ValidationError",
     "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null"),
    ({"Name": "a"}, "ValidationError", NAME_LENGTH.format("a", "greater than or equal to 2")),
    ({"Name": "n" * 33}, "ValidationError", NAME_LENGTH.format("n" * 33, "less than or equal to 32")),
    ({"Name": "bob smith"}, "ValidationError",
     "1 validation error detected: Value 'bob smith' at 'name' failed to satisfy constraint: "
     "Member must satisfy regular expression pattern: [\\w+=,.@-]*"),
    ({"Name": "bob", "DurationSeconds": 899}, "ValidationError",
     "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: "
     "Member must have value greater than or equal to 900"),
    ({"Name": "bob", "DurationSeconds": 129_601}, "ValidationError",
     "1 validation error detected: Value '129601' at 'durationSeconds' failed to satisfy constraint: "
     "Member must have value less than or equal to 129600"),
    ({"Name": "bob", "DurationSeconds": "soon"}, "ValidationError", "Invalid value for DurationSeconds: soon"),
    ({"Name": "bob", "Policy": "{not json"}, "MalformedPolicyDocument", None),
    ({"Name": "bob", "Tags": [{"Key": "k", "Value": "1"}, {"Key": "K", "Value": "2"}]},
     "InvalidParameterValue", "Duplicate tag keys found. Please note that Tag keys are case insensitive."),
])
def test_get_federation_token_refuses_bad_input(reader, kwargs, code, message):
    got = error(lambda: reader.client("sts").get_federation_token(**kwargs))
    assert got[0] == code and got[2] == 400, got
    if message is not None:
        assert got[1] == message


def test_session_credentials_cannot_get_a_federation_token(srv, reader):
    session = reader.client("sts").get_session_token()["Credentials"]
    assert error(lambda: with_credentials(srv.url, "sts", session).get_federation_token(Name="bob")) == (
        "AccessDenied", "Cannot call GetFederationToken with session credentials", 403)
    fed = reader.client("sts").get_federation_token(Name="bob", Policy=allow(["sts:*"]))["Credentials"]
    assert error(lambda: with_credentials(srv.url, "sts", fed).get_federation_token(Name="eve")) == (
        "AccessDenied", "Cannot call GetFederationToken with session credentials", 403)


def test_a_user_needs_sts_get_federation_token(srv, account):
    user = User(srv, allow(["secretsmanager:GetSecretValue"]))
    code, message, status = error(lambda: user.client("sts").get_federation_token(Name="bob"))
    assert (code, status) == ("AccessDenied", 403)
    assert message == (f"User: arn:aws:iam::{account}:user/{user.name} is not authorized to perform: "
                       f"sts:GetFederationToken on resource: arn:aws:sts::{account}:federated-user/bob "
                       "because no identity-based policy allows the sts:GetFederationToken action")


def test_without_a_session_policy_the_federated_user_may_do_nothing(srv, reader, secrets):
    (name, _), _ = secrets
    assert reader.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"] == f"value-{name}"
    creds = reader.client("sts").get_federation_token(Name="nopolicy")["Credentials"]
    code, _, status = error(lambda: with_credentials(srv.url, "secretsmanager", creds).get_secret_value(SecretId=name))
    assert (code, status) == ("AccessDeniedException", 400)


def test_permissions_are_the_intersection_of_user_and_session_policies(srv, reader, secrets):
    (a, a_arn), (b, _) = secrets
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"],
         "Resource": a_arn},
        # The AWS managed key that seals the value: its key policy lets the account's
        # principals decrypt through Secrets Manager, the session policy must too.
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]})
    creds = reader.client("sts").get_federation_token(Name="narrow", Policy=policy)["Credentials"]
    sm = with_credentials(srv.url, "secretsmanager", creds)
    assert sm.get_secret_value(SecretId=a)["SecretString"] == f"value-{a}"
    # The session policy does not allow b; the user's policies do not allow deleting.
    assert error(lambda: sm.get_secret_value(SecretId=b))[0] == "AccessDeniedException"
    assert error(lambda: sm.delete_secret(SecretId=a))[0] == "AccessDeniedException"
    # Federated credentials call no IAM operation and no STS one but GetCallerIdentity.
    assert error(lambda: with_credentials(srv.url, "iam", creds).list_users())[0] == "InvalidClientTokenId"


def test_a_resource_policy_naming_the_federated_user_grants_it(srv, account, reader):
    sm = srv.client("secretsmanager")
    name = uname("fed-shared")
    sm.create_secret(Name=name, SecretString="shared")
    fed_arn = f"arn:aws:sts::{account}:federated-user/carol"
    sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": fed_arn},
                       "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}))
    # The session policy allows decrypting with the secret's key, not GetSecretValue: the
    # resource policy naming the federated user grants that past the session policy.
    decrypt = allow(["kms:Decrypt"])
    creds = reader.client("sts").get_federation_token(Name="carol", Policy=decrypt)["Credentials"]
    assert with_credentials(srv.url, "secretsmanager", creds).get_secret_value(SecretId=name)["SecretString"] == "shared"
    other = reader.client("sts").get_federation_token(Name="dave", Policy=decrypt)["Credentials"]
    assert error(lambda: with_credentials(srv.url, "secretsmanager", other).get_secret_value(SecretId=name))[0] == \
        "AccessDeniedException"


def test_federated_calls_are_audited_as_the_federated_user(srv, account, reader, secrets):
    (a, a_arn), _ = secrets
    creds = reader.client("sts").get_federation_token(
        Name="audited", Policy=allow(["secretsmanager:DescribeSecret"], [a_arn]))["Credentials"]
    with_credentials(srv.url, "secretsmanager", creds).describe_secret(SecretId=a)
    events = srv.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": creds["AccessKeyId"]}])["Events"]
    record = json.loads(next(e for e in events if e["EventName"] == "DescribeSecret")["CloudTrailEvent"])
    identity = record["userIdentity"]
    assert identity["type"] == "FederatedUser"
    assert identity["arn"] == f"arn:aws:sts::{account}:federated-user/audited"
    assert identity["principalId"] == f"{account}:audited"
    assert "userName" not in identity
    issuer = identity["sessionContext"]["sessionIssuer"]
    assert issuer["type"] == "IAMUser" and issuer["userName"] == reader.name
    assert issuer["arn"] == f"arn:aws:iam::{account}:user/{reader.name}"
    assert issuer["principalId"].startswith("AIDA") and issuer["accountId"] == account
    assert identity["sessionContext"]["attributes"]["mfaAuthenticated"] == "false"


def test_the_get_federation_token_event_records_its_parameters_and_no_secret(srv, account, reader):
    answer = reader.client("sts").get_federation_token(
        Name="recorded", DurationSeconds=900, Policy=allow(["secretsmanager:ListSecrets"]))
    creds = answer["Credentials"]
    events = srv.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GetFederationToken"}])["Events"]
    records = [json.loads(e["CloudTrailEvent"]) for e in events]
    record = next(r for r in records if (r.get("requestParameters") or {}).get("name") == "recorded")
    assert record["requestParameters"]["durationSeconds"] == 900
    elements = record["responseElements"]
    assert elements["credentials"]["accessKeyId"] == creds["AccessKeyId"]
    assert elements["federatedUser"] == {
        "federatedUserId": f"{account}:recorded",
        "arn": f"arn:aws:sts::{account}:federated-user/recorded",
    }
    text = json.dumps(record)
    assert creds["SecretAccessKey"] not in text and creds["SessionToken"] not in text


def test_federated_credentials_outlive_the_users_key_but_not_the_user(srv):
    user = User(srv, allow(["sts:GetFederationToken", "secretsmanager:ListSecrets"]))
    creds = user.client("sts").get_federation_token(
        Name="keyless", DurationSeconds=900, Policy=allow(["secretsmanager:ListSecrets"]))["Credentials"]
    assert abs(seconds_left(creds) - 900) < 120
    iam = srv.client("iam")
    iam.update_access_key(UserName=user.name, AccessKeyId=user.key[0], Status="Inactive")
    sm = with_credentials(srv.url, "secretsmanager", creds)
    sm.list_secrets()
    # Permissions come from the user's policies as they are now.
    iam.delete_user_policy(UserName=user.name, PolicyName="p")
    assert error(lambda: sm.list_secrets())[0] == "AccessDeniedException"
    iam.delete_access_key(UserName=user.name, AccessKeyId=user.key[0])
    iam.delete_user(UserName=user.name)
    assert error(lambda: sm.list_secrets())[0] == "UnrecognizedClientException"


# --- --dev ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dev():
    server = start_dev_server()
    yield server
    server.stop()


def dev_client(url: str, service: str, key: str = "AKIAIOSFODNN7EXAMPLE"):
    return client(url, service, key, "x" * 40)


def test_dev_get_federation_token_acts_as_the_federated_user(dev):
    answer = dev_client(dev.url, "sts").get_federation_token(Name="devbob")
    assert answer["FederatedUser"] == {"FederatedUserId": f"{DEV_ACCOUNT}:devbob",
                                       "Arn": f"arn:aws:sts::{DEV_ACCOUNT}:federated-user/devbob"}
    # The caller is the account's root: an hour at most, as on AWS.
    assert abs(seconds_left(answer["Credentials"]) - 3600) < 120
    who = with_credentials(dev.url, "sts", answer["Credentials"]).get_caller_identity()
    assert (who["Arn"], who["UserId"]) == (f"arn:aws:sts::{DEV_ACCOUNT}:federated-user/devbob", f"{DEV_ACCOUNT}:devbob")
    assert error(lambda: dev_client(dev.url, "sts").get_federation_token(Name="x"))[:2] == (
        "ValidationError", NAME_LENGTH.format("x", "greater than or equal to 2"))
    assert error(lambda: with_credentials(dev.url, "sts", answer["Credentials"]).get_federation_token(Name="eve")) == (
        "AccessDenied", "Cannot call GetFederationToken with session credentials", 403)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict) -> str:
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}.{b64url(b'not-a-real-signature')}"


def anonymous_sts(url: str):
    return boto3.client("sts", endpoint_url=url, region_name=REGION,
                        config=Config(signature_version=UNSIGNED, parameter_validation=False,
                                      retries={"total_max_attempts": 1}))


def test_dev_web_identity_accepts_a_well_formed_token(dev):
    now = int(time.time())
    token = jwt({"iss": "https://oidc.eks.us-east-1.amazonaws.com/id/ABC", "sub": "system:serviceaccount:ns:sa",
                 "aud": "sts.amazonaws.com", "iat": now, "exp": now + 600})
    role = f"arn:aws:iam::{DEV_ACCOUNT}:role/irsa-role"
    answer = anonymous_sts(dev.url).assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="pod", WebIdentityToken=token, DurationSeconds=1800)
    assert answer["SubjectFromWebIdentityToken"] == "system:serviceaccount:ns:sa"
    assert answer["Audience"] == "sts.amazonaws.com"
    assert answer["Provider"] == "oidc.eks.us-east-1.amazonaws.com/id/ABC"
    assert answer["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{DEV_ACCOUNT}:assumed-role/irsa-role/pod"
    assert answer["AssumedRoleUser"]["AssumedRoleId"].startswith("AROA")
    creds = answer["Credentials"]
    assert abs(seconds_left(creds) - 1800) < 120
    who = with_credentials(dev.url, "sts", creds).get_caller_identity()
    assert who["Arn"] == f"arn:aws:sts::{DEV_ACCOUNT}:assumed-role/irsa-role/pod"
    sm = with_credentials(dev.url, "secretsmanager", creds)
    name = uname("irsa")
    sm.create_secret(Name=name, SecretString="v")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"


def test_dev_web_identity_refuses_what_enforcing_mode_refuses(dev):
    sts = anonymous_sts(dev.url)
    role = f"arn:aws:iam::{DEV_ACCOUNT}:role/irsa-role"
    code, message = error(lambda: sts.assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="pod", WebIdentityToken="not.a-jwt"))[:2]
    assert (code, message) == ("InvalidIdentityToken", "The web identity token is not a JWT.")
    garbled = b64url(json.dumps({"alg": "RS256"}).encode()) + ".!!!.sig"
    assert error(lambda: sts.assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="pod", WebIdentityToken=garbled))[:2] == (
        "InvalidIdentityToken", "The web identity token has no readable claims.")
    now = int(time.time())
    good = jwt({"iss": "https://issuer.example.test", "sub": "s", "aud": "a", "exp": now + 600})
    assert error(lambda: sts.assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="a b", WebIdentityToken=good))[0] == "ValidationError"
    assert error(lambda: sts.assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="pod", WebIdentityToken=good, DurationSeconds=600))[:2] == (
        "ValidationError", "1 validation error detected: Value '600' at 'durationSeconds' failed to satisfy "
        "constraint: Member must have value greater than or equal to 900")
    expired = jwt({"iss": "https://issuer.example.test", "sub": "s", "aud": "a", "exp": now - 60})
    assert error(lambda: sts.assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="pod", WebIdentityToken=expired))[0] == "ExpiredTokenException"
