"""Authentication and authorization without --dev, through boto3, the aws CLI and raw SigV4.

The server writes its first administrator's key to ``<data-dir>/admin-credentials``; these
tests use that file unchanged (``AWS_SHARED_CREDENTIALS_FILE`` and ``--profile coffer``), make
users with ``coffer admin``, and check AWS's exact errors for every way a signature can fail.
"""

from __future__ import annotations

import configparser
import datetime
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.auth
import botocore.exceptions
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import JSON_CONTENT_TYPE, REGION, client_error, coffer_bin, error_of, start_server

PROFILE = "coffer"
ADMIN_ARN = "arn:aws:iam::000000000000:user/admin"
PARTNER_ACCOUNT = "111122223333"
MSG_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
MSG_UNRECOGNIZED = "The security token included in the request is invalid."
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60)


class Secured:
    """A ``coffer serve`` without --dev on its own data directory."""

    def __init__(self, data_dir: Path, extra_args: list[str] | None = None):
        self.data_dir = data_dir
        self.server = start_server(
            ["serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *(extra_args or [])]
        )
        self.url = self.server.url
        self.credentials_file = data_dir / "admin-credentials"
        parsed = configparser.ConfigParser()
        parsed.read(self.credentials_file)
        self.admin_key = (parsed[PROFILE]["aws_access_key_id"], parsed[PROFILE]["aws_secret_access_key"])

    def client(self, key: tuple[str, str], region: str = REGION, service: str = "secretsmanager"):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=NO_RETRY,
        )

    def admin(self):
        return self.client(self.admin_key)

    def coffer_admin(self, *args: str, stdin: str | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "COFFER_MASTER_KEY"}
        done = subprocess.run(
            [coffer_bin(), "admin", *args, "--data-dir", str(self.data_dir)],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def user(self, name: str, policy: dict, account: str = "000000000000") -> tuple[str, str]:
        """Creates a user with one policy and an access key; returns (id, secret)."""
        self.coffer_admin("create-user", name, "--account", account)
        self.coffer_admin("attach-policy", name, "--name", "p", "--file", "-", "--account", account, stdin=json.dumps(policy))
        printed = configparser.ConfigParser()
        printed.read_string(self.coffer_admin("create-access-key", name, "--account", account))
        return printed[name]["aws_access_key_id"], printed[name]["aws_secret_access_key"]


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    srv = Secured(tmp_path_factory.mktemp("secured"))
    yield srv
    srv.server.stop()


def denied(user_arn: str, action: str, resource: str, why: str) -> str:
    return f"User: {user_arn} is not authorized to perform: secretsmanager:{action} on resource: {resource} {why}"


def no_identity_allow(action: str) -> str:
    return f"because no identity-based policy allows the secretsmanager:{action} action"


def expect(fn, code: str, message: str | None = None, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        fn(**kwargs)
    got_code, got_message = client_error(excinfo)
    got_message = got_message or excinfo.value.response["Error"].get("Message")
    assert got_code == code, f"{got_code}: {got_message}"
    if message is not None:
        assert got_message == message
    return excinfo.value


# ---- the administrator's credentials file -----------------------------------------------------


def test_admin_credentials_file_is_private_and_in_credentials_file_format(secured):
    mode = stat.S_IMODE(secured.credentials_file.stat().st_mode)
    assert mode == 0o600
    assert secured.admin_key[0].startswith("AKIA") and len(secured.admin_key[0]) == 20
    assert len(secured.admin_key[1]) == 40
    output = secured.server.output_once_it_shows(f"created the administrator {ADMIN_ARN}")
    assert f"created the administrator {ADMIN_ARN}" in output
    assert output.count("created the administrator") == 1
    assert secured.admin_key[1] not in output


def test_aws_cli_with_profile_uses_the_file_unchanged(secured, tmp_path):
    env = dict(os.environ)
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(secured.credentials_file),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_DEFAULT_REGION=REGION,
    )
    env["AWS_PAGER"] = ""
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
              "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        env.pop(k, None)
    aws = [sys.executable, "-m", "awscli", "--profile", PROFILE, "--endpoint-url", secured.url, "--output", "json"]
    who = subprocess.run([*aws, "sts", "get-caller-identity"], capture_output=True, text=True, env=env, timeout=60)
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout) == {
        "UserId": json.loads(who.stdout)["UserId"],
        "Account": "000000000000",
        "Arn": ADMIN_ARN,
    }
    assert json.loads(who.stdout)["UserId"].startswith("AIDA")
    made = subprocess.run(
        [*aws, "secretsmanager", "create-secret", "--name", "cli/profile", "--secret-string", "via-profile"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    got = subprocess.run(
        [*aws, "secretsmanager", "get-secret-value", "--secret-id", "cli/profile"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["SecretString"] == "via-profile"


def test_boto3_session_with_profile_reads_the_file(secured, monkeypatch):
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(secured.credentials_file))
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    session = boto3.Session(profile_name=PROFILE, region_name=REGION)
    sts = session.client("sts", endpoint_url=secured.url, config=NO_RETRY)
    assert sts.get_caller_identity()["Arn"] == ADMIN_ARN
    sm = session.client("secretsmanager", endpoint_url=secured.url, config=NO_RETRY)
    sm.list_secrets()


# ---- identity policies ------------------------------------------------------------------------


def test_get_secret_value_on_prod_only_reads_prod_db_and_nothing_else(secured):
    admin = secured.admin()
    prod = admin.create_secret(Name="prod/db", SecretString="prod-password")["ARN"]
    dev = admin.create_secret(Name="dev/db", SecretString="dev-password")["ARN"]
    key = secured.user("prodreader", {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                       "Resource": "arn:aws:secretsmanager:*:*:secret:prod/*"}],
    })
    reader = secured.client(key)
    user = "arn:aws:iam::000000000000:user/prodreader"
    assert reader.get_secret_value(SecretId="prod/db")["SecretString"] == "prod-password"
    assert reader.get_secret_value(SecretId=prod)["SecretString"] == "prod-password"
    expect(reader.get_secret_value, "AccessDeniedException",
           denied(user, "GetSecretValue", "dev/db", no_identity_allow("GetSecretValue")), SecretId="dev/db")
    # The message quotes the SecretId as given, never the resolved ARN (no existence oracle).
    expect(reader.get_secret_value, "AccessDeniedException",
           denied(user, "GetSecretValue", dev, no_identity_allow("GetSecretValue")), SecretId=dev)
    expect(reader.describe_secret, "AccessDeniedException",
           denied(user, "DescribeSecret", "prod/db", no_identity_allow("DescribeSecret")), SecretId="prod/db")
    expect(reader.put_secret_value, "AccessDeniedException", SecretId="prod/db", SecretString="overwrite")
    expect(reader.list_secrets, "AccessDeniedException",
           denied(user, "ListSecrets", "*", no_identity_allow("ListSecrets")))
    assert admin.get_secret_value(SecretId="prod/db")["SecretString"] == "prod-password"


def test_a_deny_on_a_tag_wins_over_an_allow(secured):
    admin = secured.admin()
    restricted = admin.create_secret(Name="tagged/payroll", SecretString="p",
                                     Tags=[{"Key": "Classification", "Value": "Restricted"}])["ARN"]
    admin.create_secret(Name="tagged/wiki", SecretString="w", Tags=[{"Key": "Classification", "Value": "Public"}])
    key = secured.user("tagops", {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
             "Condition": {"StringEquals": {"secretsmanager:ResourceTag/Classification": "Restricted"}}},
        ],
    })
    ops = secured.client(key)
    assert ops.get_secret_value(SecretId="tagged/wiki")["SecretString"] == "w"
    expect(ops.get_secret_value, "AccessDeniedException",
           denied("arn:aws:iam::000000000000:user/tagops", "GetSecretValue", restricted,
                  "with an explicit deny in an identity-based policy"),
           SecretId=restricted)
    # Tagging the other secret Restricted takes effect on the next call.
    admin.tag_resource(SecretId="tagged/wiki", Tags=[{"Key": "Classification", "Value": "Restricted"}])
    expect(ops.get_secret_value, "AccessDeniedException", SecretId="tagged/wiki")


def test_create_secret_requires_the_tags_the_policy_names(secured):
    key = secured.user("tagcreator", {
        "Version": "2012-10-17",
        # Creating with tags needs TagResource too, as AWS documents (attack 16, finding 05).
        "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:CreateSecret", "secretsmanager:TagResource"],
                       "Resource": "*",
                       "Condition": {"StringEquals": {"aws:RequestTag/Team": "Security"}}}],
    })
    creator = secured.client(key)
    expect(creator.create_secret, "AccessDeniedException", Name="team/x", SecretString="v")
    expect(creator.create_secret, "AccessDeniedException", Name="team/x", SecretString="v",
           Tags=[{"Key": "Team", "Value": "Sales"}])
    made = creator.create_secret(Name="team/x", SecretString="v", Tags=[{"Key": "Team", "Value": "Security"}])
    assert made["Name"] == "team/x"


# ---- resource policies ------------------------------------------------------------------------


def test_a_resource_policy_grants_a_second_account_read_access(secured):
    admin = secured.admin()
    # Reads from another account need a customer managed key whose policy lets that
    # account decrypt (AWS refuses them under aws/secretsmanager).
    key_policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PARTNER_ACCOUNT}:root"},
         "Action": "kms:Decrypt", "Resource": "*"}]}
    shared_key = secured.client(secured.admin_key, service="kms").create_key(
        Policy=json.dumps(key_policy))["KeyMetadata"]["Arn"]
    arn = admin.create_secret(Name="shared/token", SecretString="for-partners", KmsKeyId=shared_key)["ARN"]
    key = secured.user("partner", {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                       "Resource": "arn:aws:secretsmanager:us-east-1:000000000000:secret:shared/*"},
                      {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": shared_key}],
    }, account=PARTNER_ACCOUNT)
    partner = secured.client(key)
    partner_arn = f"arn:aws:iam::{PARTNER_ACCOUNT}:user/partner"
    expect(partner.get_secret_value, "AccessDeniedException",
           denied(partner_arn, "GetSecretValue", arn,
                  "because no resource-based policy allows the secretsmanager:GetSecretValue action"),
           SecretId=arn)
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": PARTNER_ACCOUNT},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    admin.put_resource_policy(SecretId="shared/token", ResourcePolicy=json.dumps(policy), BlockPublicPolicy=True)
    got = partner.get_secret_value(SecretId=arn)
    assert got["SecretString"] == "for-partners"
    assert got["ARN"] == arn
    expect(partner.describe_secret, "AccessDeniedException", SecretId=arn)
    admin.delete_resource_policy(SecretId="shared/token")
    expect(partner.get_secret_value, "AccessDeniedException", SecretId=arn)


def test_a_resource_policy_deny_applies_even_to_the_administrator(secured):
    admin = secured.admin()
    arn = admin.create_secret(Name="locked/one", SecretString="v")["ARN"]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "secretsmanager:GetSecretValue",
        "Resource": "*", "Condition": {"StringNotEquals": {"aws:PrincipalArn": "arn:aws:iam::000000000000:user/nobody"}}}]}
    admin.put_resource_policy(SecretId="locked/one", ResourcePolicy=json.dumps(policy))
    expect(admin.get_secret_value, "AccessDeniedException",
           denied(ADMIN_ARN, "GetSecretValue", arn, "with an explicit deny in a resource-based policy"),
           SecretId=arn)
    admin.delete_resource_policy(SecretId="locked/one")
    assert admin.get_secret_value(SecretId="locked/one")["SecretString"] == "v"


def test_block_public_policy_and_validate_resource_policy_findings(secured):
    admin = secured.admin()
    admin.create_secret(Name="policy/target", SecretString="v")
    public = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    expect(admin.put_resource_policy, "PublicPolicyException",
           SecretId="policy/target", ResourcePolicy=json.dumps(public), BlockPublicPolicy=True)
    report = admin.validate_resource_policy(SecretId="policy/target", ResourcePolicy=json.dumps(public))
    assert report["PolicyValidationPassed"] is False
    assert [e["CheckName"] for e in report["ValidationErrors"]] == ["BROAD_ACCESS_CHECK"]
    pinned = json.loads(json.dumps(public))
    pinned["Statement"][0]["Condition"] = {"StringEquals": {"aws:PrincipalAccount": PARTNER_ACCOUNT}}
    report = admin.validate_resource_policy(ResourcePolicy=json.dumps(pinned))
    assert report == {"PolicyValidationPassed": True, "ValidationErrors": [], "ResponseMetadata": report["ResponseMetadata"]}
    bad = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*",
                                                    "Resource": "*", "Condition": {"StringEqual": {"a:b": "c"}}}]}
    report = admin.validate_resource_policy(ResourcePolicy=json.dumps(bad))
    assert report["ValidationErrors"][0]["CheckName"] == "SYNTAX_CHECK"
    assert "StringEqual" in report["ValidationErrors"][0]["ErrorMessage"]
    err = expect(admin.put_resource_policy, "MalformedPolicyDocumentException",
                 SecretId="policy/target", ResourcePolicy=json.dumps(bad))
    assert "'StringEqual' is not a valid IAM condition operator" in err.response["Error"]["Message"]


# ---- signatures -------------------------------------------------------------------------------


def raw_call(url: str, key: tuple[str, str], target: str, body: dict, *, region: str = REGION,
             tamper=None, sign: bool = True) -> requests.Response:
    """A JSON 1.1 call signed as botocore signs it; `tamper(headers, body)` runs after signing."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": f"secretsmanager.{target}"}
    endpoint = url.rstrip("/") + "/"
    if sign:
        req = AWSRequest(method="POST", url=endpoint, data=data, headers=headers)
        SigV4Auth(Credentials(*key), "secretsmanager", region).add_auth(req)
        headers = dict(req.prepare().headers)
    if tamper:
        headers, data = tamper(headers, data)
    return requests.post(endpoint, data=data, headers=headers, timeout=30)


def assert_refused(resp: requests.Response, code: str, message: str | None = None) -> str:
    assert resp.status_code == 400, resp.text
    got_code, got_message = error_of(resp)
    assert got_code == code, got_message
    if message is not None:
        assert got_message == message
    return got_message


def test_a_correct_signature_is_accepted_by_raw_http(secured):
    resp = raw_call(secured.url, secured.admin_key, "ListSecrets", {})
    assert resp.status_code == 200, resp.text


def test_a_wrong_secret_key_is_an_invalid_signature(secured):
    wrong = (secured.admin_key[0], secured.admin_key[1][:-1] + ("A" if secured.admin_key[1][-1] != "A" else "B"))
    assert_refused(raw_call(secured.url, wrong, "ListSecrets", {}), "InvalidSignatureException", MSG_MISMATCH)
    expect(secured.client(wrong).list_secrets, "InvalidSignatureException", MSG_MISMATCH)


def test_an_unknown_access_key_is_unrecognized(secured):
    unknown = ("AKIAIOSFODNN7EXAMPLE", secured.admin_key[1])
    assert_refused(raw_call(secured.url, unknown, "ListSecrets", {}), "UnrecognizedClientException", MSG_UNRECOGNIZED)
    sts = secured.client(unknown, service="sts")
    expect(sts.get_caller_identity, "InvalidClientTokenId", MSG_UNRECOGNIZED)


def test_a_wrong_region_in_the_scope_is_refused(secured):
    assert_refused(raw_call(secured.url, secured.admin_key, "ListSecrets", {}, region="us-east-7"),
                   "InvalidSignatureException", "Credential should be scoped to a valid region, not 'us-east-7'. ")
    expect(secured.client(secured.admin_key, region="mars-north-1").list_secrets,
           "InvalidSignatureException", "Credential should be scoped to a valid region, not 'mars-north-1'. ")


def test_a_scope_for_another_service_is_refused(secured):
    def rescope(headers, data):
        headers["Authorization"] = headers["Authorization"].replace("/secretsmanager/", "/kms/")
        return headers, data

    assert_refused(raw_call(secured.url, secured.admin_key, "ListSecrets", {}, tamper=rescope),
                   "InvalidSignatureException", "Credential should be scoped to correct service: 'secretsmanager'. ")


def test_a_request_six_minutes_old_is_refused(secured, monkeypatch):
    real = botocore.auth.get_current_datetime
    signed_at = []

    def six_minutes_ago(*args, **kwargs):
        moment = real(*args, **kwargs) - datetime.timedelta(minutes=6)
        signed_at.append(moment)
        return moment

    monkeypatch.setattr(botocore.auth, "get_current_datetime", six_minutes_ago)
    message = assert_refused(raw_call(secured.url, secured.admin_key, "ListSecrets", {}), "InvalidSignatureException")
    stamp = signed_at[-1].strftime("%Y%m%dT%H%M%SZ")
    assert message.startswith(f"Signature expired: {stamp} is now earlier than "), message
    assert message.endswith(" - 5 min.)"), message
    expect(secured.admin().list_secrets, "InvalidSignatureException")


def test_a_request_four_minutes_old_is_still_accepted(secured, monkeypatch):
    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda *a, **k: real(*a, **k) - datetime.timedelta(minutes=4))
    assert raw_call(secured.url, secured.admin_key, "ListSecrets", {}).status_code == 200


def test_a_changed_body_is_refused(secured):
    secured.admin().create_secret(Name="sig/body", SecretString="v")

    def change_body(headers, data):
        return headers, data.replace(b"sig/body", b"sig/bodz")

    assert_refused(raw_call(secured.url, secured.admin_key, "GetSecretValue", {"SecretId": "sig/body"}, tamper=change_body),
                   "InvalidSignatureException", MSG_MISMATCH)


def test_a_changed_signed_header_is_refused_and_the_operation_does_not_run(secured):
    secured.admin().create_secret(Name="sig/header", SecretString="v")

    def change_target(headers, data):
        headers["X-Amz-Target"] = "secretsmanager.DeleteSecret"
        return headers, data

    assert_refused(raw_call(secured.url, secured.admin_key, "DescribeSecret",
                            {"SecretId": "sig/header", "ForceDeleteWithoutRecovery": True}, tamper=change_target),
                   "InvalidSignatureException", MSG_MISMATCH)
    assert secured.admin().get_secret_value(SecretId="sig/header")["SecretString"] == "v"


def test_missing_incomplete_and_presigned_authentication_get_aws_errors(secured):
    assert_refused(raw_call(secured.url, secured.admin_key, "ListSecrets", {}, sign=False),
                   "MissingAuthenticationTokenException", "Missing Authentication Token")

    def drop_signature(headers, data):
        auth = headers["Authorization"]
        headers["Authorization"] = auth[: auth.index(", Signature=")]
        return headers, data

    message = assert_refused(raw_call(secured.url, secured.admin_key, "ListSecrets", {}, tamper=drop_signature),
                             "IncompleteSignatureException")
    assert message.startswith("Authorization header requires 'Signature' parameter."), message
    presigned = requests.post(
        secured.url + "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20250101%2Fus-east-1"
        "%2Fsecretsmanager%2Faws4_request&X-Amz-Signature=00",
        data=b"{}", headers={"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": "secretsmanager.ListSecrets"},
        timeout=30,
    )
    message = assert_refused(presigned, "IncompleteSignatureException")
    assert "presigned URLs are not supported" in message


def test_sts_signature_errors_use_the_query_protocol(secured):
    wrong = (secured.admin_key[0], "x" * 40)
    expect(secured.client(wrong, service="sts").get_caller_identity, "SignatureDoesNotMatch", MSG_MISMATCH)
    resp = requests.post(secured.url, data="Action=GetCallerIdentity&Version=2011-06-15",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert resp.status_code == 403
    assert "<Code>MissingAuthenticationToken</Code>" in resp.text


def test_deleting_an_access_key_revokes_it(secured):
    key = secured.user("shortlived", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]})
    client = secured.client(key)
    client.list_secrets()
    secured.coffer_admin("delete-access-key", key[0])
    expect(client.list_secrets, "UnrecognizedClientException", MSG_UNRECOGNIZED)
