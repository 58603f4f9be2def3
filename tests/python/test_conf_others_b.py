"""Conformance findings from replaying other emulators' Secrets Manager tests against Coffer
(ministack, fakecloud, cloudemu, http4k-connect's contract; docs/design/conf-others.md,
section "ministack, fakecloud and others").

Each test pins a behaviour where a replayed test exposed a divergence of Coffer's from what
an AWS user can rely on; the reasoning is in each docstring. Differences where the other
emulator itself departs from AWS are listed in the design note, not tested here.
"""

from __future__ import annotations

import boto3
from botocore.config import Config

from conftest import ACCESS_KEY, REGION, SECRET_KEY, expect_error, unique_name

WEST = "us-west-2"
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def client(url: str, region: str = REGION, service: str = "secretsmanager"):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=NO_RETRY,
    )


def west_key(url: str) -> tuple[str, str]:
    """A customer key of the replica region, by alias (as ministack's test names it) and id."""
    kms = client(url, WEST, "kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    alias = f"alias/{unique_name('west').replace('/', '-')}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return alias, key_id


def replica_keys(url: str, name: str) -> tuple[str | None, set[str]]:
    """The replica's KmsKeyId as DescribeSecret shows it, and the keys its versions name."""
    west = client(url, WEST)
    described = west.describe_secret(SecretId=name).get("KmsKeyId")
    versions = west.list_secret_version_ids(SecretId=name)["Versions"]
    return described, {k for v in versions for k in v.get("KmsKeyIds", [])}


# --- ReplicateSecretToRegions again on a region that already holds the replica ---


def test_replicating_again_without_a_key_keeps_the_replica_key(fresh_server):
    """ministack's test_secretsmanager_replicate_secret_to_regions_preserves_replica_kms:
    calling ReplicateSecretToRegions again for a region already replicated, without a
    KmsKeyId, must not silently move the replica to aws/secretsmanager. Coffer did: the
    replica then said "default key" (no KmsKeyId, the primary's ReplicationStatus naming
    alias/aws/secretsmanager) while its versions stayed sealed under the customer key, so
    disabling that key broke a replica that claimed not to use it. Asking again names no new
    key, so the replica's key stays (AWS: a replica's key is the one thing that can differ
    from its primary; nothing in the call asks to change it)."""
    url = fresh_server.url
    sm = client(url)
    alias, _ = west_key(url)
    name = unique_name("again-no-key")
    sm.create_secret(Name=name, SecretString="primary")
    sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST, "KmsKeyId": alias}])
    out = sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST}])
    assert [(s["Region"], s["KmsKeyId"], s["Status"]) for s in out["ReplicationStatus"]] == [
        (WEST, alias, "InSync")
    ]
    assert replica_keys(url, name) == (alias, {alias})
    # A later value reaches the replica under that same key.
    sm.put_secret_value(SecretId=name, SecretString="second")
    assert replica_keys(url, name) == (alias, {alias})
    assert client(url, WEST).get_secret_value(SecretId=name)["SecretString"] == "second"


def test_replicating_again_with_another_key_reencrypts_the_replica(fresh_server):
    """The same call naming a different key changes the replica's key, like UpdateSecret's
    KmsKeyId on a primary: the versions labelled AWSCURRENT, AWSPENDING and AWSPREVIOUS are
    sealed again under the new key, so what DescribeSecret says is what opens the value.
    Coffer changed the name only: with the old key disabled the replica no longer opened."""
    url = fresh_server.url
    sm = client(url)
    old_alias, old_key = west_key(url)
    new_alias, _ = west_key(url)
    name = unique_name("again-new-key")
    sm.create_secret(Name=name, SecretString="v1")
    sm.put_secret_value(SecretId=name, SecretString="v2")
    sm.replicate_secret_to_regions(
        SecretId=name, AddReplicaRegions=[{"Region": WEST, "KmsKeyId": old_alias}])
    out = sm.replicate_secret_to_regions(
        SecretId=name, AddReplicaRegions=[{"Region": WEST, "KmsKeyId": new_alias}])
    assert [(s["KmsKeyId"], s["Status"]) for s in out["ReplicationStatus"]] == [(new_alias, "InSync")]
    assert replica_keys(url, name) == (new_alias, {new_alias})
    client(url, WEST, "kms").disable_key(KeyId=old_key)
    west = client(url, WEST)
    assert west.get_secret_value(SecretId=name)["SecretString"] == "v2"
    assert west.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"] == "v1"


def test_a_failed_region_retried_without_a_key_uses_the_default_key(fresh_server):
    """The other side of keeping the key: a region whose replica was never made (its key was
    unusable) has no key to keep, so asking again without one uses aws/secretsmanager."""
    url = fresh_server.url
    sm = client(url)
    kms = client(url, WEST, "kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    kms.disable_key(KeyId=key)
    name = unique_name("retry-default")
    sm.create_secret(Name=name, SecretString="v")
    out = sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST, "KmsKeyId": key}])
    assert out["ReplicationStatus"][0]["Status"] == "Failed"
    expect_error(client(url, WEST).describe_secret, "ResourceNotFoundException", SecretId=name)
    out = sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST}])
    assert [(s["KmsKeyId"], s["Status"]) for s in out["ReplicationStatus"]] == [
        ("alias/aws/secretsmanager", "InSync")
    ]
    assert replica_keys(url, name) == (None, {"DefaultEncryptionKey"})


def test_replica_keeps_its_key_when_the_primary_changes_key(fresh_server):
    """UpdateSecret with a new KmsKeyId on the primary re-encrypts the primary only: the
    replica keeps its own region's key (each replica is sealed under a key of its region)."""
    url = fresh_server.url
    sm = client(url)
    alias, _ = west_key(url)
    kms = client(url, REGION, "kms")
    primary_key = kms.create_key()["KeyMetadata"]["Arn"]
    name = unique_name("primary-rekey")
    sm.create_secret(Name=name, SecretString="v")
    sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST, "KmsKeyId": alias}])
    sm.update_secret(SecretId=name, KmsKeyId=primary_key)
    assert replica_keys(url, name) == (alias, {alias})
    assert client(url, WEST).get_secret_value(SecretId=name)["SecretString"] == "v"


def test_a_key_change_the_replica_region_refuses_leaves_the_replica_as_it_was(fresh_server):
    """Naming a key the replica region cannot use fails that region (the call succeeds, as
    every replication failure) and changes nothing of the replica: it keeps its key and its
    value, and what DescribeSecret names still opens it."""
    url = fresh_server.url
    sm = client(url)
    alias, _ = west_key(url)
    kms = client(url, WEST, "kms")
    disabled = kms.create_key()["KeyMetadata"]["Arn"]
    kms.disable_key(KeyId=disabled)
    name = unique_name("rekey-refused")
    sm.create_secret(Name=name, SecretString="v")
    sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST, "KmsKeyId": alias}])
    out = sm.replicate_secret_to_regions(
        SecretId=name, AddReplicaRegions=[{"Region": WEST, "KmsKeyId": disabled}])
    assert out["ReplicationStatus"][0]["Status"] == "Failed"
    assert replica_keys(url, name) == (alias, {alias})
    assert client(url, WEST).get_secret_value(SecretId=name)["SecretString"] == "v"
