"""Roles and temporary credentials (issue 18, part 2): STS AssumeRole and GetSessionToken,
requests signed with a session's key and X-Amz-Security-Token, the assumed-role identity,
session policies narrowing access, refusals (trust naming another principal, a wrong
ExternalId, a missing or wrong token, a deleted role; expiry is in coffer-iam's unit tests,
as no session lasts less than AWS's 15 minutes), and the AWS CLI assuming a role by
itself through a ``role_arn`` + ``source_profile`` profile.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import uuid

import botocore.exceptions
import pytest

from conftest import REGION
from iam_api_support import STORES, serve

ACCOUNT = "000000000000"
READ_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:ListSecrets"], "Resource": "*"}],
}


def trust(principal: str, condition: dict | None = None) -> str:
    statement = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture(scope="module", params=STORES)
def srv(request, tmp_path_factory):
    return serve(request, tmp_path_factory, "roles")


@pytest.fixture(scope="module")
def secret(srv):
    sm = srv.client("secretsmanager")
    name = f"role-secret-{uuid.uuid4().hex[:8]}"
    sm.create_secret(Name=name, SecretString="role-value")
    return name


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_role(srv, trust_doc: str, policy: dict | None = READ_ALL, **kwargs) -> str:
    iam = srv.client("iam")
    name = uname("role")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_doc, **kwargs)["Role"]["Arn"]
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return arn


def make_user(srv, policy: dict | None) -> tuple[str, tuple[str, str]]:
    iam = srv.client("iam")
    name = uname("user")
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return name, (key["AccessKeyId"], key["SecretAccessKey"])


def error_code(fn, **kwargs) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        fn(**kwargs)
    err = excinfo.value.response["Error"]
    return err["Code"], err.get("Message", "")


def test_assume_role_issues_temporary_credentials_that_read_a_secret(srv, secret):
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"))
    role_name = role_arn.rsplit("/", 1)[1]
    got = srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="app-1", DurationSeconds=900)
    creds = got["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["SecretAccessKey"]) == 40
    assert creds["SessionToken"]
    assert got["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/app-1"
    assert got["AssumedRoleUser"]["AssumedRoleId"].startswith("AROA")
    assert got["AssumedRoleUser"]["AssumedRoleId"].endswith(":app-1")
    who = srv.session_client("sts", creds).get_caller_identity()
    assert who["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/app-1"
    assert who["UserId"] == got["AssumedRoleUser"]["AssumedRoleId"]
    sm = srv.session_client("secretsmanager", creds)
    assert sm.get_secret_value(SecretId=secret)["SecretString"] == "role-value"
    # The role grants nothing else.
    code, message = error_code(sm.create_secret, Name=uname("nope"), SecretString="x")
    assert code == "AccessDeniedException"
    assert message.startswith(f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/app-1 is not authorized")


def test_the_session_token_is_required_and_checked(srv, secret):
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"))
    creds = srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="s1")["Credentials"]
    key = (creds["AccessKeyId"], creds["SecretAccessKey"])
    no_token = srv.client("secretsmanager", key)
    assert error_code(no_token.list_secrets)[0] == "UnrecognizedClientException"
    wrong = srv.client("secretsmanager", key, creds["SessionToken"][:-4] + "AAAA")
    assert error_code(wrong.list_secrets)[0] == "UnrecognizedClientException"
    # A long-term key with a session token is refused too.
    with_token = srv.client("secretsmanager", srv.admin_key, creds["SessionToken"])
    assert error_code(with_token.list_secrets)[0] == "UnrecognizedClientException"


def test_sessions_stop_when_their_role_is_deleted(srv, secret):
    iam = srv.client("iam")
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"))
    name = role_arn.rsplit("/", 1)[1]
    creds = srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="s1")["Credentials"]
    sm = srv.session_client("secretsmanager", creds)
    sm.list_secrets()
    iam.delete_role_policy(RoleName=name, PolicyName="p")
    iam.delete_role(RoleName=name)
    assert error_code(sm.list_secrets)[0] == "UnrecognizedClientException"
    # A role made again under the same name is another role: the old session stays dead.
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust(f"arn:aws:iam::{ACCOUNT}:root"))
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(READ_ALL))
    assert error_code(sm.list_secrets)[0] == "UnrecognizedClientException"


def test_a_session_policy_narrows_access(srv, secret):
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"))
    only_list = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]}
    creds = srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="narrow", Policy=json.dumps(only_list))["Credentials"]
    sm = srv.session_client("secretsmanager", creds)
    sm.list_secrets()
    code, message = error_code(sm.get_secret_value, SecretId=secret)
    assert code == "AccessDeniedException"
    assert "because no session policy allows the secretsmanager:GetSecretValue action" in message
    # A session policy cannot widen what the role allows.
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    creds = srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="wide", Policy=json.dumps(everything))["Credentials"]
    code, _ = error_code(srv.session_client("secretsmanager", creds).create_secret, Name=uname("x"), SecretString="x")
    assert code == "AccessDeniedException"


def test_trust_policy_refusals(srv):
    assume_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}
    user, key = make_user(srv, assume_only)
    other_user, _ = make_user(srv, None)
    sts = srv.client("sts", key)
    # A trust policy that names another principal.
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:user/{other_user}"))
    code, message = error_code(sts.assume_role, RoleArn=role_arn, RoleSessionName="s1")
    assert code == "AccessDenied"
    assert message == f"User: arn:aws:iam::{ACCOUNT}:user/{user} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
    # A trust policy naming the user lets it in.
    named = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:user/{user}"))
    sts.assume_role(RoleArn=named, RoleSessionName="s1")
    # ExternalId conditions.
    external = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:user/{user}", {"StringEquals": {"sts:ExternalId": "ext-123"}}))
    assert error_code(sts.assume_role, RoleArn=external, RoleSessionName="s1")[0] == "AccessDenied"
    assert error_code(sts.assume_role, RoleArn=external, RoleSessionName="s1", ExternalId="wrong")[0] == "AccessDenied"
    sts.assume_role(RoleArn=external, RoleSessionName="s1", ExternalId="ext-123")
    # An unknown role answers like a refusal.
    missing = f"arn:aws:iam::{ACCOUNT}:role/{uname('none')}"
    assert error_code(sts.assume_role, RoleArn=missing, RoleSessionName="s1")[0] == "AccessDenied"
    # A trust policy naming the account needs an identity Allow as well.
    account_trust = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"))
    _, no_rights = make_user(srv, None)
    assert error_code(srv.client("sts", no_rights).assume_role, RoleArn=account_trust, RoleSessionName="s1")[0] == "AccessDenied"


def test_principal_tag_conditions_in_trust_policies(srv):
    assume_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}
    iam = srv.client("iam")
    user, key = make_user(srv, assume_only)
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root", {"StringEquals": {"aws:PrincipalTag/team": "blue"}}))
    sts = srv.client("sts", key)
    assert error_code(sts.assume_role, RoleArn=role_arn, RoleSessionName="s1")[0] == "AccessDenied"
    iam.tag_user(UserName=user, Tags=[{"Key": "team", "Value": "blue"}])
    sts.assume_role(RoleArn=role_arn, RoleSessionName="s1")


def test_duration_is_bounded_by_the_role(srv):
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"))
    sts = srv.client("sts")
    code, message = error_code(sts.assume_role, RoleArn=role_arn, RoleSessionName="s1", DurationSeconds=7200)
    assert code == "ValidationError"
    assert message == "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
    long_role = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"), MaxSessionDuration=7200)
    sts.assume_role(RoleArn=long_role, RoleSessionName="s1", DurationSeconds=7200)


def test_get_session_token_acts_as_the_user(srv):
    user, key = make_user(srv, READ_ALL)
    creds = srv.client("sts", key).get_session_token(DurationSeconds=900)["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    who = srv.session_client("sts", creds).get_caller_identity()
    assert who["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{user}"
    srv.session_client("secretsmanager", creds).list_secrets()
    code, message = error_code(srv.session_client("sts", creds).get_session_token)
    assert code == "AccessDenied" and message == "Cannot call GetSessionToken with session credentials"
    # IAM refuses GetSessionToken credentials obtained without MFA.
    code, _ = error_code(srv.session_client("iam", creds).get_user)
    assert code == "InvalidClientTokenId"


def test_assume_role_is_audited_as_the_caller_and_session_calls_as_assumed_role(srv, secret):
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"))
    got = srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="audited")
    creds = got["Credentials"]
    srv.session_client("secretsmanager", creds).get_secret_value(SecretId=secret)
    trail = srv.client("cloudtrail")
    events = trail.lookup_events(LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": creds["AccessKeyId"]}])["Events"]
    assert events, "the session's call was not audited"
    record = json.loads(events[0]["CloudTrailEvent"])
    assert record["userIdentity"]["type"] == "AssumedRole"
    assert record["userIdentity"]["arn"] == got["AssumedRoleUser"]["Arn"]
    assumed = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "AssumeRole"}])["Events"]
    dumped = json.dumps([json.loads(e["CloudTrailEvent"]) for e in assumed])
    assert assumed and creds["SecretAccessKey"] not in dumped and creds["SessionToken"] not in dumped


def test_the_aws_cli_assumes_a_role_from_a_source_profile(srv, secret, tmp_path):
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"))
    config = tmp_path / "config"
    config.write_text(
        "[profile app]\n"
        f"role_arn = {role_arn}\n"
        "source_profile = coffer\n"
        "role_session_name = cli-session\n"
        f"region = {REGION}\n"
        f"endpoint_url = {srv.url}\n"
        "[profile coffer]\n"
        f"region = {REGION}\n"
        f"endpoint_url = {srv.url}\n"
    )
    env = dict(os.environ)
    env.update({
        "AWS_SHARED_CREDENTIALS_FILE": str(srv.credentials_file),
        "AWS_CONFIG_FILE": str(config),
        "AWS_MAX_ATTEMPTS": "1",
    })
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)

    def aws(*args: str) -> dict:
        done = subprocess.run(["aws", *args, "--profile", "app", "--output", "json"], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    who = aws("sts", "get-caller-identity")
    assert who["Arn"].endswith(f"/{role_arn.rsplit('/', 1)[1]}/cli-session")
    assert aws("secretsmanager", "get-secret-value", "--secret-id", secret)["SecretString"] == "role-value"


def test_a_secret_policy_naming_the_role_works_for_its_sessions(srv):
    sm = srv.client("secretsmanager")
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"), policy=None)
    name = uname("by-role")
    sm.create_secret(Name=name, SecretString="for-the-role")
    creds = srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="rp")["Credentials"]
    session = srv.session_client("secretsmanager", creds)
    assert error_code(session.get_secret_value, SecretId=name)[0] == "AccessDeniedException"
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": role_arn}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}],
    }
    sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(policy))
    assert session.get_secret_value(SecretId=name)["SecretString"] == "for-the-role"
    shown = json.loads(sm.get_resource_policy(SecretId=name)["ResourcePolicy"])
    assert shown["Statement"][0]["Principal"]["AWS"] == role_arn
    # The policy names that role, not whichever role later takes its name.
    iam = srv.client("iam")
    role_name = role_arn.rsplit("/", 1)[1]
    iam.delete_role(RoleName=role_name)
    iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=trust(f"arn:aws:iam::{ACCOUNT}:root"))
    creds = srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="rp")["Credentials"]
    again = srv.session_client("secretsmanager", creds)
    assert error_code(again.get_secret_value, SecretId=name)[0] == "AccessDeniedException"
    # A policy naming a role that does not exist is refused, as one naming a missing user is.
    missing = dict(policy, Statement=[dict(policy["Statement"][0], Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:role/none-{uuid.uuid4().hex[:6]}"})])
    assert error_code(sm.put_resource_policy, SecretId=name, ResourcePolicy=json.dumps(missing))[0] == "MalformedPolicyDocumentException"


def test_a_role_session_must_name_the_user_for_iam_user_calls(srv):
    admin_role = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"), policy={"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]})
    creds = srv.client("sts").assume_role(RoleArn=admin_role, RoleSessionName="admin")["Credentials"]
    iam = srv.session_client("iam", creds)
    code, message = error_code(iam.get_user)
    assert (code, message) == ("ValidationError", "Must specify userName when calling with non-User credentials")
    assert error_code(iam.create_access_key)[0] == "ValidationError"
    assert iam.get_user(UserName="admin")["User"]["UserName"] == "admin"


def test_a_role_of_another_account_needs_both_its_trust_and_the_callers_policy(srv):
    partner = "111122223333"
    srv.coffer_admin("create-user", "partner-admin", "--account", partner)
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    srv.coffer_admin("attach-policy", "partner-admin", "--name", "all", "--file", "-", "--account", partner,
                     stdin=json.dumps(everything))
    printed = configparser.ConfigParser()
    printed.read_string(srv.coffer_admin("create-access-key", "partner-admin", "--account", partner))
    partner_key = (printed["partner-admin"]["aws_access_key_id"], printed["partner-admin"]["aws_secret_access_key"])
    partner_iam = srv.client("iam", partner_key)
    role = uname("shared")
    role_arn = partner_iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust(f"arn:aws:iam::{ACCOUNT}:root"))["Role"]["Arn"]
    assert role_arn == f"arn:aws:iam::{partner}:role/{role}"
    partner_iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(READ_ALL))
    secret_name = uname("partner-secret")
    srv.client("secretsmanager", partner_key).create_secret(Name=secret_name, SecretString="partner-value")
    # The trust policy names the caller's account, so the caller's own policies must allow too.
    _, no_rights = make_user(srv, None)
    assert error_code(srv.client("sts", no_rights).assume_role, RoleArn=role_arn, RoleSessionName="x1")[0] == "AccessDenied"
    allowed = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}]}
    _, key = make_user(srv, allowed)
    creds = srv.client("sts", key).assume_role(RoleArn=role_arn, RoleSessionName="x1")["Credentials"]
    who = srv.session_client("sts", creds).get_caller_identity()
    assert who["Account"] == partner and who["Arn"] == f"arn:aws:sts::{partner}:assumed-role/{role}/x1"
    assert srv.session_client("secretsmanager", creds).get_secret_value(SecretId=secret_name)["SecretString"] == "partner-value"


def test_session_tags_are_principal_tags_of_the_session(srv, secret):
    tagged_only = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
                       "Condition": {"StringEquals": {"aws:PrincipalTag/team": "blue"}}}],
    }
    # Passing session tags needs sts:TagSession in the trust policy, as on AWS.
    tagging_trust = json.loads(trust(f"arn:aws:iam::{ACCOUNT}:root"))
    tagging_trust["Statement"][0]["Action"] = ["sts:AssumeRole", "sts:TagSession"]
    role_arn = make_role(srv, json.dumps(tagging_trust), policy=tagged_only)
    sts = srv.client("sts")
    untagged = sts.assume_role(RoleArn=role_arn, RoleSessionName="t0")["Credentials"]
    assert error_code(srv.session_client("secretsmanager", untagged).get_secret_value, SecretId=secret)[0] == "AccessDeniedException"
    tagged = sts.assume_role(RoleArn=role_arn, RoleSessionName="t1", Tags=[{"Key": "team", "Value": "blue"}])["Credentials"]
    assert srv.session_client("secretsmanager", tagged).get_secret_value(SecretId=secret)["SecretString"] == "role-value"


def test_a_key_policy_naming_the_role_works_for_its_sessions(srv):
    role_arn = make_role(srv, trust(f"arn:aws:iam::{ACCOUNT}:root"), policy=None)
    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "role", "Effect": "Allow", "Principal": {"AWS": role_arn}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"},
        ],
    }
    key_id = srv.client("kms").create_key(Policy=json.dumps(key_policy))["KeyMetadata"]["KeyId"]
    creds = srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="kms1")["Credentials"]
    kms = srv.session_client("kms", creds)
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"hello")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"hello"
    assert error_code(kms.describe_key, KeyId=key_id)[0] == "AccessDeniedException"


def test_request_lines_name_the_assumed_role(tmp_path):
    import time as _time

    from conftest import start_server
    from iam_api_support import Server

    first = Server(tmp_path)
    first.server.stop()
    logged = start_server(["serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0", "--log-format", "json"],
                          env={"COFFER_LOG": "info"})
    try:
        first.url = logged.url
        role_arn = make_role(first, trust(f"arn:aws:iam::{ACCOUNT}:root"))
        creds = first.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="logged")["Credentials"]
        first.session_client("secretsmanager", creds).list_secrets()
        wrong = dict(creds, SessionToken=creds["SessionToken"][:-4] + "AAAA")
        with pytest.raises(botocore.exceptions.ClientError):
            first.session_client("secretsmanager", wrong).list_secrets()
        deadline = _time.monotonic() + 5
        while _time.monotonic() < deadline and logged.output().count('"operation":"ListSecrets"') < 2:
            _time.sleep(0.05)
        lines = [json.loads(line) for line in logged.output().splitlines() if line.startswith("{")]
        listed = [e for e in lines if e.get("target") == "coffer::request" and e.get("operation") == "ListSecrets"]
        assert [e["principal"] for e in listed] == [f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_arn.rsplit('/', 1)[1]}/logged", "-"]
        assert all(creds["SessionToken"] not in line and creds["SecretAccessKey"] not in line for line in logged.output().splitlines())
    finally:
        logged.stop()
