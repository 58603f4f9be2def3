"""Regression tests for review 18: an adversarial review of the seventeenth session's changes
(SQLite batch members without savepoints and their rerun, PostgreSQL reads on the async
workers, a form's first value, authorization on an operation's own members, IAM tag keys
one key whatever their case, KMS's Accepts, the appender's single wake-up, PutSecretValue
authorizing its sealing key before moving labels). Findings are `test_NN_*` (each seen
failing before its fix), what held `test_held_*`.

Each test drives the real binary through boto3: an enforcing server whose users, roles and
policies are made through the IAM API.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import REGION
from iam_api_support import Server

# Review 15's helpers (same server shape); the `account` fixture there reads this `srv`.
from test_sec_review15 import account, client, error, uname, user  # noqa: F401
from test_trail16 import lookup


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("review18")
    server = Server(data, extra=["--quota-scale", "100"])
    yield server
    server.server.stop()


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


# ------------------- 01: a tag key IAM takes for a guarded key that no guardrail reads so

# Spellings IAM's case-blind comparison took for `restricted` (each character compared by
# its upper-case form too) that no case-blind policy comparison (lower-case forms) takes:
# LATIN SMALL LETTER LONG S (upper case `S`) and LATIN SMALL LETTER DOTLESS I (upper `I`).
SPELLINGS = ["re\u017ftricted", "restr\u0131cted"]


def restricted_user(srv, operator: str = "ForAnyValue:StringEqualsIgnoreCase"
                    ) -> tuple[str, tuple[str, str], str]:
    """A user tagged restricted=true, kept from a secret while so tagged, who may tag and
    untag itself but not its `restricted` key (a guardrail comparing keys without regard to
    case, as SECURITY.md advises); returns (name, key, secret id)."""
    iam, sm = srv.client("iam"), srv.client("secretsmanager")
    secret = sm.create_secret(Name=uname("r18-s"), SecretString="s3cret")["ARN"]
    guard = policy(
        {"Effect": "Allow", "Action": ["iam:TagUser", "iam:UntagUser", "iam:ListUserTags",
                                       "secretsmanager:GetSecretValue"], "Resource": "*"},
        {"Effect": "Deny", "Action": ["iam:TagUser", "iam:UntagUser"], "Resource": "*",
         "Condition": {operator: {"aws:TagKeys": ["restricted"]}}},
        {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalTag/restricted": "true"}}},
    )
    name, key = user(srv, guard, prefix="r18")
    iam.tag_user(UserName=name, Tags=[{"Key": "restricted", "Value": "true"}])
    return name, key, secret


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_01_a_guarded_tag_key_is_not_replaced_under_a_spelling_no_guardrail_matches(srv, spelling):
    """IAM compared a user's or role's tag keys character by character by their upper-case
    and lower-case forms (fidelity17), so `reſtricted` (long s) and `restrıcted` (dotless i)
    were the key `restricted` and replaced it, key and value; the policy engine compares
    keys without regard to case by their lower-case forms (`StringEqualsIgnoreCase`,
    `aws:TagKeys`' second reading, condition key names), in which they are other keys. A
    user kept from a secret by its `restricted=true` tag, and denied tagging that key,
    retagged itself `reſtricted=false`: the tag `restricted` was gone, and with it the Deny
    on `aws:PrincipalTag/restricted`."""
    name, key, secret = restricted_user(srv)
    mine, sm = client(srv, "iam", key), client(srv, "secretsmanager", key)
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    try:
        mine.tag_user(UserName=name, Tags=[{"Key": spelling, "Value": "false"}])
    except Exception:  # noqa: BLE001 - refused is as good: the guarded tag must stay
        pass
    tags = {t["Key"]: t["Value"] for t in srv.client("iam").list_user_tags(UserName=name)["Tags"]}
    assert tags.get("restricted") == "true", tags
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_01_a_guarded_tag_key_is_not_removed_under_a_spelling_no_guardrail_matches(srv, spelling):
    name, key, secret = restricted_user(srv)
    mine, sm = client(srv, "iam", key), client(srv, "secretsmanager", key)
    try:
        mine.untag_user(UserName=name, TagKeys=[spelling])
    except Exception:  # noqa: BLE001
        pass
    tags = {t["Key"]: t["Value"] for t in srv.client("iam").list_user_tags(UserName=name)["Tags"]}
    assert tags.get("restricted") == "true", tags
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"


@pytest.mark.parametrize("operator", ["ForAnyValue:StringEqualsIgnoreCase",
                                      "ForAnyValue:StringEquals"])
def test_held_the_guardrail_stops_every_case_of_the_guarded_key(srv, operator):
    """Spellings the policy engine folds to `restricted` are refused by the guardrail, and
    the tag stays: under `StringEqualsIgnoreCase`, and in Coffer under `StringEquals` too
    (`aws:TagKeys` is read a second time without regard to case, and a Deny applies on
    either reading)."""
    name, key, _ = restricted_user(srv, operator)
    mine = client(srv, "iam", key)
    for spelling in ["RESTRICTED", "Restricted", "rEsTrIcTeD"]:
        assert error(lambda: mine.tag_user(
            UserName=name, Tags=[{"Key": spelling, "Value": "false"}]))[0] == "AccessDenied"
        assert error(lambda: mine.untag_user(UserName=name, TagKeys=[spelling]))[0] == \
            "AccessDenied"
    tags = {t["Key"]: t["Value"] for t in srv.client("iam").list_user_tags(UserName=name)["Tags"]}
    assert tags == {"restricted": "true"}


# --------- 02: a nested member an operation does not take gave its authorization a value

def signed_json(srv, target: str, body: dict, key) -> requests.Response:
    """A signed JSON 1.1 call of `target` with exactly this body (members the operation
    does not take included, which boto3 would refuse to send)."""
    data = json.dumps(body).encode()
    service = "secretsmanager" if target.startswith("secretsmanager.") else "kms"
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
    req = AWSRequest(method="POST", url=srv.url + "/", data=data, headers=headers)
    SigV4Auth(Credentials(*key), service, REGION).add_auth(req)
    return requests.post(srv.url + "/", data=data, headers=dict(req.prepare().headers), timeout=60)


BLUE_ONLY = policy({"Effect": "Allow",
                    "Action": ["secretsmanager:CreateSecret", "secretsmanager:TagResource"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:RequestTag/team": "blue"}}})


def test_02_a_secrets_manager_tag_is_authorized_on_the_value_it_sets(srv):
    """Authorization read a Secrets Manager tag's value from `Value` or from `TagValue`
    (KMS's spelling, an alias in `auth::Requested` shared by both services), the handler
    from `Value` only; review 17 stripped an operation's unknown members at the top level
    only. A user allowed to create secrets tagged team=blue only sent
    `{"Key": "team", "TagValue": "blue"}`: authorized as team=blue, it made a secret tagged
    team="" (and could retag another's secret so)."""
    _, key = user(srv, BLUE_ONLY, prefix="r18")
    name = uname("r18-tv")
    answer = signed_json(srv, "secretsmanager.CreateSecret", {
        "Name": name, "SecretString": "v", "ClientRequestToken": str(uuid.uuid4()), "Tags": [{"Key": "team", "TagValue": "blue"}]}, key)
    if answer.status_code == 200:
        tags = srv.client("secretsmanager").describe_secret(SecretId=name).get("Tags", [])
        assert tags == [{"Key": "team", "Value": "blue"}], tags
    else:
        assert answer.json()["__type"].endswith("AccessDeniedException"), answer.text
        assert error(lambda: srv.client("secretsmanager").describe_secret(SecretId=name))[0] \
            == "ResourceNotFoundException"
    target = srv.client("secretsmanager").create_secret(
        Name=uname("r18-tv"), SecretString="v", Tags=[{"Key": "team", "Value": "red"}])["ARN"]
    answer = signed_json(srv, "secretsmanager.TagResource", {
        "SecretId": target, "Tags": [{"Key": "team", "TagValue": "blue"}]}, key)
    tags = srv.client("secretsmanager").describe_secret(SecretId=target)["Tags"]
    assert tags in ([{"Key": "team", "Value": "red"}], [{"Key": "team", "Value": "blue"}]), \
        (answer.text, tags)


def test_02_a_nested_member_the_operation_does_not_take_is_ignored_as_aws_ignores_it(srv):
    """A tag carrying `TagValue` beside its `Value` was refused as a body that is not valid
    (two values of one field to `auth::Requested`); AWS ignores a member it does not take,
    at any depth. Now the tag is read as its own members say."""
    _, key = user(srv, BLUE_ONLY, prefix="r18")
    name = uname("r18-tv")
    answer = signed_json(srv, "secretsmanager.CreateSecret", {
        "Name": name, "SecretString": "v", "ClientRequestToken": str(uuid.uuid4()),
        "Tags": [{"Key": "team", "Value": "blue", "TagValue": "red", "TagKey": "x"}]}, key)
    assert answer.status_code == 200, answer.text
    tags = srv.client("secretsmanager").describe_secret(SecretId=name)["Tags"]
    assert tags == [{"Key": "team", "Value": "blue"}], tags


# -------- held: PutSecretValue refused its sealing key changes nothing, and says so once

def test_held_a_put_refused_its_sealing_key_moves_no_label_and_records_the_refusal(srv):
    """PutSecretValue now finds and authorizes its sealing key before moving any label
    (SQLite's batch members run without savepoints): a caller allowed the put but not
    kms:GenerateDataKey on the secret's key is refused, the secret's versions and labels
    are as they were, the next allowed put moves them as usual, and the trail holds the
    refused call once, with its error."""
    admin_sm, kms = srv.client("secretsmanager"), srv.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    name = uname("r18-put")
    first = admin_sm.create_secret(Name=name, SecretString="one", KmsKeyId=key_id)["VersionId"]
    _, key = user(srv, policy({"Effect": "Allow", "Action": [
        "secretsmanager:PutSecretValue", "secretsmanager:DescribeSecret"], "Resource": "*"}),
        prefix="r18")
    sm = client(srv, "secretsmanager", key)
    token = str(uuid.uuid4())
    code, _ = error(lambda: sm.put_secret_value(SecretId=name, SecretString="two",
                                                ClientRequestToken=token))
    assert code == "AccessDeniedException", code
    stages = admin_sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert stages == {first: ["AWSCURRENT"]}, stages
    second = admin_sm.put_secret_value(SecretId=name, SecretString="three")["VersionId"]
    stages = admin_sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert stages == {first: ["AWSPREVIOUS"], second: ["AWSCURRENT"]}, stages
    assert admin_sm.get_secret_value(SecretId=name)["SecretString"] == "three"
    refused = [json.loads(e["CloudTrailEvent"]) for e in lookup(srv, "EventName", "PutSecretValue")
               if json.loads(e["CloudTrailEvent"]).get("requestParameters", {})
               .get("clientRequestToken") == token]
    assert len(refused) == 1, refused
    assert refused[0].get("errorCode") == "AccessDenied" or \
        refused[0].get("errorCode") == "AccessDeniedException", refused[0]


# ------ 03: a condition key naming a tag key beyond ASCII, folded otherwise than IAM's key

def test_03_a_guarded_tag_key_beyond_ascii_is_not_replaced_in_another_case(srv):
    """IAM takes `CAFÉ` and `café` for one key of a user (their lower-case forms are one),
    but the policy engine folded condition key names in ASCII only: `aws:RequestTag/CAFÉ`
    was not `aws:RequestTag/café`, nor `aws:PrincipalTag/CAFÉ` `aws:PrincipalTag/café`. A
    user denied setting `café` (a Deny on the request key being present) and kept from a
    secret while `café=true` tagged itself `CAFÉ=false`: the Deny on tagging did not see
    it, the tag `café` was replaced, and the Deny on the secret no longer matched."""
    iam, admin_sm = srv.client("iam"), srv.client("secretsmanager")
    secret = admin_sm.create_secret(Name=uname("r18-s"), SecretString="s3cret")["ARN"]
    guard = policy(
        {"Effect": "Allow", "Action": ["iam:TagUser", "secretsmanager:GetSecretValue"],
         "Resource": "*"},
        {"Effect": "Deny", "Action": "iam:TagUser", "Resource": "*",
         "Condition": {"Null": {"aws:RequestTag/café": "false"}}},
        {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalTag/café": "true"}}},
    )
    name, key = user(srv, guard, prefix="r18")
    iam.tag_user(UserName=name, Tags=[{"Key": "café", "Value": "true"}])
    mine, sm = client(srv, "iam", key), client(srv, "secretsmanager", key)
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    assert error(lambda: mine.tag_user(
        UserName=name, Tags=[{"Key": "café", "Value": "false"}]))[0] == "AccessDenied"
    try:
        mine.tag_user(UserName=name, Tags=[{"Key": "CAFÉ", "Value": "false"}])
    except Exception:  # noqa: BLE001 - refused is as good: the guarded tag must stay
        pass
    assert iam.list_user_tags(UserName=name)["Tags"] == [{"Key": "café", "Value": "true"}]
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    # Tagged `CAFÉ=true` by an administrator, the Deny on `aws:PrincipalTag/café` holds.
    iam.tag_user(UserName=name, Tags=[{"Key": "CAFÉ", "Value": "true"}])
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"


def test_01_a_guarded_tag_key_is_not_replaced_in_a_case_string_like_reads_apart(srv):
    """A whole-string lower case and a per-character one differ for a final sigma: `ΟΔΟΣ`
    is `οδος` to the first, `οδοσ` to the second (`StringLike`'s reading without regard to
    case). IAM, folding whole strings, took `ΟΔΟΣ` for the key `οδος`; a Deny on tagging
    `οδος` written with `StringLike` did not see it, and the tag was replaced."""
    iam = srv.client("iam")
    guard = policy(
        {"Effect": "Allow", "Action": ["iam:TagUser", "iam:UntagUser"], "Resource": "*"},
        {"Effect": "Deny", "Action": ["iam:TagUser", "iam:UntagUser"], "Resource": "*",
         "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": ["οδος"]}}},
    )
    name, key = user(srv, guard, prefix="r18")
    iam.tag_user(UserName=name, Tags=[{"Key": "οδος", "Value": "kept"}])
    mine = client(srv, "iam", key)
    for call in (lambda: mine.tag_user(UserName=name, Tags=[{"Key": "ΟΔΟΣ", "Value": "x"}]),
                 lambda: mine.untag_user(UserName=name, TagKeys=["ΟΔΟΣ"])):
        try:
            call()
        except Exception:  # noqa: BLE001 - refused is as good: the guarded tag must stay
            pass
        tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
        assert tags.get("οδος") == "kept", tags
