"""The KMS decisions Secrets Manager makes on a secret's key are memoized (issue 20, hot11):
every change that can turn an Allow into a denial takes effect on the very next call.

Each test makes the caller read (or write) a value at least twice first, so its Allow is
remembered, then changes one input of the decision (the key policy, the key's state, its
tags, the caller's identity policy) and expects the next call refused; a condition on a
per-request key (the encryption context, which names the secret) is never answered from
the memo.
"""

from __future__ import annotations

import json

import pytest

from conftest import unique_name
from test_auth import ADMIN_ARN, Secured, expect

ACCOUNT = "000000000000"
READER_ARN = f"arn:aws:iam::{ACCOUNT}:user/hotreader"


def key_policy(*principals: str, condition: dict | None = None) -> str:
    statement = {"Effect": "Allow", "Principal": {"AWS": list(principals)}, "Action": "kms:*",
                 "Resource": "*"}
    if condition:
        statement["Condition"] = condition
    admin_only = {"Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "kms:*",
                  "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [admin_only, statement]})


READER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    srv = Secured(tmp_path_factory.mktemp("hotkms"))
    reader = srv.user("hotreader", READER_POLICY)
    yield {"srv": srv, "reader": reader}
    srv.server.stop()


def setup(world, policy: str, tags: list | None = None):
    """A key with `policy`, a secret sealed under it, and the reader's clients."""
    srv = world["srv"]
    admin_kms = srv.client(srv.admin_key, service="kms")
    key = admin_kms.create_key(Policy=policy, Tags=tags or [])["KeyMetadata"]["Arn"]
    name = unique_name("hot")
    srv.admin().create_secret(Name=name, KmsKeyId=key, SecretString="v1")
    return admin_kms, key, name, srv.client(world["reader"])


def read_twice(sm, name: str) -> None:
    for _ in range(2):
        assert sm.get_secret_value(SecretId=name)["SecretString"] in ("v1", "v2")


def test_a_changed_key_policy_refuses_the_next_read_and_write(world):
    admin_kms, key, name, sm = setup(world, key_policy(ADMIN_ARN, READER_ARN))
    read_twice(sm, name)
    sm.put_secret_value(SecretId=name, SecretString="v2")
    admin_kms.put_key_policy(KeyId=key, PolicyName="default", Policy=key_policy(ADMIN_ARN))
    expect(sm.get_secret_value, "AccessDeniedException", SecretId=name)
    expect(sm.put_secret_value, "AccessDeniedException", SecretId=name, SecretString="v3")
    admin_kms.put_key_policy(KeyId=key, PolicyName="default",
                             Policy=key_policy(ADMIN_ARN, READER_ARN))
    read_twice(sm, name)


def test_a_disabled_key_refuses_the_next_read(world):
    admin_kms, key, name, sm = setup(world, key_policy(ADMIN_ARN, READER_ARN))
    read_twice(sm, name)
    admin_kms.disable_key(KeyId=key)
    expect(sm.get_secret_value, "DecryptionFailure", SecretId=name)
    admin_kms.enable_key(KeyId=key)
    read_twice(sm, name)
    admin_kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    expect(sm.get_secret_value, "DecryptionFailure", SecretId=name)


def test_a_removed_key_tag_refuses_the_next_read(world):
    on_tag = {"StringEquals": {"aws:ResourceTag/app": "hot"}}
    admin_kms, key, name, sm = setup(world, key_policy(ADMIN_ARN, READER_ARN, condition=on_tag),
                                     tags=[{"TagKey": "app", "TagValue": "hot"}])
    read_twice(sm, name)
    admin_kms.untag_resource(KeyId=key, TagKeys=["app"])
    expect(sm.get_secret_value, "AccessDeniedException", SecretId=name)


def test_a_changed_identity_policy_refuses_the_next_read(world):
    srv = world["srv"]
    user = srv.user("hotdetached", READER_POLICY)
    policy = key_policy(ADMIN_ARN, f"arn:aws:iam::{ACCOUNT}:root")
    admin_kms, key, name, _ = setup(world, policy)
    sm = srv.client(user)
    read_twice(sm, name)
    no_kms = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}
    srv.coffer_admin("attach-policy", "hotdetached", "--name", "p", "--file", "-",
                     "--account", ACCOUNT, stdin=json.dumps(no_kms))
    expect(sm.get_secret_value, "AccessDeniedException", SecretId=name)


def test_a_condition_on_the_encryption_context_is_decided_on_every_call(world):
    srv = world["srv"]
    admin_kms, key, first, sm = setup(world, key_policy(ADMIN_ARN, READER_ARN))
    second = unique_name("hot")
    srv.admin().create_secret(Name=second, KmsKeyId=key, SecretString="v1")
    first_arn = sm.describe_secret(SecretId=first)["ARN"]
    only_first = {"StringEquals": {"kms:EncryptionContext:SecretARN": first_arn}}
    admin_kms.put_key_policy(KeyId=key, PolicyName="default",
                             Policy=key_policy(ADMIN_ARN, READER_ARN, condition=only_first))
    read_twice(sm, first)
    expect(sm.get_secret_value, "AccessDeniedException", SecretId=second)
    read_twice(sm, first)


# ---- the base context is built only when a policy reads a condition key ----------------------

LOOPBACK = {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}


def test_an_identity_condition_on_the_source_address_still_decides(world):
    srv = world["srv"]
    user = srv.user("hotnoloopback", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": LOOPBACK}]})
    name = unique_name("hot")
    srv.admin().create_secret(Name=name, SecretString="v1")
    sm = srv.client(user)
    sm.describe_secret(SecretId=name)
    expect(sm.get_secret_value, "AccessDeniedException", SecretId=name)


def test_a_resource_policy_condition_decides_for_a_caller_whose_policies_read_none(world):
    srv = world["srv"]
    admin = srv.admin()
    name = unique_name("hot")
    arn = admin.create_secret(Name=name, SecretString="v1")["ARN"]
    sm = srv.client(world["reader"])
    read_twice(sm, name)
    admin.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": {"AWS": READER_ARN},
            "Action": "secretsmanager:GetSecretValue", "Resource": arn, "Condition": LOOPBACK}]}))
    expect(sm.get_secret_value, "AccessDeniedException", SecretId=name)
    # BatchGetSecretValue decides each secret with its own policy the same way.
    batch = sm.batch_get_secret_value(SecretIdList=[name])
    assert batch["SecretValues"] == []
    assert batch["Errors"][0]["ErrorCode"] == "AccessDeniedException"
