"""Request quotas: calls over a per-account, per-region quota are answered
``ThrottlingException`` / ``Rate exceeded`` (HTTP 400) as AWS answers them, change nothing,
are audited, and boto3's retry logic backs off and gets through, as against AWS.

The quotas set here are tiny (1-2 calls per second) and every burst is far larger than what
could refill while it runs, so no test depends on how fast the machine is.
"""

from __future__ import annotations

import configparser
import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, error_of, make_client, signed_request, start_server, unique_name

BURST = 40


def creates_until_throttled(client, prefix: str) -> tuple[list[str], list[str], ClientError]:
    """Creates secrets until one is throttled: (created names, throttled names, the error)."""
    created, throttled, error = [], [], None
    for _ in range(BURST):
        name = unique_name(prefix)
        try:
            client.create_secret(Name=name, SecretString="v")
            created.append(name)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ThrottlingException":
                raise
            throttled.append(name)
            error = error or e
    assert error is not None, f"{BURST} creates at a quota of 2/s were never throttled"
    return created, throttled, error


@pytest.fixture(scope="module")
def quota_server():
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0",
                        "--quotas", "on", "--quota", "secretsmanager-create=2",
                        "--quota", "kms-cryptographic=2"])
    yield srv
    srv.stop()


def test_a_low_quota_is_hit_and_answered_as_aws_answers_it(quota_server):
    sm = make_client(quota_server.url, access_key="111111111111")
    created, throttled, error = creates_until_throttled(sm, "quota")
    assert len(created) >= 2  # the bucket holds one second's worth
    assert error.response["Error"]["Message"] == "Rate exceeded"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # The wire shape, byte for byte what clients parse.
    for _ in range(BURST):
        resp = signed_request(quota_server.url, "CreateSecret",
                              {"Name": unique_name("raw"), "SecretString": "v"}, access_key="111111111111")
        if resp.status_code != 200:
            break
    assert resp.status_code == 400
    assert error_of(resp) == ("ThrottlingException", "Rate exceeded")
    # A throttled call changed nothing; the other quotas (reads) still serve.
    for name in throttled:
        with pytest.raises(ClientError) as missing:
            sm.describe_secret(SecretId=name)
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # Each throttled call is audited with its error, like any other failed call.
    trail = boto3.client("cloudtrail", endpoint_url=quota_server.url, region_name=REGION,
                         aws_access_key_id="111111111111", aws_secret_access_key="x")
    events = trail.lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateSecret"}], MaxResults=50
    )["Events"]
    records = [json.loads(e["CloudTrailEvent"]) for e in events]
    errors = [r for r in records if r.get("errorCode") == "ThrottlingException"]
    assert errors and all(r["errorMessage"] == "Rate exceeded" for r in errors)


def test_kms_answers_throttling_exception_too(quota_server):
    kms = boto3.client("kms", endpoint_url=quota_server.url, region_name=REGION,
                       aws_access_key_id="666666666666", aws_secret_access_key="x",
                       config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    error = None
    for _ in range(BURST):
        try:
            kms.generate_random(NumberOfBytes=16)
        except ClientError as e:
            error = e
            break
    assert error is not None
    assert error.response["Error"]["Code"] == "ThrottlingException"
    assert error.response["Error"]["Message"] == (
        "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
    )
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Another group of the same account is not affected.
    kms.list_keys()


def test_the_quota_of_another_account_is_independent(quota_server):
    first = make_client(quota_server.url, access_key="222222222222")
    creates_until_throttled(first, "acct-a")
    # Account 333333333333 has not called yet: its bucket is full.
    other = make_client(quota_server.url, access_key="333333333333")
    other.create_secret(Name=unique_name("acct-b"), SecretString="v")
    other.create_secret(Name=unique_name("acct-b"), SecretString="v")


@pytest.mark.parametrize("mode", ["standard", "legacy"])
def test_boto3_retries_throttled_calls_and_gets_through(quota_server, mode):
    key = {"standard": "444444444444", "legacy": "555555555555"}[mode]
    creates_until_throttled(make_client(quota_server.url, access_key=key), f"retry-{mode}")
    retrying = boto3.client(
        "secretsmanager", endpoint_url=quota_server.url, region_name=REGION,
        aws_access_key_id=key, aws_secret_access_key="x",
        config=Config(retries={"mode": mode, "max_attempts": 20}),
    )
    attempts = 0
    for _ in range(6):
        name = unique_name(f"retried-{mode}")
        resp = retrying.create_secret(Name=name, SecretString="v")
        attempts += resp["ResponseMetadata"]["RetryAttempts"]
        assert retrying.describe_secret(SecretId=name)["Name"] == name
    # Six creates at 2/s right after the bucket was emptied: some were throttled first.
    assert attempts >= 1


def test_dev_is_unthrottled_unless_asked():
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0", "--quota", "secretsmanager-create=1"])
    try:
        sm = make_client(srv.url)
        for _ in range(BURST):
            sm.create_secret(Name=unique_name("dev"), SecretString="v")
    finally:
        srv.stop()


def test_quotas_are_on_by_default_without_dev(tmp_path):
    srv = start_server(["serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                        "--quota", "secretsmanager-create=2"])
    try:
        parsed = configparser.ConfigParser()
        parsed.read(tmp_path / "admin-credentials")
        section = parsed[parsed.sections()[0]]
        admin = boto3.client(
            "secretsmanager", endpoint_url=srv.url, region_name=REGION,
            aws_access_key_id=section["aws_access_key_id"],
            aws_secret_access_key=section["aws_secret_access_key"],
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )
        creates_until_throttled(admin, "secured")
    finally:
        srv.stop()


def test_an_unknown_quota_group_is_refused_at_start():
    from conftest import ServerProcess

    proc = ServerProcess(["serve", "--dev", "--listen", "127.0.0.1:0", "--quota", "secretsmanager-nothing=3"])
    assert proc.wait_exit() not in (None, 0)
    assert "unknown quota group" in proc.output()
