"""Multi-region replication (issue 16) through boto3 and the AWS CLI, on SQLite and PostgreSQL.

A primary in us-east-1 is replicated to other regions of the same server: each replica is a
secret of its own region (the primary's ARN with the region changed), sealed under a key of
that region, refused every write, and kept equal to its primary by every change, in the
change's own transaction. Failures show in ``ReplicationStatus`` while the call succeeds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import boto3
import pytest
from botocore.config import Config

from conftest import (
    ACCESS_KEY,
    MSG_NOT_FOUND,
    REGION,
    SECRET_KEY,
    expect_error,
    signed_request,
    start_server,
    token,
    unique_name,
)
from test_backup_restore import Postgres

REPLICA_REFUSAL = (
    "Operation not permitted on a replica secret. Call must be made in primary secret's region."
)
NAME_TAKEN = "Secret with this name already exists in this region"
EU = "eu-west-1"
AP = "ap-south-1"
MASTER_KEY = "cmVwbGljYXRpb24tdGVzdHMtbWFzdGVyLWtleS0zMiE="
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=60)


class Node:
    """A ``coffer serve --dev`` on SQLite (a data directory) or on PostgreSQL."""

    def __init__(self, tmp_path, store_url: str | None):
        self.tmp_path = tmp_path
        self.store_url = store_url
        self.start()

    def start(self):
        args = ["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir", str(self.tmp_path / "data")]
        if self.store_url:
            args += ["--store", self.store_url]
        self.server = start_server(args, {"COFFER_MASTER_KEY": MASTER_KEY})
        self.url = self.server.url

    def client(self, region: str = REGION, service: str = "secretsmanager"):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=NO_RETRY,
        )


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def node(request, tmp_path):
    url = request.getfixturevalue("postgres").create_database() if request.param == "postgres" else None
    n = Node(tmp_path, url)
    yield n
    n.server.stop()


def replica_arn(arn: str, region: str) -> str:
    parts = arn.split(":", 4)
    parts[3] = region
    return ":".join(parts)


def state_of(client, secret_id: str) -> dict:
    """Everything replication carries over, read through the API."""
    desc = client.describe_secret(SecretId=secret_id)
    versions = {}
    for vid, labels in desc.get("VersionIdsToStages", {}).items():
        value = client.get_secret_value(SecretId=secret_id, VersionId=vid)
        versions[vid] = (sorted(labels), value.get("SecretString"), value.get("SecretBinary"))
    policy = client.get_resource_policy(SecretId=secret_id).get("ResourcePolicy")
    return {
        "name": desc["Name"],
        "description": desc.get("Description"),
        "tags": sorted((t["Key"], t["Value"]) for t in desc.get("Tags", [])),
        "versions": versions,
        "policy": json.loads(policy) if policy else None,
    }


def assert_replicas_equal(node, name: str, regions=(EU, AP)):
    primary = state_of(node.client(), name)
    for region in regions:
        assert state_of(node.client(region), name) == primary, region


def replicated(node, name: str, value: str = "v1", **extra) -> dict:
    return node.client().create_secret(
        Name=name,
        SecretString=value,
        ClientRequestToken=token(),
        AddReplicaRegions=[{"Region": EU}, {"Region": AP}],
        **extra,
    )


def test_create_with_replicas_makes_real_secrets_in_each_region(node):
    name = unique_name("repl")
    created = replicated(node, name, Description="d", Tags=[{"Key": "team", "Value": "a"}])
    assert [(s["Region"], s["Status"]) for s in created["ReplicationStatus"]] == [
        (EU, "InSync"), (AP, "InSync")]
    assert all(s["KmsKeyId"] == "alias/aws/secretsmanager" for s in created["ReplicationStatus"])
    primary = node.client().describe_secret(SecretId=name)
    assert primary["PrimaryRegion"] == REGION
    assert [s["Region"] for s in primary["ReplicationStatus"]] == [EU, AP]
    assert primary["ReplicationStatus"][0]["StatusMessage"] == "Replication succeeded"
    for region in (EU, AP):
        replica = node.client(region).describe_secret(SecretId=name)
        assert replica["ARN"] == replica_arn(created["ARN"], region)
        assert replica["PrimaryRegion"] == REGION
        assert "ReplicationStatus" not in replica
        by_arn = node.client(region).get_secret_value(SecretId=replica["ARN"])
        assert by_arn["SecretString"] == "v1"
        assert by_arn["VersionId"] == created["VersionId"]
    assert_replicas_equal(node, name)


def test_a_secret_never_replicated_shows_no_replication_fields(node):
    name = unique_name("plain")
    node.client().create_secret(Name=name, SecretString="x")
    desc = node.client().describe_secret(SecretId=name)
    assert "PrimaryRegion" not in desc and "ReplicationStatus" not in desc
    listed = node.client().list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
    assert "PrimaryRegion" not in listed[0]


def test_each_replica_is_sealed_under_a_key_of_its_own_region(node):
    name = unique_name("keys")
    eu_kms = node.client(EU, "kms")
    eu_key = eu_kms.create_key()["KeyMetadata"]["Arn"]
    sm = node.client()
    sm.create_secret(Name=name, SecretString="sealed")
    out = sm.replicate_secret_to_regions(
        SecretId=name, AddReplicaRegions=[{"Region": EU, "KmsKeyId": eu_key}, {"Region": AP}])
    assert [s["Status"] for s in out["ReplicationStatus"]] == ["InSync", "InSync"]
    assert out["ReplicationStatus"][0]["KmsKeyId"] == eu_key
    versions = node.client(EU).list_secret_version_ids(SecretId=name)["Versions"]
    assert versions[0]["KmsKeyIds"] == [eu_key]
    # The replica's value opens only with its own region's key: disable it and the replica
    # stops opening, while the primary (sealed under us-east-1's key) still does.
    eu_kms.disable_key(KeyId=eu_key)
    expect_error(node.client(EU).get_secret_value, "DecryptionFailure", SecretId=name)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "sealed"
    assert node.client(AP).get_secret_value(SecretId=name)["SecretString"] == "sealed"
    # A change to the primary cannot reach the replica under a disabled key: Failed, and the
    # call still succeeds; the other replica stays in sync.
    sm.put_secret_value(SecretId=name, SecretString="second")
    status = {s["Region"]: s for s in sm.describe_secret(SecretId=name)["ReplicationStatus"]}
    assert status[EU]["Status"] == "Failed"
    assert status[EU]["StatusMessage"].startswith("Replication failed:")
    assert status[AP]["Status"] == "InSync"
    assert node.client(AP).get_secret_value(SecretId=name)["SecretString"] == "second"
    # Enabled again, the next change brings the replica back in sync.
    eu_kms.enable_key(KeyId=eu_key)
    sm.put_secret_value(SecretId=name, SecretString="third")
    status = {s["Region"]: s for s in sm.describe_secret(SecretId=name)["ReplicationStatus"]}
    assert status[EU]["Status"] == "InSync"
    assert_replicas_equal(node, name)


@pytest.mark.parametrize("how", ["disabled", "pending-deletion", "other-region"])
def test_an_unusable_replica_key_fails_that_region_and_the_call_succeeds(node, how):
    name = unique_name("badkey")
    eu_kms = node.client(EU, "kms")
    if how == "other-region":
        key = node.client(REGION, "kms").create_key()["KeyMetadata"]["Arn"]
    else:
        key = eu_kms.create_key()["KeyMetadata"]["Arn"]
        if how == "disabled":
            eu_kms.disable_key(KeyId=key)
        else:
            eu_kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    sm = node.client()
    sm.create_secret(Name=name, SecretString="v")
    out = sm.replicate_secret_to_regions(
        SecretId=name, AddReplicaRegions=[{"Region": EU, "KmsKeyId": key}, {"Region": AP}])
    by_region = {s["Region"]: s for s in out["ReplicationStatus"]}
    assert by_region[EU]["Status"] == "Failed"
    assert by_region[EU]["StatusMessage"].startswith("Replication failed:")
    assert by_region[AP]["Status"] == "InSync"
    # No usable version: the failed region holds no replica.
    expect_error(node.client(EU).describe_secret, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name)
    # Retrying with the region's default key succeeds.
    out = sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": EU}])
    assert {s["Region"]: s["Status"] for s in out["ReplicationStatus"]} == {EU: "InSync", AP: "InSync"}
    assert_replicas_equal(node, name)


def test_a_name_taken_in_the_replica_region_fails_unless_overwritten(node):
    name = unique_name("taken")
    node.client(EU).create_secret(Name=name, SecretString="standalone", Description="theirs")
    sm = node.client()
    sm.create_secret(Name=name, SecretString="primary")
    out = sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": EU}])
    assert out["ReplicationStatus"] == [{
        "Region": EU, "KmsKeyId": "alias/aws/secretsmanager", "Status": "Failed",
        "StatusMessage": NAME_TAKEN}]
    assert node.client(EU).get_secret_value(SecretId=name)["SecretString"] == "standalone"
    out = sm.replicate_secret_to_regions(
        SecretId=name, AddReplicaRegions=[{"Region": EU}], ForceOverwriteReplicaSecret=True)
    assert out["ReplicationStatus"][0]["Status"] == "InSync"
    assert node.client(EU).get_secret_value(SecretId=name)["SecretString"] == "primary"
    assert_replicas_equal(node, name, regions=(EU,))
    # The replica region's trail tells the failure, the overwrite and the new replica.
    arn = replica_arn(sm.describe_secret(SecretId=name)["ARN"], EU)
    events = node.client(EU, "cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": arn}])["Events"]
    names = [e["EventName"] for e in events]
    assert "ReplicationFailed" in names and "ReplicationStarted" in names, names


def test_create_secret_force_overwrite_replaces_a_standalone_secret(node):
    name = unique_name("force")
    node.client(AP).create_secret(Name=name, SecretString="old")
    created = replicated(node, name, value="new", ForceOverwriteReplicaSecret=True)
    assert [s["Status"] for s in created["ReplicationStatus"]] == ["InSync", "InSync"]
    assert node.client(AP).describe_secret(SecretId=name)["ARN"] == replica_arn(created["ARN"], AP)
    assert_replicas_equal(node, name)


def test_the_primary_region_cannot_be_a_replica_region(node):
    name = unique_name("same")
    expect_error(node.client().create_secret, "InvalidParameterException", "Invalid replica region.",
                 Name=name, SecretString="x", AddReplicaRegions=[{"Region": REGION}])
    expect_error(node.client().describe_secret, "ResourceNotFoundException", SecretId=name)


def test_a_replica_refuses_every_write_and_serves_every_read(node):
    name = unique_name("ro")
    created = replicated(node, name)
    replica = node.client(EU)
    arn = replica_arn(created["ARN"], EU)
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]})
    writes = [
        (replica.update_secret, dict(SecretId=name, Description="no")),
        (replica.update_secret, dict(SecretId=arn, SecretString="no")),
        (replica.put_secret_value, dict(SecretId=name, SecretString="no")),
        (replica.update_secret_version_stage,
         dict(SecretId=name, VersionStage="X", MoveToVersionId=created["VersionId"])),
        (replica.tag_resource, dict(SecretId=name, Tags=[{"Key": "k", "Value": "v"}])),
        (replica.untag_resource, dict(SecretId=name, TagKeys=["k"])),
        (replica.put_resource_policy, dict(SecretId=name, ResourcePolicy=policy)),
        (replica.delete_resource_policy, dict(SecretId=name)),
        (replica.delete_secret, dict(SecretId=name)),
        (replica.delete_secret, dict(SecretId=name, ForceDeleteWithoutRecovery=True)),
        (replica.restore_secret, dict(SecretId=name)),
        (replica.rotate_secret, dict(SecretId=name, RotationLambdaARN="arn:aws:lambda:eu-west-1:000000000000:function:f")),
        (replica.replicate_secret_to_regions, dict(SecretId=name, AddReplicaRegions=[{"Region": "us-west-2"}])),
        (replica.remove_regions_from_replication, dict(SecretId=name, RemoveReplicaRegions=[AP])),
    ]
    for call, kwargs in writes:
        expect_error(call, "InvalidParameterException", REPLICA_REFUSAL, **kwargs)
    # Nothing changed, and every read works.
    assert_replicas_equal(node, name)
    assert replica.get_secret_value(SecretId=name)["SecretString"] == "v1"
    assert replica.list_secret_version_ids(SecretId=name)["ARN"] == arn
    got = replica.batch_get_secret_value(SecretIdList=[name])["SecretValues"]
    assert [v["ARN"] for v in got] == [arn]
    assert replica.get_resource_policy(SecretId=name)["ARN"] == arn
    listed = replica.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
    assert [s["ARN"] for s in listed] == [arn]


def test_every_kind_of_change_to_the_primary_reaches_the_replicas(node):
    name = unique_name("prop")
    sm = node.client()
    created = replicated(node, name, Description="first", Tags=[{"Key": "a", "Value": "1"}])
    first = created["VersionId"]
    changes = [
        lambda: sm.put_secret_value(SecretId=name, SecretString="v2"),
        lambda: sm.put_secret_value(SecretId=name, SecretBinary=b"\x00bin", VersionStages=["BLUE"]),
        lambda: sm.update_secret(SecretId=name, Description="second"),
        lambda: sm.update_secret(SecretId=name, SecretString="v3", Description=""),
        lambda: sm.update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT",
                                               MoveToVersionId=first,
                                               RemoveFromVersionId=current_version(sm, name)),
        lambda: sm.tag_resource(SecretId=name, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}]),
        lambda: sm.untag_resource(SecretId=name, TagKeys=["a"]),
        lambda: sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
                "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]})),
        lambda: sm.delete_resource_policy(SecretId=name),
    ]
    for change in changes:
        change()
        assert_replicas_equal(node, name)
    # A rotation's steps: a new version staged AWSPENDING, then AWSCURRENT moved onto it
    # (the old one becomes AWSPREVIOUS). Both steps reach the replicas.
    pending = token()
    sm.put_secret_value(SecretId=name, SecretString="rotated", ClientRequestToken=pending,
                        VersionStages=["AWSPENDING"])
    assert_replicas_equal(node, name)
    sm.update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=pending,
                                   RemoveFromVersionId=current_version(sm, name))
    sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=pending)
    assert_replicas_equal(node, name)
    assert node.client(AP).get_secret_value(SecretId=name)["SecretString"] == "rotated"
    previous = node.client(EU).get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
    assert previous["VersionId"] == first


def current_version(client, name: str) -> str:
    stages = client.describe_secret(SecretId=name)["VersionIdsToStages"]
    return next(v for v, labels in stages.items() if "AWSCURRENT" in labels)


def test_deleting_a_primary_needs_its_replicas_removed_first(node):
    name = unique_name("del")
    sm = node.client()
    created = replicated(node, name)
    expect_error(sm.delete_secret, "InvalidParameterException",
                 f"You can't delete secret {name} that still has replica regions [{EU},{AP}]",
                 SecretId=name)
    expect_error(sm.delete_secret, "InvalidParameterException", SecretId=name,
                 ForceDeleteWithoutRecovery=True)
    out = sm.remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[EU])
    assert out["ARN"] == created["ARN"]
    assert [s["Region"] for s in out["ReplicationStatus"]] == [AP]
    expect_error(node.client(EU).describe_secret, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name)
    # A region that is not a replica region is ignored.
    out = sm.remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[AP, "us-west-2"])
    assert out["ReplicationStatus"] == []
    expect_error(node.client(AP).describe_secret, "ResourceNotFoundException", SecretId=name)
    desc = sm.describe_secret(SecretId=name)
    assert desc["PrimaryRegion"] == REGION and desc["ReplicationStatus"] == []
    sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    expect_error(sm.describe_secret, "ResourceNotFoundException", SecretId=name)


def test_stop_replication_promotes_the_replica_to_a_standalone_secret(node):
    name = unique_name("promote")
    sm = node.client()
    created = replicated(node, name)
    expect_error(sm.stop_replication_to_replica, "InvalidParameterException", SecretId=name)
    eu = node.client(EU)
    out = eu.stop_replication_to_replica(SecretId=name)
    assert out["ARN"] == replica_arn(created["ARN"], EU)
    promoted = eu.describe_secret(SecretId=name)
    assert "PrimaryRegion" not in promoted and "ReplicationStatus" not in promoted
    assert [s["Region"] for s in sm.describe_secret(SecretId=name)["ReplicationStatus"]] == [AP]
    # The promoted secret takes writes; changes to the old primary no longer reach it.
    eu.put_secret_value(SecretId=name, SecretString="independent")
    sm.put_secret_value(SecretId=name, SecretString="primary-only")
    assert eu.get_secret_value(SecretId=name)["SecretString"] == "independent"
    assert node.client(AP).get_secret_value(SecretId=name)["SecretString"] == "primary-only"
    # The promoted secret (same ARN as the replica was) is standalone: replicating there again
    # needs ForceOverwriteReplicaSecret, which replaces it with a replica of the same ARN.
    out = sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": EU}])
    assert {s["Region"]: s["Status"] for s in out["ReplicationStatus"]}[EU] == "Failed"
    out = sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": EU}],
                                         ForceOverwriteReplicaSecret=True)
    assert {s["Region"]: s["Status"] for s in out["ReplicationStatus"]}[EU] == "InSync"
    assert eu.describe_secret(SecretId=name)["ARN"] == replica_arn(created["ARN"], EU)
    assert_replicas_equal(node, name)


def test_the_primary_region_filter(node):
    name = unique_name("filter")
    replicated(node, name)
    local = unique_name("filter")
    node.client(EU).create_secret(Name=local, SecretString="x")
    eu = node.client(EU)
    found = eu.list_secrets(Filters=[{"Key": "primary-region", "Values": [REGION]}])["SecretList"]
    names = [s["Name"] for s in found]
    assert name in names and local not in names
    assert next(s for s in found if s["Name"] == name)["PrimaryRegion"] == REGION
    # A secret never replicated shows no PrimaryRegion, so no primary-region filter selects
    # it, not even its own region's (test_conf_moto.py).
    found = eu.list_secrets(Filters=[{"Key": "primary-region", "Values": [EU]}])["SecretList"]
    names = [s["Name"] for s in found]
    assert local not in names and name not in names
    found = node.client().list_secrets(Filters=[{"Key": "primary-region", "Values": ["!" + REGION]}])
    assert name not in [s["Name"] for s in found["SecretList"]]
    # ListSecrets entries carry PrimaryRegion; ReplicationStatus is not in their shape.
    # (Raw: boto3 drops members its model does not have.)
    raw = signed_request(node.url, "ListSecrets", {"Filters": [{"Key": "name", "Values": [name]}]})
    entry = raw.json()["SecretList"][0]
    assert entry["PrimaryRegion"] == REGION
    assert "ReplicationStatus" not in entry


def test_each_change_to_a_replica_is_audited_in_the_replica_region(node):
    name = unique_name("audit")
    sm = node.client()
    created = replicated(node, name)
    sm.tag_resource(SecretId=name, Tags=[{"Key": "k", "Value": "v"}])
    for region in (EU, AP):
        trail = node.client(region, "cloudtrail")
        arn = replica_arn(created["ARN"], region)
        events = trail.lookup_events(
            LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": arn}])["Events"]
        names = [e["EventName"] for e in events]
        assert names.count("ReplicationStarted") == 1, names
        assert names.count("ReplicationSucceeded") == 1, names
        detail = json.loads(events[0]["CloudTrailEvent"])
        assert detail["awsRegion"] == region
        assert detail["eventType"] == "AwsServiceEvent"
    # The primary region's trail holds the calls, not the replicas' events.
    trail = node.client(REGION, "cloudtrail")
    events = trail.lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": created["ARN"]}])["Events"]
    assert "ReplicationSucceeded" not in [e["EventName"] for e in events]


def test_replica_reads_show_in_the_primary_replication_status(node):
    name = unique_name("access")
    replicated(node, name)
    node.client(EU).get_secret_value(SecretId=name)
    status = {s["Region"]: s for s in node.client().describe_secret(SecretId=name)["ReplicationStatus"]}
    assert "LastAccessedDate" in status[EU]
    assert "LastAccessedDate" not in status[AP]


def test_the_aws_cli_replicates_removes_and_promotes(node):
    name = unique_name("cli")
    sm = node.client()
    sm.create_secret(Name=name, SecretString="cli")
    out = aws_json(node.url, "replicate-secret-to-regions", "--secret-id", name,
                   "--add-replica-regions", f"Region={EU}", f"Region={AP}")
    assert [s["Status"] for s in out["ReplicationStatus"]] == ["InSync", "InSync"]
    described = aws_json(node.url, "describe-secret", "--secret-id", name)
    assert described["PrimaryRegion"] == REGION
    out = aws_json(node.url, "remove-regions-from-replication", "--secret-id", name,
                   "--remove-replica-regions", AP)
    assert [s["Region"] for s in out["ReplicationStatus"]] == [EU]
    eu = node.client(EU)
    assert eu.get_secret_value(SecretId=name)["SecretString"] == "cli"
    promoted = aws_json(node.url, "stop-replication-to-replica", "--secret-id", name, region=EU)
    assert promoted["ARN"].split(":")[3] == EU
    assert "PrimaryRegion" not in eu.describe_secret(SecretId=name)
    # CreateSecret's replica members through the CLI.
    other = unique_name("cli")
    created = aws_json(node.url, "create-secret", "--name", other, "--secret-string", "c",
                       "--add-replica-regions", f"Region={AP}", "--force-overwrite-replica-secret")
    assert [s["Status"] for s in created["ReplicationStatus"]] == ["InSync"]
    assert node.client(AP).get_secret_value(SecretId=other)["SecretString"] == "c"


def aws_json(url: str, *args: str, region: str = REGION) -> dict:
    """The AWS CLI (as test_cli runs it) in `region`; its JSON output."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_PAGER="")
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "awscli", "secretsmanager", *args,
           "--endpoint-url", url, "--region", region, "--output", "json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def mixed_load(node, names: list[str], stop: threading.Event, errors: list):
    sm = node.client()

    def work(i: int):
        n = 0
        while not stop.is_set():
            name = names[(i + n) % len(names)]
            try:
                match n % 4:
                    case 0:
                        sm.put_secret_value(SecretId=name, SecretString=f"{i}-{n}-{uuid.uuid4().hex}")
                    case 1:
                        sm.tag_resource(SecretId=name, Tags=[{"Key": f"t{i}", "Value": str(n)}])
                    case 2:
                        sm.update_secret(SecretId=name, Description=f"d{i}-{n}")
                    case 3:
                        sm.put_secret_value(SecretId=name, SecretString=f"p{n}", VersionStages=["AWSPENDING"])
            except Exception as e:  # the kill cuts calls off: that is the point
                errors.append(e)
                return
            n += 1

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    return threads


def test_sigkill_during_mixed_load_leaves_every_replica_equal_to_its_primary(node):
    names = [unique_name("kill") for _ in range(3)]
    for name in names:
        replicated(node, name)
    stop, errors = threading.Event(), []
    threads = mixed_load(node, names, stop, errors)
    # Let the load commit a few hundred changes, then kill the server outright.
    sm = node.client()
    while sum(len(sm.list_secret_version_ids(SecretId=n, IncludeDeprecated=True)["Versions"])
              for n in names) < 30:
        assert any(t.is_alive() for t in threads), errors
    os.kill(node.server.proc.pid, signal.SIGKILL)
    node.server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    node.start()
    for name in names:
        assert_replicas_equal(node, name)
        status = node.client().describe_secret(SecretId=name)["ReplicationStatus"]
        assert [s["Status"] for s in status] == ["InSync", "InSync"]


def test_the_calls_own_events_name_the_secret(node):
    """CreateSecret with replicas and the replication calls record their response and the
    secret's ARN as a resource, as every other write does."""
    name = unique_name("events")
    created = replicated(node, name)
    node.client().remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[AP])
    trail = node.client(REGION, "cloudtrail")
    events = trail.lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": created["ARN"]}])["Events"]
    names = [e["EventName"] for e in events]
    assert "CreateSecret" in names and "RemoveRegionsFromReplication" in names, names
    stopped = node.client(EU).stop_replication_to_replica(SecretId=name)
    events = node.client(EU, "cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": stopped["ARN"]}])["Events"]
    assert "StopReplicationToReplica" in [e["EventName"] for e in events]


def test_a_real_rotation_reaches_the_replicas(node):
    """Rotation runs only on the primary, and its results reach the replicas (issue 16,
    item 4): a built-in rotator's four steps, checked on every replica once done."""
    import time

    name = unique_name("rot")
    sm = node.client()
    replicated(node, name, value=json.dumps({"username": "svc", "password": "first"}))
    before = current_version(sm, name)
    arn = sm.describe_secret(SecretId=name)["ARN"]
    account, region = arn.split(":")[4], arn.split(":")[3]
    function = f"arn:aws:lambda:{region}:{account}:function:coffer-builtin-random-password"
    # Rotation is refused on a replica, and runs on the primary.
    with pytest.raises(sm.exceptions.InvalidParameterException):
        node.client(EU).rotate_secret(SecretId=name, RotationLambdaARN=function,
                                      RotationRules={"AutomaticallyAfterDays": 30})
    sm.rotate_secret(SecretId=name, RotationLambdaARN=function,
                     RotationRules={"AutomaticallyAfterDays": 30})
    deadline = time.time() + 30
    while current_version(sm, name) == before:
        assert time.time() < deadline, "the rotation did not complete"
        time.sleep(0.2)
    assert_replicas_equal(node, name)
    rotated = json.loads(node.client(EU).get_secret_value(SecretId=name)["SecretString"])
    assert rotated["username"] == "svc" and rotated["password"] != "first"
