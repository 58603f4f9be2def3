"""Regression tests for attack 16: an adversarial review of Coffer's older surfaces
(replication, old versions under other keys, KMS grants, BatchGetSecretValue, rotation,
the trail), asking of every route to a secret's value what a caller denied one route can
do by another. Findings are `test_NN_*` (each seen failing before its fix), what held
`test_held_*`.

Each test drives the real binary through boto3: an enforcing server whose users and
policies are made through the IAM API.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from conftest import REGION
from iam_api_support import Server

# The helpers of review 15's tests (same server shape, same users and clients); the
# `account` fixture there reads this module's `srv`.
from test_sec_review15 import account, allow, client, error, uname, user  # noqa: F401

WEST = "us-west-2"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, runner):
    data = tmp_path_factory.mktemp("attack16")
    server = Server(data, extra=["--quota-scale", "100", "--lambda-endpoint", runner.url])
    yield server
    server.server.stop()


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def on_one_key(usable_key: str, *more: dict) -> str:
    """Every Secrets Manager call, and KMS on `usable_key` only: the keys that seal the
    secrets below are not it."""
    return policy(
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "kms:*", "Resource": usable_key}, *more)


def replicated_under_keys_the_caller_may_not_use(srv, value: str) -> tuple[str, str]:
    """A secret sealed under a customer managed key, replicated to WEST under another:
    (primary ARN, replica ARN)."""
    primary_key = client(srv, "kms").create_key()["KeyMetadata"]["Arn"]
    replica_key = client(srv, "kms", region=WEST).create_key()["KeyMetadata"]["Arn"]
    made = client(srv, "secretsmanager").create_secret(
        Name=uname("a16-rep"), SecretString=value, KmsKeyId=primary_key,
        AddReplicaRegions=[{"Region": WEST, "KmsKeyId": replica_key}])
    assert made["ReplicationStatus"][0]["Status"] == "InSync"
    return made["ARN"], made["ARN"].replace(f":{REGION}:", f":{WEST}:")


# --------------------- 01: a failed re-key of a replica was carried out by the next write

def test_01_a_refused_replica_key_change_is_not_carried_out_by_a_later_write(srv):
    """ReplicateSecretToRegions naming a new key for an existing replica re-seals its
    versions with the caller's permissions: a caller who may not decrypt the primary's
    key gets a `Failed` replica status. But the new key was recorded with that status, and
    the next write on the primary (any caller's, the same caller's TagResource) brought the
    replica in step without a caller's permissions, re-sealing every labelled version
    under the key the refused caller named: the replica then answered GetSecretValue with
    the value that caller was denied on both keys."""
    primary, replica = replicated_under_keys_the_caller_may_not_use(srv, "a16-01-value")
    mine = client(srv, "kms", region=WEST).create_key()["KeyMetadata"]["Arn"]
    _, key = user(srv, on_one_key(mine), prefix="a16")
    sm = client(srv, "secretsmanager", key)
    sm_west = client(srv, "secretsmanager", key, region=WEST)
    assert error(lambda: sm.get_secret_value(SecretId=primary))[0] == "AccessDeniedException"
    assert error(lambda: sm_west.get_secret_value(SecretId=replica))[0] == "AccessDeniedException"

    status = sm.replicate_secret_to_regions(
        SecretId=primary, AddReplicaRegions=[{"Region": WEST, "KmsKeyId": mine}])
    assert status["ReplicationStatus"][0]["Status"] == "Failed"
    sm.tag_resource(SecretId=primary, Tags=[{"Key": "touched", "Value": "yes"}])
    client(srv, "secretsmanager").put_secret_value(SecretId=primary, SecretString="a16-01-next")

    code, message = error(lambda: sm_west.get_secret_value(SecretId=replica))
    assert code == "AccessDeniedException", message
    code, message = error(lambda: sm_west.get_secret_value(
        SecretId=replica, VersionStage="AWSPREVIOUS"))
    assert code == "AccessDeniedException", message
    # The replica stays under the key its owner chose, and says so.
    described = client(srv, "secretsmanager").describe_secret(SecretId=primary)
    assert described["ReplicationStatus"][0]["KmsKeyId"] != mine
    assert client(srv, "secretsmanager", region=WEST).get_secret_value(
        SecretId=replica)["SecretString"] == "a16-01-next"


# ------------- 02, 03: rotation copied a value sealed under a key the caller may not use

def rotation_policy(usable_key: str) -> str:
    """As `on_one_key`, and rotation by any function."""
    return on_one_key(usable_key, {"Effect": "Allow", "Action": "lambda:InvokeFunction",
                                   "Resource": "*"})


def builtin(account: str, name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{account}:function:{name}"


def current_under_an_old_key(srv, first: str) -> tuple[str, str, str]:
    """A secret whose first value (`first`) was sealed under a key later replaced by
    UpdateSecret's KmsKeyId: the labelled versions are re-encrypted under the new key, the
    first, deprecated by then, stays under the old. (ARN, first version, new key)."""
    kms = client(srv, "kms")
    old_key = kms.create_key()["KeyMetadata"]["Arn"]
    new_key = kms.create_key()["KeyMetadata"]["Arn"]
    sm = client(srv, "secretsmanager")
    made = sm.create_secret(Name=uname("a16-rot"), SecretString=first, KmsKeyId=old_key)
    sm.put_secret_value(SecretId=made["ARN"], SecretString='{"password": "p2", "apiKey": "second"}')
    sm.put_secret_value(SecretId=made["ARN"], SecretString='{"password": "p3", "apiKey": "third"}')
    sm.update_secret(SecretId=made["ARN"], KmsKeyId=new_key)
    return made["ARN"], made["VersionId"], new_key


def label_current(sm, arn: str, version_id: str) -> None:
    """Moves AWSCURRENT onto `version_id` (UpdateSecretVersionStage needs no KMS key)."""
    versions = sm.list_secret_version_ids(SecretId=arn)["Versions"]
    current = next(v["VersionId"] for v in versions if "AWSCURRENT" in v["VersionStages"])
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT",
                                   MoveToVersionId=version_id, RemoveFromVersionId=current)


def values_readable(sm, arn: str) -> list[str]:
    """Every value of the secret `sm`'s caller can read, by version id."""
    versions = sm.list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)["Versions"]
    readable = []
    for version in versions:
        try:
            readable.append(sm.get_secret_value(
                SecretId=arn, VersionId=version["VersionId"])["SecretString"])
        except Exception as e:  # noqa: BLE001 - a refusal is the expected answer
            if "AccessDenied" not in str(e) and "ResourceNotFound" not in str(e):
                raise
    return readable


def rotation_outcome(srv, arn: str) -> str:
    """The name of the first RotationSucceeded or RotationFailed event of `arn` (a deadline
    for a background step, not a timing)."""
    trail = client(srv, "cloudtrail")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = trail.lookup_events(LookupAttributes=[
            {"AttributeKey": "ResourceName", "AttributeValue": arn}])["Events"]
        ended = [e["EventName"] for e in events
                 if e["EventName"] in ("RotationSucceeded", "RotationFailed")]
        if ended:
            return ended[-1]
        time.sleep(0.05)
    raise AssertionError(f"the rotation of {arn} did not end")


def test_02_a_built_in_rotation_does_not_copy_a_value_under_another_key(srv, account):
    """The built-in rotators open AWSCURRENT as the service and seal the new value, built
    from it (random-password keeps every member of a JSON value but `password`), under the
    secret's key. A caller who may not decrypt a version's key (one left under the key a
    KmsKeyId change replaced) labelled that version AWSCURRENT (UpdateSecretVersionStage
    needs no key) and rotated: the new AWSCURRENT, under a key the caller may use, carried
    the old version's other members."""
    first = '{"password": "p1", "apiKey": "a16-02-old-api-key"}'
    arn, first_version, new_key = current_under_an_old_key(srv, first)
    _, key = user(srv, rotation_policy(new_key), prefix="a16")
    sm = client(srv, "secretsmanager", key)
    code, _ = error(lambda: sm.get_secret_value(SecretId=arn, VersionId=first_version))
    assert code == "AccessDeniedException"
    label_current(sm, arn, first_version)
    sm.rotate_secret(SecretId=arn, RotationLambdaARN=builtin(account, "coffer-builtin-random-password"),
                     RotationRules={"AutomaticallyAfterDays": 30})
    # The rotation's first attempt ends in RotationSucceeded, or in RotationFailed when the
    # rotator refuses (it is then retried, and refused again).
    assert rotation_outcome(srv, arn) in ("RotationSucceeded", "RotationFailed")
    assert not any("a16-02-old-api-key" in v for v in values_readable(sm, arn))


class HeldTest:
    """A rotation function whose testSecret step waits until the test lets it go: the
    AWSPENDING version RotateImmediately=false makes lives until that step ends."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, event, context):
        if event["Step"] == "testSecret":
            self.entered.set()
            self.release.wait(30)
        return {}


def test_03_rotate_immediately_false_does_not_copy_a_value_the_caller_may_not_read(srv, runner, account):
    """RotateSecret with RotateImmediately=false copies AWSCURRENT into the new AWSPENDING
    version (the function's testSecret runs on the current value) and sealed the copy under
    the secret's key without asking whether the caller may decrypt AWSCURRENT's: with
    AWSCURRENT on a version under a key the caller may not use, the copy was readable as
    AWSPENDING for as long as the test step ran."""
    first = '{"password": "p1", "apiKey": "a16-03-old-api-key"}'
    arn, first_version, new_key = current_under_an_old_key(srv, first)
    _, key = user(srv, rotation_policy(new_key), prefix="a16")
    sm = client(srv, "secretsmanager", key)
    label_current(sm, arn, first_version)
    held = HeldTest()
    runner.functions["a16-held-test"] = held
    try:
        code, message = error(lambda: sm.rotate_secret(
            SecretId=arn, RotationLambdaARN=f"arn:aws:lambda:{REGION}:{account}:function:a16-held-test",
            RotateImmediately=False, RotationRules={"AutomaticallyAfterDays": 30}))
        assert code == "AccessDeniedException", message
        assert not held.entered.is_set()
        assert not any("a16-03-old" in v for v in values_readable(sm, arn))
        # Nothing was stored: no AWSPENDING version.
        described = client(srv, "secretsmanager").describe_secret(SecretId=arn)
        assert not any("AWSPENDING" in s for s in described["VersionIdsToStages"].values())
    finally:
        held.release.set()


def test_held_rotate_immediately_false_copies_for_a_caller_who_may_read(srv, runner, account):
    """The copy is still made for a caller allowed on both keys (the test step sees it)."""
    first = '{"password": "p1", "apiKey": "a16-03-held"}'
    arn, first_version, new_key = current_under_an_old_key(srv, first)
    sm = client(srv, "secretsmanager")
    label_current(sm, arn, first_version)
    held = HeldTest()
    runner.functions["a16-held-test-2"] = held
    try:
        token = sm.rotate_secret(
            SecretId=arn, RotationLambdaARN=f"arn:aws:lambda:{REGION}:{account}:function:a16-held-test-2",
            RotateImmediately=False, RotationRules={"AutomaticallyAfterDays": 30})["VersionId"]
        assert held.entered.wait(30)
        pending = sm.get_secret_value(SecretId=arn, VersionStage="AWSPENDING")
        assert pending["VersionId"] == token and pending["SecretString"] == first
    finally:
        held.release.set()


# ------------------------------------------------------------------------- what held

def test_held_a_version_under_a_replaced_key_needs_that_key_on_every_route(srv):
    """A version left under the key a KmsKeyId change replaced opens only for a caller
    allowed on that key: by VersionId, by a label moved onto it, in a batch, by
    UpdateSecret re-encrypting it, and by replicating it to a new region."""
    arn, first_version, new_key = current_under_an_old_key(srv, '{"apiKey": "a16-held-old"}')
    _, key = user(srv, on_one_key(new_key), prefix="a16")
    sm = client(srv, "secretsmanager", key)
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == '{"password": "p3", "apiKey": "third"}'
    assert error(lambda: sm.get_secret_value(SecretId=arn, VersionId=first_version))[0] == "AccessDeniedException"
    sm.update_secret_version_stage(SecretId=arn, VersionStage="MINE", MoveToVersionId=first_version)
    assert error(lambda: sm.get_secret_value(SecretId=arn, VersionStage="MINE"))[0] == "AccessDeniedException"
    label_current(sm, arn, first_version)
    batch = sm.batch_get_secret_value(SecretIdList=[arn])
    assert not batch["SecretValues"] and batch["Errors"][0]["ErrorCode"] == "AccessDeniedException"
    assert error(lambda: sm.update_secret(SecretId=arn, KmsKeyId=new_key))[0] == "AccessDeniedException"
    status = sm.replicate_secret_to_regions(SecretId=arn, AddReplicaRegions=[{"Region": WEST}])
    assert status["ReplicationStatus"][0]["Status"] == "Failed"
    replica = arn.replace(f":{REGION}:", f":{WEST}:")
    assert error(lambda: client(srv, "secretsmanager", key, region=WEST).get_secret_value(
        SecretId=replica))[0] == "ResourceNotFoundException"
    assert not any("a16-held-old" in v for v in values_readable(sm, arn))


def test_held_a_grant_constrained_to_one_secret_opens_that_secret_only(srv, account):
    """A grant of kms:Decrypt whose encryption context constraint names one secret's ARN
    opens that secret through Secrets Manager (its context is SecretARN and
    SecretVersionId), not another sealed under the same key, alone or in a batch; an
    EncryptionContextEquals naming only the ARN matches no secret's context."""
    kms = client(srv, "kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    sm = client(srv, "secretsmanager")
    one = sm.create_secret(Name=uname("a16-g1"), SecretString="one", KmsKeyId=key_id)["ARN"]
    other = sm.create_secret(Name=uname("a16-g2"), SecretString="other", KmsKeyId=key_id)["ARN"]
    name, key = user(srv, allow("secretsmanager:*"), prefix="a16")
    grantee = f"arn:aws:iam::{account}:user/{name}"
    kms.create_grant(KeyId=key_id, GranteePrincipal=grantee, Operations=["Decrypt"],
                     Constraints={"EncryptionContextEquals": {"SecretARN": other}})
    mine = client(srv, "secretsmanager", key)
    assert error(lambda: mine.get_secret_value(SecretId=other))[0] == "AccessDeniedException"
    kms.create_grant(KeyId=key_id, GranteePrincipal=grantee, Operations=["Decrypt"],
                     Constraints={"EncryptionContextSubset": {"SecretARN": one}})
    assert mine.get_secret_value(SecretId=one)["SecretString"] == "one"
    assert error(lambda: mine.get_secret_value(SecretId=other))[0] == "AccessDeniedException"
    batch = mine.batch_get_secret_value(SecretIdList=[one, other])
    assert [v["SecretString"] for v in batch["SecretValues"]] == ["one"]
    assert [e["SecretId"] for e in batch["Errors"]] == [other]


def test_held_grants_to_the_account_or_a_service_give_a_user_nothing(srv, account):
    """A grant whose grantee is the account (root ARN or number) or a service principal
    lets no IAM user of the account decrypt; wildcard grantees are refused."""
    kms = client(srv, "kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"a16")["CiphertextBlob"]
    _, key = user(srv, None, prefix="a16")
    theirs = client(srv, "kms", key)
    for grantee in (f"arn:aws:iam::{account}:root", account, "secretsmanager.amazonaws.com"):
        kms.create_grant(KeyId=key_id, GranteePrincipal=grantee, Operations=["Decrypt"])
        assert error(lambda: theirs.decrypt(CiphertextBlob=blob))[0] == "AccessDeniedException"
    for grantee in (f"arn:aws:iam::{account}:user/*", "*"):
        assert error(lambda: kms.create_grant(KeyId=key_id, GranteePrincipal=grantee,
                                              Operations=["Decrypt"]))[0] == "ValidationException"


def test_held_another_regions_arn_names_no_secret(srv):
    """A request signed for one region names no secret of another by its ARN (a replica
    or a standalone secret): each region's policies and keys decide its own secrets."""
    sm = client(srv, "secretsmanager")
    made = sm.create_secret(Name=uname("a16-x"), SecretString="v", AddReplicaRegions=[{"Region": WEST}])
    replica = made["ARN"].replace(f":{REGION}:", f":{WEST}:")
    standalone = client(srv, "secretsmanager", region=WEST).create_secret(
        Name=uname("a16-w"), SecretString="west")["ARN"]
    for arn in (replica, standalone):
        assert error(lambda: sm.get_secret_value(SecretId=arn))[0] == "ResourceNotFoundException"
        assert error(lambda: sm.describe_secret(SecretId=arn))[0] == "ResourceNotFoundException"
        batch = sm.batch_get_secret_value(SecretIdList=[arn])
        assert batch["Errors"][0]["ErrorCode"] == "ResourceNotFoundException"


def test_held_the_trail_keeps_no_grant_token_nor_data_key(srv):
    """CreateGrant's token and GenerateDataKey's plaintext key are answers, never in the
    trail: an account's LookupEvents reader cannot retire a grant or open a data key."""
    import base64

    kms = client(srv, "kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    grant = kms.create_grant(KeyId=key_id, GranteePrincipal=srv.client("sts").get_caller_identity()["Arn"],
                             Operations=["Decrypt"])
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    trail = client(srv, "cloudtrail")
    texts = []
    for name in ("CreateGrant", "GenerateDataKey"):
        events = trail.lookup_events(LookupAttributes=[
            {"AttributeKey": "EventName", "AttributeValue": name}])["Events"]
        assert events
        texts.extend(e["CloudTrailEvent"] for e in events)
    assert not any(grant["GrantToken"] in t for t in texts)
    assert not any(base64.b64encode(data_key["Plaintext"]).decode() in t for t in texts)


# ------------- 04: a replica's overwrite deleted a secret at once despite a Deny on that

NO_FORCED_DELETION = policy(
    {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
    # AWS's documented guard: secrets are deleted only with a recovery window.
    {"Effect": "Deny", "Action": "secretsmanager:DeleteSecret", "Resource": "*",
     "Condition": {"Bool": {"secretsmanager:ForceDeleteWithoutRecovery": "true"}}})


@pytest.mark.parametrize("route", ["replicate", "create"])
def test_04_overwriting_a_secret_with_a_replica_needs_deleting_it_at_once(srv, route):
    """ForceOverwriteReplicaSecret deletes the standalone secret of the replica's name in
    the replica region at once (no recovery window) and puts the replica, with the
    caller's value, under its name. The caller must be allowed to delete that secret, but
    was asked as if with a recovery window: a caller denied DeleteSecret with
    ForceDeleteWithoutRecovery destroyed the secret beyond recovery and replaced the value
    its readers get by name."""
    name = uname("a16-victim")
    client(srv, "secretsmanager", region=WEST).create_secret(Name=name, SecretString="precious")
    _, key = user(srv, NO_FORCED_DELETION, prefix="a16")
    sm = client(srv, "secretsmanager", key)
    code, _ = error(lambda: client(srv, "secretsmanager", key, region=WEST).delete_secret(
        SecretId=name, ForceDeleteWithoutRecovery=True))
    assert code == "AccessDeniedException"
    if route == "replicate":
        sm.create_secret(Name=name, SecretString="mine")
        code, message = error(lambda: sm.replicate_secret_to_regions(
            SecretId=name, AddReplicaRegions=[{"Region": WEST}], ForceOverwriteReplicaSecret=True))
        assert code == "AccessDeniedException", message
    else:
        code, message = error(lambda: sm.create_secret(
            Name=name, SecretString="mine", AddReplicaRegions=[{"Region": WEST}],
            ForceOverwriteReplicaSecret=True))
        assert code == "AccessDeniedException", message
    west = client(srv, "secretsmanager", region=WEST).get_secret_value(SecretId=name)
    assert west["SecretString"] == "precious"


def test_held_overwriting_with_a_replica_is_allowed_to_who_may_delete_at_once(srv):
    """A caller allowed to delete without recovery still overwrites (as on AWS)."""
    name = uname("a16-victim")
    client(srv, "secretsmanager", region=WEST).create_secret(Name=name, SecretString="old")
    _, key = user(srv, allow("secretsmanager:*"), prefix="a16")
    sm = client(srv, "secretsmanager", key)
    sm.create_secret(Name=name, SecretString="replacing")
    sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST}],
                                   ForceOverwriteReplicaSecret=True)
    west = client(srv, "secretsmanager", region=WEST).get_secret_value(SecretId=name)
    assert west["SecretString"] == "replacing"


# ------ 05: CreateSecret's tags and replicas did not need TagResource, ReplicateSecretToRegions

def test_05_create_secret_with_replicas_needs_replicate_secret_to_regions(srv):
    """AWS: "To add replica Regions, you must also have
    secretsmanager:ReplicateSecretToRegions". A Deny on replication (here of one Region,
    by `secretsmanager:AddReplicaRegions`, as a residency rule is written) held for
    ReplicateSecretToRegions but not for CreateSecret's AddReplicaRegions: the value was
    copied into the Region kept out."""
    no_west = policy(
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "secretsmanager:ReplicateSecretToRegions", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"secretsmanager:AddReplicaRegions": [WEST]}}})
    _, key = user(srv, no_west, prefix="a16")
    sm = client(srv, "secretsmanager", key)
    name = uname("a16-05")
    code, message = error(lambda: sm.create_secret(
        Name=name, SecretString="stays-east", AddReplicaRegions=[{"Region": WEST}]))
    assert code == "AccessDeniedException", message
    assert "secretsmanager:ReplicateSecretToRegions" in message
    code, _ = error(lambda: client(srv, "secretsmanager", region=WEST).describe_secret(SecretId=name))
    assert code == "ResourceNotFoundException"
    # Only CreateSecret allowed: replicas need the replication permission as well.
    _, key = user(srv, allow("secretsmanager:CreateSecret"), prefix="a16")
    code, _ = error(lambda: client(srv, "secretsmanager", key).create_secret(
        Name=uname("a16-05b"), SecretString="v", AddReplicaRegions=[{"Region": WEST}]))
    assert code == "AccessDeniedException"


def test_05_create_secret_with_tags_needs_tag_resource(srv):
    """AWS: "If you include tags in the secret, you also need secretsmanager:TagResource".
    A Deny on TagResource for a tag key (the guard of ABAC on that key) did not hold for
    the tags a secret is created with."""
    guarded = policy(
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "secretsmanager:TagResource", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["classification"]}}})
    _, key = user(srv, guarded, prefix="a16")
    sm = client(srv, "secretsmanager", key)
    code, message = error(lambda: sm.create_secret(
        Name=uname("a16-05c"), SecretString="v",
        Tags=[{"Key": "classification", "Value": "public"}]))
    assert code == "AccessDeniedException", message
    # Other tags, and no tags, are still created.
    sm.create_secret(Name=uname("a16-05d"), SecretString="v", Tags=[{"Key": "team", "Value": "a"}])
    sm.create_secret(Name=uname("a16-05e"), SecretString="v")
    _, key = user(srv, allow("secretsmanager:CreateSecret"), prefix="a16")
    only_create = client(srv, "secretsmanager", key)
    code, _ = error(lambda: only_create.create_secret(
        Name=uname("a16-05f"), SecretString="v", Tags=[{"Key": "team", "Value": "a"}]))
    assert code == "AccessDeniedException"
    only_create.create_secret(Name=uname("a16-05g"), SecretString="v")


# ------------------------ 06: ValidateResourcePolicy did not need PutResourcePolicy

def test_06_validate_resource_policy_needs_put_resource_policy(srv):
    """AWS: "secretsmanager:ValidateResourcePolicy and secretsmanager:PutResourcePolicy".
    A caller without PutResourcePolicy had policies checked against a secret (whether
    they grant broad access to it) that it may not give one."""
    arn = client(srv, "secretsmanager").create_secret(Name=uname("a16-06"), SecretString="v")["ARN"]
    document = policy({"Effect": "Allow", "Principal": {"AWS": "*"},
                       "Action": "secretsmanager:GetSecretValue", "Resource": "*"})
    _, key = user(srv, allow("secretsmanager:ValidateResourcePolicy"), prefix="a16")
    sm = client(srv, "secretsmanager", key)
    code, message = error(lambda: sm.validate_resource_policy(SecretId=arn, ResourcePolicy=document))
    assert code == "AccessDeniedException" and "secretsmanager:PutResourcePolicy" in message
    code, _ = error(lambda: sm.validate_resource_policy(ResourcePolicy=document))
    assert code == "AccessDeniedException"
    _, key = user(srv, allow(["secretsmanager:ValidateResourcePolicy",
                              "secretsmanager:PutResourcePolicy"]), prefix="a16")
    answer = client(srv, "secretsmanager", key).validate_resource_policy(
        SecretId=arn, ResourcePolicy=document)
    assert answer["PolicyValidationPassed"] is False


# ------------------------------------ 07: CreateKey with Tags did not need kms:TagResource

def test_07_create_key_with_tags_needs_tag_resource(srv):
    """AWS: CreateKey needs "kms:CreateKey (IAM policy). To use the Tags parameter,
    kms:TagResource (IAM policy)", as ReplicateKey's replica already did here. A Deny on
    tagging a key with a tag key (ABAC's guard: the tag that names a key's owner) did not
    hold for the tags a key is created with."""
    guarded = policy(
        {"Effect": "Allow", "Action": ["kms:CreateKey", "kms:TagResource"], "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:TagResource", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["owner"]}}})
    _, key = user(srv, guarded, prefix="a16")
    kms = client(srv, "kms", key)
    code, message = error(lambda: kms.create_key(Tags=[{"TagKey": "owner", "TagValue": "me"}]))
    assert code == "AccessDeniedException" and "kms:TagResource" in message, message
    kms.create_key(Tags=[{"TagKey": "team", "TagValue": "a"}])
    _, key = user(srv, allow("kms:CreateKey"), prefix="a16")
    only_create = client(srv, "kms", key)
    code, _ = error(lambda: only_create.create_key(Tags=[{"TagKey": "team", "TagValue": "a"}]))
    assert code == "AccessDeniedException"
    only_create.create_key()


def test_held_a_promoted_replica_keeps_the_resource_policy_that_denies(srv, account):
    """A caller denied reading a secret by its resource policy, and allowed everything
    else, promotes its replica (StopReplicationToReplica): the standalone secret keeps the
    policy, and the Deny."""
    name, key = user(srv, allow("secretsmanager:*"), prefix="a16")
    sm = client(srv, "secretsmanager")
    arn = sm.create_secret(Name=uname("a16-promote"), SecretString="guarded",
                           AddReplicaRegions=[{"Region": WEST}])["ARN"]
    sm.put_resource_policy(SecretId=arn, ResourcePolicy=policy(
        {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{account}:user/{name}"},
         "Action": "secretsmanager:GetSecretValue", "Resource": "*"}))
    replica = arn.replace(f":{REGION}:", f":{WEST}:")
    west = client(srv, "secretsmanager", key, region=WEST)
    assert error(lambda: west.get_secret_value(SecretId=replica))[0] == "AccessDeniedException"
    west.stop_replication_to_replica(SecretId=replica)
    code, message = error(lambda: west.get_secret_value(SecretId=replica))
    assert code == "AccessDeniedException" and "resource-based policy" in message
