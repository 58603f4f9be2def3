"""Issue 23 (second security review), findings 2, 3, 4, 6, 7, 9 and 10 (LookupEvents times),
and issue 21 finding 17: what one authenticated caller can make the server do or keep.

* the audit trail records only the members of an operation's input shape, each string
  capped, the whole event capped (denied and invalid calls smaller still);
* ListSecrets with filters and LookupEvents examine a bounded number of records per call
  and page on with a NextToken;
* control characters in tokens, ids, names and labels are ValidationExceptions;
* no secret gets more than 50 tags;
* paging tokens are opaque and bound to the caller, the scope and the query.
"""

from __future__ import annotations

import base64
import json
import os
import uuid

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import (ACCESS_KEY, JSON_CONTENT_TYPE, REGION, SECRET_KEY, error_of, make_client,
                      signed_request)
from test_auth import Secured, expect, raw_call

CLOUDTRAIL_TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
# The caps the server applies to a recorded event (coffer-audit::event).
MAX_EVENT_BYTES = 16 * 1024
MAX_FAILED_EVENT_BYTES = 4 * 1024
MAX_STRING = 1024


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    srv = Secured(tmp_path_factory.mktemp("bounds"))
    yield srv
    srv.server.stop()


def lookup_raw(url: str, key: tuple[str, str], body: dict | str) -> requests.Response:
    data = (body if isinstance(body, str) else json.dumps(body)).encode()
    headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": CLOUDTRAIL_TARGET}
    endpoint = url.rstrip("/") + "/"
    req = AWSRequest(method="POST", url=endpoint, data=data, headers=headers)
    SigV4Auth(Credentials(*key), "cloudtrail", REGION).add_auth(req)
    return requests.post(endpoint, data=data, headers=dict(req.prepare().headers), timeout=60)


def events_for(secured: Secured, resource: str) -> list[dict]:
    trail = secured.client(secured.admin_key, service="cloudtrail")
    found = trail.lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": resource}])
    return found["Events"]


# ---- finding 21.17 and 23.3: what the trail records of a request --------------------------------


def test_unknown_members_and_oversized_values_never_reach_the_trail(secured):
    name = f"bounds/audit-{uuid.uuid4().hex[:8]}"
    garbage = "lowercase-member-" + uuid.uuid4().hex
    body = {
        "Name": name,
        "ClientRequestToken": str(uuid.uuid4()),
        "SecretString": "the-value",
        "secretString": garbage,  # not a member of the model: the handler ignores it
        "Padding": "p" * 900_000,  # nor is this
    }
    resp = raw_call(secured.url, secured.admin_key, "CreateSecret", body)
    assert resp.status_code == 200, resp.text

    # A caller allowed nothing: denied, with a megabyte-sized member of its own.
    lister = secured.user("bounds-lister", {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]})
    denied = raw_call(secured.url, lister, "GetSecretValue",
                      {"SecretId": name, "VersionStage": "AWSCURRENT", "Extra": "e" * 900_000})
    assert denied.status_code == 400
    # An invalid call: a description far past its limit.
    invalid = raw_call(secured.url, secured.admin_key, "UpdateSecret",
                       {"SecretId": name, "Description": "d" * 900_000})
    assert error_of(invalid)[0] == "ValidationException"

    events = events_for(secured, name)
    by_name = {}
    for e in events:
        by_name.setdefault(e["EventName"], []).append(json.loads(e["CloudTrailEvent"]))
    created = by_name["CreateSecret"][0]
    assert created["requestParameters"]["name"] == name
    assert set(created["requestParameters"]) <= {"name", "clientRequestToken"}
    for e in events:
        text = e["CloudTrailEvent"]
        assert garbage not in text and "the-value" not in text
        assert "ppppppppppppppppppppppppppp" not in text
        assert len(text.encode()) <= MAX_EVENT_BYTES, e["EventName"]
    read = by_name["GetSecretValue"][0]
    assert read["errorCode"] == "AccessDenied"
    assert "extra" not in read["requestParameters"]
    assert len(json.dumps(read).encode()) <= MAX_FAILED_EVENT_BYTES
    updated = by_name["UpdateSecret"][0]
    assert updated["errorCode"] == "ValidationException"
    assert len(updated["requestParameters"]["description"]) <= MAX_STRING + 32
    assert len(json.dumps(updated).encode()) <= MAX_FAILED_EVENT_BYTES


# ---- finding 23.2: ListSecrets filters page with a scan budget ---------------------------------


def test_a_filter_that_matches_nothing_pages_instead_of_scanning_everything(fresh_sm):
    for i in range(1_100):
        fresh_sm.create_secret(Name=f"scan/s{i:05d}", SecretString="v")
    filters = [{"Key": "name", "Values": ["nothing-is-called-this"]}]
    first = fresh_sm.list_secrets(Filters=filters, MaxResults=100)
    assert first["SecretList"] == []
    assert first.get("NextToken"), "a bounded scan stops with a NextToken"
    pages, token = 1, first["NextToken"]
    while token:
        page = fresh_sm.list_secrets(Filters=filters, MaxResults=100, NextToken=token)
        assert page["SecretList"] == []
        token = page.get("NextToken")
        pages += 1
        assert pages < 10
    # A filter that matches pages through every match across scan boundaries.
    hits = [{"Key": "name", "Values": ["scan/s0109"]}]
    found, token = [], None
    while True:
        kwargs = {"NextToken": token} if token else {}
        page = fresh_sm.list_secrets(Filters=hits, MaxResults=5, **kwargs)
        found += [s["Name"] for s in page["SecretList"]]
        token = page.get("NextToken")
        if not token:
            break
    assert found == [f"scan/s0109{d}" for d in range(10)]
    # The paginator (the AWS CLI's way) sees the same.
    listed = [s["Name"] for p in fresh_sm.get_paginator("list_secrets").paginate(Filters=hits)
              for s in p["SecretList"]]
    assert listed == found


# ---- finding 23.4 and 23.10: LookupEvents is bounded and checks its times ---------------------


def test_lookup_events_with_an_attribute_nothing_has_pages_with_a_budget(fresh_server):
    sm = make_client(fresh_server.url)
    for _ in range(1_100):
        sm.get_random_password(PasswordLength=8)
    ct = boto3.client("cloudtrail", endpoint_url=fresh_server.url, region_name=REGION,
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    attrs = [{"AttributeKey": "EventName", "AttributeValue": "NoSuchOperation"}]
    first = ct.lookup_events(LookupAttributes=attrs)
    assert first["Events"] == []
    assert first.get("NextToken"), "a bounded scan stops with a NextToken"
    pages, token = 1, first["NextToken"]
    while token:
        page = ct.lookup_events(LookupAttributes=attrs, NextToken=token)
        assert page["Events"] == []
        token = page.get("NextToken")
        pages += 1
        assert pages < 10
    # Matching events are still all found, page after page.
    wanted = [{"AttributeKey": "EventName", "AttributeValue": "GetRandomPassword"}]
    total = sum(len(p["Events"]) for p in ct.get_paginator("lookup_events").paginate(
        LookupAttributes=wanted))
    assert total == 1_100


@pytest.mark.parametrize("body", [
    {"StartTime": 1e300},
    {"EndTime": -1e300},
    {"StartTime": "99999999999-01-01T00:00:00Z"},
    {"EndTime": "2024-99-01T00:00:00Z"},
    {"StartTime": 9.3e15},
])
def test_lookup_events_times_out_of_range_are_refused(secured, body):
    resp = lookup_raw(secured.url, secured.admin_key, body)
    assert resp.status_code == 400, resp.text
    code, _ = error_of(resp)
    assert code in ("SerializationException", "ValidationException"), code


# ---- finding 23.6: control characters ---------------------------------------------------------


def test_control_characters_in_tokens_ids_names_and_labels_are_validation_errors(secured):
    name = f"bounds/ctl-{uuid.uuid4().hex[:8]}"
    admin = secured.admin()
    admin.create_secret(Name=name, SecretString="v")
    nul_token = "a" * 31 + "\u0000" + "b"
    calls = [
        ("CreateSecret", {"Name": name + "-2", "ClientRequestToken": nul_token, "SecretString": "v"}),
        ("PutSecretValue", {"SecretId": name, "ClientRequestToken": "c" * 32 + "\u0001",
                            "SecretString": "v"}),
        ("PutSecretValue", {"SecretId": name, "ClientRequestToken": str(uuid.uuid4()),
                            "SecretString": "v", "VersionStages": ["LABEL\u0000"]}),
        ("UpdateSecretVersionStage", {"SecretId": name, "VersionStage": "\u0007"}),
        ("GetSecretValue", {"SecretId": name, "VersionId": "v" * 32 + "\u0000"}),
        ("ListSecrets", {"NextToken": "\u0000"}),
        ("ListSecretVersionIds", {"SecretId": name, "NextToken": "x\u001f"}),
        ("BatchGetSecretValue", {"SecretIdList": [name], "NextToken": "\u0000"}),
        ("CreateSecret", {"Name": name + "\u0000", "SecretString": "v",
                          "ClientRequestToken": str(uuid.uuid4())}),
        ("TagResource", {"SecretId": name, "Tags": [{"Key": "k\u0000", "Value": "v"}]}),
        ("UpdateSecret", {"SecretId": name, "Description": "a\u0000b"}),
    ]
    for target, body in calls:
        resp = raw_call(secured.url, secured.admin_key, target, body)
        assert resp.status_code == 400, (target, resp.status_code, resp.text)
        code, _ = error_of(resp)
        assert code == "ValidationException", (target, code)
    # KMS markers and key ids too.
    kms = secured.client(secured.admin_key, service="kms")
    expect(kms.list_aliases, "ValidationException", Marker="m\u0000")
    expect(kms.describe_key, "ValidationException", KeyId="alias/x\u0000")
    # Nothing was stored: the secret still has its one version.
    versions = admin.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]
    assert len(versions) == 1
    assert admin.describe_secret(SecretId=name).get("Description") is None


# ---- finding 23.7: at most 50 tags -------------------------------------------------------------

MSG_TAG_LIMIT = "The request failed because it would exceed the limit of 50 tags per secret."


def test_no_secret_gets_more_than_fifty_tags(secured):
    admin = secured.admin()
    name = f"bounds/tags-{uuid.uuid4().hex[:8]}"
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    expect(admin.create_secret, "LimitExceededException", MSG_TAG_LIMIT,
           Name=name, SecretString="v", Tags=tags)
    expect(admin.describe_secret, "ResourceNotFoundException", SecretId=name)
    admin.create_secret(Name=name, SecretString="v", Tags=tags[:50])
    expect(admin.tag_resource, "LimitExceededException", MSG_TAG_LIMIT,
           SecretId=name, Tags=[{"Key": "one-more", "Value": "v"}])
    admin.tag_resource(SecretId=name, Tags=[{"Key": "k0", "Value": "replaced"}])
    assert len(admin.describe_secret(SecretId=name)["Tags"]) == 50
    kms = secured.client(secured.admin_key, service="kms")
    kms_tags = [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(51)]
    # KMS answers its own tag quota with TagException (issue 22, the real service's answer).
    expect(kms.create_key, "TagException", "Too many tags", Tags=kms_tags)
    key = kms.create_key(Tags=kms_tags[:50])["KeyMetadata"]["KeyId"]
    expect(kms.tag_resource, "TagException", "Too many tags", KeyId=key,
           Tags=[{"TagKey": "one-more", "TagValue": "v"}])


# ---- finding 23.9: paging tokens are opaque and bound ------------------------------------------

MSG_BAD_TOKEN = "The NextToken value is invalid."


def flip(token: str, at: int) -> str:
    c = token[at]
    return token[:at] + ("A" if c != "A" else "B") + token[at + 1:]


def test_list_tokens_are_opaque_and_bound_to_caller_scope_and_query(secured):
    admin = secured.admin()
    prefix = f"bounds/page-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        admin.create_secret(Name=f"{prefix}/{i}", SecretString="v")
    filters = [{"Key": "name", "Values": [prefix]}]
    first = admin.list_secrets(Filters=filters, MaxResults=1)
    token = first["NextToken"]
    # Opaque: no readable record, no counter, no name inside.
    padded = token + "=" * (-len(token) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded)
    except Exception:
        raw = b""
    assert prefix.encode() not in raw and b'"s":' not in raw and b"offset" not in raw
    # It goes on where it should.
    second = admin.list_secrets(Filters=filters, MaxResults=1, NextToken=token)
    assert second["SecretList"][0]["Name"] == f"{prefix}/1"
    # Altered anywhere, it is refused.
    for at in (0, len(token) // 2, len(token) - 1):
        expect(admin.list_secrets, "InvalidNextTokenException", MSG_BAD_TOKEN,
               Filters=filters, MaxResults=1, NextToken=flip(token, at))
    # With other filters, another order or another caller's scope, it is refused.
    expect(admin.list_secrets, "InvalidNextTokenException", MSG_BAD_TOKEN,
           Filters=[{"Key": "name", "Values": ["other"]}], MaxResults=1, NextToken=token)
    expect(admin.list_secrets, "InvalidNextTokenException", MSG_BAD_TOKEN,
           Filters=filters, MaxResults=1, NextToken=token, SortOrder="desc")
    expect(secured.client(secured.admin_key, region="eu-west-1").list_secrets,
           "InvalidNextTokenException", MSG_BAD_TOKEN, Filters=filters, NextToken=token)
    other = secured.user("bounds-other", {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}, account="222233334444")
    expect(secured.client(other).list_secrets, "InvalidNextTokenException", MSG_BAD_TOKEN,
           Filters=filters, NextToken=token)
    # ListSecretVersionIds tokens are opaque and bound too.
    for _ in range(2):
        admin.put_secret_value(SecretId=f"{prefix}/0", SecretString="w")
    page = admin.list_secret_version_ids(SecretId=f"{prefix}/0", MaxResults=1)
    vtoken = page["NextToken"]
    assert b"offset" not in base64.urlsafe_b64decode(vtoken + "=" * (-len(vtoken) % 4))
    admin.list_secret_version_ids(SecretId=f"{prefix}/0", MaxResults=1, NextToken=vtoken)
    expect(admin.list_secret_version_ids, "InvalidNextTokenException", MSG_BAD_TOKEN,
           SecretId=f"{prefix}/1", MaxResults=1, NextToken=vtoken)
    expect(admin.list_secret_version_ids, "InvalidNextTokenException", MSG_BAD_TOKEN,
           SecretId=f"{prefix}/0", MaxResults=1, NextToken=flip(vtoken, 3))


# ---- on PostgreSQL, two nodes: NUL is refused, not a 500; tokens work across nodes -------------


@pytest.fixture(scope="module")
def two_pg_nodes(tmp_path_factory):
    from test_backup_restore import Postgres
    from conftest import start_server

    pg = Postgres()
    base = tmp_path_factory.mktemp("pgnodes")
    key_file = base / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    key_file.chmod(0o600)
    url = pg.create_database()
    nodes = [start_server(["serve", "--dev", "--listen", "127.0.0.1:0", "--store", url,
                           "--data-dir", str(base / f"node{i}"), "--master-key-file", str(key_file)])
             for i in range(2)]
    yield [n.url for n in nodes]
    for n in nodes:
        n.stop()
    pg.stop()


def test_on_postgresql_nul_is_a_validation_error_and_tokens_continue_on_another_node(two_pg_nodes):
    a, b = (make_client(u) for u in two_pg_nodes)
    prefix = f"pg/{uuid.uuid4().hex[:8]}"
    for i in range(3):
        a.create_secret(Name=f"{prefix}/{i}", SecretString="v")
    for target, body in [
        ("CreateSecret", {"Name": prefix + "/nul", "SecretString": "v",
                          "ClientRequestToken": "a" * 31 + "\u0000" + "b"}),
        ("PutSecretValue", {"SecretId": f"{prefix}/0", "SecretString": "v",
                            "ClientRequestToken": str(uuid.uuid4()), "VersionStages": ["X\u0000"]}),
        ("UpdateSecret", {"SecretId": f"{prefix}/0", "Description": "\u0000"}),
        ("ListSecrets", {"NextToken": "\u0000"}),
    ]:
        resp = signed_request(two_pg_nodes[0], target, body)
        assert resp.status_code == 400, (target, resp.status_code, resp.text)
        assert error_of(resp)[0] == "ValidationException", target
    filters = [{"Key": "name", "Values": [prefix]}]
    first = a.list_secrets(Filters=filters, MaxResults=1)
    second = b.list_secrets(Filters=filters, MaxResults=1, NextToken=first["NextToken"])
    assert [s["Name"] for s in second["SecretList"]] == [f"{prefix}/1"]
    expect(b.list_secrets, "InvalidNextTokenException", MSG_BAD_TOKEN,
           Filters=filters, MaxResults=1, NextToken=flip(first["NextToken"], 5))


def query_raw(url: str, key: tuple[str, str] | None, service: str, form: dict) -> requests.Response:
    """A query-protocol (STS, IAM) call, signed for `service` unless `key` is None."""
    import urllib.parse

    body = urllib.parse.urlencode(form)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    endpoint = url.rstrip("/") + "/"
    if key is not None:
        req = AWSRequest(method="POST", url=endpoint, data=body, headers=headers)
        SigV4Auth(Credentials(*key), service, REGION).add_auth(req)
        headers = dict(req.prepare().headers)
    return requests.post(endpoint, data=body, headers=headers, timeout=60)


def test_sts_and_iam_errors_quote_at_most_512_characters_of_the_input(secured):
    """Review 7, finding 05: STS and the IAM API echoed a rejected value whole (a 900 KB
    RoleSessionName came back in a 900 KB answer)."""
    big = "A" * 200_000
    sts = {"Version": "2011-06-15", "RoleArn": "arn:aws:iam::000000000000:role/r"}
    iam = {"Version": "2010-05-08"}
    calls = [
        (None, "sts", {**sts, "Action": "AssumeRoleWithWebIdentity", "RoleSessionName": big,
                       "WebIdentityToken": "x.y.z"}),
        (secured.admin_key, "sts", {**sts, "Action": "AssumeRole", "RoleSessionName": big}),
        (secured.admin_key, "sts", {**sts, "Action": "AssumeRole", "RoleSessionName": "ok",
                                    "DurationSeconds": "9" * 200_000 + "x"}),
        (secured.admin_key, "iam", {**iam, "Action": "CreateUser", "UserName": big}),
        (secured.admin_key, "iam", {**iam, "Action": "CreateUser", "UserName": "a b" + big}),
        (secured.admin_key, "iam", {**iam, "Action": "UpdateAccessKey", "AccessKeyId": "AKIAX",
                                    "Status": big}),
        (secured.admin_key, "iam", {**iam, "Action": "ListUsers", "MaxItems": big}),
    ]
    for key, service, form in calls:
        answer = query_raw(secured.url, key, service, form)
        assert 400 <= answer.status_code < 500, (form["Action"], answer.status_code)
        assert answer.text.count("A" * 10) <= 512 // 10 + 1 and answer.text.count("9" * 10) <= 52, (
            form["Action"], len(answer.content))
        assert len(answer.content) < 2_000, (form["Action"], len(answer.content))


def test_a_deny_on_the_builtin_rotators_holds_whatever_the_spelling(secured):
    """Review 7, finding 07: a built-in was recognised by the last `:`-separated part of
    RotationLambdaARN while lambda:InvokeFunction was decided on the string as given, so
    `function:x:coffer-builtin-random-password` rotated a value the Deny protected."""
    from test_auth import expect

    admin = secured.admin()
    name = f"svc/pw-{uuid.uuid4().hex[:8]}"
    admin.create_secret(Name=name, SecretString=json.dumps({"username": "u", "password": "keep"}))
    key = secured.user(f"rot-{uuid.uuid4().hex[:8]}", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": "*", "Action": [
            "secretsmanager:RotateSecret", "secretsmanager:DescribeSecret", "lambda:InvokeFunction"]},
        {"Effect": "Deny", "Action": "lambda:InvokeFunction",
         "Resource": "arn:aws:lambda:*:*:function:coffer-builtin-*"}]})
    rotator = secured.client(key)
    arn = "arn:aws:lambda:us-east-1:000000000000:function:"
    for spelling in [f"{arn}coffer-builtin-random-password", "coffer-builtin-random-password",
                     f"{arn}x:coffer-builtin-random-password",
                     f"{arn}coffer-builtin-random-password:1"]:
        expect(rotator.rotate_secret, "AccessDeniedException", SecretId=name,
               RotationLambdaARN=spelling)
    value = admin.get_secret_value(SecretId=name)["SecretString"]
    assert json.loads(value)["password"] == "keep"
    assert "RotationEnabled" not in admin.describe_secret(SecretId=name) or \
        not admin.describe_secret(SecretId=name)["RotationEnabled"]
