"""KMS fidelity (issue 22): error bodies, tag rules, not-found texts and the other answers of
the operations Coffer already had, each checked against what the real KMS service answers,
then the key families added for the issue (asymmetric, HMAC, data key pairs), checked with
an independent library (Python's ``cryptography``)."""

from __future__ import annotations

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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

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


# --- Item 2: asymmetric keys, HMAC keys, data key pairs --------------------------------------


HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def public_key_of(kms, key_id):
    return serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])


def outside_verify(public, algorithm: str, message: bytes, signature: bytes, prehashed: bool):
    """Verifies a KMS signature with Python's `cryptography`; raises InvalidSignature."""
    hash_alg = HASHES[algorithm[-3:]]()
    chosen = utils.Prehashed(hash_alg) if prehashed else hash_alg
    if algorithm.startswith("RSASSA_PSS"):
        pad = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        public.verify(signature, message, pad, chosen)
    elif algorithm.startswith("RSASSA_PKCS1"):
        public.verify(signature, message, padding.PKCS1v15(), chosen)
    else:
        public.verify(signature, message, ec.ECDSA(chosen))


SIGNING_CASES = [
    ("RSA_2048", ["RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
                  "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"]),
    ("RSA_3072", ["RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_512"]),
    ("RSA_4096", ["RSASSA_PSS_SHA_512"]),
    ("ECC_NIST_P256", ["ECDSA_SHA_256"]),
    ("ECC_NIST_P384", ["ECDSA_SHA_384"]),
    ("ECC_NIST_P521", ["ECDSA_SHA_512"]),
    ("ECC_SECG_P256K1", ["ECDSA_SHA_256"]),
]


@pytest.mark.parametrize("spec,algorithms", SIGNING_CASES)
def test_signatures_verify_outside_and_inside(kms, spec, algorithms):
    key = new_key(kms, KeySpec=spec, KeyUsage="SIGN_VERIFY")
    assert key["KeySpec"] == spec and key["KeyUsage"] == "SIGN_VERIFY"
    assert "EncryptionAlgorithms" not in key
    if spec.startswith("RSA"):
        assert key["SigningAlgorithms"] == SIGNING_CASES[0][1]
    else:
        assert key["SigningAlgorithms"] == algorithms
    public = public_key_of(kms, key["KeyId"])
    message = b"the message " + uuid.uuid4().bytes
    for algorithm in algorithms:
        signed = kms.sign(KeyId=key["KeyId"], Message=message, SigningAlgorithm=algorithm)
        assert signed["KeyId"] == key["Arn"] and signed["SigningAlgorithm"] == algorithm
        outside_verify(public, algorithm, message, signed["Signature"], prehashed=False)
        with pytest.raises(InvalidSignature):
            outside_verify(public, algorithm, message + b"!", signed["Signature"], prehashed=False)
        verified = kms.verify(KeyId=key["KeyId"], Message=message, Signature=signed["Signature"],
                              SigningAlgorithm=algorithm)
        assert verified["SignatureValid"] is True and verified["KeyId"] == key["Arn"]
        assert error(kms.verify, KeyId=key["KeyId"], Message=message + b"!", Signature=signed["Signature"],
                     SigningAlgorithm=algorithm)[0] == "KMSInvalidSignatureException"
        # DIGEST: the caller hashed the message.
        h = hashes.Hash(HASHES[algorithm[-3:]]())
        h.update(message)
        digest = h.finalize()
        signed = kms.sign(KeyId=key["KeyId"], Message=digest, MessageType="DIGEST", SigningAlgorithm=algorithm)
        outside_verify(public, algorithm, digest, signed["Signature"], prehashed=True)
        assert kms.verify(KeyId=key["KeyId"], Message=message, Signature=signed["Signature"],
                          SigningAlgorithm=algorithm)["SignatureValid"] is True
        assert error(kms.sign, KeyId=key["KeyId"], Message=digest[:-1], MessageType="DIGEST",
                     SigningAlgorithm=algorithm) == (
            "ValidationException", f"Digest is invalid length for algorithm {algorithm}.")


def test_a_signature_made_outside_verifies_in_coffer(kms):
    key = new_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    # Coffer's own signature, re-verified; and a signature by another key fails.
    other = ec.generate_private_key(ec.SECP256R1())
    forged = other.sign(b"m", ec.ECDSA(hashes.SHA256()))
    assert error(kms.verify, KeyId=key["KeyId"], Message=b"m", Signature=forged,
                 SigningAlgorithm="ECDSA_SHA_256")[0] == "KMSInvalidSignatureException"


def test_signing_keys_refuse_other_algorithms_and_uses(kms, sm):
    key = new_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    code, _ = error(kms.sign, KeyId=key["KeyId"], Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")
    assert code == "InvalidKeyUsageException"
    assert error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x")[0] == "InvalidKeyUsageException"
    assert error(kms.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256")[0] == "InvalidKeyUsageException"
    assert error(kms.enable_key_rotation, KeyId=key["KeyId"])[0] == "UnsupportedOperationException"
    assert error(kms.rotate_key_on_demand, KeyId=key["KeyId"])[0] == "UnsupportedOperationException"
    assert error(kms.create_key, KeySpec="ECC_NIST_P256")[0] == "ValidationException"
    assert error(kms.create_key, KeySpec="SM2", KeyUsage="SIGN_VERIFY")[0] == "UnsupportedOperationException"
    symmetric = new_key(kms)
    assert error(kms.get_public_key, KeyId=symmetric["KeyId"])[0] == "UnsupportedOperationException"
    assert error(kms.sign, KeyId=symmetric["KeyId"], Message=b"m",
                 SigningAlgorithm="ECDSA_SHA_256")[0] == "InvalidKeyUsageException"
    # Secrets Manager seals under symmetric keys only.
    name = "fidelity/" + uuid.uuid4().hex
    assert error(sm.create_secret, Name=name, SecretString="v", KmsKeyId=key["KeyId"])[0] == "EncryptionFailure"
    assert error(sm.describe_secret, SecretId=name)[0] == "ResourceNotFoundException"
    kms.disable_key(KeyId=key["KeyId"])
    assert error(kms.sign, KeyId=key["KeyId"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256") == (
        "DisabledException", f"{key['Arn']} is disabled.")


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
def test_rsa_ciphertexts_made_outside_decrypt_in_coffer(kms, algorithm):
    key = new_key(kms, KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")
    assert key["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    got = kms.get_public_key(KeyId=key["KeyId"])
    assert got["KeySpec"] == "RSA_2048" and got["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert got["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    public = serialization.load_der_public_key(got["PublicKey"])
    h = hashes.SHA1() if algorithm.endswith("_1") else hashes.SHA256()
    blob = public.encrypt(b"outside", padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None))
    out = kms.decrypt(KeyId=key["KeyId"], CiphertextBlob=blob, EncryptionAlgorithm=algorithm)
    assert out["Plaintext"] == b"outside" and out["EncryptionAlgorithm"] == algorithm
    assert out["KeyId"] == key["Arn"]
    # And Coffer's ciphertext round-trips.
    enc = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"inside", EncryptionAlgorithm=algorithm)
    assert enc["EncryptionAlgorithm"] == algorithm
    assert kms.decrypt(KeyId=key["KeyId"], CiphertextBlob=enc["CiphertextBlob"],
                       EncryptionAlgorithm=algorithm)["Plaintext"] == b"inside"
    assert error(kms.decrypt, KeyId=key["KeyId"], CiphertextBlob=enc["CiphertextBlob"][:-1],
                 EncryptionAlgorithm=algorithm)[0] == "InvalidCiphertextException"
    assert error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x")[0] == "InvalidKeyUsageException"


def test_re_encrypt_moves_between_symmetric_and_rsa_keys(kms):
    rsa_key = new_key(kms, KeySpec="RSA_3072", KeyUsage="ENCRYPT_DECRYPT")
    symmetric = new_key(kms)
    blob = kms.encrypt(KeyId=symmetric["KeyId"], Plaintext=b"moved")["CiphertextBlob"]
    moved = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=rsa_key["KeyId"],
                           DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert moved["KeyId"] == rsa_key["Arn"] and moved["SourceKeyId"] == symmetric["Arn"]
    back = kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], SourceKeyId=rsa_key["KeyId"],
                          SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
                          DestinationKeyId=symmetric["KeyId"])
    assert back["SourceEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == b"moved"


@pytest.mark.parametrize("spec,algorithm,length", [
    ("HMAC_224", "HMAC_SHA_224", 28), ("HMAC_256", "HMAC_SHA_256", 32),
    ("HMAC_384", "HMAC_SHA_384", 48), ("HMAC_512", "HMAC_SHA_512", 64),
])
def test_hmac_keys_generate_and_verify_macs(kms, spec, algorithm, length):
    key = new_key(kms, KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC")
    assert key["MacAlgorithms"] == [algorithm] and "EncryptionAlgorithms" not in key
    mac = kms.generate_mac(KeyId=key["KeyId"], Message=b"msg", MacAlgorithm=algorithm)
    assert len(mac["Mac"]) == length and mac["KeyId"] == key["Arn"] and mac["MacAlgorithm"] == algorithm
    assert kms.generate_mac(KeyId=key["KeyId"], Message=b"msg", MacAlgorithm=algorithm)["Mac"] == mac["Mac"]
    ok = kms.verify_mac(KeyId=key["KeyId"], Message=b"msg", MacAlgorithm=algorithm, Mac=mac["Mac"])
    assert ok["MacValid"] is True
    assert error(kms.verify_mac, KeyId=key["KeyId"], Message=b"msh", MacAlgorithm=algorithm,
                 Mac=mac["Mac"])[0] == "KMSInvalidMacException"
    other = "HMAC_SHA_512" if algorithm != "HMAC_SHA_512" else "HMAC_SHA_256"
    assert error(kms.generate_mac, KeyId=key["KeyId"], Message=b"m", MacAlgorithm=other)[0] == "InvalidKeyUsageException"
    assert error(kms.get_public_key, KeyId=key["KeyId"])[0] == "UnsupportedOperationException"
    assert error(kms.generate_mac, KeyId=key["KeyId"], Message=b"m", MacAlgorithm=algorithm,
                 DryRun=True)[0] == "DryRunOperationException"


@pytest.mark.parametrize("spec,curve", [("ECC_NIST_P256", ec.SECP256R1), ("ECC_NIST_P384", ec.SECP384R1),
                                        ("ECC_NIST_P521", ec.SECP521R1)])
def test_derive_shared_secret_matches_ecdh_outside(kms, spec, curve):
    key = new_key(kms, KeySpec=spec, KeyUsage="KEY_AGREEMENT")
    assert key["KeyAgreementAlgorithms"] == ["ECDH"]
    peer = ec.generate_private_key(curve())
    peer_public = peer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    got = kms.derive_shared_secret(KeyId=key["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer_public)
    expected = peer.exchange(ec.ECDH(), public_key_of(kms, key["KeyId"]))
    assert got["SharedSecret"] == expected and got["KeyId"] == key["Arn"]
    assert got["KeyAgreementAlgorithm"] == "ECDH" and got["KeyOrigin"] == "AWS_KMS"
    assert error(kms.sign, KeyId=key["KeyId"], Message=b"m",
                 SigningAlgorithm="ECDSA_SHA_256")[0] == "InvalidKeyUsageException"


@pytest.mark.parametrize("spec", ["RSA_2048", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_SECG_P256K1"])
def test_generate_data_key_pair(kms, spec):
    key = new_key(kms)
    pair = kms.generate_data_key_pair(KeyId=key["KeyId"], KeyPairSpec=spec, EncryptionContext={"p": "1"})
    assert pair["KeyId"] == key["Arn"] and pair["KeyPairSpec"] == spec
    private = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], password=None)
    public = serialization.load_der_public_key(pair["PublicKey"])
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert private.public_key().public_bytes(*spki) == public.public_bytes(*spki)
    opened = kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext={"p": "1"})
    assert opened["Plaintext"] == pair["PrivateKeyPlaintext"]
    bare = kms.generate_data_key_pair_without_plaintext(KeyId=key["KeyId"], KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in bare and bare["PublicKey"]
    assert error(kms.generate_data_key_pair, KeyId=key["KeyId"], KeyPairSpec=spec,
                 DryRun=True) == ("DryRunOperationException", DRY_RUN)
    assert error(kms.generate_data_key_pair_without_plaintext, KeyId=key["KeyId"], KeyPairSpec=spec,
                 DryRun=True)[0] == "DryRunOperationException"


DRY_RUN = "The request would have succeeded, but the DryRun option is set."


def test_generate_data_key_pair_needs_a_symmetric_key(kms):
    signing = new_key(kms, KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")
    assert error(kms.generate_data_key_pair, KeyId=signing["KeyId"],
                 KeyPairSpec="RSA_2048")[0] == "InvalidKeyUsageException"
    symmetric = new_key(kms)
    assert error(kms.generate_data_key_pair, KeyId=symmetric["KeyId"],
                 KeyPairSpec="SM2")[0] == "UnsupportedOperationException"


# --- Grants ------------------------------------------------------------------------------------


def test_grants_list_page_retire_by_token_and_revoke(kms):
    key = new_key(kms)
    grantee = "arn:aws:iam::000000000000:user/someone"
    made = [kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=grantee, Operations=["Decrypt"],
                             RetiringPrincipal="arn:aws:iam::000000000000:user/admin",
                             Name=f"g{i}") for i in range(3)]
    # The same name and terms again is the same grant.
    again = kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=grantee, Operations=["Decrypt"],
                             RetiringPrincipal="arn:aws:iam::000000000000:user/admin", Name="g0")
    assert again["GrantId"] == made[0]["GrantId"]
    listed = kms.list_grants(KeyId=key["KeyId"], Limit=2)
    assert listed["Truncated"] is True and len(listed["Grants"]) == 2
    rest = kms.list_grants(KeyId=key["KeyId"], Marker=listed["NextMarker"])
    grants = listed["Grants"] + rest["Grants"]
    assert sorted(g["GrantId"] for g in grants) == sorted(m["GrantId"] for m in made)
    entry = grants[0]
    assert entry["KeyId"] == key["Arn"] and entry["GranteePrincipal"] == grantee
    assert entry["Operations"] == ["Decrypt"] and entry["IssuingAccount"] == "arn:aws:iam::000000000000:root"
    retirable = kms.list_retirable_grants(RetiringPrincipal="arn:aws:iam::000000000000:user/admin")
    assert {m["GrantId"] for m in made} <= {g["GrantId"] for g in retirable["Grants"]}
    kms.retire_grant(GrantToken=made[0]["GrantToken"])
    kms.retire_grant(KeyId=key["KeyId"], GrantId=made[1]["GrantId"])
    kms.revoke_grant(KeyId=key["KeyId"], GrantId=made[2]["GrantId"])
    assert kms.list_grants(KeyId=key["KeyId"])["Grants"] == []
    assert error(kms.revoke_grant, KeyId=key["KeyId"], GrantId=made[2]["GrantId"])[0] == "NotFoundException"
    assert error(kms.retire_grant, GrantToken="bm90LWEtdG9rZW4")[0] == "InvalidGrantTokenException"
    assert error(kms.create_grant, KeyId=key["KeyId"], GranteePrincipal=grantee, Operations=["Decrypt"],
                 DryRun=True)[0] == "DryRunOperationException"
    assert kms.list_grants(KeyId=key["KeyId"])["Grants"] == []


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    from test_auth import Secured

    srv = Secured(tmp_path_factory.mktemp("kmsgrants"))
    yield srv
    srv.server.stop()


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


NO_KMS = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]}


def denied(fn, **kwargs):
    assert error(fn, **kwargs)[0] == "AccessDeniedException"


def test_a_grantee_with_no_policy_uses_the_key_through_its_grant_until_retired(secured):
    admin = secured.client(secured.admin_key, service="kms")
    name = "grantee-" + uuid.uuid4().hex[:8]
    kms = secured.client(secured.user(name, NO_KMS), service="kms")
    key = admin.create_key()["KeyMetadata"]["Arn"]
    blob = admin.encrypt(KeyId=key, Plaintext=b"granted")["CiphertextBlob"]
    denied(kms.decrypt, CiphertextBlob=blob)
    grant = admin.create_grant(KeyId=key, GranteePrincipal=user_arn(name),
                               Operations=["Decrypt", "Encrypt", "RetireGrant"])
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"granted"
    assert kms.decrypt(CiphertextBlob=blob, KeyId=key)["Plaintext"] == b"granted"
    kms.encrypt(KeyId=key, Plaintext=b"x")
    denied(kms.generate_data_key, KeyId=key, KeySpec="AES_256")
    denied(kms.describe_key, KeyId=key)
    kms.retire_grant(GrantToken=grant["GrantToken"])
    denied(kms.decrypt, CiphertextBlob=blob)
    denied(kms.encrypt, KeyId=key, Plaintext=b"x")


def test_a_revoked_or_constrained_grant_allows_nothing_more(secured):
    admin = secured.client(secured.admin_key, service="kms")
    name = "constrained-" + uuid.uuid4().hex[:8]
    kms = secured.client(secured.user(name, NO_KMS), service="kms")
    key = admin.create_key()["KeyMetadata"]["Arn"]
    with_ctx = admin.encrypt(KeyId=key, Plaintext=b"a", EncryptionContext={"tenant": "a"})["CiphertextBlob"]
    other_ctx = admin.encrypt(KeyId=key, Plaintext=b"b", EncryptionContext={"tenant": "b"})["CiphertextBlob"]
    grant = admin.create_grant(KeyId=key, GranteePrincipal=user_arn(name), Operations=["Decrypt"],
                               Constraints={"EncryptionContextEquals": {"tenant": "a"}})
    assert kms.decrypt(CiphertextBlob=with_ctx, EncryptionContext={"tenant": "a"})["Plaintext"] == b"a"
    denied(kms.decrypt, CiphertextBlob=other_ctx, EncryptionContext={"tenant": "b"})
    # The grantee may not retire a grant without RetireGrant that does not name it retiring.
    denied(kms.retire_grant, GrantToken=grant["GrantToken"])
    admin.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    denied(kms.decrypt, CiphertextBlob=with_ctx, EncryptionContext={"tenant": "a"})


def test_an_explicit_deny_wins_over_a_grant(secured):
    admin = secured.client(secured.admin_key, service="kms")
    key = admin.create_key()["KeyMetadata"]["Arn"]
    name = "denied-" + uuid.uuid4().hex[:8]
    kms = secured.client(secured.user(name, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": key}]}), service="kms")
    blob = admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    admin.create_grant(KeyId=key, GranteePrincipal=user_arn(name), Operations=["Decrypt"])
    denied(kms.decrypt, CiphertextBlob=blob)


def test_signing_needs_kms_sign_on_the_key(secured):
    admin = secured.client(secured.admin_key, service="kms")
    key = admin.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    name = "verifier-" + uuid.uuid4().hex[:8]
    kms = secured.client(secured.user(name, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Verify", "kms:GetPublicKey"], "Resource": key}]}), service="kms")
    signature = admin.sign(KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    assert kms.verify(KeyId=key, Message=b"m", Signature=signature,
                      SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"] is True
    kms.get_public_key(KeyId=key)
    denied(kms.sign, KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    admin.create_grant(KeyId=key, GranteePrincipal=user_arn(name), Operations=["Sign"])
    kms.sign(KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")


# --- Key policies and description ---------------------------------------------------------------


def test_key_policies_are_read_written_and_refused_when_they_do_not_parse(kms, url):
    key = new_key(kms)
    got = kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")
    assert got["PolicyName"] == "default"
    default = json.loads(got["Policy"])
    assert default["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert default["Statement"][0]["Action"] == "kms:*"
    assert kms.list_key_policies(KeyId=key["KeyId"])["PolicyNames"] == ["default"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "mine", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*", "Resource": "*"}]})
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=policy)
    assert json.loads(kms.get_key_policy(KeyId=key["KeyId"])["Policy"])["Statement"][0]["Sid"] == "mine"
    typo = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*",
        "Condition": {"StringNotEqual": {"aws:username": "x"}}}]})
    for bad in ["{not json", typo]:
        assert error(kms.put_key_policy, KeyId=key["KeyId"], Policy=bad)[0] == "MalformedPolicyDocumentException"
    assert json.loads(kms.get_key_policy(KeyId=key["KeyId"])["Policy"])["Statement"][0]["Sid"] == "mine"
    assert error(kms.get_key_policy, KeyId=key["KeyId"], PolicyName="other")[0] == "NotFoundException"
    kms.update_key_description(KeyId=key["KeyId"], Description="new words")
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Description"] == "new words"
    missing = str(uuid.uuid4())
    assert error(kms.update_key_description, KeyId=missing, Description="x")[0] == "NotFoundException"


def test_a_new_key_policy_decides_the_next_request(secured):
    admin = secured.client(secured.admin_key, service="kms")
    name = "policyuser-" + uuid.uuid4().hex[:8]
    kms = secured.client(secured.user(name, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}), service="kms")
    key = admin.create_key()["KeyMetadata"]["Arn"]
    kms.encrypt(KeyId=key, Plaintext=b"x")
    admin_only = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/admin"},
        "Action": "kms:*", "Resource": "*"}]})
    admin.put_key_policy(KeyId=key, Policy=admin_only)
    denied(kms.encrypt, KeyId=key, Plaintext=b"x")
    admin.encrypt(KeyId=key, Plaintext=b"x")
    # GetKeyPolicy shows the user ARN as given (stored bound to the user's unique id).
    shown = json.loads(admin.get_key_policy(KeyId=key)["Policy"])
    assert shown["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::000000000000:user/admin"}


# --- The aws kms CLI over the new operations -----------------------------------------------------


def test_cli_drives_the_new_kms_operations(url, tmp_path):
    import os
    import subprocess
    import sys

    def aws(*args: str) -> dict:
        env = dict(os.environ)
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_PAGER="")
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            env.pop(var, None)
        proc = subprocess.run([sys.executable, "-m", "awscli", "kms", *args, "--endpoint-url", url,
                               "--region", REGION, "--output", "json"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    key = aws("create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY")["KeyMetadata"]
    message = tmp_path / "message"
    message.write_bytes(b"signed by the cli")
    signed = aws("sign", "--key-id", key["KeyId"], "--message", f"fileb://{message}",
                 "--signing-algorithm", "ECDSA_SHA_256")
    signature = tmp_path / "signature"
    signature.write_bytes(__import__("base64").b64decode(signed["Signature"]))
    verified = aws("verify", "--key-id", key["KeyId"], "--message", f"fileb://{message}",
                   "--signature", f"fileb://{signature}", "--signing-algorithm", "ECDSA_SHA_256")
    assert verified["SignatureValid"] is True
    assert aws("get-public-key", "--key-id", key["KeyId"])["KeySpec"] == "ECC_NIST_P256"
    grant = aws("create-grant", "--key-id", key["KeyId"], "--grantee-principal",
                f"arn:aws:iam::{ACCOUNT}:user/cli", "--operations", "Sign", "Verify")
    assert [g["GrantId"] for g in aws("list-grants", "--key-id", key["KeyId"])["Grants"]] == [grant["GrantId"]]
    aws("revoke-grant", "--key-id", key["KeyId"], "--grant-id", grant["GrantId"])
    aws("update-key-description", "--key-id", key["KeyId"], "--description", "from the cli")
    assert aws("describe-key", "--key-id", key["KeyId"])["KeyMetadata"]["Description"] == "from the cli"
    assert aws("list-key-policies", "--key-id", key["KeyId"])["PolicyNames"] == ["default"]
    hmac_key = aws("create-key", "--key-spec", "HMAC_256", "--key-usage", "GENERATE_VERIFY_MAC")["KeyMetadata"]
    mac = aws("generate-mac", "--key-id", hmac_key["KeyId"], "--message", f"fileb://{message}",
              "--mac-algorithm", "HMAC_SHA_256")
    assert len(__import__("base64").b64decode(mac["Mac"])) == 32
    symmetric = aws("create-key")["KeyMetadata"]
    pair = aws("generate-data-key-pair", "--key-id", symmetric["KeyId"], "--key-pair-spec", "RSA_2048")
    assert pair["KeyPairSpec"] == "RSA_2048" and pair["PrivateKeyPlaintext"]


def test_a_recreated_user_does_not_inherit_a_grant(secured):
    admin = secured.client(secured.admin_key, service="kms")
    name = "regrant-" + uuid.uuid4().hex[:8]
    first = secured.client(secured.user(name, NO_KMS), service="kms")
    key = admin.create_key()["KeyMetadata"]["Arn"]
    admin.create_grant(KeyId=key, GranteePrincipal=user_arn(name), Operations=["Encrypt"])
    first.encrypt(KeyId=key, Plaintext=b"x")
    secured.coffer_admin("delete-user", name)
    second = secured.client(secured.user(name, NO_KMS), service="kms")
    denied(second.encrypt, KeyId=key, Plaintext=b"x")
    # A grant to a user that does not exist is refused (it would go to whoever is created later).
    assert error(admin.create_grant, KeyId=key, GranteePrincipal=user_arn("nobody-" + uuid.uuid4().hex[:6]),
                 Operations=["Encrypt"])[0] == "ValidationException"


def test_list_key_rotations_names_each_rotation(kms):
    key = new_key(kms)
    assert kms.list_key_rotations(KeyId=key["KeyId"])["Rotations"] == []
    kms.rotate_key_on_demand(KeyId=key["KeyId"])
    kms.rotate_key_on_demand(KeyId=key["KeyId"])
    rotations = kms.list_key_rotations(KeyId=key["KeyId"])["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND", "ON_DEMAND"]
    assert [r["KeyMaterialState"] for r in rotations] == ["NON_CURRENT", "CURRENT"]
    assert all(r["KeyId"] == key["Arn"] and "RotationDate" in r for r in rotations)
    current = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
    assert rotations[-1]["KeyMaterialId"] == current
    every = kms.list_key_rotations(KeyId=key["KeyId"], IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
    assert len(every) == 3 and "RotationType" not in every[0]
    page = kms.list_key_rotations(KeyId=key["KeyId"], Limit=1)
    assert page["Truncated"] is True and len(page["Rotations"]) == 1
    rest = kms.list_key_rotations(KeyId=key["KeyId"], Marker=page["NextMarker"])
    assert [r["KeyMaterialId"] for r in page["Rotations"] + rest["Rotations"]] == [r["KeyMaterialId"] for r in rotations]
    signing = new_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    assert error(kms.list_key_rotations, KeyId=signing["KeyId"])[0] == "UnsupportedOperationException"
