"""The KMS API on Coffer's endpoint through boto3, the ``aws kms`` CLI and raw JSON 1.1, and
its effect on Secrets Manager: key states, re-encryption on a key change, bad input."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import (
    ACCESS_KEY,
    JSON_CONTENT_TYPE,
    REGION,
    SECRET_KEY,
    make_client,
    start_durable_server,
    unique_name,
)

ACCOUNT = "000000000000"


def kms_client(url: str):
    return boto3.client(
        "kms",
        endpoint_url=url,
        region_name=REGION,
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
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err["Code"], err.get("Message", "")


def aws(url: str, service: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_PAGER="",
    )
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    cmd = [
        sys.executable, "-m", "awscli", service, *args,
        "--endpoint-url", url, "--region", REGION, "--output", "json",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stderr}"
    return proc


def aws_json(url: str, service: str, *args: str) -> dict:
    out = aws(url, service, *args).stdout
    return json.loads(out) if out.strip() else {}


# --- The aws kms CLI ------------------------------------------------------------------------


def test_cli_drives_every_kms_operation(url, tmp_path):
    created = aws_json(url, "kms", "create-key", "--description", "cli key", "--tags", "TagKey=team,TagValue=a")
    meta = created["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    assert arn == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    assert meta["KeyState"] == "Enabled" and meta["KeyManager"] == "CUSTOMER"
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT" and meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert aws_json(url, "kms", "describe-key", "--key-id", arn)["KeyMetadata"]["Description"] == "cli key"
    assert key_id in [k["KeyId"] for k in aws_json(url, "kms", "list-keys")["Keys"]]

    alias = "alias/" + uuid.uuid4().hex
    aws(url, "kms", "create-alias", "--alias-name", alias, "--target-key-id", key_id)
    listed = aws_json(url, "kms", "list-aliases", "--key-id", key_id)["Aliases"]
    assert [a["AliasName"] for a in listed] == [alias]
    second = aws_json(url, "kms", "create-key")["KeyMetadata"]
    aws(url, "kms", "update-alias", "--alias-name", alias, "--target-key-id", second["KeyId"])
    assert aws_json(url, "kms", "describe-key", "--key-id", alias)["KeyMetadata"]["KeyId"] == second["KeyId"]
    aws(url, "kms", "update-alias", "--alias-name", alias, "--target-key-id", key_id)

    plaintext = tmp_path / "plain.txt"
    plaintext.write_bytes(b"hello from the cli")
    encrypted = aws_json(
        url, "kms", "encrypt", "--key-id", alias, "--plaintext", f"fileb://{plaintext}",
        "--encryption-context", "app=cli",
    )
    assert encrypted["KeyId"] == arn and encrypted["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    blob = tmp_path / "blob.bin"
    blob.write_bytes(base64.b64decode(encrypted["CiphertextBlob"]))
    decrypted = aws_json(
        url, "kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}", "--encryption-context", "app=cli",
    )
    assert base64.b64decode(decrypted["Plaintext"]) == b"hello from the cli"
    assert decrypted["KeyId"] == arn

    moved = aws_json(
        url, "kms", "re-encrypt", "--ciphertext-blob", f"fileb://{blob}",
        "--source-encryption-context", "app=cli", "--destination-key-id", second["Arn"],
    )
    assert moved["SourceKeyId"] == arn and moved["KeyId"] == second["Arn"]

    data_key = aws_json(url, "kms", "generate-data-key", "--key-id", key_id, "--key-spec", "AES_256")
    assert len(base64.b64decode(data_key["Plaintext"])) == 32
    without = aws_json(url, "kms", "generate-data-key-without-plaintext", "--key-id", key_id, "--number-of-bytes", "16")
    assert "Plaintext" not in without and without["KeyId"] == arn
    random = aws_json(url, "kms", "generate-random", "--number-of-bytes", "24")
    assert len(base64.b64decode(random["Plaintext"])) == 24

    aws(url, "kms", "enable-key-rotation", "--key-id", key_id)
    status = aws_json(url, "kms", "get-key-rotation-status", "--key-id", key_id)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 365
    aws(url, "kms", "disable-key-rotation", "--key-id", key_id)
    assert aws_json(url, "kms", "get-key-rotation-status", "--key-id", key_id)["KeyRotationEnabled"] is False
    before = aws_json(url, "kms", "describe-key", "--key-id", key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    aws_json(url, "kms", "rotate-key-on-demand", "--key-id", key_id)
    after = aws_json(url, "kms", "describe-key", "--key-id", key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert before != after
    # Old ciphertext still decrypts after the rotation, with the old material.
    again = aws_json(url, "kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}", "--encryption-context", "app=cli")
    assert base64.b64decode(again["Plaintext"]) == b"hello from the cli"
    assert again["KeyMaterialId"] == before

    aws(url, "kms", "tag-resource", "--key-id", key_id, "--tags", "TagKey=env,TagValue=prod")
    aws(url, "kms", "untag-resource", "--key-id", key_id, "--tag-keys", "team")
    assert aws_json(url, "kms", "list-resource-tags", "--key-id", key_id)["Tags"] == [{"TagKey": "env", "TagValue": "prod"}]

    aws(url, "kms", "disable-key", "--key-id", key_id)
    assert aws_json(url, "kms", "describe-key", "--key-id", key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    aws(url, "kms", "enable-key", "--key-id", key_id)
    scheduled = aws_json(url, "kms", "schedule-key-deletion", "--key-id", key_id, "--pending-window-in-days", "7")
    assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 7
    assert aws_json(url, "kms", "cancel-key-deletion", "--key-id", key_id)["KeyId"] == arn
    assert aws_json(url, "kms", "describe-key", "--key-id", key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    aws(url, "kms", "delete-alias", "--alias-name", alias)
    failed = aws(url, "kms", "describe-key", "--key-id", alias, check=False)
    assert failed.returncode != 0 and "NotFoundException" in failed.stderr


def test_cli_seed_update_secret_with_a_key_from_create_key_re_encrypts(url):
    """The seed's second update-secret example, with a key made by `aws kms create-key`."""
    name = unique_name("seed") + "/MyTestSecret"
    old_arn = aws_json(url, "kms", "create-key")["KeyMetadata"]["Arn"]
    aws_json(url, "secretsmanager", "create-secret", "--name", name, "--kms-key-id", old_arn,
             "--secret-string", '{"username":"anika","password":"first"}')
    aws_json(url, "secretsmanager", "put-secret-value", "--secret-id", name,
             "--secret-string", '{"username":"anika","password":"second"}')
    new_arn = aws_json(url, "kms", "create-key")["KeyMetadata"]["Arn"]
    out = aws_json(url, "secretsmanager", "update-secret", "--secret-id", name, "--kms-key-id", new_arn)
    assert set(out) == {"ARN", "Name"}
    assert aws_json(url, "secretsmanager", "describe-secret", "--secret-id", name)["KmsKeyId"] == new_arn
    versions = aws_json(url, "secretsmanager", "list-secret-version-ids", "--secret-id", name)["Versions"]
    assert [v["KmsKeyIds"] for v in versions] == [[new_arn], [new_arn]]

    # Re-encryption is real: with the old key disabled both labelled versions still read.
    aws(url, "kms", "disable-key", "--key-id", old_arn)
    current = aws_json(url, "secretsmanager", "get-secret-value", "--secret-id", name)
    assert json.loads(current["SecretString"])["password"] == "second"
    previous = aws_json(url, "secretsmanager", "get-secret-value", "--secret-id", name, "--version-stage", "AWSPREVIOUS")
    assert json.loads(previous["SecretString"])["password"] == "first"
    # While the new key being disabled makes them unreadable.
    aws(url, "kms", "disable-key", "--key-id", new_arn)
    failed = aws(url, "secretsmanager", "get-secret-value", "--secret-id", name, check=False)
    assert failed.returncode != 0 and "DecryptionFailure" in failed.stderr
    aws(url, "kms", "enable-key", "--key-id", new_arn)


# --- boto3 ----------------------------------------------------------------------------------


def test_encryption_context_is_authenticated_and_blobs_name_their_key(kms):
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"payload", EncryptionContext={"a": "1", "b": "2"})["CiphertextBlob"]
    # Context order does not matter; every pair does.
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"b": "2", "a": "1"})
    assert out["Plaintext"] == b"payload" and out["KeyId"] == key["Arn"]
    for wrong in [{}, {"a": "1"}, {"a": "1", "b": "3"}, {"a": "1", "b": "2", "c": "3"}]:
        code, _ = error(kms.decrypt, CiphertextBlob=blob, EncryptionContext=wrong)
        assert code == "InvalidCiphertextException", wrong


def test_truncated_or_tampered_ciphertext_is_invalid_ciphertext(kms):
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"payload")["CiphertextBlob"]
    candidates = [blob[:-1], blob[:30], blob[:1], blob + b"\x00", bytes([blob[0] ^ 0xFF]) + blob[1:]]
    for i in range(21, len(blob), 7):
        candidates.append(blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1:])
    for bad in candidates:
        code, _ = error(kms.decrypt, CiphertextBlob=bad)
        assert code == "InvalidCiphertextException"
    # A blob whose key id bytes were changed names a key the caller does not have.
    renamed = blob[:1] + bytes([blob[1] ^ 0x01]) + blob[2:]
    code, message = error(kms.decrypt, CiphertextBlob=renamed)
    assert code == "AccessDeniedException"
    assert "does not exist" in message
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"payload"


def test_malformed_and_foreign_key_ids_get_kms_errors(kms):
    key = new_key(kms)
    for bad in ["nonsense", "alias/", "arn:aws:kms:us-east-1:000000000000:key/", "12345678-1234-1234-1234-12345678901z"]:
        code, message = error(kms.encrypt, KeyId=bad, Plaintext=b"x")
        assert (code, message) == ("NotFoundException", f"Invalid keyId '{bad}'")
    foreign = f"arn:aws:kms:{REGION}:111122223333:key/{key['KeyId']}"
    assert error(kms.encrypt, KeyId=foreign, Plaintext=b"x") == ("NotFoundException", f"Key '{foreign}' does not exist")
    other_region = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{key['KeyId']}"
    assert error(kms.describe_key, KeyId=other_region)[0] == "NotFoundException"
    assert error(kms.describe_key, KeyId=f"arn:aws:kms:{REGION}:111122223333:alias/x")[0] == "NotFoundException"
    # Key management takes key ids and ARNs only (CreateGrant in words of its own:
    # test_conf_model15.py).
    alias = "alias/" + uuid.uuid4().hex
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    assert error(kms.disable_key, KeyId=alias) == ("NotFoundException", f"Invalid keyId '{alias}'")


def test_key_states_refuse_cryptography_with_kms_errors(kms):
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms.disable_key(KeyId=key["KeyId"])
    assert error(kms.decrypt, CiphertextBlob=blob) == ("DisabledException", f"{key['Arn']} is disabled.")
    assert error(kms.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256")[0] == "DisabledException"
    assert error(kms.rotate_key_on_demand, KeyId=key["KeyId"])[0] == "DisabledException"
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=30)
    assert error(kms.decrypt, CiphertextBlob=blob) == ("KMSInvalidStateException", f"{key['Arn']} is pending deletion.")
    assert error(kms.enable_key, KeyId=key["KeyId"])[0] == "KMSInvalidStateException"
    assert error(kms.schedule_key_deletion, KeyId=key["KeyId"])[0] == "KMSInvalidStateException"
    assert error(kms.tag_resource, KeyId=key["KeyId"], Tags=[{"TagKey": "a", "TagValue": "b"}])[0] == "KMSInvalidStateException"
    desc = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert desc["KeyState"] == "PendingDeletion" and desc["Enabled"] is False and "DeletionDate" in desc
    kms.cancel_key_deletion(KeyId=key["KeyId"])
    kms.enable_key(KeyId=key["KeyId"])
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_refused_requests_change_nothing(kms):
    key = new_key(kms, Tags=[{"TagKey": "keep", "TagValue": "1"}])
    assert error(kms.schedule_key_deletion, KeyId=key["KeyId"], PendingWindowInDays=6)[0] == "ValidationException"
    assert error(kms.schedule_key_deletion, KeyId=key["KeyId"], PendingWindowInDays=31)[0] == "ValidationException"
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
    reserved = [{"TagKey": "ok", "TagValue": "1"}, {"TagKey": "aws:nope", "TagValue": "2"}]
    assert error(kms.tag_resource, KeyId=key["KeyId"], Tags=reserved)[0] == "TagException"
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == [{"TagKey": "keep", "TagValue": "1"}]
    before = {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    assert error(kms.create_key, KeySpec="SM2", KeyUsage="SIGN_VERIFY")[0] == "UnsupportedOperationException"
    assert error(kms.create_key, KeyUsage="SIGN_VERIFY")[0] == "ValidationException"
    assert error(kms.create_key, Policy="{not json")[0] == "MalformedPolicyDocumentException"
    assert {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]} == before
    alias = "alias/" + uuid.uuid4().hex
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    other = new_key(kms)
    code, message = error(kms.create_alias, AliasName=alias, TargetKeyId=other["KeyId"])
    assert code == "AlreadyExistsException"
    assert message == f"An alias with the name arn:aws:kms:{REGION}:{ACCOUNT}:{alias} already exists"
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key["KeyId"]
    assert error(kms.create_alias, AliasName="alias/aws/mine", TargetKeyId=key["KeyId"])[0] == "InvalidAliasNameException"
    assert error(kms.create_alias, AliasName="no-prefix", TargetKeyId=key["KeyId"])[0] == "ValidationException"


def test_listings_page_with_markers(fresh_server):
    kms = kms_client(fresh_server.url)
    ids = sorted(new_key(kms)["KeyId"] for _ in range(5))
    seen, marker = [], None
    while True:
        page = kms.list_keys(Limit=2, **({"Marker": marker} if marker else {}))
        seen += [k["KeyId"] for k in page["Keys"]]
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        marker = page["NextMarker"]
    assert seen == ids
    assert error(kms.list_keys, Marker="@@@")[0] == "InvalidMarkerException"


def test_data_keys_and_re_encrypt_and_random(kms):
    a, b = new_key(kms), new_key(kms)
    data_key = kms.generate_data_key(KeyId=a["Arn"], NumberOfBytes=64, EncryptionContext={"purpose": "dk"})
    assert len(data_key["Plaintext"]) == 64
    assert data_key["KeyId"] == a["Arn"]
    opened = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext={"purpose": "dk"})
    assert opened["Plaintext"] == data_key["Plaintext"]
    assert error(kms.generate_data_key, KeyId=a["KeyId"])[0] == "ValidationException"
    assert error(kms.generate_data_key, KeyId=a["KeyId"], KeySpec="AES_128", NumberOfBytes=16)[0] == "ValidationException"
    moved = kms.re_encrypt(
        CiphertextBlob=data_key["CiphertextBlob"], SourceEncryptionContext={"purpose": "dk"}, DestinationKeyId=b["KeyId"],
    )
    assert moved["SourceKeyId"] == a["Arn"] and moved["KeyId"] == b["Arn"]
    assert kms.decrypt(CiphertextBlob=moved["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    code, _ = error(kms.decrypt, CiphertextBlob=moved["CiphertextBlob"], KeyId=a["KeyId"])
    assert code == "IncorrectKeyException"
    assert len(kms.generate_random(NumberOfBytes=1024)["Plaintext"]) == 1024
    assert error(kms.encrypt, KeyId=a["KeyId"], Plaintext=b"x", DryRun=True)[0] == "DryRunOperationException"
    assert error(kms.encrypt, KeyId=a["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")[0] == "InvalidKeyUsageException"


def test_encrypt_then_decrypt_after_a_restart(tmp_path):
    data_dir = tmp_path / "data"
    server = start_durable_server(data_dir)
    try:
        kms = kms_client(server.url)
        key = new_key(kms)
        kms.create_alias(AliasName="alias/durable", TargetKeyId=key["KeyId"])
        blob = kms.encrypt(KeyId="alias/durable", Plaintext=b"survives restarts", EncryptionContext={"k": "v"})["CiphertextBlob"]
    finally:
        server.kill()
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert b"survives restarts" not in path.read_bytes(), path
    server = start_durable_server(data_dir)
    try:
        kms = kms_client(server.url)
        out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})
        assert out["Plaintext"] == b"survives restarts" and out["KeyId"] == key["Arn"]
        assert kms.describe_key(KeyId="alias/durable")["KeyMetadata"]["KeyId"] == key["KeyId"]
    finally:
        server.stop()


# --- Secrets Manager on KMS keys --------------------------------------------------------------


def test_default_key_is_created_on_first_use_and_reported_as_aws_does(fresh_server):
    kms, sm = kms_client(fresh_server.url), make_client(fresh_server.url)
    # AWS lists its predefined aliases from the start, without a key until one is created.
    before = {a["AliasName"]: a for a in kms.list_aliases()["Aliases"]}
    assert "TargetKeyId" not in before["alias/aws/secretsmanager"]
    assert all("TargetKeyId" not in a for a in before.values())
    sm.create_secret(Name="s", SecretString="v")
    aliases = [a for a in kms.list_aliases()["Aliases"] if "TargetKeyId" in a]
    assert [a["AliasName"] for a in aliases] == ["alias/aws/secretsmanager"]
    managed = kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"
    assert kms.get_key_rotation_status(KeyId=managed["KeyId"])["KeyRotationEnabled"] is True
    assert error(kms.disable_key, KeyId=managed["KeyId"])[0] == "AccessDeniedException"
    assert "KmsKeyId" not in sm.describe_secret(SecretId="s")
    assert sm.list_secret_version_ids(SecretId="s")["Versions"][0]["KmsKeyIds"] == ["DefaultEncryptionKey"]
    # A second secret and an explicit "" use the same key: still one alias, one AWS key.
    sm.create_secret(Name="t", SecretString="v", KmsKeyId="")
    sm.create_secret(Name="u", SecretString="v", KmsKeyId="alias/aws/secretsmanager")
    assert len([a for a in kms.list_aliases()["Aliases"] if "TargetKeyId" in a]) == 1
    assert len(kms.list_keys()["Keys"]) == 1


@pytest.mark.parametrize("form", ["key id", "key arn", "alias name", "alias arn"])
def test_kms_key_id_resolves_in_every_documented_form(sm, kms, name, form):
    key = new_key(kms)
    alias = "alias/" + uuid.uuid4().hex
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    given = {
        "key id": key["KeyId"],
        "key arn": key["Arn"],
        "alias name": alias,
        "alias arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:{alias}",
    }[form]
    sm.create_secret(Name=name, SecretString="v", KmsKeyId=given)
    assert sm.describe_secret(SecretId=name)["KmsKeyId"] == given
    assert sm.list_secret_version_ids(SecretId=name)["Versions"][0]["KmsKeyIds"] == [given]
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"
    kms.disable_key(KeyId=key["KeyId"])
    assert error(sm.get_secret_value, SecretId=name)[0] == "DecryptionFailure"
    kms.enable_key(KeyId=key["KeyId"])
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"


def test_each_key_state_and_its_effect_on_get_and_update(sm, kms, name):
    key = new_key(kms)
    sm.create_secret(Name=name, SecretString="v1", KmsKeyId=key["Arn"])

    def readable():
        try:
            return sm.get_secret_value(SecretId=name)["SecretString"]
        except ClientError as e:
            return e.response["Error"]["Code"]

    def update(value):
        try:
            sm.update_secret(SecretId=name, SecretString=value)
            return "ok"
        except ClientError as e:
            return e.response["Error"]["Code"]

    def versions():
        return len(sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"])

    kms.disable_key(KeyId=key["KeyId"])
    assert readable() == "DecryptionFailure"
    assert update("v2") == "EncryptionFailure"
    assert versions() == 1
    kms.enable_key(KeyId=key["KeyId"])
    assert readable() == "v1"
    assert update("v2") == "ok"

    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    assert readable() == "DecryptionFailure"
    assert update("v3") == "EncryptionFailure"
    code, message = error(sm.put_secret_value, SecretId=name, SecretString="v3")
    assert code == "EncryptionFailure" and message.endswith("is pending deletion.")
    assert versions() == 2

    kms.cancel_key_deletion(KeyId=key["KeyId"])  # back to Disabled
    assert readable() == "DecryptionFailure"
    assert update("v3") == "EncryptionFailure"

    kms.enable_key(KeyId=key["KeyId"])
    assert readable() == "v2"
    assert update("v3") == "ok"
    assert readable() == "v3"
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"] == "v2"


def test_update_secret_re_encrypts_current_pending_and_previous_only(sm, kms, name):
    old, new = new_key(kms), new_key(kms)
    ids = [str(uuid.uuid4()) for _ in range(4)]
    sm.create_secret(Name=name, SecretString="one", KmsKeyId=old["KeyId"], ClientRequestToken=ids[0])
    sm.put_secret_value(SecretId=name, SecretString="two", ClientRequestToken=ids[1])
    sm.put_secret_value(SecretId=name, SecretString="three", ClientRequestToken=ids[2])
    sm.put_secret_value(SecretId=name, SecretString="pending", ClientRequestToken=ids[3], VersionStages=["AWSPENDING"])
    # ids[0] is unlabelled, ids[1] AWSPREVIOUS, ids[2] AWSCURRENT, ids[3] AWSPENDING.
    sm.update_secret(SecretId=name, KmsKeyId=new["Arn"])
    listed = {v["VersionId"]: v["KmsKeyIds"] for v in sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]}
    assert listed == {ids[0]: [old["KeyId"]], ids[1]: [new["Arn"]], ids[2]: [new["Arn"]], ids[3]: [new["Arn"]]}
    kms.disable_key(KeyId=old["KeyId"])
    for version_id, value in [(ids[1], "two"), (ids[2], "three"), (ids[3], "pending")]:
        assert sm.get_secret_value(SecretId=name, VersionId=version_id)["SecretString"] == value
    assert error(sm.get_secret_value, SecretId=name, VersionId=ids[0])[0] == "DecryptionFailure"
    kms.enable_key(KeyId=old["KeyId"])
    assert sm.get_secret_value(SecretId=name, VersionId=ids[0])["SecretString"] == "one"
    # Back to the default key: DescribeSecret drops KmsKeyId again.
    sm.update_secret(SecretId=name, KmsKeyId="")
    assert "KmsKeyId" not in sm.describe_secret(SecretId=name)
    versions = sm.list_secret_version_ids(SecretId=name)["Versions"]
    assert all(v["KmsKeyIds"] == ["DefaultEncryptionKey"] for v in versions)
    kms.disable_key(KeyId=new["KeyId"])
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "three"


def test_unknown_or_unusable_keys_fail_secrets_writes_and_write_nothing(sm, kms, name):
    key = new_key(kms)
    foreign = f"arn:aws:kms:{REGION}:111122223333:key/{key['KeyId']}"
    unknown = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{uuid.uuid4()}"
    for given in [unknown, foreign, "alias/does-not-exist"]:
        code, message = error(sm.create_secret, Name=name, SecretString="v", KmsKeyId=given)
        assert code == "EncryptionFailure", given
        assert message.startswith("Secrets Manager can't encrypt the protected secret text using the provided KMS key.")
        assert error(sm.describe_secret, SecretId=name)[0] == "ResourceNotFoundException"
    assert error(sm.create_secret, Name=name, SecretString="v", KmsKeyId="not a key")[0] == "InvalidParameterException"
    assert error(sm.describe_secret, SecretId=name)[0] == "ResourceNotFoundException"

    sm.create_secret(Name=name, SecretString="v", KmsKeyId=key["KeyId"])
    assert error(sm.update_secret, SecretId=name, KmsKeyId=unknown, SecretString="w")[0] == "EncryptionFailure"
    desc = sm.describe_secret(SecretId=name)
    assert desc["KmsKeyId"] == key["KeyId"] and len(desc["VersionIdsToStages"]) == 1
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"
    pending = new_key(kms)
    kms.schedule_key_deletion(KeyId=pending["KeyId"], PendingWindowInDays=7)
    assert error(sm.update_secret, SecretId=name, KmsKeyId=pending["KeyId"])[0] == "EncryptionFailure"
    assert sm.describe_secret(SecretId=name)["KmsKeyId"] == key["KeyId"]


# --- Raw JSON 1.1 ---------------------------------------------------------------------------


def kms_request(url: str, operation: str, body: dict) -> requests.Response:
    data = json.dumps(body).encode()
    headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": f"TrentService.{operation}"}
    req = AWSRequest(method="POST", url=url.rstrip("/") + "/", data=data, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "kms", REGION).add_auth(req)
    return requests.post(req.url, data=data, headers=dict(req.prepare().headers), timeout=30)


def test_raw_kms_answers_json_1_1_and_unimplemented_operations_say_so(url):
    created = kms_request(url, "CreateKey", {})
    assert created.status_code == 200
    assert created.headers["Content-Type"] == JSON_CONTENT_TYPE
    assert "x-amzn-RequestId" in created.headers
    key_id = created.json()["KeyMetadata"]["KeyId"]
    missing = kms_request(url, "DescribeKey", {})
    assert missing.status_code == 400 and missing.json()["__type"] == "ValidationException"
    # Model validation answers before the key service does, in AWS's words.
    too_many = kms_request(url, "GenerateRandom", {"NumberOfBytes": 2000})
    assert too_many.json() == {
        "__type": "ValidationException",
        "message": "1 validation error detected: Value '2000' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024",
    }
    short_period = kms_request(url, "EnableKeyRotation", {"KeyId": key_id, "RotationPeriodInDays": 10})
    assert short_period.json()["__type"] == "ValidationException"
    wrong_type = kms_request(url, "DescribeKey", {"KeyId": 5})
    assert wrong_type.json()["__type"] == "SerializationException"
    bad_blob = kms_request(url, "Decrypt", {"CiphertextBlob": "!!!"})
    assert bad_blob.status_code == 400
    # Every operation of the model is served now (issue 22): ReplicateKey of a single-Region
    # key answers as KMS does.
    single = kms_request(url, "ReplicateKey", {"KeyId": key_id, "ReplicaRegion": "eu-west-1"})
    assert single.status_code == 400
    assert single.json()["__type"] == "UnsupportedOperationException"
    unknown = kms_request(url, "MakeCoffee", {})
    assert unknown.json()["__type"] == "UnknownOperationException"
