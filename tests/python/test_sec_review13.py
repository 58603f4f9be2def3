"""Regression tests for the thirteenth adversarial review's findings (the twelfth session's
features: `--dev` cross-account isolation, the AWS managed key refused across accounts, the
memory store's trail lock, the PostgreSQL handoff as a value, KMS's predefined aliases and
IncorrectKeyException, STS/IAM validation, managed policy versions; and the paths a caller
denied one route could take instead).

Each test drives the real binary through boto3: an enforcing server whose users, roles and
keys are made through the IAM API (a partner account's user through `coffer admin`), or a
`--dev` server where the account is the access key id's.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import REGION, SECRET_KEY, make_client, start_dev_server
from test_sec_review7 import Server

ACCOUNT = "000000000000"
PARTNER = "111122223333"
DEFAULT_KEY_ACROSS_ACCOUNTS = (
    "You can't access a secret from a different AWS account if you encrypt the secret "
    "with the default KMS service key."
)
EVERYTHING = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["secretsmanager:*", "kms:*"], "Resource": "*"}]}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("review13"), ["--quota-scale", "100"])
    yield s
    s.server.stop()


@pytest.fixture(scope="module")
def partner(srv):
    """Secrets Manager and KMS clients of a user of the partner account who may do anything
    its own identity policy can grant (what reaches the owner's secrets is their policies)."""
    key = srv.user("partner13", EVERYTHING, account=PARTNER)
    return srv.any_client("secretsmanager", key), srv.any_client("kms", key)


@pytest.fixture(scope="module")
def dev():
    s = start_dev_server()
    yield s
    s.stop()


def code_of(fn, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def let_in(account: str) -> str:
    """A resource policy letting `account` do anything to the secret."""
    return doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "secretsmanager:*", "Resource": "*"})


def key_shared_with(account: str) -> str:
    """A key policy: the owner may do anything, `account` may use the key."""
    return doc(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                    "kms:DescribeKey"], "Resource": "*"})


def dev_clients(dev, account: str):
    """`--dev` clients of `account` (the account is the access key id's)."""
    sm = make_client(dev.url, access_key=account, secret_key=SECRET_KEY)
    kms = boto3.client("kms", endpoint_url=dev.url, region_name=REGION,
                       aws_access_key_id=account, aws_secret_access_key=SECRET_KEY)
    return sm, kms


# ------------------------------- 01: `--dev` decided another account's calls on the secret's
# policy alone, never on the key that seals what they open or seal

def default_keyed_shared(sm, name: str) -> tuple[str, str]:
    """A secret under the AWS managed key (the default) whose resource policy lets PARTNER do
    anything, with three versions: the first left without a label. (ARN, first version.)"""
    arn = sm.create_secret(Name=name, SecretString="FIRST")["ARN"]
    first = sm.list_secret_version_ids(SecretId=arn)["Versions"][0]["VersionId"]
    sm.put_secret_value(SecretId=arn, SecretString="SECOND")
    sm.put_secret_value(SecretId=arn, SecretString="THIRD")
    sm.put_resource_policy(SecretId=arn, ResourcePolicy=let_in(PARTNER))
    return arn, first


def test_01_dev_another_account_cannot_move_a_default_keyed_value_under_a_key_it_may_use(dev):
    """The twelfth session made `--dev` refuse another account a value the AWS managed key
    seals (GetSecretValue, PutSecretValue, UpdateSecret with a value), looking at the key
    the secret names. But UpdateSecret with a new KmsKeyId re-encrypts the labelled versions
    for the caller: the other account moved them under a key it may use and then read them.
    The managed key's policy (kms:CallerAccount) refuses that on AWS, as Coffer does when
    enforcing (test_01_enforcing below)."""
    owner, owner_kms = dev_clients(dev, ACCOUNT)
    other, _ = dev_clients(dev, PARTNER)
    shared = owner_kms.create_key(Policy=key_shared_with(PARTNER))["KeyMetadata"]["Arn"]
    arn, _ = default_keyed_shared(owner, unique("r13-01"))
    code, message = code_of(other.update_secret, SecretId=arn, KmsKeyId=shared)
    assert code == "AccessDeniedException", message
    assert "KmsKeyId" not in owner.describe_secret(SecretId=arn)
    code, message = code_of(other.get_secret_value, SecretId=arn)
    assert (code, message) == ("InvalidRequestException", DEFAULT_KEY_ACROSS_ACCOUNTS)
    assert owner.get_secret_value(SecretId=arn)["SecretString"] == "THIRD"


def test_01_dev_an_old_version_the_managed_key_sealed_stays_out_of_another_accounts_reach(dev):
    """The managed-key refusal looked at the key the secret names now: once the owner moved
    the secret to a key it shares, a version left unlabelled (still sealed by the AWS
    managed key) was opened for the other account by its VersionId."""
    owner, owner_kms = dev_clients(dev, ACCOUNT)
    other, _ = dev_clients(dev, PARTNER)
    shared = owner_kms.create_key(Policy=key_shared_with(PARTNER))["KeyMetadata"]["Arn"]
    arn, first = default_keyed_shared(owner, unique("r13-01-old"))
    owner.update_secret(SecretId=arn, KmsKeyId=shared)
    # The labelled versions moved under the shared key: those the other account may read.
    assert other.get_secret_value(SecretId=arn)["SecretString"] == "THIRD"
    code, message = code_of(other.get_secret_value, SecretId=arn, VersionId=first)
    assert code == "AccessDeniedException", message
    batch = other.batch_get_secret_value(SecretIdList=[arn])
    assert [v["SecretString"] for v in batch["SecretValues"]] == ["THIRD"]


def test_01_dev_a_key_policy_that_does_not_share_the_key_keeps_another_account_out(dev):
    """On AWS another account reads or writes a secret only if the secret's resource policy
    and the policy of the key that seals it both let it in. `--dev` asked the resource policy
    alone: a customer managed key whose policy names only its own account still sealed and
    opened values for the other account (GetSecretValue, PutSecretValue, a batch)."""
    owner, owner_kms = dev_clients(dev, ACCOUNT)
    other, _ = dev_clients(dev, PARTNER)
    mine_only = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                     "Action": "kms:*", "Resource": "*"})
    key = owner_kms.create_key(Policy=mine_only)["KeyMetadata"]["Arn"]
    arn = owner.create_secret(Name=unique("r13-01-key"), SecretString="KEPT", KmsKeyId=key)["ARN"]
    owner.put_resource_policy(SecretId=arn, ResourcePolicy=let_in(PARTNER))
    # Metadata needs no key.
    assert other.describe_secret(SecretId=arn)["ARN"] == arn
    for call, kwargs in ((other.get_secret_value, {}),
                         (other.put_secret_value, {"SecretString": "overwritten"})):
        code, message = code_of(call, SecretId=arn, **kwargs)
        assert code == "AccessDeniedException", message
        assert f"kms:" in message and key in message, message
    batch = other.batch_get_secret_value(SecretIdList=[arn])
    assert batch["SecretValues"] == []
    assert [e["ErrorCode"] for e in batch["Errors"]] == ["AccessDeniedException"]
    assert len(owner.list_secret_version_ids(SecretId=arn)["Versions"]) == 1
    assert owner.get_secret_value(SecretId=arn)["SecretString"] == "KEPT"
    # Once the key policy shares the key, the same calls go through.
    owner_kms.put_key_policy(KeyId=key, PolicyName="default", Policy=key_shared_with(PARTNER))
    assert other.get_secret_value(SecretId=arn)["SecretString"] == "KEPT"
    other.put_secret_value(SecretId=arn, SecretString="WRITTEN")
    assert owner.get_secret_value(SecretId=arn)["SecretString"] == "WRITTEN"


def test_01_enforcing_refuses_the_same_three_routes(srv, partner):
    """What the `--dev` tests above expect is what the enforcing server already answers."""
    admin = srv.admin()
    kms = srv.any_client("kms")
    sm, _ = partner
    shared = kms.create_key(Policy=key_shared_with(PARTNER))["KeyMetadata"]["Arn"]
    arn, first = default_keyed_shared(admin, unique("r13-01-enf"))
    code, message = code_of(sm.update_secret, SecretId=arn, KmsKeyId=shared)
    assert code == "AccessDeniedException", message
    admin.update_secret(SecretId=arn, KmsKeyId=shared)
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "THIRD"
    code, message = code_of(sm.get_secret_value, SecretId=arn, VersionId=first)
    assert code == "AccessDeniedException", message
    mine_only = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                     "Action": "kms:*", "Resource": "*"})
    key = kms.create_key(Policy=mine_only)["KeyMetadata"]["Arn"]
    arn = admin.create_secret(Name=unique("r13-01-enf-key"), SecretString="K", KmsKeyId=key)["ARN"]
    admin.put_resource_policy(SecretId=arn, ResourcePolicy=let_in(PARTNER))
    code, message = code_of(sm.get_secret_value, SecretId=arn)
    assert code == "AccessDeniedException", message
