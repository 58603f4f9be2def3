"""Regression tests for the twelfth adversarial review's findings (the eleventh session's
features: remembered KMS decisions, the lazy condition context, outbound OIDC fetches, the
audit log's reopen, PostgreSQL's handoff; and paths a denied caller could take instead).

Each test drives the real binary through boto3 on an enforcing server whose users, roles
and keys are made through the IAM API.
"""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from test_sec_review7 import Server

ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("review12"), ["--quota-scale", "100"])
    yield s
    s.server.stop()


def code_of(fn, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def role_for_admin(srv, name: str, policy: str) -> str:
    """A role the administrator may assume, with `policy` inline; its ARN."""
    iam = srv.any_client("iam")
    trust = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                 "Action": "sts:AssumeRole"})
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=policy)
    return arn


# ------------------------------- 01: a session policy's condition on kms:ResourceAliases

def test_01_a_session_policy_deny_on_the_keys_aliases_applies(srv):
    """A session policy (AssumeRole's Policy: how a broker hands out scoped-down credentials)
    that denies keys by their aliases (`kms:ResourceAliases`) must deny them: the aliases were
    read only when an identity or key policy named that key, so the session policy's Deny saw
    no alias and never applied."""
    kms = srv.any_client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    alias = unique("alias/prod-r12")
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    everything = doc({"Effect": "Allow", "Action": ["kms:*", "secretsmanager:*"], "Resource": "*"})
    role = role_for_admin(srv, unique("r12-01"), everything)
    session_policy = doc(
        {"Effect": "Allow", "Action": ["kms:*", "secretsmanager:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
         "Resource": "*",
         "Condition": {"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/prod-r12-*"}}})
    sts = srv.any_client("sts")
    creds = sts.assume_role(RoleArn=role, RoleSessionName="scoped", Policy=session_policy)["Credentials"]
    scoped = srv.session_client("kms", creds)
    # A key without such an alias is usable.
    scoped.encrypt(KeyId=other, Plaintext=b"fine")
    code, message = code_of(scoped.encrypt, KeyId=key, Plaintext=b"no")
    assert code == "AccessDeniedException", message
    assert "explicit deny in a session policy" in message, message
    # Through Secrets Manager too: a secret sealed under the key is not written or opened.
    admin = srv.admin()
    name = unique("r12-01")
    admin.create_secret(Name=name, SecretString="R12-01-VALUE", KmsKeyId=key)
    sm = srv.session_client("secretsmanager", creds)
    code, message = code_of(sm.get_secret_value, SecretId=name)
    assert code == "AccessDeniedException", message
    code, message = code_of(sm.put_secret_value, SecretId=name, SecretString="x")
    assert code == "AccessDeniedException", message


# ------------------------------- 02: a FIFO swapped in for the --audit-log file

def test_02_a_fifo_swapped_in_for_the_audit_log_does_not_hang_the_server(tmp_path):
    """Since the log is made again at its path when moved or replaced (review 11), whoever
    may write its directory could put a FIFO there: opening a FIFO for writing waits for a
    reader, and the writer waited holding the log's lock, so every later call (and /ready)
    hung. A reopen must not block: the call fails closed at once, and once the FIFO is gone
    the log is made again."""
    import os
    import threading

    import requests
    from botocore.config import Config

    import boto3

    from conftest import ACCESS_KEY, REGION, SECRET_KEY, make_client, start_server

    log = tmp_path / "audit.jsonl"
    srv = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "data"),
                        "--listen", "127.0.0.1:0", "--audit-log", str(log)])
    unblock = threading.Event()
    try:
        sm = make_client(srv.url)
        sm.create_secret(Name=unique("r12-02-before"), SecretString="v")
        log.unlink()
        os.mkfifo(log)

        def reader_after_timeout():
            # Should the server wait on the FIFO, a reader lets it go at the end of the test.
            if not unblock.wait(20):
                fd = os.open(log, os.O_RDONLY | os.O_NONBLOCK)
                unblock.wait(5)
                os.close(fd)

        threading.Thread(target=reader_after_timeout, daemon=True).start()
        quick = boto3.client("secretsmanager", endpoint_url=srv.url, region_name=REGION,
                             aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                             config=Config(read_timeout=10, retries={"total_max_attempts": 1}))
        hung = False
        try:
            quick.create_secret(Name=unique("r12-02-during"), SecretString="v")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "InternalFailure", e.response
        except Exception as e:  # noqa: BLE001 (a read timeout: the server hung)
            hung = "timed out" in str(e).lower() or "timeout" in type(e).__name__.lower()
            if not hung:
                raise
        assert not hung, "the call waited on the FIFO"
        assert requests.get(srv.url + "/ready", timeout=10).status_code == 503
        os.unlink(log)
        sm.create_secret(Name=unique("r12-02-after"), SecretString="v")
        assert log.is_file()
    finally:
        unblock.set()
        srv.stop()


# ------------------------------- 03: what a remembered KMS decision keys on (held)

def test_03_a_remembered_kms_allow_follows_the_callers_tags_and_groups(srv):
    """The KMS decision memo (hot11) remembers an Allow per caller record: a change to the
    caller's tags (aws:PrincipalTag, a stable key) or to the groups that gave it the
    permission must refuse the very next read. Held: both are IAM writes, which give the
    caller a new record."""
    iam = srv.any_client("iam")
    kms = srv.any_client("kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    name = unique("r12-03")
    srv.admin().create_secret(Name=name, KmsKeyId=key, SecretString="R12-03")
    user = unique("r12-03-user")
    group = unique("r12-03-group")
    (ak, user_arn) = srv.iam_user(user, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]})
    iam.tag_user(UserName=user, Tags=[{"Key": "team", "Value": "blue"}])
    iam.create_group(GroupName=group)
    iam.put_group_policy(GroupName=group, PolicyName="kms", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalTag/team": "blue"}}}))
    iam.add_user_to_group(GroupName=group, UserName=user)
    sm = srv.any_client("secretsmanager", ak)
    for _ in range(2):
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "R12-03"
    iam.tag_user(UserName=user, Tags=[{"Key": "team", "Value": "red"}])
    code, _ = code_of(sm.get_secret_value, SecretId=name)
    assert code == "AccessDeniedException"
    iam.tag_user(UserName=user, Tags=[{"Key": "team", "Value": "blue"}])
    for _ in range(2):
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "R12-03"
    iam.remove_user_from_group(GroupName=group, UserName=user)
    code, _ = code_of(sm.get_secret_value, SecretId=name)
    assert code == "AccessDeniedException"
