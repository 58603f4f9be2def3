"""Regression tests for attack 16: an adversarial review of Coffer's older surfaces
(replication, old versions under other keys, KMS grants, BatchGetSecretValue, rotation,
the trail), asking of every route to a secret's value what a caller denied one route can
do by another. Findings are `test_NN_*` (each seen failing before its fix), what held
`test_held_*`.

Each test drives the real binary through boto3: an enforcing server whose users and
policies are made through the IAM API.
"""

from __future__ import annotations

import json

import pytest

from conftest import REGION
from iam_api_support import Server

# The helpers of review 15's tests (same server shape, same users and clients); the
# `account` fixture there reads this module's `srv`.
from test_sec_review15 import account, allow, client, error, uname, user  # noqa: F401

WEST = "us-west-2"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("attack16")
    server = Server(data, extra=["--quota-scale", "100"])
    yield server
    server.server.stop()


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


# Every Secrets Manager call, and KMS only on keys tagged as the caller's own: the keys
# that seal the secrets below are not.
OWN_KEYS_ONLY = policy(
    {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "kms:*", "Resource": "*",
     "Condition": {"StringEquals": {"aws:ResourceTag/owner": "me"}}},
    {"Effect": "Allow", "Action": ["kms:CreateKey", "kms:TagResource"], "Resource": "*"})


def own_key(srv, key, region: str) -> str:
    made = client(srv, "kms", key, region=region).create_key(
        Tags=[{"TagKey": "owner", "TagValue": "me"}])
    return made["KeyMetadata"]["Arn"]


def replicated_under_keys_the_caller_may_not_use(srv, value: str) -> tuple[str, str]:
    """A secret sealed under a customer managed key, replicated to WEST under another:
    (primary ARN, replica ARN)."""
    primary_key = client(srv, "kms").create_key()["KeyMetadata"]["Arn"]
    replica_key = client(srv, "kms", region=WEST).create_key()["KeyMetadata"]["Arn"]
    made = client(srv, "secretsmanager").create_secret(
        Name=uname("a16-rep"), SecretString=value, KmsKeyId=primary_key,
        AddReplicaRegions=[{"Region": WEST, "KmsKeyId": replica_key}])
    assert made["ReplicationStatus"][0]["Status"] == "InSync"
    return made["ARN"], made["ARN"].replace(f":{REGION}:", f":{WEST}:")


# --------------------- 01: a failed re-key of a replica was carried out by the next write

def test_01_a_refused_replica_key_change_is_not_carried_out_by_a_later_write(srv):
    """ReplicateSecretToRegions naming a new key for an existing replica re-seals its
    versions with the caller's permissions: a caller who may not decrypt the primary's
    key gets a `Failed` replica status. But the new key was recorded with that status, and
    the next write on the primary (any caller's, the same caller's TagResource) brought the
    replica in step without a caller's permissions, re-sealing every labelled version
    under the key the refused caller named: the replica then answered GetSecretValue with
    the value that caller was denied on both keys."""
    primary, replica = replicated_under_keys_the_caller_may_not_use(srv, "a16-01-value")
    _, key = user(srv, OWN_KEYS_ONLY, prefix="a16")
    mine = own_key(srv, key, WEST)
    sm = client(srv, "secretsmanager", key)
    sm_west = client(srv, "secretsmanager", key, region=WEST)
    assert error(lambda: sm.get_secret_value(SecretId=primary))[0] == "AccessDeniedException"
    assert error(lambda: sm_west.get_secret_value(SecretId=replica))[0] == "AccessDeniedException"

    status = sm.replicate_secret_to_regions(
        SecretId=primary, AddReplicaRegions=[{"Region": WEST, "KmsKeyId": mine}])
    assert status["ReplicationStatus"][0]["Status"] == "Failed"
    sm.tag_resource(SecretId=primary, Tags=[{"Key": "touched", "Value": "yes"}])
    client(srv, "secretsmanager").put_secret_value(SecretId=primary, SecretString="a16-01-next")

    code, message = error(lambda: sm_west.get_secret_value(SecretId=replica))
    assert code == "AccessDeniedException", message
    code, message = error(lambda: sm_west.get_secret_value(
        SecretId=replica, VersionStage="AWSPREVIOUS"))
    assert code == "AccessDeniedException", message
    # The replica stays under the key its owner chose, and says so.
    described = client(srv, "secretsmanager").describe_secret(SecretId=primary)
    assert described["ReplicationStatus"][0]["KmsKeyId"] != mine
    assert client(srv, "secretsmanager", region=WEST).get_secret_value(
        SecretId=replica)["SecretString"] == "a16-01-next"
