"""CloudTrail record fidelity of KMS and Secrets Manager events (docs/design/audit.md,
"KMS and Secrets Manager records"): CreateKey records the key's metadata as it answered;
KMS key operations record the key ARN in ``responseElements.keyId`` and list the key in
the record's ``resources``; a Secrets Manager call that named a secret by name lists the
secret's ARN, so LookupEvents finds it by ``ResourceName`` = that ARN; a failed call lists
only what it named. Checked on the ``CloudTrailEvent`` JSON and on LookupEvents'
``Resources`` and lookups. No secret value reaches any event.

boto3 against a server without --dev (SQLite), quotas raised (a burst of calls).
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from botocore.exceptions import ClientError

from iam_api_support import Server
from test_trail16 import lookup, uname

ACCOUNT = "000000000000"
KEY_TYPE = "AWS::KMS::Key"
SECRET_TYPE = "AWS::SecretsManager::Secret"
# CloudTrail's response dates: `Aug 10, 2022, 10:38:27 PM`.
RESPONSE_DATE = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2}:\d{2} [AP]M$")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("trail17"), extra=["--quota-scale", "100"])
    yield server
    server.server.stop()




def by_name(entries: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in entries:
        out.setdefault(e["EventName"], []).append(e)
    return out


def record(e: dict) -> dict:
    return json.loads(e["CloudTrailEvent"])


def listed(e: dict) -> list[tuple[str, str]]:
    return [(r["ResourceType"], r["ResourceName"]) for r in e["Resources"]]


def test_create_key_records_the_key_metadata_it_answered_and_lists_the_key(srv):
    kms = srv.client("kms")
    answer = kms.create_key(Description="trail17 key", Tags=[{"TagKey": "t", "TagValue": "v"}])
    meta = answer["KeyMetadata"]
    found = by_name(lookup(srv, "ResourceName", meta["Arn"])).get("CreateKey")
    assert found, "CreateKey is not found by its key's ARN"
    created = record(found[0])
    recorded = created["responseElements"]["keyMetadata"]
    assert recorded["AWSAccountId"] == ACCOUNT
    assert recorded["keyId"] == meta["KeyId"] and recorded["arn"] == meta["Arn"]
    assert recorded["description"] == "trail17 key"
    assert recorded["enabled"] is True and recorded["keyState"] == "Enabled"
    assert recorded["keyUsage"] == meta["KeyUsage"] and recorded["keySpec"] == meta["KeySpec"]
    assert recorded["keyManager"] == "CUSTOMER" and recorded["origin"] == "AWS_KMS"
    assert recorded["encryptionAlgorithms"] == meta["EncryptionAlgorithms"]
    assert RESPONSE_DATE.match(recorded["creationDate"]), recorded["creationDate"]
    assert created["resources"] == [{"ARN": meta["Arn"], "accountId": ACCOUNT, "type": KEY_TYPE}]
    assert listed(found[0]) == [(KEY_TYPE, meta["Arn"])]
    assert found[0]["EventId"] in {e["EventId"] for e in lookup(srv, "ResourceType", KEY_TYPE)}


def test_key_operations_record_the_key_arn_in_response_key_id(srv):
    kms = srv.client("kms")
    key = kms.create_key()["KeyMetadata"]
    key_id, arn = key["KeyId"], key["Arn"]
    kms.disable_key(KeyId=key_id)
    kms.enable_key(KeyId=arn)
    kms.enable_key_rotation(KeyId=key_id)
    kms.disable_key_rotation(KeyId=key_id)
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "a", "TagValue": "b"}])
    kms.untag_resource(KeyId=key_id, TagKeys=["a"])
    kms.update_key_description(KeyId=key_id, Description="described")
    root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}
    kms.put_key_policy(KeyId=key_id, PolicyName="default",
                       Policy=json.dumps({"Version": "2012-10-17", "Statement": [root]}))
    kms.create_alias(AliasName=f"alias/{uname('t17')}", TargetKeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    kms.cancel_key_deletion(KeyId=key_id)
    events = by_name(lookup(srv, "ResourceName", arn))
    for name in ("DisableKey", "EnableKey", "EnableKeyRotation", "DisableKeyRotation",
                 "TagResource", "UntagResource", "UpdateKeyDescription", "PutKeyPolicy",
                 "CreateAlias", "CancelKeyDeletion"):
        assert name in events, f"{name} is not found by the key's ARN"
        rec = record(events[name][0])
        assert rec["responseElements"] == {"keyId": arn}, name
        assert {"ARN": arn, "accountId": ACCOUNT, "type": KEY_TYPE} in rec["resources"], name
        assert (KEY_TYPE, arn) in listed(events[name][0]), name
    scheduled = record(events["ScheduleKeyDeletion"][0])["responseElements"]
    assert scheduled["keyId"] == arn and scheduled["keyState"] == "PendingDeletion"
    assert scheduled["pendingWindowInDays"] == 7
    assert RESPONSE_DATE.match(scheduled["deletionDate"]), scheduled["deletionDate"]


def test_a_refused_key_operation_records_no_key_arn(srv):
    kms = srv.client("kms")
    missing = str(uuid.uuid4())
    with pytest.raises(ClientError):
        kms.disable_key(KeyId=missing)
    refused = [e for e in lookup(srv, "EventName", "DisableKey")
               if record(e)["requestParameters"] == {"keyId": missing}]
    assert refused and record(refused[0])["responseElements"] is None
    assert "resources" not in record(refused[0])


def test_secret_calls_by_name_are_found_by_the_secret_arn(srv):
    sm = srv.client("secretsmanager")
    name, value, later = uname("db"), f"v-{uuid.uuid4().hex}", f"w-{uuid.uuid4().hex}"
    arn = sm.create_secret(Name=name, SecretString=value)["ARN"]
    sm.get_secret_value(SecretId=name)
    sm.describe_secret(SecretId=name)
    sm.put_secret_value(SecretId=name, SecretString=later)
    sm.list_secret_version_ids(SecretId=name)
    sm.tag_resource(SecretId=name, Tags=[{"Key": "k", "Value": "v"}])
    sm.untag_resource(SecretId=name, TagKeys=["k"])
    sm.get_resource_policy(SecretId=name)
    # A partial ARN (the ARN without its random suffix) names the secret too.
    sm.get_secret_value(SecretId=arn[: arn.rindex("-")])
    events = by_name(lookup(srv, "ResourceName", arn))
    for op in ("GetSecretValue", "DescribeSecret", "PutSecretValue", "ListSecretVersionIds",
               "TagResource", "UntagResource", "GetResourcePolicy"):
        assert op in events, f"{op} by name is not found by the secret's ARN"
        named = [e for e in events[op] if record(e)["requestParameters"]["secretId"] == name]
        assert named, f"{op}: no event of the call by name"
        rec = record(named[0])
        assert rec["resources"] == [{"ARN": arn, "accountId": ACCOUNT, "type": SECRET_TYPE}], op
        assert listed(named[0]) == [(SECRET_TYPE, arn)], op
    partial = [e for e in events["GetSecretValue"]
               if record(e)["requestParameters"]["secretId"] == arn[: arn.rindex("-")]]
    assert partial, "GetSecretValue by partial ARN is not found by the secret's ARN"
    types = {e["EventId"] for e in lookup(srv, "ResourceType", SECRET_TYPE)}
    assert {e["EventId"] for found in events.values() for e in found} <= types
    for found in events.values():
        for e in found:
            assert value not in e["CloudTrailEvent"] and later not in e["CloudTrailEvent"]


def test_a_failed_call_by_name_lists_no_secret(srv):
    sm = srv.client("secretsmanager")
    name = uname("gone")
    arn = sm.create_secret(Name=name, SecretString="x")["ARN"]
    with pytest.raises(ClientError):
        sm.get_secret_value(SecretId=name, VersionStage="NO-SUCH-STAGE")
    failed = [e for e in lookup(srv, "EventName", "GetSecretValue")
              if record(e)["requestParameters"] == {"secretId": name, "versionStage": "NO-SUCH-STAGE"}]
    assert failed and record(failed[0]).get("errorCode") == "ResourceNotFoundException"
    assert "resources" not in record(failed[0]) and failed[0]["Resources"] == []
    assert failed[0]["EventId"] not in {e["EventId"] for e in lookup(srv, "ResourceName", arn)}
