"""KMS conformance (task confkms12): the answers where Coffer differed from what the real KMS
service answers, as recorded in public snapshots of real-AWS responses and in the service
model. Each test replays the calls through boto3 against the real binary and checks the
error code and message (or the response's members) AWS gives."""

from __future__ import annotations

import base64
import os

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_der_public_key

from conftest import ACCESS_KEY, REGION, SECRET_KEY


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


@pytest.mark.parametrize(
    "spec,algorithm,limit",
    [
        ("RSA_2048", "RSAES_OAEP_SHA_1", 214),
        ("RSA_2048", "RSAES_OAEP_SHA_256", 190),
        ("RSA_3072", "RSAES_OAEP_SHA_1", 342),
        ("RSA_4096", "RSAES_OAEP_SHA_256", 446),
    ],
)
def test_rsa_encrypt_too_long_plaintext_names_algorithm_spec_and_limit(kms, spec, algorithm, limit):
    key = new_key(kms, KeyUsage="ENCRYPT_DECRYPT", KeySpec=spec)
    code, message = error(
        kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x" * (limit + 1), EncryptionAlgorithm=algorithm
    )
    assert code == "ValidationException"
    assert message == (
        f"Algorithm {algorithm} and key spec {spec} cannot encrypt data larger than {limit} bytes."
    )
    # One byte less is within the limit.
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x" * limit, EncryptionAlgorithm=algorithm)


@pytest.mark.parametrize("spec", ["HMAC_256", "RSA_2048", "ECC_NIST_P256"])
def test_create_key_of_a_non_symmetric_spec_needs_a_key_usage(kms, spec):
    before = {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    code, message = error(kms.create_key, Description="no usage", KeySpec=spec)
    assert code == "ValidationException"
    assert message == (
        "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys."
    )
    assert {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]} == before


def test_symmetric_key_without_key_usage_still_defaults_to_encrypt_decrypt(kms):
    key = new_key(kms, KeySpec="SYMMETRIC_DEFAULT")
    assert key["KeyUsage"] == "ENCRYPT_DECRYPT"


def test_import_without_expiration_model_needs_valid_to(kms):
    key = new_key(kms, Origin="EXTERNAL")
    params = kms.get_parameters_for_import(
        KeyId=key["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    wrapping = load_der_public_key(params["PublicKey"])
    wrapped = wrapping.encrypt(
        os.urandom(32),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    code, message = error(
        kms.import_key_material,
        KeyId=key["KeyId"],
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrapped,
    )
    assert code == "ValidationException"
    assert message == "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport"


def test_encrypt_with_a_signing_key_names_its_key_usage(kms):
    key = new_key(kms, KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")
    code, message = error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"test message 123!@#")
    assert code == "InvalidKeyUsageException"
    assert message == f"{key['Arn']} key usage is SIGN_VERIFY which is not valid for Encrypt."


def test_encrypt_with_an_hmac_key_names_its_key_usage(kms):
    key = new_key(kms, KeyUsage="GENERATE_VERIFY_MAC", KeySpec="HMAC_256")
    code, message = error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"m")
    assert code == "InvalidKeyUsageException"
    assert message == f"{key['Arn']} key usage is GENERATE_VERIFY_MAC which is not valid for Encrypt."


def test_decrypt_naming_a_key_that_did_not_encrypt_is_incorrect_key(kms):
    sealing = new_key(kms)
    hmac_key = new_key(kms, KeyUsage="GENERATE_VERIFY_MAC", KeySpec="HMAC_224")
    signing = new_key(kms, KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")
    blob = kms.encrypt(KeyId=sealing["KeyId"], Plaintext=b"test message 123!@#")["CiphertextBlob"]
    for other in (hmac_key, signing):
        code, message = error(kms.decrypt, CiphertextBlob=blob, KeyId=other["KeyId"])
        assert code == "IncorrectKeyException", other["KeySpec"]
        assert message == (
            "The key ID in the request does not identify a CMK that can perform this operation."
        )
    # The key that did encrypt still decrypts it.
    assert kms.decrypt(CiphertextBlob=blob, KeyId=sealing["KeyId"])["Plaintext"] == (
        b"test message 123!@#"
    )


def test_create_alias_with_a_colon_is_a_validation_error(kms):
    key = new_key(kms)
    code, message = error(kms.create_alias, AliasName="alias/my:alias", TargetKeyId=key["KeyId"])
    assert code == "ValidationException"
    assert message == "alias/my:alias contains invalid characters for an alias"
    names = [a["AliasName"] for a in kms.list_aliases(KeyId=key["KeyId"])["Aliases"]]
    assert names == []


def test_replicate_key_without_tags_answers_no_replica_tags(url):
    primary = kms_client(url, "us-east-1")
    key = new_key(primary, MultiRegion=True, Description="test replicated key")
    answer = primary.replicate_key(KeyId=key["KeyId"], ReplicaRegion="ap-southeast-2")
    answer.pop("ResponseMetadata")
    assert set(answer) == {"ReplicaKeyMetadata", "ReplicaPolicy"}
    tagged = new_key(primary, MultiRegion=True)
    answer = primary.replicate_key(
        KeyId=tagged["KeyId"],
        ReplicaRegion="ap-southeast-2",
        Tags=[{"TagKey": "team", "TagValue": "blue"}],
    )
    assert answer["ReplicaTags"] == [{"TagKey": "team", "TagValue": "blue"}]


def test_generated_data_key_blob_round_trips_base64_plaintext(kms):
    # A guard for the encrypt fixes above: symmetric Encrypt/Decrypt is unchanged.
    key = new_key(kms)
    message = base64.b64encode(b"test message 123 !%$@ 1234567890")
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=message)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == message


def test_re_encrypt_names_the_source_problem_first_and_the_destination_usage(kms):
    source = new_key(kms)
    blob = kms.encrypt(KeyId=source["KeyId"], Plaintext=b"test message 123")["CiphertextBlob"]
    hmac_key = new_key(kms, KeyUsage="GENERATE_VERIFY_MAC", KeySpec="HMAC_224")
    code, message = error(
        kms.re_encrypt,
        CiphertextBlob=blob,
        SourceKeyId=hmac_key["KeyId"],
        DestinationKeyId=hmac_key["KeyId"],
        SourceEncryptionAlgorithm="SYMMETRIC_DEFAULT",
        DestinationEncryptionAlgorithm="SYMMETRIC_DEFAULT",
    )
    assert (code, message) == (
        "IncorrectKeyException",
        "The key ID in the request does not identify a CMK that can perform this operation.",
    )
    signing = new_key(kms, KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")
    code, message = error(
        kms.re_encrypt,
        CiphertextBlob=blob,
        SourceKeyId=source["KeyId"],
        DestinationKeyId=signing["KeyId"],
        SourceEncryptionAlgorithm="SYMMETRIC_DEFAULT",
        DestinationEncryptionAlgorithm="SYMMETRIC_DEFAULT",
    )
    assert code == "InvalidKeyUsageException"
    assert message == f"{signing['Arn']} key usage is SIGN_VERIFY which is not valid for ReEncrypt."


def test_rotation_status_of_a_key_pending_deletion_is_false_and_comes_back_on_cancel(kms):
    key = new_key(kms)
    kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=180)
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    status.pop("ResponseMetadata")
    assert status == {"KeyRotationEnabled": False, "KeyId": key["Arn"]}
    kms.cancel_key_deletion(KeyId=key["KeyId"])
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 180
