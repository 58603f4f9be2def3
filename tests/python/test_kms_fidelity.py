"""KMS fidelity (issue 22): error bodies, tag rules, not-found texts and the other answers of
the operations Coffer already had, each checked against what the real KMS service answers,
then the key families added for the issue (asymmetric, HMAC, data key pairs), checked with
an independent library (Python's ``cryptography``)."""

from __future__ import annotations

import base64
import json
import uuid

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, JSON_CONTENT_TYPE, REGION, SECRET_KEY

ACCOUNT = "000000000000"


def kms_client(url: str, region: str = REGION):
    return boto3.client(
        "kms",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def kms(url):
    return kms_client(url)


def new_key(kms, **kwargs) -> dict:
    return kms.create_key(**kwargs)["KeyMetadata"]


def error(fn, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as excinfo:
        fn(**kwargs)
    err = excinfo.value.response["Error"]
    return err["Code"], err.get("Message", "")


def kms_request(url: str, operation: str, body: dict) -> requests.Response:
    data = json.dumps(body).encode()
    headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": f"TrentService.{operation}"}
    req = AWSRequest(method="POST", url=url.rstrip("/") + "/", data=data, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "kms", REGION).add_auth(req)
    return requests.post(req.url, data=data, headers=dict(req.prepare().headers), timeout=30)


def sm_request(url: str, operation: str, body: dict) -> requests.Response:
    data = json.dumps(body).encode()
    headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": f"secretsmanager.{operation}"}
    req = AWSRequest(method="POST", url=url.rstrip("/") + "/", data=data, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "secretsmanager", REGION).add_auth(req)
    return requests.post(req.url, data=data, headers=dict(req.prepare().headers), timeout=30)


# --- Item 1: fidelity of what exists ---------------------------------------------------------


def test_kms_error_bodies_carry_a_lowercase_message(url):
    missing = f"{uuid.uuid4()}"
    resp = kms_request(url, "DescribeKey", {"KeyId": missing})
    assert resp.status_code == 400
    assert resp.json() == {
        "__type": "NotFoundException",
        "message": f"Key 'arn:aws:kms:{REGION}:{ACCOUNT}:key/{missing}' does not exist",
    }
    # Model validation of a KMS request answers in the same form.
    too_many = kms_request(url, "GenerateRandom", {"NumberOfBytes": 2000})
    assert set(too_many.json()) == {"__type", "message"}
    # Secrets Manager keeps its own form.
    sm = sm_request(url, "DescribeSecret", {"SecretId": "no-such-secret-" + uuid.uuid4().hex})
    assert set(sm.json()) == {"__type", "Message"}


def test_kms_messages_reach_boto3(kms):
    missing = f"{uuid.uuid4()}"
    assert error(kms.describe_key, KeyId=missing) == (
        "NotFoundException",
        f"Key 'arn:aws:kms:{REGION}:{ACCOUNT}:key/{missing}' does not exist",
    )


def test_duplicate_tag_keys_in_one_call_are_refused(kms):
    dup = [{"TagKey": "a", "TagValue": "1"}, {"TagKey": "a", "TagValue": "2"}]
    assert error(kms.create_key, Tags=dup) == ("TagException", "Duplicate tag keys")
    key = new_key(kms, Tags=[{"TagKey": "keep", "TagValue": "1"}])
    assert error(kms.tag_resource, KeyId=key["KeyId"], Tags=dup) == ("TagException", "Duplicate tag keys")
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == [{"TagKey": "keep", "TagValue": "1"}]


def test_more_than_fifty_tags_are_too_many(kms):
    tags = [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(51)]
    assert error(kms.create_key, Tags=tags) == ("TagException", "Too many tags")
    key = new_key(kms, Tags=tags[:50])
    assert error(kms.tag_resource, KeyId=key["KeyId"], Tags=[{"TagKey": "x", "TagValue": "v"}]) == (
        "TagException",
        "Too many tags",
    )
    # Replacing a value keeps the count.
    kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "k0", "TagValue": "w"}])
    assert len(kms.list_resource_tags(KeyId=key["KeyId"], Limit=50)["Tags"]) == 50


@pytest.mark.parametrize("reserved", ["aws:x", "AWS:x", "Aws:team"])
def test_aws_prefixed_tag_keys_are_reserved_in_any_case(kms, reserved):
    tags = [{"TagKey": reserved, "TagValue": "v"}]
    expected = ("TagException", "Tags beginning with aws: are reserved")
    assert error(kms.create_key, Tags=tags) == expected
    key = new_key(kms)
    assert error(kms.tag_resource, KeyId=key["KeyId"], Tags=tags) == expected
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == []


def test_a_key_arn_of_another_region_is_an_invalid_arn(kms):
    key = new_key(kms)
    other = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{key['KeyId']}"
    assert error(kms.describe_key, KeyId=other) == ("NotFoundException", "Invalid arn eu-west-1")
    assert error(kms.encrypt, KeyId=other, Plaintext=b"x") == ("NotFoundException", "Invalid arn eu-west-1")


def test_well_formed_ids_that_do_not_exist_are_named_by_arn(kms):
    for missing in [str(uuid.uuid4()), f"mrk-{uuid.uuid4().hex}"]:
        arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{missing}"
        assert error(kms.describe_key, KeyId=missing) == ("NotFoundException", f"Key '{arn}' does not exist")
        assert error(kms.describe_key, KeyId=arn) == ("NotFoundException", f"Key '{arn}' does not exist")


def test_malformed_ids_are_quoted(kms):
    for bad in ["nonsense", "1234abcd-12ab-34cd-56ef-1234567890a"]:
        assert error(kms.describe_key, KeyId=bad) == ("NotFoundException", f"Invalid keyId '{bad}'")


def test_rotate_key_on_demand_answers_the_arn_and_kms_limit_text(kms):
    key = new_key(kms)
    for _ in range(10):
        assert kms.rotate_key_on_demand(KeyId=key["KeyId"])["KeyId"] == key["Arn"]
    assert error(kms.rotate_key_on_demand, KeyId=key["KeyId"]) == (
        "LimitExceededException",
        "The on-demand rotations limit has been reached for the given keyId. "
        f"No more on-demand rotations can be performed for this key: {key['Arn']}",
    )


def test_generate_random_without_number_of_bytes(kms):
    assert error(kms.generate_random) == ("ValidationException", "NumberOfBytes is required.")


def test_plaintext_length_errors_name_no_value(kms):
    key = new_key(kms)
    assert error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x" * 4097) == (
        "ValidationException",
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096",
    )
