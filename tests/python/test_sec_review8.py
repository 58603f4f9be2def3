"""Regression tests for the eighth adversarial review's findings (the seventh session's
features: KMS multi-Region keys and imported material, the query pipeline, rotation, the
PostgreSQL cache).

Each test drives the real binary through boto3 on an enforcing server whose users are made
through the IAM API, the way the review's reproduction did.
"""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import REGION
from test_sec_review7 import Server

ACCOUNT = "000000000000"
REPLICA_REGION = "us-west-2"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # KMS holds ReplicateKey and UpdatePrimaryRegion to 5 calls a second per account and
    # Region, which these tests, made one after another without retries, go past.
    # Key set files are read only from --jwks-dir (review 10): the run's temporary directory.
    # Issuers are fetched from loopback only as the operator allows it (ssrf11).
    s = Server(tmp_path_factory.mktemp("review8"),
               ["--quota-scale", "100", "--jwks-dir", str(tmp_path_factory.getbasetemp()),
                "--oidc-allow-net", "127.0.0.0/8"])
    yield s
    s.server.stop()


def code_of(fn, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def allow(*actions: str, **extra) -> dict:
    statement = {"Effect": "Allow", "Action": list(actions), "Resource": "*", **extra}
    return {"Version": "2012-10-17", "Statement": [statement]}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def owned_by(arn: str) -> str:
    """A key policy giving `arn` every kms action (and so passing the lockout check)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": arn}, "Action": "kms:*", "Resource": "*"}]})


# ---------------------------------------------- 01: ReplicateKey needs kms:CreateKey there

def test_01_replicate_key_alone_cannot_mint_a_replica_of_ones_own(srv):
    """kms:ReplicateKey on the primary is not enough: AWS also needs kms:CreateKey in an IAM
    policy in the replica Region. Without that check, a principal allowed only to replicate
    gave itself a replica with a key policy of its choosing, and with it kms:Decrypt over
    every ciphertext of the primary (the set shares its material)."""
    admin = srv.any_client("kms")
    primary = admin.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    blob = admin.encrypt(KeyId=primary, Plaintext=b"R8-01-PLAINTEXT")["CiphertextBlob"]
    key, arn = srv.iam_user(unique("r8-replicator"), allow("kms:ReplicateKey"))
    caller = srv.any_client("kms", key)
    assert code_of(caller.decrypt, CiphertextBlob=blob)[0] == "AccessDeniedException"
    code, message = code_of(caller.replicate_key, KeyId=primary, ReplicaRegion=REPLICA_REGION,
                            Policy=owned_by(arn))
    assert code == "AccessDeniedException"
    assert "kms:CreateKey" in message
    # No replica was made, and the ciphertext opens for nobody in the replica Region.
    replica_admin = srv.any_client("kms", region=REPLICA_REGION)
    assert code_of(replica_admin.describe_key, KeyId=primary)[0] == "NotFoundException"
    caller_there = srv.any_client("kms", key, region=REPLICA_REGION)
    assert code_of(caller_there.decrypt, CiphertextBlob=blob)[0] != "OK"


def test_01_replicate_key_with_create_key_in_the_replica_region_works(srv):
    admin = srv.any_client("kms")
    primary = admin.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    key, arn = srv.iam_user(unique("r8-replicator"), allow("kms:ReplicateKey", "kms:CreateKey"))
    caller = srv.any_client("kms", key)
    made = caller.replicate_key(KeyId=primary, ReplicaRegion=REPLICA_REGION, Policy=owned_by(arn))
    assert made["ReplicaKeyMetadata"]["KeyId"] == primary
    # Tags on the replica need kms:TagResource there too.
    code, message = code_of(caller.replicate_key, KeyId=primary, ReplicaRegion="eu-west-1",
                            Tags=[{"TagKey": "team", "TagValue": "a"}])
    assert code == "AccessDeniedException" and "kms:TagResource" in message


def test_01_replica_region_condition_key_is_set(srv):
    """kms:ReplicaRegion lets a policy say where a key may be replicated; unset, a Deny on
    it never applied."""
    admin = srv.any_client("kms")
    primary = admin.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    policy = allow("kms:ReplicateKey", "kms:CreateKey")
    policy["Statement"].append({"Effect": "Deny", "Action": "kms:ReplicateKey", "Resource": "*",
                                "Condition": {"StringEquals": {"kms:ReplicaRegion": "eu-west-1"}}})
    key, arn = srv.iam_user(unique("r8-regions"), policy)
    caller = srv.any_client("kms", key)
    code, _ = code_of(caller.replicate_key, KeyId=primary, ReplicaRegion="eu-west-1",
                      Policy=owned_by(arn))
    assert code == "AccessDeniedException"
    caller.replicate_key(KeyId=primary, ReplicaRegion=REPLICA_REGION, Policy=owned_by(arn))


# ------------------------------ 02: UpdatePrimaryRegion needs the permission on the replica too

def test_02_update_primary_region_is_decided_on_the_replica_too(srv):
    """AWS needs kms:UpdatePrimaryRegion on the current primary and on the replica that
    becomes primary, each in its own key policy. A replica whose key policy refuses the
    caller could be promoted by anyone allowed on the primary."""
    key, arn = srv.iam_user(unique("r8-promoter"), allow("kms:UpdatePrimaryRegion"))
    admin = srv.any_client("kms")
    admin_arn = srv.any_client("sts").get_caller_identity()["Arn"]
    primary = admin.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    # The replica's policy is its owner's alone (no delegation to IAM policies).
    admin.replicate_key(KeyId=primary, ReplicaRegion=REPLICA_REGION, Policy=owned_by(admin_arn))
    caller = srv.any_client("kms", key)
    code, message = code_of(caller.update_primary_region, KeyId=primary, PrimaryRegion=REPLICA_REGION)
    assert code == "AccessDeniedException", message
    assert REPLICA_REGION in message
    described = admin.describe_key(KeyId=primary)["KeyMetadata"]["MultiRegionConfiguration"]
    assert described["MultiRegionKeyType"] == "PRIMARY"
    # Allowed on both, it moves.
    admin.update_primary_region(KeyId=primary, PrimaryRegion=REPLICA_REGION)
    described = admin.describe_key(KeyId=primary)["KeyMetadata"]["MultiRegionConfiguration"]
    assert described["MultiRegionKeyType"] == "REPLICA"


# ------------------------------------ 03: imported material is unusable from its ValidTo on

def test_03_expired_imported_material_is_not_used_before_the_sweep(srv):
    """At ValidTo KMS deletes imported material and the key waits for it again. The sweep
    that drops it runs every 30 s on the background node (or not at all while no node holds
    the lease), and until then the expired material still encrypted and decrypted."""
    import datetime
    import os
    import time

    from test_kms_rest import wrap

    kms = srv.any_client("kms")
    key = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    params = import_parameters(kms, key)
    material = os.urandom(32)
    valid_to = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"],
                            EncryptedKeyMaterial=wrap(params["PublicKey"], material, "RSAES_OAEP_SHA_256"),
                            ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to)
    blob = kms.encrypt(KeyId=key, Plaintext=b"R8-03")["CiphertextBlob"]
    while datetime.datetime.now(datetime.timezone.utc) <= valid_to + datetime.timedelta(milliseconds=200):
        time.sleep(0.2)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
    assert code_of(kms.encrypt, KeyId=key, Plaintext=b"y")[0] == "KMSInvalidStateException"
    assert code_of(kms.decrypt, CiphertextBlob=blob)[0] == "KMSInvalidStateException"
    # The same material imported again makes the key usable again, as at AWS.
    params = import_parameters(kms, key)
    kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"],
                            EncryptedKeyMaterial=wrap(params["PublicKey"], material, "RSAES_OAEP_SHA_256"),
                            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"R8-03"


# -------------------------------- 04: STS errors quote at most 512 characters of the request

def test_04_unsigned_web_identity_errors_quote_at_most_512_characters(srv):
    """AssumeRoleWithWebIdentity is answered before authentication: a RoleArn of 100,000
    characters came back whole in the error, where every other error quotes at most 512."""
    import base64

    import requests

    def b64(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    token = f"{b64({'alg': 'RS256'})}.{b64({'iss': 'https://idp.example', 'sub': 's', 'aud': 'a'})}.AAAA"
    form = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleSessionName": "abc",
            "RoleArn": "arn:bad:" + "Z" * 100_000, "WebIdentityToken": token}
    answer = requests.post(srv.url + "/", data=form)
    assert answer.status_code == 400 and "<Code>ValidationError</Code>" in answer.text
    assert "Z" * 400 in answer.text and "Z" * 513 not in answer.text


def test_04_assume_role_denial_quotes_at_most_512_characters_of_the_role_arn(srv):
    key, _ = srv.iam_user(unique("r8-assumer"), allow("sts:AssumeRole"))
    sts = srv.any_client("sts", key)
    code, message = code_of(sts.assume_role, RoleArn="arn:aws:iam::000000000000:role/" + "R" * 2000,
                            RoleSessionName="abc")
    assert code == "AccessDenied"
    assert "R" * 400 in message and "R" * 513 not in message


def test_04_iam_errors_quote_at_most_512_characters(srv):
    """The IAM API's refusals quoted the names they were given whole (5,000 characters
    here, up to the 1 MiB body), in the answer and in the trail."""
    key, _ = srv.iam_user(unique("r8-nobody"), allow("sts:GetCallerIdentity"))
    iam = srv.any_client("iam", key)
    code, message = code_of(iam.create_role, RoleName="R" * 5000, AssumeRolePolicyDocument="{}")
    assert code == "AccessDenied" and "R" * 300 in message and "R" * 513 not in message
    assert message.endswith("because no identity-based policy allows the iam:CreateRole action")
    code, message = code_of(iam.get_user, UserName="U" * 5000)
    assert code == "AccessDenied" and "U" * 300 in message and "U" * 513 not in message
    admin = srv.any_client("iam")
    code, message = code_of(admin.get_user, UserName="U" * 5000)
    # The quoted name is cut at 512 characters where the message is built, so IAM's words
    # after it stay whole (thirteenth session).
    assert code == "NoSuchEntity" and "U" * 300 in message and "U" * 513 not in message
    assert message.endswith("cannot be found.") and len(message) <= 600


# -------------------------- 05: a replica of an imported key gets no material but the importer's

def import_parameters(kms, key_id: str) -> dict:
    """GetParametersForImport, waiting out its quota (one call a second per account and
    Region, as at AWS)."""
    import time

    while True:
        try:
            return kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                                 WrappingKeySpec="RSA_2048")
        except ClientError as e:
            if e.response["Error"]["Code"] != "ThrottlingException":
                raise
            time.sleep(0.25)


def _import(kms, key_id: str, material: bytes):
    from test_kms_rest import wrap

    params = import_parameters(kms, key_id)
    return kms.import_key_material(
        KeyId=key_id, ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrap(params["PublicKey"], material, "RSAES_OAEP_SHA_256"),
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")


def test_05_a_replica_of_an_imported_key_is_created_without_its_material(srv):
    """At AWS a replica of a primary with imported material is created with none: whoever
    replicates must import the same material, which only its owner holds. Coffer copied the
    primary's material into the replica, so a principal allowed to replicate (and to create
    keys there) got working imported material under a key policy of its own, without ever
    holding the material; and the replica kept it after its owner deleted it from the primary."""
    import os

    admin = srv.any_client("kms")
    there = srv.any_client("kms", region=REPLICA_REGION)
    primary = admin.create_key(Origin="EXTERNAL", MultiRegion=True)["KeyMetadata"]["KeyId"]
    material = os.urandom(32)
    _import(admin, primary, material)
    blob = admin.encrypt(KeyId=primary, Plaintext=b"R8-05")["CiphertextBlob"]
    made = admin.replicate_key(KeyId=primary, ReplicaRegion=REPLICA_REGION)["ReplicaKeyMetadata"]
    # ReplicateKey answers the replica Creating, as AWS does; once made it waits for material.
    assert made["KeyState"] == "Creating" and made["Origin"] == "EXTERNAL"
    assert there.describe_key(KeyId=primary)["KeyMetadata"]["KeyState"] == "PendingImport"
    assert code_of(there.decrypt, CiphertextBlob=blob)[0] == "KMSInvalidStateException"
    # Only the primary's material is accepted, and then the replica opens what it sealed.
    code, _ = code_of(_import, kms=there, key_id=primary, material=os.urandom(32))
    assert code == "IncorrectKeyMaterialException"
    _import(there, primary, material)
    assert there.decrypt(CiphertextBlob=blob)["Plaintext"] == b"R8-05"


def test_05_a_replica_imports_only_the_material_of_its_set(srv):
    """Replicated before the primary had material: the first material imported anywhere in
    the set is the set's, as at AWS (the same material in every related key)."""
    import os

    admin = srv.any_client("kms")
    there = srv.any_client("kms", region=REPLICA_REGION)
    primary = admin.create_key(Origin="EXTERNAL", MultiRegion=True)["KeyMetadata"]["KeyId"]
    admin.replicate_key(KeyId=primary, ReplicaRegion=REPLICA_REGION)
    material = os.urandom(32)
    _import(admin, primary, material)
    code, _ = code_of(_import, kms=there, key_id=primary, material=os.urandom(32))
    assert code == "IncorrectKeyMaterialException"
    _import(there, primary, material)


# ------------------- 06: unsigned web-identity refusals cannot fill the trail at the caller's rate

def test_06_forged_web_identity_tokens_are_audited_at_a_bounded_rate(srv, tmp_path):
    """AssumeRoleWithWebIdentity is not signed. A token naming a registered issuer but not
    signed by it was recorded in the role account's trail every time: anyone who knows an
    issuer's URL (they are public) could write events, each a synced commit, as fast as the
    server answers. Like failed signatures of a known access key, refusals are now audited at
    most ten times per provider and minute (and logged once)."""
    import base64

    import requests

    def b64(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    issuer = f"https://oidc-{uuid.uuid4().hex[:8]}.example.test"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}))
    srv.any_client("iam").create_open_id_connect_provider(
        Url=issuer, ClientIDList=["aud"], ThumbprintList=["a" * 40],
        Tags=[{"Key": "coffer:jwks-file", "Value": str(jwks)}])
    role = f"arn:aws:iam::{ACCOUNT}:role/r8-web-{uuid.uuid4().hex[:6]}"
    marker = f"forger-{uuid.uuid4().hex[:8]}"
    for i in range(40):
        claims = {"iss": issuer, "sub": marker, "aud": "aud", "exp": 9_999_999_999}
        token = f"{b64({'alg': 'RS256', 'kid': 'k1'})}.{b64(claims)}.AAAA"
        answer = requests.post(srv.url + "/", data={
            "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": role,
            "RoleSessionName": f"s{i}", "WebIdentityToken": token})
        assert answer.status_code == 400 and "InvalidIdentityToken" in answer.text
    trail = srv.any_client("cloudtrail")
    events, token = [], None
    while True:
        page = trail.lookup_events(
            LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "AssumeRoleWithWebIdentity"}],
            **({"NextToken": token} if token else {}))
        events += [e for e in page["Events"] if marker in e["CloudTrailEvent"]]
        token = page.get("NextToken")
        if not token:
            break
    assert 1 <= len(events) <= 10
    assert "failed web identity" in srv.server.output_once_it_shows("failed web identity")


# ----------------- 07: an unreachable issuer is not fetched again for every unsigned call

def test_07_a_failed_key_fetch_is_not_repeated_for_every_forged_token(srv):
    """Each unsigned call naming a registered issuer whose keys could not be fetched fetched
    them again (up to 5 s each): anyone could make Coffer send requests to the issuer at the
    rate they send tokens. A failed fetch now waits 30 s before the next, as a refetch for an
    unknown key id does."""
    import base64
    import http.server
    import threading

    hits = []

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the handler's name is fixed)
            hits.append(self.path)
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    def b64(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        import requests

        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        srv.any_client("iam").create_open_id_connect_provider(
            Url=url, ClientIDList=["aud"], ThumbprintList=["d" * 40])
        for i in range(10):
            claims = {"iss": url, "sub": "s", "aud": "aud", "exp": 9_999_999_999}
            token = f"{b64({'alg': 'RS256', 'kid': f'k{i}'})}.{b64(claims)}.AAAA"
            answer = requests.post(srv.url + "/", data={
                "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/r8-unreachable", "RoleSessionName": f"s{i}",
                "WebIdentityToken": token})
            assert answer.status_code == 400 and "IDPCommunicationError" in answer.text
        assert len(hits) == 1
    finally:
        httpd.shutdown()
