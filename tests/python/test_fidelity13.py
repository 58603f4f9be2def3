"""Fidelity items of the thirteenth session, each against what AWS documents or answers.

- The AWS managed key (`aws/secretsmanager`) seals a secret whether the secret names it by
  its alias, its key id or its key ARN: another account is refused its value alike, with
  AWS's InvalidRequestException, in `--dev` and on an enforcing server.
- KMS CreateGrant on a key that cannot be used: DisabledException "<arn> is disabled." for
  a disabled key, KMSInvalidStateException "<arn> is pending import." for a key waiting
  for its material (the KMS key-state table).
- ReplicateKey answers the replica in the transient `Creating` state, as AWS does; the
  replica is usable at once (DescribeKey right after shows it `Enabled`).
- GetRandomPassword: IncludeSpace admits the space but never requires it
  (RequireEachIncludedType names four types), so four characters are enough.
"""

from __future__ import annotations

import json
import string

import boto3
import pytest
from botocore.config import Config

from conftest import ACCESS_KEY, REGION, SECRET_KEY, expect_error, make_client, unique_name

SECONDARY = "111122223333"
MSG_DEFAULT_KEY_ACROSS_ACCOUNTS = (
    "You can't access a secret from a different AWS account if you encrypt the secret "
    "with the default KMS service key."
)
PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def kms_client(url: str, region: str = REGION):
    return boto3.client(
        "kms", endpoint_url=url, region_name=region,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def grant_all_to(account: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
        "Action": ["secretsmanager:*"], "Resource": "*"}]})


def managed_key(sm, kms) -> dict:
    """The account's AWS managed key, made by a first default-keyed secret."""
    sm.create_secret(Name=unique_name("made-managed-key"), SecretString="x")
    return kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]


# --- The AWS managed key named by id or ARN ------------------------------------------------


@pytest.mark.parametrize("form", ["KeyId", "Arn"])
def test_managed_key_by_id_or_arn_keeps_the_value_from_another_account(url, sm, form):
    key = managed_key(sm, kms_client(url))
    assert key["KeyManager"] == "AWS"
    made = sm.create_secret(Name=unique_name("by-" + form), SecretString="secret", KmsKeyId=key[form])
    arn = made["ARN"]
    sm.put_resource_policy(SecretId=arn, ResourcePolicy=grant_all_to(SECONDARY))
    secondary = make_client(url, access_key=SECONDARY)
    # The resource policy lets the partner in: metadata is shared...
    assert secondary.describe_secret(SecretId=arn)["KmsKeyId"] == key[form]
    # ...but the value sealed by the managed key is not, whichever way the key is named.
    for call, kwargs in (
        (secondary.get_secret_value, {}),
        (secondary.put_secret_value, {"SecretString": "overwritten"}),
        (secondary.update_secret, {"SecretString": "overwritten"}),
    ):
        expect_error(call, "InvalidRequestException", MSG_DEFAULT_KEY_ACROSS_ACCOUNTS, SecretId=arn, **kwargs)
    batch = secondary.batch_get_secret_value(SecretIdList=[arn])
    assert batch["SecretValues"] == []
    assert [(e["ErrorCode"], e["Message"]) for e in batch["Errors"]] == [
        ("InvalidRequestException", MSG_DEFAULT_KEY_ACROSS_ACCOUNTS)]
    # Nothing changed, and the owner still reads its value.
    assert len(sm.list_secret_version_ids(SecretId=arn)["Versions"]) == 1
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "secret"


def test_enforcing_server_refuses_a_managed_key_named_by_id_with_awss_answer(tmp_path):
    """Without `--dev`: the managed key's policy would deny the partner (AccessDenied);
    AWS answers first that the default key keeps its value in the owner's account."""
    from test_auth import PARTNER_ACCOUNT, Secured

    srv = Secured(tmp_path)
    try:
        admin = srv.admin()
        admin.create_secret(Name="xacct/first", SecretString="d")
        kms = srv.client(srv.admin_key, service="kms")
        key = kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]
        for form in ("KeyId", "Arn"):
            arn = admin.create_secret(Name=f"xacct/{form}", SecretString="d", KmsKeyId=key[form])["ARN"]
            admin.put_resource_policy(SecretId=arn, ResourcePolicy=grant_all_to(PARTNER_ACCOUNT))
            partner_key = srv.user(f"partner{form}", {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["secretsmanager:*", "kms:*"], "Resource": "*"}]},
                account=PARTNER_ACCOUNT)
            partner = srv.client(partner_key)
            assert partner.describe_secret(SecretId=arn)["ARN"] == arn
            for call, kwargs in (
                (partner.get_secret_value, {}),
                (partner.put_secret_value, {"SecretString": "overwritten"}),
            ):
                expect_error(call, "InvalidRequestException", MSG_DEFAULT_KEY_ACROSS_ACCOUNTS,
                             SecretId=arn, **kwargs)
            assert len(admin.list_secret_version_ids(SecretId=arn)["Versions"]) == 1
            assert admin.get_secret_value(SecretId=arn)["SecretString"] == "d"
    finally:
        srv.server.stop()


# --- KMS CreateGrant on a key that cannot be used ------------------------------------------


GRANTEE = "arn:aws:iam::000000000000:user/someone"


def test_create_grant_on_a_disabled_key_is_disabled_exception_and_makes_no_grant(url):
    kms = kms_client(url)
    key = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=key["KeyId"])
    expect_error(kms.create_grant, "DisabledException", f"{key['Arn']} is disabled.",
                 KeyId=key["KeyId"], GranteePrincipal=GRANTEE, Operations=["Decrypt"])
    assert kms.list_grants(KeyId=key["KeyId"])["Grants"] == []
    kms.enable_key(KeyId=key["KeyId"])
    kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=GRANTEE, Operations=["Decrypt"])
    assert len(kms.list_grants(KeyId=key["KeyId"])["Grants"]) == 1


def test_create_grant_on_a_key_pending_import_or_deletion_is_invalid_state(url):
    kms = kms_client(url)
    waiting = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]
    expect_error(kms.create_grant, "KMSInvalidStateException", f"{waiting['Arn']} is pending import.",
                 KeyId=waiting["KeyId"], GranteePrincipal=GRANTEE, Operations=["Decrypt"])
    doomed = kms.create_key()["KeyMetadata"]
    kms.schedule_key_deletion(KeyId=doomed["KeyId"], PendingWindowInDays=7)
    expect_error(kms.create_grant, "KMSInvalidStateException", f"{doomed['Arn']} is pending deletion.",
                 KeyId=doomed["KeyId"], GranteePrincipal=GRANTEE, Operations=["Decrypt"])


# --- ReplicateKey ---------------------------------------------------------------------------


def test_replicate_key_answers_creating_and_the_replica_is_enabled_right_after(url):
    kms = kms_client(url)
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]
    answer = kms.replicate_key(KeyId=key["KeyId"], ReplicaRegion="eu-central-1")["ReplicaKeyMetadata"]
    # AWS: the replica is created in the transient Creating state.
    assert (answer["KeyState"], answer["Enabled"]) == ("Creating", False)
    west = kms_client(url, "eu-central-1")
    described = west.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert (described["KeyState"], described["Enabled"]) == ("Enabled", True)
    blob = west.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_replicate_key_of_imported_material_answers_creating_then_pending_import(url):
    kms = kms_client(url)
    key = kms.create_key(MultiRegion=True, Origin="EXTERNAL")["KeyMetadata"]
    answer = kms.replicate_key(KeyId=key["KeyId"], ReplicaRegion="eu-central-1")["ReplicaKeyMetadata"]
    assert (answer["KeyState"], answer["Enabled"]) == ("Creating", False)
    west = kms_client(url, "eu-central-1")
    assert west.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport"


# --- GetRandomPassword with IncludeSpace ----------------------------------------------------


def test_include_space_is_not_a_required_type(sm):
    for _ in range(20):
        pw = sm.get_random_password(PasswordLength=4, IncludeSpace=True)["RandomPassword"]
        chars = set(pw)
        assert len(pw) == 4 and " " not in chars, pw
        assert chars & set(string.ascii_lowercase) and chars & set(string.ascii_uppercase), pw
        assert chars & set(string.digits) and chars & PUNCTUATION, pw
    expect_error(sm.get_random_password, "InvalidParameterException",
                 "Password length is too short based on the required types.",
                 PasswordLength=3, IncludeSpace=True)
    assert " " in sm.get_random_password(PasswordLength=4096, IncludeSpace=True)["RandomPassword"]
