"""Who sees what in the trail (issue 21 finding 18, issue 23 finding 5).

- A bad signature made with a real access key id leaves a CloudTrail event in the trail of the
  key owner's account (InvalidSignatureException, naming the key and its user) and one
  rate-limited warning line in the server log, with no secret material.
- A call another account makes on a secret through its resource policy is recorded in both
  accounts' trails, with one event id; the owner's copy says it was delivered to the owner.
"""

from __future__ import annotations

import configparser
import json
import os

import pytest

from conftest import start_server
from test_auth import PARTNER_ACCOUNT, PROFILE, Secured, expect

OWNER = "000000000000"
WARNING = "failed signature"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def secured(request, tmp_path_factory):
    """An enforcing server on SQLite, then on PostgreSQL (where `coffer admin` finds the store
    through COFFER_STORE)."""
    if request.param == "sqlite":
        srv = Secured(tmp_path_factory.mktemp("delivery"))
        yield srv
        srv.server.stop()
        return
    from test_backup_restore import Postgres

    postgres = Postgres()
    url = postgres.create_database()
    previous = os.environ.get("COFFER_STORE")
    os.environ["COFFER_STORE"] = url
    data_dir = tmp_path_factory.mktemp("delivery-pg")
    srv = Secured.__new__(Secured)
    srv.data_dir = data_dir
    srv.server = start_server(["serve", "--data-dir", str(data_dir), "--store", url, "--listen", "127.0.0.1:0"])
    srv.url = srv.server.url
    srv.credentials_file = data_dir / "admin-credentials"
    parsed = configparser.ConfigParser()
    parsed.read(srv.credentials_file)
    srv.admin_key = (parsed[PROFILE]["aws_access_key_id"], parsed[PROFILE]["aws_secret_access_key"])
    try:
        yield srv
    finally:
        srv.server.stop()
        if previous is None:
            os.environ.pop("COFFER_STORE", None)
        else:
            os.environ["COFFER_STORE"] = previous
        postgres.stop()


def events(secured: Secured, key: tuple[str, str], **attribute) -> list[dict]:
    trail = secured.client(key, service="cloudtrail")
    [(name, value)] = attribute.items()
    found = trail.lookup_events(LookupAttributes=[{"AttributeKey": name, "AttributeValue": value}],
                                MaxResults=50)["Events"]
    return [json.loads(e["CloudTrailEvent"]) for e in found]


def test_a_bad_signature_for_a_known_key_is_audited_and_logged_once(secured):
    # The administrator's key: `coffer admin` (which makes other users) works on SQLite only.
    reader_key = secured.admin_key
    wrong_secret = "x" * 40
    forged = secured.client((reader_key[0], wrong_secret))
    for _ in range(3):
        expect(forged.list_secrets, "InvalidSignatureException")
    expect(secured.client((reader_key[0], wrong_secret), service="kms").list_keys, "InvalidSignatureException")
    expect(secured.client((reader_key[0], wrong_secret), service="cloudtrail").lookup_events,
           "InvalidSignatureException")
    expect(secured.client((reader_key[0], wrong_secret), service="sts").get_caller_identity,
           "SignatureDoesNotMatch")

    found = events(secured, secured.admin_key, AccessKeyId=reader_key[0])
    failed = [e for e in found if e.get("errorCode") in ("InvalidSignatureException", "SignatureDoesNotMatch")]
    assert [(e["eventSource"].split(".")[0], e["eventName"]) for e in failed] == [
        ("sts", "GetCallerIdentity"), ("cloudtrail", "LookupEvents"), ("kms", "ListKeys"),
        ("secretsmanager", "ListSecrets"), ("secretsmanager", "ListSecrets"), ("secretsmanager", "ListSecrets"),
    ], found
    for e in failed:
        who = e["userIdentity"]
        assert who["type"] == "IAMUser"
        assert who["accessKeyId"] == reader_key[0]
        assert who["userName"] == "admin"
        assert who["arn"] == f"arn:aws:iam::{OWNER}:user/admin"
        assert who["accountId"] == OWNER
        assert e["recipientAccountId"] == OWNER
        assert e["sourceIPAddress"] == "127.0.0.1"
        assert e.get("requestParameters") is None
    assert failed[0]["errorCode"] == "SignatureDoesNotMatch"
    assert all(e["errorCode"] == "InvalidSignatureException" for e in failed[1:])

    out = secured.server.output_once_it_shows(WARNING)
    lines = [line for line in out.splitlines() if WARNING in line]
    # One line per key per interval, however many failures.
    assert len(lines) == 1, lines
    assert "WARN" in lines[0] and reader_key[0] in lines[0] and "user/admin" in lines[0], lines
    assert reader_key[1] not in out and wrong_secret not in out
    assert "Signature=" not in lines[0]


def test_an_unknown_key_leaves_no_event_in_any_trail(secured):
    before = events(secured, secured.admin_key, AccessKeyId="AKIAUNKNOWNUNKNOWN00")
    forged = secured.client(("AKIAUNKNOWNUNKNOWN00", "x" * 40))
    expect(forged.list_secrets, "UnrecognizedClientException")
    assert events(secured, secured.admin_key, AccessKeyId="AKIAUNKNOWNUNKNOWN00") == before == []


def test_a_cross_account_read_is_in_both_trails(secured):
    admin = secured.admin()
    # Reads across accounts need a customer managed key the partner may decrypt with.
    key_policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OWNER}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PARTNER_ACCOUNT}:root"},
         "Action": "kms:Decrypt", "Resource": "*"}]}
    shared_key = secured.client(secured.admin_key, service="kms").create_key(
        Policy=json.dumps(key_policy))["KeyMetadata"]["Arn"]
    arn = admin.create_secret(Name="shared/both-trails", SecretString="for-partners",
                              KmsKeyId=shared_key)["ARN"]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": PARTNER_ACCOUNT},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    admin.put_resource_policy(SecretId="shared/both-trails", ResourcePolicy=json.dumps(policy),
                              BlockPublicPolicy=True)
    partner_key = secured.user("trailpartner", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": f"arn:aws:secretsmanager:us-east-1:{OWNER}:secret:shared/*"},
        {"Effect": "Allow", "Action": "cloudtrail:LookupEvents", "Resource": "*"},
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": shared_key}]},
        account=PARTNER_ACCOUNT)
    partner = secured.client(partner_key)
    assert partner.get_secret_value(SecretId=arn)["SecretString"] == "for-partners"

    owners = [e for e in events(secured, secured.admin_key, ResourceName=arn)
              if e["eventName"] == "GetSecretValue"]
    assert len(owners) == 1, owners
    partners = [e for e in events(secured, partner_key, ResourceName=arn) if e["eventName"] == "GetSecretValue"]
    assert len(partners) == 1, partners
    owner_copy, partner_copy = owners[0], partners[0]
    assert owner_copy["eventID"] == partner_copy["eventID"]
    assert owner_copy["requestID"] == partner_copy["requestID"]
    assert owner_copy["recipientAccountId"] == OWNER
    assert partner_copy["recipientAccountId"] == PARTNER_ACCOUNT
    for e in (owner_copy, partner_copy):
        assert e["userIdentity"]["accountId"] == PARTNER_ACCOUNT
        assert e["userIdentity"]["userName"] == "trailpartner"
        assert e["resources"][0]["accountId"] == OWNER
        assert "errorCode" not in e
    # The owner's trail also finds it by the caller's access key.
    assert any(e["eventID"] == owner_copy["eventID"]
               for e in events(secured, secured.admin_key, AccessKeyId=partner_key[0]))
