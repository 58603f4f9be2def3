"""STS and the IAM API under `coffer serve --dev` (devsts13): test code written for moto or
LocalStack creates a role, assumes it, and works with the credentials STS returned. In
`--dev` nothing is authorized, but every answer has the shape and the validation it has
in enforcing mode, and the credentials mean what they mean on AWS: the assumed role's
identity and its account's namespace."""

from __future__ import annotations

import datetime
import json
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import REGION, start_dev_server, start_durable_server
from iam_api_support import Server

DEFAULT_ACCOUNT = "000000000000"
OTHER_ACCOUNT = "111122223333"
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
UNCHECKED = Config(parameter_validation=False, retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="module")
def dev():
    srv = start_dev_server()
    yield srv
    srv.stop()


def client(url: str, service: str, key: str = "AKIAIOSFODNN7EXAMPLE", secret: str = "x" * 40,
           token: str | None = None, config: Config = NO_RETRY):
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token, config=config)


def with_credentials(url: str, service: str, creds: dict):
    return client(url, service, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def trust(account: str = DEFAULT_ACCOUNT) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                       "Action": ["sts:AssumeRole", "sts:TagSession"]}],
    })


def error(call) -> tuple[str, str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response["Error"]
    return err["Code"], err["Message"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def assert_credentials_shape(creds: dict, seconds: int):
    assert set(creds) == {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["AccessKeyId"]) == 20
    assert len(creds["SecretAccessKey"]) == 40
    assert len(creds["SessionToken"]) > 40
    left = creds["Expiration"] - datetime.datetime.now(datetime.timezone.utc)
    assert abs(left.total_seconds() - seconds) < 120, left


def test_a_created_role_is_assumed_and_its_credentials_act_as_the_role(dev):
    iam = client(dev.url, "iam")
    name = uname("dev-role")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust())["Role"]
    assert role["Arn"] == f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/{name}"
    answer = client(dev.url, "sts").assume_role(RoleArn=role["Arn"], RoleSessionName="ci-run")
    assert set(answer) - {"ResponseMetadata"} == {"Credentials", "AssumedRoleUser"}
    assert_credentials_shape(answer["Credentials"], 3600)
    assumed_arn = f"arn:aws:sts::{DEFAULT_ACCOUNT}:assumed-role/{name}/ci-run"
    assert answer["AssumedRoleUser"] == {"AssumedRoleId": f"{role['RoleId']}:ci-run", "Arn": assumed_arn}

    creds = answer["Credentials"]
    me = with_credentials(dev.url, "sts", creds).get_caller_identity()
    assert (me["Arn"], me["UserId"], me["Account"]) == (assumed_arn, f"{role['RoleId']}:ci-run", DEFAULT_ACCOUNT)

    sm = with_credentials(dev.url, "secretsmanager", creds)
    secret = uname("dev-role-secret")
    arn = sm.create_secret(Name=secret, SecretString="s3cret")["ARN"]
    assert arn.startswith(f"arn:aws:secretsmanager:{REGION}:{DEFAULT_ACCOUNT}:secret:{secret}-")
    assert sm.get_secret_value(SecretId=secret)["SecretString"] == "s3cret"
    # The role's account is the caller's own: the default credentials see the same secret.
    assert client(dev.url, "secretsmanager").describe_secret(SecretId=secret)["ARN"] == arn


def test_a_role_of_another_account_gives_that_accounts_namespace(dev):
    # A 12-digit access key id is that account's root in --dev: it creates the role there.
    iam = client(dev.url, "iam", key=OTHER_ACCOUNT)
    name = uname("other-role")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust())["Role"]
    assert role["Arn"] == f"arn:aws:iam::{OTHER_ACCOUNT}:role/{name}"
    creds = client(dev.url, "sts").assume_role(RoleArn=role["Arn"], RoleSessionName="x-acct")["Credentials"]
    me = with_credentials(dev.url, "sts", creds).get_caller_identity()
    assert me["Account"] == OTHER_ACCOUNT
    assert me["Arn"] == f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/{name}/x-acct"
    secret = uname("in-other")
    arn = with_credentials(dev.url, "secretsmanager", creds).create_secret(Name=secret, SecretString="v")["ARN"]
    assert f":{OTHER_ACCOUNT}:secret:{secret}-" in arn
    # Not in the default account's namespace.
    code, _, _ = error(lambda: client(dev.url, "secretsmanager").describe_secret(SecretId=secret))
    assert code == "ResourceNotFoundException"
    # KMS too acts in the role's account.
    key = with_credentials(dev.url, "kms", creds).create_key()["KeyMetadata"]
    assert key["AWSAccountId"] == OTHER_ACCOUNT


def test_a_role_that_does_not_exist_is_assumed_as_moto_and_localstack_do(dev):
    """`--dev` checks nothing: an unknown role is AWS's AccessDenied, an authorization
    outcome, so any well-formed role ARN is assumed (docs/design/iam-and-sessions.md)."""
    arn = "arn:aws:iam::444455556666:role/team/never-created"
    sts = client(dev.url, "sts")
    first = sts.assume_role(RoleArn=arn, RoleSessionName="s1")
    second = sts.assume_role(RoleArn=arn, RoleSessionName="s2")
    role_id = first["AssumedRoleUser"]["AssumedRoleId"].split(":")[0]
    # Shaped as the ids the IAM API gives roles: AROA and 16 characters.
    assert role_id.startswith("AROA") and len(role_id) == 20
    # One role, one unique id.
    assert second["AssumedRoleUser"]["AssumedRoleId"] == f"{role_id}:s2"
    assert first["AssumedRoleUser"]["Arn"] == "arn:aws:sts::444455556666:assumed-role/never-created/s1"
    creds = first["Credentials"]
    me = with_credentials(dev.url, "sts", creds).get_caller_identity()
    assert (me["Account"], me["UserId"]) == ("444455556666", f"{role_id}:s1")
    arn = with_credentials(dev.url, "secretsmanager", creds).create_secret(Name=uname("s"), SecretString="v")["ARN"]
    assert ":444455556666:secret:" in arn
    # An ARN that names no role at all gives no role session: AWS's refusal.
    code, message, status = error(lambda: sts.assume_role(
        RoleArn="arn:aws:iam::444455556666:user/someone", RoleSessionName="s3"))
    assert (code, status) == ("AccessDenied", 403)
    assert message == ("User: arn:aws:iam::000000000000:root is not authorized to perform: sts:AssumeRole "
                       "on resource: arn:aws:iam::444455556666:user/someone")


def test_packed_policy_size_only_with_a_policy_or_tags(dev):
    sts = client(dev.url, "sts")
    arn = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/packed"
    policy = json.dumps({"Version": "2012-10-17",
                         "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]})
    assert "PackedPolicySize" in sts.assume_role(RoleArn=arn, RoleSessionName="pp", Policy=policy)
    assert "PackedPolicySize" in sts.assume_role(RoleArn=arn, RoleSessionName="tt",
                                                 Tags=[{"Key": "team", "Value": "a"}])
    assert "PackedPolicySize" not in sts.assume_role(RoleArn=arn, RoleSessionName="nn")
    long = sts.assume_role(RoleArn=arn, RoleSessionName="dd", DurationSeconds=7200)
    assert_credentials_shape(long["Credentials"], 7200)


def test_get_session_token_acts_as_the_caller(dev):
    answer = client(dev.url, "sts", key=OTHER_ACCOUNT).get_session_token()
    assert set(answer) - {"ResponseMetadata"} == {"Credentials"}
    # The account's root: its sessions last at most an hour, as on AWS.
    assert_credentials_shape(answer["Credentials"], 3600)
    creds = answer["Credentials"]
    me = with_credentials(dev.url, "sts", creds).get_caller_identity()
    assert (me["Arn"], me["UserId"], me["Account"]) == (
        f"arn:aws:iam::{OTHER_ACCOUNT}:root", OTHER_ACCOUNT, OTHER_ACCOUNT)
    arn = with_credentials(dev.url, "secretsmanager", creds).create_secret(Name=uname("gst"), SecretString="v")["ARN"]
    assert f":{OTHER_ACCOUNT}:secret:" in arn
    # Session credentials cannot ask for another session, as on AWS.
    code, message, status = error(lambda: with_credentials(dev.url, "sts", creds).get_session_token())
    assert (code, message, status) == ("AccessDenied", "Cannot call GetSessionToken with session credentials", 403)


def test_unknown_session_keys_keep_the_default_account(dev):
    me = client(dev.url, "sts", key="ASIAUNKNOWNUNKNOWN00", token="tok").get_caller_identity()
    assert (me["Arn"], me["Account"]) == (f"arn:aws:iam::{DEFAULT_ACCOUNT}:root", DEFAULT_ACCOUNT)


def test_access_keys_the_iam_api_created_act_as_their_user(dev):
    iam = client(dev.url, "iam", key=OTHER_ACCOUNT)
    user = uname("key-user")
    made = iam.create_user(UserName=user, Path="/ci/")["User"]
    key = iam.create_access_key(UserName=user)["AccessKey"]

    def as_user(service: str):
        return client(dev.url, service, key=key["AccessKeyId"], secret=key["SecretAccessKey"])

    me = as_user("sts").get_caller_identity()
    assert (me["Arn"], me["UserId"], me["Account"]) == (made["Arn"], made["UserId"], OTHER_ACCOUNT)
    arn = as_user("secretsmanager").create_secret(Name=uname("by-user"), SecretString="v")["ARN"]
    assert f":{OTHER_ACCOUNT}:secret:" in arn
    # Without UserName, the IAM API takes the caller's own user, as on AWS.
    assert as_user("iam").get_user()["User"]["UserName"] == user
    # GetSessionToken gives the user's session, 12 hours by default.
    creds = as_user("sts").get_session_token()["Credentials"]
    assert_credentials_shape(creds, 43200)
    me = with_credentials(dev.url, "sts", creds).get_caller_identity()
    assert (me["Arn"], me["UserId"]) == (made["Arn"], made["UserId"])
    # GetAccessKeyInfo names the account of the keys --dev issued.
    sts = client(dev.url, "sts")
    assert sts.get_access_key_info(AccessKeyId=key["AccessKeyId"])["Account"] == OTHER_ACCOUNT
    assert sts.get_access_key_info(AccessKeyId=creds["AccessKeyId"])["Account"] == OTHER_ACCOUNT
    # A deleted key is any other --dev key again: its account's root.
    iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
    me = as_user("sts").get_caller_identity()
    assert (me["Arn"], me["Account"]) == (f"arn:aws:iam::{DEFAULT_ACCOUNT}:root", DEFAULT_ACCOUNT)


def test_keys_and_sessions_outlive_a_restart_on_a_data_directory(tmp_path):
    """`--dev --data-dir` keeps its directory: the keys its IAM API made and the sessions
    STS issued act as before once the server starts again."""
    srv = start_durable_server(tmp_path)
    try:
        iam = client(srv.url, "iam", key=OTHER_ACCOUNT)
        iam.create_user(UserName="kept")
        key = iam.create_access_key(UserName="kept")["AccessKey"]
        creds = client(srv.url, "sts").assume_role(
            RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/kept", RoleSessionName="kept")["Credentials"]
    finally:
        srv.stop()
    srv = start_durable_server(tmp_path)
    try:
        me = client(srv.url, "sts", key=key["AccessKeyId"]).get_caller_identity()
        assert me["Arn"] == f"arn:aws:iam::{OTHER_ACCOUNT}:user/kept"
        me = with_credentials(srv.url, "sts", creds).get_caller_identity()
        assert me["Arn"] == f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/kept/kept"
    finally:
        srv.stop()


def test_a_role_session_is_audited_as_the_assumed_role(dev):
    arn = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/audited"
    creds = client(dev.url, "sts").assume_role(RoleArn=arn, RoleSessionName="aud")["Credentials"]
    secret = uname("audited")
    with_credentials(dev.url, "secretsmanager", creds).create_secret(Name=secret, SecretString="v")
    events = client(dev.url, "cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": secret}])["Events"]
    record = json.loads(next(e for e in events if e["EventName"] == "CreateSecret")["CloudTrailEvent"])
    identity = record["userIdentity"]
    assert identity["type"] == "AssumedRole"
    assert identity["arn"] == f"arn:aws:sts::{DEFAULT_ACCOUNT}:assumed-role/audited/aud"
    assert identity["accessKeyId"] == creds["AccessKeyId"]


def test_iam_calls_are_served_as_the_accounts_root(dev):
    iam = client(dev.url, "iam", key=OTHER_ACCOUNT)
    user = uname("dev-user")
    created = iam.create_user(UserName=user, Path="/ci/")["User"]
    assert created["Arn"] == f"arn:aws:iam::{OTHER_ACCOUNT}:user/ci/{user}"
    assert created["UserId"].startswith("AIDA")
    role = uname("dev-role")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust(OTHER_ACCOUNT), MaxSessionDuration=7200)
    policy = iam.create_policy(PolicyName=uname("dev-policy"), PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))["Policy"]
    assert policy["Arn"].startswith(f"arn:aws:iam::{OTHER_ACCOUNT}:policy/")
    iam.attach_role_policy(RoleName=role, PolicyArn=policy["Arn"])
    key = iam.create_access_key(UserName=user)["AccessKey"]
    assert key["AccessKeyId"].startswith("AKIA") and len(key["SecretAccessKey"]) == 40
    assert user in [u["UserName"] for u in iam.list_users()["Users"]]
    assert role in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert policy["Arn"] in [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]]
    # Each account has its own directory.
    assert user not in [u["UserName"] for u in client(dev.url, "iam").list_users()["Users"]]
    # The same errors as enforcing mode.
    code, message, status = error(lambda: iam.create_user(UserName=user))
    assert (code, message, status) == ("EntityAlreadyExists", f"User with name {user} already exists.", 409)
    code, message, _ = error(lambda: iam.get_role(RoleName="no-such-role"))
    assert (code, message) == ("NoSuchEntity", "The role with name no-such-role cannot be found.")
    # A role's MaxSessionDuration bounds AssumeRole's DurationSeconds in --dev too.
    arn = f"arn:aws:iam::{OTHER_ACCOUNT}:role/{role}"
    code, message, _ = error(lambda: client(dev.url, "sts").assume_role(
        RoleArn=arn, RoleSessionName="long", DurationSeconds=7201))
    assert (code, message) == (
        "ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
    # IAM calls are audited in the caller's trail, as the account's root.
    events = client(dev.url, "cloudtrail", key=OTHER_ACCOUNT).lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateUser"}])["Events"]
    record = json.loads(events[0]["CloudTrailEvent"])
    assert record["eventSource"] == "iam.amazonaws.com"
    assert record["userIdentity"]["type"] == "Root"


# Bad input, sent as a raw caller can: each must be refused in --dev with the code,
# message and status enforcing mode gives for the same request.
BAD_ASSUME_ROLE = {
    "no session name": {"RoleArn": "{role}"},
    "no role arn": {"RoleSessionName": "ok"},
    "short session name": {"RoleArn": "{role}", "RoleSessionName": "a"},
    "session name pattern": {"RoleArn": "{role}", "RoleSessionName": "has space"},
    "not an arn": {"RoleArn": "not-an-arn", "RoleSessionName": "ok"},
    "duration too short": {"RoleArn": "{role}", "RoleSessionName": "ok", "DurationSeconds": 899},
    "duration over the role's maximum": {"RoleArn": "{role}", "RoleSessionName": "ok", "DurationSeconds": 3601},
    # A policy ARN under the model's 20 characters (sts15: PolicyArns are served; `--dev`
    # takes policies it does not hold, as it takes roles, so only their shape is compared).
    "policy arns": {"RoleArn": "{role}", "RoleSessionName": "ok", "PolicyArns": [{"arn": "arn:aws:iam::1:p"}]},
    "duplicate tag keys": {"RoleArn": "{role}", "RoleSessionName": "ok",
                           "Tags": [{"Key": "a", "Value": "1"}, {"Key": "A", "Value": "2"}]},
    "transitive key not a tag": {"RoleArn": "{role}", "RoleSessionName": "ok",
                                 "Tags": [{"Key": "a", "Value": "1"}], "TransitiveTagKeys": ["b"]},
    "malformed session policy": {"RoleArn": "{role}", "RoleSessionName": "ok", "Policy": "{not json"},
}
BAD_SESSION_TOKEN = {
    "duration too short": {"DurationSeconds": 100},
    "duration too long": {"DurationSeconds": 129601},
}


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("devsts-enforcing"))
    yield srv
    srv.server.stop()


def refusals(sts, role_arn: str) -> dict:
    out = {}
    for case, params in BAD_ASSUME_ROLE.items():
        params = {k: (v.replace("{role}", role_arn) if isinstance(v, str) else v) for k, v in params.items()}
        out[("AssumeRole", case)] = error(lambda: sts.assume_role(**params))
    for case, params in BAD_SESSION_TOKEN.items():
        out[("GetSessionToken", case)] = error(lambda: sts.get_session_token(**params))
    return out


def iam_refusals(iam) -> dict:
    role = uname("refused")
    unknown_user = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT_ACCOUNT}:user/nobody-{role}"},
        "Action": "sts:AssumeRole"}]})
    cases = {
        "trust naming an unknown user": lambda: iam.create_role(
            RoleName=role, AssumeRolePolicyDocument=unknown_user),
        "trust not json": lambda: iam.create_role(RoleName=role, AssumeRolePolicyDocument="{nope"),
        "user name pattern": lambda: iam.create_user(UserName="bad name!"),
        "policy not json": lambda: iam.create_policy(PolicyName=role, PolicyDocument="{nope"),
        "no such user": lambda: iam.get_user(UserName=f"ghost-{role}"),
        "max session too long": lambda: iam.create_role(
            RoleName=role, AssumeRolePolicyDocument=trust(), MaxSessionDuration=43201),
    }
    return {case: error(call) for case, call in cases.items()}


def test_bad_input_is_refused_as_in_enforcing_mode(dev, enforcing):
    name = uname("bad-input")
    enforcing.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=trust())
    client(dev.url, "iam").create_role(RoleName=name, AssumeRolePolicyDocument=trust())
    role_arn = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/{name}"
    expected = refusals(boto3.client("sts", endpoint_url=enforcing.url, region_name=REGION,
                                     aws_access_key_id=enforcing.admin_key[0],
                                     aws_secret_access_key=enforcing.admin_key[1], config=UNCHECKED), role_arn)
    got = refusals(client(dev.url, "sts", config=UNCHECKED), role_arn)
    assert got == expected
    assert all(status == 400 for _, _, status in got.values()), got
    # The IAM API too: its validation, and the trust policy's principals checked as IAM does.
    unchecked_iam = boto3.client("iam", endpoint_url=enforcing.url, region_name=REGION,
                                 aws_access_key_id=enforcing.admin_key[0],
                                 aws_secret_access_key=enforcing.admin_key[1], config=UNCHECKED)
    expected = iam_refusals(unchecked_iam)
    got = iam_refusals(client(dev.url, "iam", config=UNCHECKED))
    # The names differ (each run makes its own), so the messages are compared with them cut.
    assert {k: (c, st) for k, (c, _, st) in got.items()} == {k: (c, st) for k, (c, _, st) in expected.items()}
    assert got["trust naming an unknown user"][1].startswith('Invalid principal in policy: "AWS":"arn:aws:iam::')
    for case in ("trust not json", "user name pattern", "policy not json", "max session too long"):
        assert got[case][1] == expected[case][1], case
