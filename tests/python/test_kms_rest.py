"""Issue 22's remainder: imported key material, multi-Region keys, custom key stores,
GetKeyLastUsage, grants to a role reaching its sessions, and the key policy lockout check.

Imported material is wrapped outside Coffer with Python's ``cryptography`` exactly as the
AWS KMS developer guide shows (RSAES-OAEP of the material, or RSA-OAEP of a fresh AES key
followed by the material wrapped with AES key wrap with padding, RFC 5649).
"""

from __future__ import annotations

import datetime
import json
import os
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from conftest import ACCESS_KEY, REGION, SECRET_KEY
from iam_api_support import Server
from test_kms_fidelity import error, kms_client, new_key

ACCOUNT = "000000000000"
LOCKOUT = "The new key policy will not allow you to update the key policy in the future."


@pytest.fixture(scope="module")
def kms(url):
    return kms_client(url)


# ---- custom key stores ------------------------------------------------------------------------


def test_an_account_without_custom_key_stores_lists_none(kms):
    assert kms.describe_custom_key_stores()["CustomKeyStores"] == []
    code, _ = error(kms.describe_custom_key_stores, CustomKeyStoreId="cks-1234567890abcdef0")
    assert code == "CustomKeyStoreNotFoundException"
    code, _ = error(kms.describe_custom_key_stores, CustomKeyStoreName="mine")
    assert code == "CustomKeyStoreNotFoundException"


def test_custom_key_store_operations_find_no_store(kms):
    store = "cks-1234567890abcdef0"
    for fn in (kms.connect_custom_key_store, kms.disconnect_custom_key_store,
               kms.delete_custom_key_store):
        code, _ = error(fn, CustomKeyStoreId=store)
        assert code == "CustomKeyStoreNotFoundException"
    code, _ = error(kms.update_custom_key_store, CustomKeyStoreId=store, NewCustomKeyStoreName="n")
    assert code == "CustomKeyStoreNotFoundException"
    code, _ = error(kms.create_key, CustomKeyStoreId=store, Origin="AWS_CLOUDHSM")
    assert code == "CustomKeyStoreNotFoundException"


def test_creating_a_cloudhsm_or_external_key_store_is_unsupported(kms):
    code, _ = error(kms.create_custom_key_store, CustomKeyStoreName="hsm",
                    CloudHsmClusterId="cluster-2a23b4cdefg", TrustAnchorCertificate="cert",
                    KeyStorePassword="password1")
    assert code == "UnsupportedOperationException"
    code, message = error(kms.create_custom_key_store, CustomKeyStoreName="xks",
                    CustomKeyStoreType="EXTERNAL_KEY_STORE",
                    XksProxyUriEndpoint="https://xks.example.com",
                    XksProxyUriPath="/kms/xks/v1", XksProxyConnectivity="PUBLIC_ENDPOINT",
                    XksProxyAuthenticationCredential={
                        "AccessKeyId": "ABCDEFGHIJKLMNOPQRST",
                        "RawSecretAccessKey": "DXjSUawnel2fr6SKC7G25CNxTyWKE5PF9XX6H/u9pSo="})
    assert code == "UnsupportedOperationException", message


# ---- imported key material --------------------------------------------------------------------


def wrap(public_der: bytes, material: bytes, algorithm: str) -> bytes:
    """Wraps key material as the KMS developer guide does with OpenSSL."""
    public = serialization.load_der_public_key(public_der)
    digest = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=digest), algorithm=digest, label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep)
    aes_key = os.urandom(32)
    return public.encrypt(aes_key, oaep) + aes_key_wrap_with_padding(aes_key, material)


def import_material(kms, key_id: str, material: bytes, algorithm="RSAES_OAEP_SHA_256",
                    spec="RSA_2048", **kwargs) -> dict:
    params = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm,
                                           WrappingKeySpec=spec)
    if not kwargs:
        kwargs = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
    return kms.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                                   EncryptedKeyMaterial=wrap(params["PublicKey"], material, algorithm),
                                   **kwargs)


@pytest.mark.parametrize("algorithm,spec", [
    ("RSAES_OAEP_SHA_1", "RSA_2048"),
    ("RSAES_OAEP_SHA_256", "RSA_3072"),
    ("RSA_AES_KEY_WRAP_SHA_1", "RSA_2048"),
    ("RSA_AES_KEY_WRAP_SHA_256", "RSA_4096"),
])
def test_imported_material_is_used_as_is(kms, algorithm, spec):
    key = new_key(kms, Origin="EXTERNAL", Description="imported")
    arn = key["Arn"]
    assert (key["Origin"], key["KeyState"], key["Enabled"]) == ("EXTERNAL", "PendingImport", False)
    code, message = error(kms.encrypt, KeyId=arn, Plaintext=b"x")
    assert (code, message) == ("KMSInvalidStateException", f"{arn} is pending import.")
    params = kms.get_parameters_for_import(KeyId=key["KeyId"], WrappingAlgorithm=algorithm,
                                           WrappingKeySpec=spec)
    assert params["KeyId"] == arn
    public = serialization.load_der_public_key(params["PublicKey"])
    assert public.key_size == int(spec.split("_")[1])
    left = params["ParametersValidTo"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=23) < left <= datetime.timedelta(hours=24, minutes=1)
    material = os.urandom(32)
    done = kms.import_key_material(KeyId=key["KeyId"], ImportToken=params["ImportToken"],
                                   EncryptedKeyMaterial=wrap(params["PublicKey"], material, algorithm),
                                   ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert done["KeyId"] == arn
    meta = kms.describe_key(KeyId=arn)["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"]) == ("Enabled", True)
    assert meta["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    blob = kms.encrypt(KeyId=arn, Plaintext=b"under imported material")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"under imported material"


def test_deleting_and_reimporting_the_same_material(kms):
    key = new_key(kms, Origin="EXTERNAL")
    arn = key["Arn"]
    material = os.urandom(32)
    first = import_material(kms, arn, material, "RSA_AES_KEY_WRAP_SHA_256")
    blob = kms.encrypt(KeyId=arn, Plaintext=b"kept")["CiphertextBlob"]
    deleted = kms.delete_imported_key_material(KeyId=arn)
    assert deleted["KeyId"] == arn
    assert deleted["KeyMaterialId"] == first["KeyMaterialId"]
    assert kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "PendingImport"
    code, message = error(kms.decrypt, CiphertextBlob=blob)
    assert (code, message) == ("KMSInvalidStateException", f"{arn} is pending import.")
    # Other material is refused: a KMS key's imported material never changes.
    code, _ = error(lambda: import_material(kms, arn, os.urandom(32)))
    assert code == "IncorrectKeyMaterialException"
    valid_to = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
    again = import_material(kms, arn, material, ExpirationModel="KEY_MATERIAL_EXPIRES",
                            ValidTo=valid_to)
    assert again["KeyMaterialId"] == first["KeyMaterialId"]
    meta = kms.describe_key(KeyId=arn)["KeyMetadata"]
    assert meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs((meta["ValidTo"] - valid_to).total_seconds()) < 2
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"


def test_the_trail_keeps_no_wrapped_material_or_import_token(kms, url):
    import boto3

    key = new_key(kms, Origin="EXTERNAL")["Arn"]
    import_material(kms, key, os.urandom(32))
    trail = boto3.client("cloudtrail", endpoint_url=url, region_name=REGION,
                         aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    events = trail.lookup_events(LookupAttributes=[
        {"AttributeKey": "ResourceName", "AttributeValue": key}])["Events"]
    imported = [json.loads(e["CloudTrailEvent"]) for e in events
                if e["EventName"] == "ImportKeyMaterial"]
    assert imported, [e["EventName"] for e in events]
    params = imported[0]["requestParameters"]
    assert params["keyId"] == key
    assert "encryptedKeyMaterial" not in params and "importToken" not in params


def test_import_refusals(kms):
    normal = new_key(kms)["Arn"]
    code, _ = error(kms.get_parameters_for_import, KeyId=normal,
                    WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    assert code == "UnsupportedOperationException"
    code, _ = error(kms.delete_imported_key_material, KeyId=normal)
    assert code == "UnsupportedOperationException"
    one = new_key(kms, Origin="EXTERNAL")["Arn"]
    # SM2 wrapping exists only in the China Regions.
    code, _ = error(kms.get_parameters_for_import, KeyId=one,
                    WrappingAlgorithm="SM2PKE", WrappingKeySpec="SM2")
    assert code == "ValidationException"
    other = new_key(kms, Origin="EXTERNAL")["Arn"]
    params = kms.get_parameters_for_import(KeyId=one, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                           WrappingKeySpec="RSA_2048")
    wrapped = wrap(params["PublicKey"], os.urandom(32), "RSAES_OAEP_SHA_256")
    # A token is good for its own key only, and must be one Coffer made.
    code, _ = error(kms.import_key_material, KeyId=other, ImportToken=params["ImportToken"],
                    EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code == "InvalidImportTokenException"
    code, _ = error(kms.import_key_material, KeyId=one, ImportToken=b"x" * 64,
                    EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code == "InvalidImportTokenException"
    code, _ = error(kms.import_key_material, KeyId=one, ImportToken=params["ImportToken"],
                    EncryptedKeyMaterial=os.urandom(256), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code == "InvalidCiphertextException"
    # KEY_MATERIAL_EXPIRES (the default) needs ValidTo.
    code, _ = error(kms.import_key_material, KeyId=one, ImportToken=params["ImportToken"],
                    EncryptedKeyMaterial=wrapped)
    assert code == "ValidationException"
    assert kms.describe_key(KeyId=one)["KeyMetadata"]["KeyState"] == "PendingImport"
    code, _ = error(kms.enable_key_rotation, KeyId=one)
    assert code == "UnsupportedOperationException"
    # Without material a key cannot be enabled; a cancelled deletion waits for material again.
    code, message = error(kms.enable_key, KeyId=one)
    assert (code, message) == ("KMSInvalidStateException", f"{one} is pending import.")
    kms.schedule_key_deletion(KeyId=one, PendingWindowInDays=7)
    kms.cancel_key_deletion(KeyId=one)
    assert kms.describe_key(KeyId=one)["KeyMetadata"]["KeyState"] == "PendingImport"


# ---- multi-Region keys ------------------------------------------------------------------------


def test_a_multi_region_key_and_its_replica_share_material(kms, url):
    key = new_key(kms, MultiRegion=True, Description="mrk")
    key_id = key["KeyId"]
    assert key_id.startswith("mrk-") and len(key_id) == 36
    assert key["MultiRegion"] is True
    config = key["MultiRegionConfiguration"]
    assert config["MultiRegionKeyType"] == "PRIMARY"
    assert config["PrimaryKey"] == {"Arn": key["Arn"], "Region": "us-east-1"}
    assert config["ReplicaKeys"] == []
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"everywhere")["CiphertextBlob"]
    replica = kms.replicate_key(KeyId=key["Arn"], ReplicaRegion="eu-west-1",
                                Description="the replica")
    meta = replica["ReplicaKeyMetadata"]
    west_arn = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{key_id}"
    assert meta["Arn"] == west_arn and meta["KeyId"] == key_id
    assert meta["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert meta["MultiRegionConfiguration"]["ReplicaKeys"] == [{"Arn": west_arn, "Region": "eu-west-1"}]
    assert json.loads(replica["ReplicaPolicy"])["Statement"]
    west = kms_client(url, "eu-west-1")
    assert west.decrypt(CiphertextBlob=blob)["Plaintext"] == b"everywhere"
    back = west.encrypt(KeyId=key_id, Plaintext=b"from the west")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=back)["Plaintext"] == b"from the west"
    primary = kms.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
    assert primary["ReplicaKeys"] == [{"Arn": west_arn, "Region": "eu-west-1"}]
    code, _ = error(kms.replicate_key, KeyId=key_id, ReplicaRegion="eu-west-1")
    assert code == "AlreadyExistsException"
    code, _ = error(kms.replicate_key, KeyId=key_id, ReplicaRegion="us-east-1")
    assert code == "ValidationException"
    # Rotation goes through the primary, and the replica gets the new material too.
    code, _ = error(west.rotate_key_on_demand, KeyId=key_id)
    assert code == "UnsupportedOperationException"
    kms.rotate_key_on_demand(KeyId=key_id)
    rotated = kms.encrypt(KeyId=key_id, Plaintext=b"after rotation")
    opened = west.decrypt(CiphertextBlob=rotated["CiphertextBlob"])
    assert opened["Plaintext"] == b"after rotation"
    current = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert opened["KeyMaterialId"] == current
    kms.update_primary_region(KeyId=key["Arn"], PrimaryRegion="eu-west-1")
    west_config = west.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
    assert west_config["MultiRegionKeyType"] == "PRIMARY"
    assert west_config["PrimaryKey"] == {"Arn": west_arn, "Region": "eu-west-1"}
    east_config = kms.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
    assert east_config["MultiRegionKeyType"] == "REPLICA"
    code, _ = error(kms.replicate_key, KeyId=key_id, ReplicaRegion="ap-south-1")
    assert code == "UnsupportedOperationException"


def test_deleting_a_primary_waits_for_its_replicas(kms, url):
    key = new_key(kms, MultiRegion=True)
    kms.replicate_key(KeyId=key["KeyId"], ReplicaRegion="ap-south-1")
    scheduled = kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingReplicaDeletion"
    assert "DeletionDate" not in scheduled
    meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert meta["KeyState"] == "PendingReplicaDeletion" and "DeletionDate" not in meta
    code, _ = error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    assert code == "KMSInvalidStateException"
    # The replica still works; cancelling leaves the primary disabled.
    south = kms_client(url, "ap-south-1")
    assert south.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["KeyId"].endswith(key["KeyId"])
    kms.cancel_key_deletion(KeyId=key["KeyId"])
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"


def test_single_region_keys_cannot_be_replicated(kms):
    key = new_key(kms)
    assert "MultiRegionConfiguration" not in key
    code, _ = error(kms.replicate_key, KeyId=key["KeyId"], ReplicaRegion="eu-west-1")
    assert code == "UnsupportedOperationException"
    code, _ = error(kms.update_primary_region, KeyId=key["KeyId"], PrimaryRegion="eu-west-1")
    assert code == "UnsupportedOperationException"


# ---- GetKeyLastUsage --------------------------------------------------------------------------


def test_key_last_usage_reports_the_last_cryptographic_operation(kms):
    key = new_key(kms)
    fresh = kms.get_key_last_usage(KeyId=key["KeyId"])
    assert fresh["KeyId"] == key["Arn"] or fresh["KeyId"] == key["KeyId"]
    assert "KeyLastUsage" not in fresh or not fresh["KeyLastUsage"]
    assert fresh["KeyCreationDate"] == key["CreationDate"]
    assert fresh["TrackingStartDate"] >= key["CreationDate"]
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"used")
    kms.describe_key(KeyId=key["KeyId"])  # not a cryptographic operation
    used = kms.get_key_last_usage(KeyId=key["Arn"])["KeyLastUsage"]
    assert used["Operation"] == "Encrypt"
    assert used["CloudTrailEventId"]
    assert used["Timestamp"] >= key["CreationDate"]


# ---- grants to roles, and the lockout safety check (enforcing server) ------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("kmsrest"))
    yield srv
    srv.server.stop()


def test_a_grant_to_a_role_reaches_its_sessions(secured):
    iam = secured.client("iam")
    name = f"granted-{uuid.uuid4().hex[:8]}"
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "sts:AssumeRole"}]}
    role_arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    admin_kms = secured.client("kms")
    key = admin_kms.create_key()["KeyMetadata"]["Arn"]
    creds = secured.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="app")["Credentials"]
    session = secured.session_client("kms", creds)
    code, _ = error(session.encrypt, KeyId=key, Plaintext=b"x")
    assert code == "AccessDeniedException"
    grant = admin_kms.create_grant(KeyId=key, GranteePrincipal=role_arn,
                                   Operations=["Encrypt", "Decrypt"])
    blob = session.encrypt(KeyId=key, Plaintext=b"through the grant")["CiphertextBlob"]
    assert session.decrypt(CiphertextBlob=blob)["Plaintext"] == b"through the grant"
    admin_kms.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    code, _ = error(session.decrypt, CiphertextBlob=blob)
    assert code == "AccessDeniedException"


def test_a_key_policy_that_locks_the_caller_out_is_refused(secured):
    iam = secured.client("iam")
    other = f"other-{uuid.uuid4().hex[:8]}"
    other_arn = iam.create_user(UserName=other)["User"]["Arn"]
    lockout = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": other_arn}, "Action": "kms:*", "Resource": "*"}]})
    kms = secured.client("kms")
    assert error(kms.create_key, Policy=lockout) == ("MalformedPolicyDocumentException", LOCKOUT)
    kms.create_key(Policy=lockout, BypassPolicyLockoutSafetyCheck=True)
    key = kms.create_key()["KeyMetadata"]["Arn"]
    assert error(kms.put_key_policy, KeyId=key, PolicyName="default", Policy=lockout) == (
        "MalformedPolicyDocumentException", LOCKOUT)
    # The default shape, delegating to the account (whose IAM policies allow the admin), passes.
    account = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*", "Resource": "*"}]})
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=account)
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=lockout,
                       BypassPolicyLockoutSafetyCheck=True)
