"""Conformance with responses recorded from the real AWS Secrets Manager (the public
snapshot recordings other emulators are validated against), where Coffer answered
otherwise.

Cross-account calls: a caller of one account reaches another account's secret by its
full ARN when the secret's resource policy allows it, in `--dev` as on AWS (where the
caller's own identity is its account's root, which may do anything). A secret sealed with
the AWS managed key (`aws/secretsmanager`, the default) cannot be read or written from
another account: AWS answers InvalidRequestException (a modeled error, so boto3 copies its
Message to the top level), not AccessDenied, once the resource policy let the call in.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from conftest import ACCESS_KEY, REGION, SECRET_KEY, expect_error, make_client, unique_name

SECONDARY = "111122223333"
MSG_DEFAULT_KEY_ACROSS_ACCOUNTS = (
    "You can't access a secret from a different AWS account if you encrypt the secret "
    "with the default KMS service key."
)


def grant_all_to(account: str, sid: str | None = None) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
        "Action": ["secretsmanager:*"],
        "Resource": "*",
    }
    if sid:
        statement["Sid"] = sid
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture
def secondary(url):
    """A client of another account: `--dev` takes the account from a 12-digit key id."""
    return make_client(url, access_key=SECONDARY)


@pytest.fixture
def shared(sm, name):
    """A default-keyed secret of the primary account whose policy lets SECONDARY in."""
    made = sm.create_secret(Name=name, SecretString="secret")
    sm.put_resource_policy(SecretId=made["ARN"], ResourcePolicy=grant_all_to(SECONDARY))
    return made


def test_secondary_account_describes_a_shared_secret_by_its_arn(secondary, shared):
    described = secondary.describe_secret(SecretId=shared["ARN"])
    assert described["ARN"] == shared["ARN"]
    assert described["VersionIdsToStages"] == {shared["VersionId"]: ["AWSCURRENT"]}


def test_default_keyed_value_is_out_of_reach_of_another_account(sm, secondary, shared):
    for call, kwargs in (
        (secondary.get_secret_value, {}),
        (secondary.put_secret_value, {"SecretString": "new-secret"}),
        # UpdateSecret with a value seals one as PutSecretValue does: the same refusal.
        (secondary.update_secret, {"SecretString": "new-secret"}),
    ):
        err = expect_error(
            call, "InvalidRequestException", MSG_DEFAULT_KEY_ACROSS_ACCOUNTS,
            SecretId=shared["ARN"], **kwargs,
        )
        # A modeled error: boto3 copies the body's Message to the top level.
        assert err.response["Message"] == MSG_DEFAULT_KEY_ACROSS_ACCOUNTS
    # The refused put made no version.
    assert sm.list_secret_version_ids(SecretId=shared["ARN"])["Versions"][0]["VersionId"] == shared["VersionId"]
    assert len(sm.list_secret_version_ids(SecretId=shared["ARN"])["Versions"]) == 1
    assert sm.get_secret_value(SecretId=shared["ARN"])["SecretString"] == "secret"
    # Metadata alone needs no key: another account may still change the description.
    secondary.update_secret(SecretId=shared["ARN"], Description="shared")
    assert sm.describe_secret(SecretId=shared["ARN"])["Description"] == "shared"


def test_secondary_account_manages_policy_tags_and_deletion_of_a_shared_secret(sm, secondary, shared):
    arn = shared["ARN"]
    secondary.put_resource_policy(SecretId=arn, ResourcePolicy=grant_all_to(SECONDARY, "AllowCrossAccount"))
    policy = json.loads(secondary.get_resource_policy(SecretId=arn)["ResourcePolicy"])
    assert policy["Statement"][0]["Sid"] == "AllowCrossAccount"
    assert len(secondary.list_secret_version_ids(SecretId=arn)["Versions"]) == 1
    # ListSecrets lists the caller's own account only.
    assert arn not in {s["ARN"] for s in secondary.list_secrets()["SecretList"]}
    secondary.tag_resource(SecretId=arn, Tags=[{"Key": "tag1", "Value": "value1"}])
    assert sm.describe_secret(SecretId=arn)["Tags"] == [{"Key": "tag1", "Value": "value1"}]
    secondary.untag_resource(SecretId=arn, TagKeys=["tag1"])
    assert sm.describe_secret(SecretId=arn)["Tags"] == []
    secondary.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    expect_error(sm.describe_secret, "ResourceNotFoundException", SecretId=arn)


def test_customer_keyed_secret_is_read_written_deleted_and_restored_across_accounts(url, sm, secondary, name):
    kms = boto3.client(
        "kms", endpoint_url=url, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    )
    key_policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{SECONDARY}:root"},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
         "Resource": "*"},
    ]}
    key = kms.create_key(Description="test-key", Policy=json.dumps(key_policy))["KeyMetadata"]["Arn"]
    arn = sm.create_secret(Name=name, SecretString="secret", KmsKeyId=key)["ARN"]
    sm.put_resource_policy(SecretId=arn, ResourcePolicy=grant_all_to(SECONDARY))
    assert secondary.get_secret_value(SecretId=arn)["SecretString"] == "secret"
    secondary.put_secret_value(SecretId=arn, SecretString="new-secret")
    assert secondary.get_secret_value(SecretId=arn)["SecretString"] == "new-secret"
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "new-secret"
    secondary.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=False, RecoveryWindowInDays=7)
    assert "DeletedDate" in sm.describe_secret(SecretId=arn)
    secondary.restore_secret(SecretId=arn)
    assert "DeletedDate" not in sm.describe_secret(SecretId=arn)


def test_another_account_without_a_policy_is_denied_and_changes_nothing(sm, secondary, name):
    arn = sm.create_secret(Name=name, SecretString="private")["ARN"]
    for call, kwargs in (
        (secondary.describe_secret, {}),
        (secondary.get_secret_value, {}),
        (secondary.put_secret_value, {"SecretString": "overwritten"}),
        (secondary.tag_resource, {"Tags": [{"Key": "k", "Value": "v"}]}),
    ):
        err = expect_error(call, "AccessDeniedException", SecretId=arn, **kwargs)
        message = err.response["Error"]["Message"]
        assert message.startswith(f"User: arn:aws:iam::{SECONDARY}:root is not authorized to perform: secretsmanager:")
        assert f"on resource: {arn} " in message
    # A denied force-delete says so, rather than answering as if the secret were gone.
    expect_error(secondary.delete_secret, "AccessDeniedException", SecretId=arn, ForceDeleteWithoutRecovery=True)
    described = sm.describe_secret(SecretId=arn)
    assert "Tags" not in described and len(described["VersionIdsToStages"]) == 1
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "private"


def test_a_batch_read_of_another_accounts_secret_follows_its_policy(sm, secondary, name):
    private = sm.create_secret(Name=name, SecretString="private")["ARN"]
    shared = sm.create_secret(Name=unique_name("shared"), SecretString="shared")["ARN"]
    sm.put_resource_policy(SecretId=shared, ResourcePolicy=grant_all_to(SECONDARY))
    batch = secondary.batch_get_secret_value(SecretIdList=[private, shared])
    assert batch["SecretValues"] == []
    errors = {e["SecretId"]: e["ErrorCode"] for e in batch["Errors"]}
    assert errors == {private: "AccessDeniedException", shared: "InvalidRequestException"}
    assert {e["Message"] for e in batch["Errors"] if e["SecretId"] == shared} == {MSG_DEFAULT_KEY_ACROSS_ACCOUNTS}
    uuid.UUID(batch["ResponseMetadata"]["RequestId"])


def test_enforcing_server_refuses_default_keyed_values_to_an_allowed_partner(tmp_path):
    """Without `--dev`: the partner's identity and the secret's resource policy allow the
    calls, yet the AWS managed key's value is out of its reach, with AWS's answer."""
    from test_auth import PARTNER_ACCOUNT, Secured

    srv = Secured(tmp_path)
    try:
        admin = srv.admin()
        arn = admin.create_secret(Name="xacct/default", SecretString="d")["ARN"]
        admin.put_resource_policy(SecretId=arn, ResourcePolicy=grant_all_to(PARTNER_ACCOUNT))
        key = srv.user("partner", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["secretsmanager:*", "kms:*"], "Resource": "*"}]},
            account=PARTNER_ACCOUNT)
        partner = srv.client(key)
        assert partner.describe_secret(SecretId=arn)["ARN"] == arn
        for call, kwargs in (
            (partner.get_secret_value, {}),
            (partner.put_secret_value, {"SecretString": "overwritten"}),
        ):
            expect_error(call, "InvalidRequestException", MSG_DEFAULT_KEY_ACROSS_ACCOUNTS, SecretId=arn, **kwargs)
        assert len(admin.list_secret_version_ids(SecretId=arn)["Versions"]) == 1
    finally:
        srv.server.stop()
