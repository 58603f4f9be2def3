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
