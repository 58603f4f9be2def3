"""Regression tests for the authorization bypasses around KMS keys and secret values.

Each test reproduces a finding of the outside reviews against an enforcing server with real
signed requests (boto3): the key that sealed a value decides who may open it, whatever route
the caller takes (KMS Decrypt without KeyId, ReEncrypt, an alias moved, an old version, a
batch, a replayed ClientRequestToken, a change of KmsKeyId).

Users, as in the review:
- admin: AdministratorAccess.
- smonly: Get/Update/Describe on ``secret:kms/*``; no kms permission at all.
- kmsuser: Get/Describe on ``secret:kms/*``; identity policy ``kms:*`` on ``*``.
- K1: a key whose key policy allows only ``user/admin``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest

from conftest import REGION
from test_auth import ADMIN_ARN, PARTNER_ACCOUNT, Secured, expect

ACCOUNT = "000000000000"
KMS_SECRETS = f"arn:aws:secretsmanager:*:{ACCOUNT}:secret:kms/*"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # AWS's request quotas are not what these tests examine: at its default scale the
    # server throttled this file's KMS control calls on a fast CI run (CreateAlias).
    srv = Secured(tmp_path_factory.mktemp("kmsauthz"), ["--quota-scale", "100"])
    admin_kms = srv.client(srv.admin_key, service="kms")
    k1_policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "kms:*", "Resource": "*"}]}
    k1 = admin_kms.create_key(Policy=json.dumps(k1_policy))["KeyMetadata"]["Arn"]
    smonly = srv.user("smonly", {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue", "secretsmanager:UpdateSecret",
                   "secretsmanager:DescribeSecret", "secretsmanager:PutSecretValue"],
        "Resource": KMS_SECRETS}]})
    kmsuser = srv.user("kmsuser", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
                                       "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                                       "secretsmanager:BatchGetSecretValue"],
         "Resource": "*"},
        {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue",
         "Resource": f"arn:aws:secretsmanager:*:{ACCOUNT}:secret:other/*"},
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})
    yield {"srv": srv, "k1": k1, "smonly": smonly, "kmsuser": kmsuser}
    srv.server.stop()


def clients(world, who: str):
    srv = world["srv"]
    return srv.client(world[who]), srv.client(world[who], service="kms")


def own_key(world) -> str:
    """A key kmsuser made itself (default key policy: its identity policy decides)."""
    _, kms = clients(world, "kmsuser")
    return kms.create_key()["KeyMetadata"]["Arn"]


# ---- finding 1: KMS Decrypt without KeyId, ReEncrypt, aliases ---------------------------------


def test_decrypt_without_key_id_is_authorized_on_the_key_the_blob_names(world):
    admin_kms = world["srv"].client(world["srv"].admin_key, service="kms")
    blob = admin_kms.encrypt(KeyId=world["k1"], Plaintext=b"k1-only")["CiphertextBlob"]
    _, kms = clients(world, "kmsuser")
    expect(kms.decrypt, "AccessDeniedException", CiphertextBlob=blob, KeyId=world["k1"])
    expect(kms.decrypt, "AccessDeniedException", CiphertextBlob=blob)
    assert admin_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"k1-only"


def test_reencrypt_needs_reencrypt_from_on_the_source_key(world):
    admin_kms = world["srv"].client(world["srv"].admin_key, service="kms")
    blob = admin_kms.encrypt(KeyId=world["k1"], Plaintext=b"k1-only")["CiphertextBlob"]
    mine = own_key(world)
    _, kms = clients(world, "kmsuser")
    expect(kms.re_encrypt, "AccessDeniedException", CiphertextBlob=blob, DestinationKeyId=mine)
    # Its own blobs still move between its own keys.
    other = own_key(world)
    own_blob = kms.encrypt(KeyId=mine, Plaintext=b"mine")["CiphertextBlob"]
    moved = kms.re_encrypt(CiphertextBlob=own_blob, DestinationKeyId=other)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=moved)["Plaintext"] == b"mine"


def test_an_identity_deny_on_the_key_applies_when_key_id_is_omitted(world):
    srv = world["srv"]
    admin_kms = srv.client(srv.admin_key, service="kms")
    k2 = admin_kms.create_key()["KeyMetadata"]["Arn"]
    blob = admin_kms.encrypt(KeyId=k2, Plaintext=b"k2")["CiphertextBlob"]
    denied = srv.user("denydecrypt", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": k2}]})
    kms = srv.client(denied, service="kms")
    expect(kms.decrypt, "AccessDeniedException", CiphertextBlob=blob)
    expect(kms.decrypt, "AccessDeniedException", CiphertextBlob=blob, KeyId=k2)


def test_alias_operations_are_authorized_on_the_alias_and_on_both_keys(world):
    srv = world["srv"]
    admin_kms = srv.client(srv.admin_key, service="kms")
    admin_kms.create_alias(AliasName="alias/k1-guarded", TargetKeyId=world["k1"])
    mine = own_key(world)
    _, kms = clients(world, "kmsuser")
    # Moving an alias away from a key needs kms:UpdateAlias on that key too.
    expect(kms.update_alias, "AccessDeniedException", AliasName="alias/k1-guarded", TargetKeyId=mine)
    expect(kms.delete_alias, "AccessDeniedException", AliasName="alias/k1-guarded")
    expect(kms.create_alias, "AccessDeniedException", AliasName="alias/onto-k1", TargetKeyId=world["k1"])
    target = admin_kms.describe_key(KeyId="alias/k1-guarded")["KeyMetadata"]["Arn"]
    assert target == world["k1"]
    # On its own keys every alias operation works.
    kms.create_alias(AliasName="alias/kmsuser-own", TargetKeyId=mine)
    kms.update_alias(AliasName="alias/kmsuser-own", TargetKeyId=own_key(world))
    kms.delete_alias(AliasName="alias/kmsuser-own")


# ---- finding 2: UpdateSecret off a customer managed key -----------------------------------------


def test_update_secret_off_a_key_needs_decrypt_on_the_old_key(world):
    srv = world["srv"]
    admin = srv.admin()
    admin.create_secret(Name="kms/s1", SecretString="sealed-under-k1", KmsKeyId=world["k1"])
    sm, _ = clients(world, "smonly")
    for key in ("", "alias/aws/secretsmanager"):
        expect(sm.update_secret, "AccessDeniedException", SecretId="kms/s1", KmsKeyId=key)
    expect(sm.get_secret_value, "AccessDeniedException", SecretId="kms/s1")
    assert admin.describe_secret(SecretId="kms/s1")["KmsKeyId"] == world["k1"]
    assert admin.get_secret_value(SecretId="kms/s1")["SecretString"] == "sealed-under-k1"


# ---- finding 3: an alias retargeted after the value was sealed ----------------------------------


def test_the_key_that_sealed_the_value_decides_not_the_alias_now(world):
    srv = world["srv"]
    admin = srv.admin()
    admin_kms = srv.client(srv.admin_key, service="kms")
    admin_kms.create_alias(AliasName="alias/k1-moving", TargetKeyId=world["k1"])
    admin.create_secret(Name="kms/s2", SecretString="k1-sealed", KmsKeyId="alias/k1-moving")
    admin_kms.update_alias(AliasName="alias/k1-moving", TargetKeyId=own_key(world))
    sm, _ = clients(world, "kmsuser")
    expect(sm.get_secret_value, "AccessDeniedException", SecretId="kms/s2")
    assert admin.get_secret_value(SecretId="kms/s2")["SecretString"] == "k1-sealed"


# ---- finding 4: versions left under an old key -------------------------------------------------


def test_a_version_left_under_an_old_key_needs_decrypt_on_that_key(world):
    srv = world["srv"]
    admin = srv.admin()
    first = str(uuid.uuid4())
    admin.create_secret(Name="kms/s3", SecretString="old-k1-value", KmsKeyId=world["k1"],
                        ClientRequestToken=first)
    admin.put_secret_value(SecretId="kms/s3", SecretString="v2")
    admin.put_secret_value(SecretId="kms/s3", SecretString="v3")
    admin.update_secret(SecretId="kms/s3", KmsKeyId=own_key(world))
    sm, _ = clients(world, "kmsuser")
    assert sm.get_secret_value(SecretId="kms/s3")["SecretString"] == "v3"
    expect(sm.get_secret_value, "AccessDeniedException", SecretId="kms/s3", VersionId=first)
    assert admin.get_secret_value(SecretId="kms/s3", VersionId=first)["SecretString"] == "old-k1-value"


# ---- finding 5 (evaluation part): unparsable stored policies deny, checked in unit tests --------


# ---- finding 8: BatchGetSecretValue ----------------------------------------------------------


def test_batch_get_authorizes_each_secret_before_reading_it(world):
    srv = world["srv"]
    admin = srv.admin()
    readable = admin.create_secret(Name="kms/batch-ok", SecretString="ok")["ARN"]
    admin.create_secret(Name="other/batch-denied", SecretString="hidden")
    sm, _ = clients(world, "kmsuser")
    got = sm.batch_get_secret_value(SecretIdList=["kms/batch-ok", "other/batch-denied", "other/batch-missing"])
    assert [v["ARN"] for v in got["SecretValues"]] == [readable]
    errors = {e["SecretId"]: e for e in got["Errors"]}
    assert set(errors) == {"other/batch-denied", "other/batch-missing"}
    for secret_id, error in errors.items():
        assert error["ErrorCode"] == "AccessDeniedException"
        # The message names the SecretId as given: it tells nothing of existence.
        assert f"on resource: {secret_id} " in error["Message"], error["Message"]
        assert "arn:aws:secretsmanager" not in error["Message"]
    # The denied secret was not read: no LastAccessedDate.
    assert "LastAccessedDate" not in admin.describe_secret(SecretId="other/batch-denied")
    assert "LastAccessedDate" in admin.describe_secret(SecretId="kms/batch-ok")


def test_batch_get_with_filters_needs_list_secrets(world):
    sm, _ = clients(world, "kmsuser")
    expect(sm.batch_get_secret_value, "AccessDeniedException",
           Filters=[{"Key": "name", "Values": ["other/"]}])


def test_batch_get_records_one_get_secret_value_event_per_secret_returned(world):
    srv = world["srv"]
    admin = srv.admin()
    arn = admin.create_secret(Name="kms/batch-audited", SecretString="a")["ARN"]
    sm, _ = clients(world, "kmsuser")
    sm.batch_get_secret_value(SecretIdList=["kms/batch-audited", "other/batch-denied"])
    trail = srv.client(srv.admin_key, service="cloudtrail")
    found = trail.lookup_events(LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": arn}])
    names = [e["EventName"] for e in found["Events"]]
    assert "GetSecretValue" in names, names
    denied = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName",
                                                    "AttributeValue": "GetSecretValue"}])
    for event in denied["Events"]:
        assert "other/batch-denied" not in json.dumps([r.get("ResourceName") for r in event.get("Resources", [])])


# ---- finding 12 and 19: the AWS managed key ----------------------------------------------------


def test_the_aws_managed_key_cannot_be_used_directly(world):
    srv = world["srv"]
    admin = srv.admin()
    made = admin.create_secret(Name="kms/default-keyed", SecretString="default-key-value")
    _, kms = clients(world, "kmsuser")
    meta = kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]
    assert meta["KeyManager"] == "AWS"
    expect(kms.encrypt, "AccessDeniedException", KeyId="alias/aws/secretsmanager", Plaintext=b"x")
    expect(kms.generate_data_key, "AccessDeniedException", KeyId="alias/aws/secretsmanager", KeySpec="AES_256")
    # A stored version's blob (as read from the data files) does not decrypt through the KMS API.
    db = sqlite3.connect(f"file:{srv.data_dir / 'coffer.db'}?mode=ro", uri=True)
    blob = db.execute("SELECT v.value FROM version_values v JOIN version_meta m ON m.value_id = v.id "
                      "WHERE m.version_id = ?", (made["VersionId"],)).fetchone()
    db.close()
    assert blob is not None
    context = {"SecretARN": made["ARN"], "SecretVersionId": made["VersionId"]}
    expect(kms.decrypt, "AccessDeniedException", CiphertextBlob=bytes(blob[0]), EncryptionContext=context)
    admin_kms = srv.client(srv.admin_key, service="kms")
    expect(admin_kms.decrypt, "AccessDeniedException", CiphertextBlob=bytes(blob[0]), EncryptionContext=context)
    # Through Secrets Manager it still opens.
    assert admin.get_secret_value(SecretId="kms/default-keyed")["SecretString"] == "default-key-value"


def test_cross_account_reads_need_a_customer_managed_key(world):
    srv = world["srv"]
    admin = srv.admin()
    admin_kms = srv.client(srv.admin_key, service="kms")
    shared_key = admin_kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PARTNER_ACCOUNT}:root"},
         "Action": "kms:Decrypt", "Resource": "*"}]}))["KeyMetadata"]["Arn"]
    default_arn = admin.create_secret(Name="xacct/default", SecretString="d")["ARN"]
    cmk_arn = admin.create_secret(Name="xacct/cmk", SecretString="c", KmsKeyId=shared_key)["ARN"]
    grant = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": PARTNER_ACCOUNT},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    for name in ("xacct/default", "xacct/cmk"):
        admin.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(grant))
    key = srv.user("xreader", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"},
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]}, account=PARTNER_ACCOUNT)
    partner = srv.client(key)
    assert partner.get_secret_value(SecretId=cmk_arn)["SecretString"] == "c"
    # AWS refuses a value the AWS managed key seals to every other account, with its own
    # answer (once the resource policy let the caller in): the value is never opened.
    expect(partner.get_secret_value, "InvalidRequestException",
           "You can't access a secret from a different AWS account if you encrypt the secret "
           "with the default KMS service key.", SecretId=default_arn)


# ---- finding 14: AccessDenied quotes the SecretId as given --------------------------------------


def test_access_denied_quotes_the_secret_id_as_given(world):
    srv = world["srv"]
    srv.admin().create_secret(Name="other/exists", SecretString="x")
    sm, _ = clients(world, "smonly")
    messages = []
    for secret_id in ("other/exists", "other/missing"):
        err = expect(sm.get_secret_value, "AccessDeniedException", SecretId=secret_id)
        message = err.response["Error"]["Message"]
        assert f"on resource: {secret_id} " in message, message
        messages.append(message.replace(secret_id, "<id>"))
    assert messages[0] == messages[1]


# ---- second review, finding 1: CreateSecret as a value oracle -----------------------------------


def test_a_replayed_token_is_compared_only_for_a_caller_who_may_read_it(world):
    srv = world["srv"]
    admin = srv.admin()
    version = str(uuid.uuid4())
    admin.create_secret(Name="other/pin", SecretString="1234", ClientRequestToken=version)
    sm, _ = clients(world, "kmsuser")
    answers = set()
    for guess in ("0000", "1234"):
        err = expect(sm.create_secret, "ResourceExistsException",
                     Name="other/pin", SecretString=guess, ClientRequestToken=version)
        answers.add(err.response["Error"]["Message"])
    # The right guess and a wrong one get the same answer: nothing was compared.
    assert len(answers) == 1, answers
    # The administrator, who may read it, still gets the idempotent answer.
    again = admin.create_secret(Name="other/pin", SecretString="1234", ClientRequestToken=version)
    assert again["VersionId"] == version


def test_put_secret_value_replay_is_compared_only_when_the_value_may_be_read(world):
    srv = world["srv"]
    admin = srv.admin()
    version = str(uuid.uuid4())
    admin.create_secret(Name="kms/pin-k1", SecretString="4321", KmsKeyId=world["k1"],
                        ClientRequestToken=version)
    sm, _ = clients(world, "smonly")
    answers = set()
    for guess in ("0000", "4321"):
        err = expect(sm.put_secret_value, "AccessDeniedException", SecretId="kms/pin-k1", SecretString=guess,
                     ClientRequestToken=version)
        answers.add(err.response["Error"]["Message"])
    assert len(answers) == 1, answers
    assert admin.get_secret_value(SecretId="kms/pin-k1")["SecretString"] == "4321"


# ---- third look (lead's review): kms condition keys, key oracles, the right context ----------


def test_kms_condition_keys_are_filled_in_so_their_denies_apply(world):
    srv = world["srv"]
    admin_kms = srv.client(srv.admin_key, service="kms")
    tagged = admin_kms.create_key(Tags=[{"TagKey": "class", "TagValue": "restricted"}])["KeyMetadata"]["Arn"]
    blob = admin_kms.encrypt(KeyId=tagged, Plaintext=b"restricted-data")["CiphertextBlob"]
    srv.admin().create_secret(Name="abac/s", SecretString="abac-secret", KmsKeyId=tagged)
    abac = srv.user("abac", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:*", "secretsmanager:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/class": "restricted"}}},
        {"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "tenant"}}},
        {"Effect": "Deny", "Action": "kms:ScheduleKeyDeletion", "Resource": "*",
         "Condition": {"NumericLessThan": {"kms:ScheduleKeyDeletionPendingWindowInDays": "30"}}},
        {"Effect": "Deny", "Action": ["kms:TagResource", "kms:CreateKey"], "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": "class"}}},
        {"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:RequestAlias": "alias/blocked"}}},
    ]})
    sm, kms = srv.client(abac), srv.client(abac, service="kms")
    expect(kms.decrypt, "AccessDeniedException", CiphertextBlob=blob)
    expect(kms.untag_resource, "AccessDeniedException", KeyId=tagged, TagKeys=["class"])
    expect(sm.get_secret_value, "AccessDeniedException", SecretId="abac/s")
    mine = kms.create_key()["KeyMetadata"]["Arn"]
    kms.encrypt(KeyId=mine, Plaintext=b"x", EncryptionContext={"app": "a"})
    expect(kms.encrypt, "AccessDeniedException", KeyId=mine, Plaintext=b"x", EncryptionContext={"tenant": "t"})
    expect(kms.schedule_key_deletion, "AccessDeniedException", KeyId=mine, PendingWindowInDays=7)
    expect(kms.tag_resource, "AccessDeniedException", KeyId=mine, Tags=[{"TagKey": "class", "TagValue": "x"}])
    expect(kms.create_key, "AccessDeniedException", Tags=[{"TagKey": "class", "TagValue": "x"}])
    kms.create_alias(AliasName="alias/blocked", TargetKeyId=mine)
    expect(kms.encrypt, "AccessDeniedException", KeyId="alias/blocked", Plaintext=b"x")
    kms.encrypt(KeyId=mine, Plaintext=b"x")


def test_a_key_policy_on_the_secret_arn_in_the_encryption_context_applies(world):
    srv = world["srv"]
    admin_kms = srv.client(srv.admin_key, service="kms")
    key = admin_kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/kmsuser"}, "Action": "kms:Decrypt",
         "Resource": "*", "Condition": {"StringLike": {
             "kms:EncryptionContext:SecretARN": "arn:aws:secretsmanager:*:*:secret:kms/ec-prod*"}}}]}))["KeyMetadata"]["Arn"]
    admin = srv.admin()
    admin.create_secret(Name="kms/ec-prod", SecretString="prod-password", KmsKeyId=key)
    admin.create_secret(Name="kms/ec-dev", SecretString="dev-password", KmsKeyId=key)
    sm, _ = clients(world, "kmsuser")
    expect(sm.get_secret_value, "AccessDeniedException", SecretId="kms/ec-prod")
    assert sm.get_secret_value(SecretId="kms/ec-dev")["SecretString"] == "dev-password"


def test_naming_a_key_without_a_value_needs_describe_key_and_tells_nothing(world):
    srv = world["srv"]
    admin_kms = srv.client(srv.admin_key, service="kms")
    admin_kms.create_alias(AliasName="alias/k1-named", TargetKeyId=world["k1"])
    disabled = admin_kms.create_key()["KeyMetadata"]["Arn"]
    admin_kms.disable_key(KeyId=disabled)
    admin_kms.create_alias(AliasName="alias/disabled-named", TargetKeyId=disabled)
    only = srv.user("createonly", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:CreateSecret", "Resource": "*"}]})
    sm = srv.client(only)
    for n, alias in enumerate(["alias/k1-named", "alias/disabled-named", "alias/no-such-alias"]):
        err = expect(sm.create_secret, "AccessDeniedException", Name=f"kms/named-{n}", KmsKeyId=alias)
        message = err.response["Error"]["Message"]
        assert "disabled" not in message and "not found" not in message, message


def test_a_replayed_create_token_tells_a_caller_who_may_not_read_nothing(world):
    srv = world["srv"]
    version = str(uuid.uuid4())
    srv.admin().create_secret(Name="other/replayed", SecretString="x", ClientRequestToken=version)
    sm, _ = clients(world, "kmsuser")
    exists = "The operation failed because the secret other/replayed already exists."
    expect(sm.create_secret, "ResourceExistsException", exists,
           Name="other/replayed", SecretString="guess", ClientRequestToken=version)
    expect(sm.create_secret, "ResourceExistsException", exists,
           Name="other/replayed", SecretString="guess", ClientRequestToken=str(uuid.uuid4()))


def test_writes_decide_a_key_with_the_key_s_context_not_the_secret_s(world):
    srv = world["srv"]
    admin_kms = srv.client(srv.admin_key, service="kms")
    # The key policy AWS recommends for Secrets Manager: anyone of the account, through it.
    key = admin_kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
         "Resource": "*", "Condition": {"StringEquals": {
             "kms:CallerAccount": ACCOUNT, "kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}}}]}))["KeyMetadata"]["Arn"]
    srv.admin().create_secret(Name="kms/via", SecretString="v1", KmsKeyId=key)
    sm, _ = clients(world, "smonly")
    sm.put_secret_value(SecretId="kms/via", SecretString="v2")
    assert sm.get_secret_value(SecretId="kms/via")["SecretString"] == "v2"


def test_a_deny_on_the_key_s_aliases_applies_on_every_route(world):
    srv = world["srv"]
    admin_kms = srv.client(srv.admin_key, service="kms")
    key = admin_kms.create_key()["KeyMetadata"]["Arn"]
    admin_kms.create_alias(AliasName="alias/k6-guarded", TargetKeyId=key)
    blob = admin_kms.encrypt(KeyId=key, Plaintext=b"k6")["CiphertextBlob"]
    srv.admin().create_secret(Name="aliasdeny/s", SecretString="k6-secret", KmsKeyId=key)
    user = srv.user("aliasdeny", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:*", "secretsmanager:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:*", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/k6-guarded"}}}]})
    expect(srv.client(user, service="kms").decrypt, "AccessDeniedException", CiphertextBlob=blob)
    expect(srv.client(user).get_secret_value, "AccessDeniedException", SecretId="aliasdeny/s")
