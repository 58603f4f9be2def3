"""Replication on an enforcing server: the permissions AWS documents, KMS in each region.

ReplicateSecretToRegions needs ``secretsmanager:ReplicateSecretToRegions`` on the secret
(with its condition keys), ``kms:Decrypt`` on the key that sealed the primary's values and
``kms:GenerateDataKey`` + ``kms:Encrypt`` on each replica key. A KMS refusal fails only that
region (``Status: Failed``); the call succeeds.
"""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import REGION
from test_auth import ADMIN_ARN, Secured, expect

ACCOUNT = "000000000000"
EU = "eu-west-1"
AP = "ap-south-1"
ADMIN_ONLY_KEY_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "kms:*", "Resource": "*"}]})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    srv = Secured(tmp_path_factory.mktemp("replauthz"))
    replicator = srv.user("replicator", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:ReplicateSecretToRegions",
                                       "secretsmanager:DescribeSecret", "secretsmanager:CreateSecret",
                                       "secretsmanager:GetSecretValue"],
         "Resource": "*"},
        {"Effect": "Deny", "Action": "secretsmanager:ReplicateSecretToRegions", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"secretsmanager:AddReplicaRegions": "us-west-2"}}},
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})
    reader = srv.user("reader", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
         "Resource": "*"}]})
    yield {"srv": srv, "replicator": replicator, "reader": reader}
    srv.server.stop()


def statuses(out) -> dict:
    return {s["Region"]: s for s in out["ReplicationStatus"]}


def test_replication_needs_its_own_permission(world):
    srv = world["srv"]
    name = f"authz/{uuid.uuid4().hex[:12]}"
    srv.admin().create_secret(Name=name, SecretString="v")
    reader = srv.client(world["reader"])
    expect(reader.replicate_secret_to_regions, "AccessDeniedException",
           SecretId=name, AddReplicaRegions=[{"Region": EU}])
    # The request's regions are a condition key.
    replicator = srv.client(world["replicator"])
    expect(replicator.replicate_secret_to_regions, "AccessDeniedException",
           SecretId=name, AddReplicaRegions=[{"Region": "us-west-2"}])
    expect(srv.client(world["reader"], region=EU).describe_secret, "ResourceNotFoundException", SecretId=name)


def test_a_replica_key_whose_policy_refuses_the_caller_fails_that_region(world):
    srv = world["srv"]
    name = f"authz/{uuid.uuid4().hex[:12]}"
    srv.admin().create_secret(Name=name, SecretString="v")
    guarded = srv.client(srv.admin_key, region=EU, service="kms").create_key(
        Policy=ADMIN_ONLY_KEY_POLICY)["KeyMetadata"]["Arn"]
    replicator = srv.client(world["replicator"])
    out = replicator.replicate_secret_to_regions(
        SecretId=name, AddReplicaRegions=[{"Region": EU, "KmsKeyId": guarded}, {"Region": AP}])
    by_region = statuses(out)
    assert by_region[EU]["Status"] == "Failed"
    assert "not authorized to perform: kms:" in by_region[EU]["StatusMessage"]
    assert by_region[AP]["Status"] == "InSync"
    expect(srv.client(world["replicator"], region=EU).describe_secret, "ResourceNotFoundException",
           SecretId=name)
    # The key's owner may use it: the same region then replicates.
    out = srv.admin().replicate_secret_to_regions(
        SecretId=name, AddReplicaRegions=[{"Region": EU, "KmsKeyId": guarded}])
    assert statuses(out)[EU]["Status"] == "InSync"
    assert srv.client(srv.admin_key, region=EU).get_secret_value(SecretId=name)["SecretString"] == "v"


def test_a_primary_whose_key_refuses_decrypt_to_the_caller_fails_to_replicate(world):
    srv = world["srv"]
    name = f"authz/{uuid.uuid4().hex[:12]}"
    guarded = srv.client(srv.admin_key, service="kms").create_key(
        Policy=ADMIN_ONLY_KEY_POLICY)["KeyMetadata"]["Arn"]
    srv.admin().create_secret(Name=name, SecretString="v", KmsKeyId=guarded)
    out = srv.client(world["replicator"]).replicate_secret_to_regions(
        SecretId=name, AddReplicaRegions=[{"Region": AP}])
    assert statuses(out)[AP]["Status"] == "Failed"
    assert "kms:Decrypt" in statuses(out)[AP]["StatusMessage"]
    # Later changes are made by the service for the owner: once replicated (by the admin),
    # the replica follows the primary whoever changes it.
    out = srv.admin().replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": AP}])
    assert statuses(out)[AP]["Status"] == "InSync"
    srv.admin().put_secret_value(SecretId=name, SecretString="v2")
    assert srv.client(srv.admin_key, region=AP).get_secret_value(SecretId=name)["SecretString"] == "v2"
    assert srv.admin().describe_secret(SecretId=name)["PrimaryRegion"] == REGION
