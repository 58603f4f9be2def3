"""GetKeyLastUsage from one record per key (lastuse10).

The last use of a key is kept as a record written in the transaction of the event that
used it, so the answer no longer depends on how many newer events the account's trail
holds, nor on whether the event itself is still in the store.
"""

from __future__ import annotations

import json

import boto3
import pytest

from conftest import ACCESS_KEY, REGION, SECRET_KEY, start_durable_server, start_server
from test_kms_fidelity import error, kms_client, new_key

# More events than GetKeyLastUsage's trail scan ever looked at (50 pages of 50).
BEYOND_THE_SCAN = 2_600


@pytest.fixture
def dev():
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0"])
    yield srv
    srv.stop()


def test_a_use_older_than_the_newest_2500_events_is_still_the_last_use(dev):
    kms = kms_client(dev.url)
    key = new_key(kms)
    other = new_key(kms)
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"used once")
    for _ in range(BEYOND_THE_SCAN):
        kms.describe_key(KeyId=other["KeyId"])
    usage = kms.get_key_last_usage(KeyId=key["KeyId"])
    assert usage["KeyLastUsage"]["Operation"] == "Encrypt"
    assert usage["KeyLastUsage"]["CloudTrailEventId"]
    assert usage["KeyLastUsage"]["Timestamp"] >= key["CreationDate"]


def test_the_newest_use_wins_and_names_its_event(dev):
    kms = kms_client(dev.url)
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key["Arn"], Plaintext=b"x")["CiphertextBlob"]
    first = kms.get_key_last_usage(KeyId=key["KeyId"])["KeyLastUsage"]
    kms.decrypt(CiphertextBlob=blob, KeyId=key["KeyId"])
    kms.describe_key(KeyId=key["KeyId"])  # not a tracked operation
    later = kms.get_key_last_usage(KeyId=key["Arn"])["KeyLastUsage"]
    assert first["Operation"] == "Encrypt"
    assert later["Operation"] == "Decrypt"
    assert later["CloudTrailEventId"] != first["CloudTrailEventId"]
    assert later["Timestamp"] >= first["Timestamp"]


def test_a_failed_use_is_not_a_use(dev):
    kms = kms_client(dev.url)
    key = new_key(kms)
    kms.disable_key(KeyId=key["KeyId"])
    code, _ = error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"refused")
    assert code == "DisabledException"
    assert not kms.get_key_last_usage(KeyId=key["KeyId"]).get("KeyLastUsage")


def test_a_use_whose_event_retention_dropped_is_still_the_last_use(tmp_path):
    srv = start_server(["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                        "--audit-retain-events", "20"])
    try:
        kms = kms_client(srv.url)
        key = new_key(kms)
        kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
        for _ in range(40):
            kms.describe_key(KeyId=key["KeyId"])
        usage = kms.get_key_last_usage(KeyId=key["KeyId"])
        assert usage["KeyLastUsage"]["Operation"] == "GenerateDataKey"
    finally:
        srv.stop()
    # And it outlives a restart: it is a record of the store, not of the process.
    srv = start_durable_server(tmp_path)
    try:
        kms = kms_client(srv.url)
        usage = kms.get_key_last_usage(KeyId=key["KeyId"])
        assert usage["KeyLastUsage"]["Operation"] == "GenerateDataKey"
    finally:
        srv.stop()


def test_a_use_through_an_alias_or_a_decrypt_naming_no_key_is_a_use(dev):
    kms = kms_client(dev.url)
    key = new_key(kms)
    kms.create_alias(AliasName="alias/last-use", TargetKeyId=key["KeyId"])
    blob = kms.encrypt(KeyId="alias/last-use", Plaintext=b"x")["CiphertextBlob"]
    assert kms.get_key_last_usage(KeyId=key["KeyId"])["KeyLastUsage"]["Operation"] == "Encrypt"
    kms.decrypt(CiphertextBlob=blob)  # the ciphertext names the key
    assert kms.get_key_last_usage(KeyId=key["KeyId"])["KeyLastUsage"]["Operation"] == "Decrypt"


def test_the_event_of_a_use_names_the_key_as_its_resource(dev):
    kms = kms_client(dev.url)
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms.decrypt(CiphertextBlob=blob)
    ct = boto3.client("cloudtrail", endpoint_url=dev.url, region_name=REGION,
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    events = ct.lookup_events(LookupAttributes=[
        {"AttributeKey": "ResourceName", "AttributeValue": key["Arn"]}])["Events"]
    names = [e["EventName"] for e in events]
    assert "Decrypt" in names and "Encrypt" in names, names
    decrypt = next(e for e in events if e["EventName"] == "Decrypt")
    assert {"ResourceType": "AWS::KMS::Key", "ResourceName": key["Arn"]} in decrypt["Resources"]
    detail = json.loads(decrypt["CloudTrailEvent"])
    assert detail["resources"] == [
        {"accountId": key["AWSAccountId"], "type": "AWS::KMS::Key", "ARN": key["Arn"]}]
