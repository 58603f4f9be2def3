"""The events of query-protocol calls (the IAM API and STS): their ``requestParameters`` as
CloudTrail records them (member names in lower camel case, numbers, lists of tags), STS's
``responseElements`` (the credentials' access key id and expiry, never the secret access
key or the session token), no web identity token, and a refused call's parameters with its
error code. Read back with boto3's CloudTrail LookupEvents against a server without --dev;
every secret the calls handed out is then looked for in every stored event, in the
``--audit-log`` file and in the data directory.
"""

from __future__ import annotations

import json
import re
import uuid

import botocore.exceptions
import pytest

from iam_api_support import Server
from test_audit import files_containing
from test_iam_api_web_identity import AUDIENCE, Issuer, web_role

ACCOUNT = "000000000000"
READ_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:ListSecrets", "sts:GetSessionToken"], "Resource": "*"}],
}
# CloudTrail's date form for STS and IAM response elements ("Jul 19, 2019, 4:27:48 PM").
CLOUDTRAIL_DATE = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2}:\d{2} [AP]M$")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("auditq")
    log = tmp_path_factory.mktemp("auditq-log") / "events.jsonl"
    server = Server(data_dir, extra=["--audit-log", str(log)])
    server.log = log
    # Every secret value the calls below are handed, for the final scan.
    server.handed_out = []
    yield server
    server.server.stop()


def events(srv, name: str) -> list[dict]:
    """The events named `name`, newest first, as CloudTrail's JSON records."""
    got = srv.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}], MaxResults=50)
    return [json.loads(e["CloudTrailEvent"]) for e in got["Events"]]


def latest(srv, name: str, **match) -> dict:
    """The newest event named `name` whose request parameters hold `match`."""
    for event in events(srv, name):
        params = event.get("requestParameters") or {}
        if all(params.get(k) == v for k, v in match.items()):
            return event
    raise AssertionError(f"no {name} event with {match}: {events(srv, name)}")


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def trust(principal: str) -> str:
    statement = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_create_user_records_its_parameters(srv):
    name = uname("alice")
    srv.client("iam").create_user(UserName=name, Path="/audit/", Tags=[{"Key": "team", "Value": "blue"}])
    event = latest(srv, "CreateUser", userName=name)
    assert event["eventSource"] == "iam.amazonaws.com"
    assert event["requestParameters"] == {
        "userName": name, "path": "/audit/", "tags": [{"key": "team", "value": "blue"}]}
    assert event["readOnly"] is False
    user = srv.client("iam").get_user(UserName=name)["User"]
    created = event["responseElements"]["user"]
    assert {k: created[k] for k in ("path", "userName", "userId", "arn")} == {
        "path": "/audit/", "userName": name, "userId": user["UserId"], "arn": user["Arn"]}
    assert CLOUDTRAIL_DATE.match(created["createDate"]), created


def test_create_group_role_and_policy_record_what_they_created(srv):
    iam = srv.client("iam")
    group = iam.create_group(GroupName=uname("g"))["Group"]
    event = latest(srv, "CreateGroup", groupName=group["GroupName"])
    assert event["responseElements"]["group"]["groupId"] == group["GroupId"]
    assert event["responseElements"]["group"]["arn"] == group["Arn"]
    document = trust(f"arn:aws:iam::{ACCOUNT}:root")
    role = iam.create_role(RoleName=uname("r"), AssumeRolePolicyDocument=document, MaxSessionDuration=7200)["Role"]
    event = latest(srv, "CreateRole", roleName=role["RoleName"])
    assert event["requestParameters"]["maxSessionDuration"] == 7200
    assert event["requestParameters"]["assumeRolePolicyDocument"] == document
    assert event["responseElements"]["role"]["roleId"] == role["RoleId"]
    assert event["responseElements"]["role"]["arn"] == role["Arn"]
    policy = iam.create_policy(PolicyName=uname("p"), PolicyDocument=json.dumps(READ_ALL))["Policy"]
    event = latest(srv, "CreatePolicy", policyName=policy["PolicyName"])
    assert event["responseElements"]["policy"]["policyId"] == policy["PolicyId"]
    assert event["responseElements"]["policy"]["arn"] == policy["Arn"]
    assert event["responseElements"]["policy"]["defaultVersionId"] == "v1"
    version = iam.create_policy_version(PolicyArn=policy["Arn"], PolicyDocument=json.dumps(READ_ALL),
                                        SetAsDefault=True)["PolicyVersion"]
    event = latest(srv, "CreatePolicyVersion", policyArn=policy["Arn"])
    assert event["requestParameters"]["setAsDefault"] is True
    assert event["responseElements"]["policyVersion"]["versionId"] == version["VersionId"] == "v2"
    assert event["responseElements"]["policyVersion"]["isDefaultVersion"] is True


def test_put_user_policy_and_attach_record_the_document_and_arn(srv):
    iam = srv.client("iam")
    name = uname("bob")
    iam.create_user(UserName=name)
    document = json.dumps(READ_ALL)
    iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=document)
    event = latest(srv, "PutUserPolicy", userName=name)
    assert event["requestParameters"] == {"userName": name, "policyName": "read", "policyDocument": document}
    policy_arn = iam.create_policy(PolicyName=uname("p"), PolicyDocument=document)["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=policy_arn)
    event = latest(srv, "AttachUserPolicy", userName=name)
    assert event["requestParameters"] == {"userName": name, "policyArn": policy_arn}


def test_create_access_key_records_the_user_and_never_the_secret(srv):
    iam = srv.client("iam")
    name = uname("carol")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    srv.handed_out.append(key["SecretAccessKey"])
    event = latest(srv, "CreateAccessKey", userName=name)
    assert event["requestParameters"] == {"userName": name}
    created = event["responseElements"]["accessKey"]
    assert set(created) == {"userName", "accessKeyId", "status", "createDate"}
    assert (created["userName"], created["accessKeyId"], created["status"]) == (name, key["AccessKeyId"], "Active")
    text = json.dumps(event)
    assert key["SecretAccessKey"] not in text
    assert "secretAccessKey" not in text.replace("\\", "")


def test_assume_role_records_the_role_and_the_key_id_but_no_token_or_secret(srv):
    iam = srv.client("iam")
    role = uname("role")
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust(f"arn:aws:iam::{ACCOUNT}:root"))["Role"]["Arn"]
    got = srv.client("sts").assume_role(RoleArn=arn, RoleSessionName="audit-1", DurationSeconds=900)
    creds = got["Credentials"]
    srv.handed_out += [creds["SecretAccessKey"], creds["SessionToken"]]
    event = latest(srv, "AssumeRole", roleArn=arn)
    assert event["eventSource"] == "sts.amazonaws.com"
    assert event["requestParameters"] == {"roleArn": arn, "roleSessionName": "audit-1", "durationSeconds": 900}
    response = event["responseElements"]
    assert set(response["credentials"]) == {"accessKeyId", "expiration"}
    assert response["credentials"]["accessKeyId"] == creds["AccessKeyId"]
    assert CLOUDTRAIL_DATE.match(response["credentials"]["expiration"]), response
    assert response["assumedRoleUser"] == {
        "assumedRoleId": got["AssumedRoleUser"]["AssumedRoleId"], "arn": got["AssumedRoleUser"]["Arn"]}
    text = json.dumps(event)
    assert creds["SecretAccessKey"] not in text and creds["SessionToken"] not in text


def test_get_session_token_records_its_duration_and_the_key_id_only(srv):
    iam = srv.client("iam")
    name = uname("dave")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(READ_ALL))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    srv.handed_out.append(key["SecretAccessKey"])
    creds = srv.client("sts", (key["AccessKeyId"], key["SecretAccessKey"])).get_session_token(
        DurationSeconds=1800)["Credentials"]
    srv.handed_out += [creds["SecretAccessKey"], creds["SessionToken"]]
    event = next(e for e in events(srv, "GetSessionToken") if e["userIdentity"].get("userName") == name)
    assert event["requestParameters"] == {"durationSeconds": 1800}
    assert event["responseElements"]["credentials"]["accessKeyId"] == creds["AccessKeyId"]
    assert set(event["responseElements"]["credentials"]) == {"accessKeyId", "expiration"}


def test_assume_role_with_web_identity_never_records_the_token(srv, tmp_path_factory):
    directory = tmp_path_factory.mktemp("auditq-issuer")
    issuer = Issuer(directory, f"https://oidc.auditq-{uuid.uuid4().hex[:6]}.example.test/id")
    jwks = directory / "jwks.json"
    jwks.write_text(issuer.jwks())
    issuer.arn = srv.client("iam").create_open_id_connect_provider(
        Url=issuer.url, ClientIDList=[AUDIENCE], ThumbprintList=["a" * 40],
        Tags=[{"Key": "coffer:jwks-file", "Value": str(jwks)}],
    )["OpenIDConnectProviderArn"]
    provider = latest(srv, "CreateOpenIDConnectProvider", url=issuer.url)
    assert provider["requestParameters"]["clientIDList"] == [AUDIENCE]
    assert provider["requestParameters"]["thumbprintList"] == ["a" * 40]
    role_arn = web_role(srv, issuer)
    token = issuer.token()
    got = srv.anonymous_sts().assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="pod-1", WebIdentityToken=token, DurationSeconds=900)
    creds = got["Credentials"]
    srv.handed_out += [token, creds["SecretAccessKey"], creds["SessionToken"]]
    event = latest(srv, "AssumeRoleWithWebIdentity", roleArn=role_arn)
    assert event["requestParameters"] == {"roleArn": role_arn, "roleSessionName": "pod-1", "durationSeconds": 900}
    assert event["responseElements"]["credentials"]["accessKeyId"] == creds["AccessKeyId"]
    assert set(event["responseElements"]["credentials"]) == {"accessKeyId", "expiration"}
    assert event["responseElements"]["subjectFromWebIdentityToken"] == got["SubjectFromWebIdentityToken"]
    text = json.dumps(event)
    for secret in (token, token.split(".")[2], creds["SecretAccessKey"], creds["SessionToken"]):
        assert secret not in text
    assert "webIdentityToken" not in text


def test_a_refused_call_records_its_error_and_parameters(srv):
    iam = srv.client("iam")
    missing = uname("nobody")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        iam.attach_user_policy(UserName=missing, PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/none")
    assert excinfo.value.response["Error"]["Code"] == "NoSuchEntity"
    event = latest(srv, "AttachUserPolicy", userName=missing)
    assert event["errorCode"] == "NoSuchEntity"
    assert event["requestParameters"] == {"userName": missing, "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/none"}
    with pytest.raises(botocore.exceptions.ClientError):
        srv.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{missing}", RoleSessionName="s1",
                                      DurationSeconds=900)
    event = latest(srv, "AssumeRole", roleArn=f"arn:aws:iam::{ACCOUNT}:role/{missing}")
    assert event["errorCode"]
    assert event["requestParameters"]["roleSessionName"] == "s1"
    assert event["responseElements"] is None


def test_a_large_form_is_capped_like_any_events_parameters(srv):
    iam = srv.client("iam")
    name = uname("erin")
    iam.create_user(UserName=name)
    huge = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
                                                               "Resource": "x" * 100_000}]})
    with pytest.raises(botocore.exceptions.ClientError):
        iam.put_user_policy(UserName=name, PolicyName="huge", PolicyDocument=huge)
    event = latest(srv, "PutUserPolicy", userName=name)
    assert event["errorCode"]
    # A refused call's parameters take at most 2 KiB; the names it was on are kept.
    assert len(json.dumps(event["requestParameters"], separators=(",", ":"))) <= 2048
    assert event["requestParameters"]["policyName"] == "huge"
    assert "x" * 2000 not in json.dumps(event)


def test_no_secret_handed_out_is_in_any_event_the_log_or_the_data_directory(srv):
    assert len(srv.handed_out) >= 8, "run the whole module: the earlier tests hand the secrets out"
    trail = srv.client("cloudtrail")
    stored, token = [], None
    while True:
        page = trail.lookup_events(MaxResults=50, **({"NextToken": token} if token else {}))
        stored += [e["CloudTrailEvent"] for e in page["Events"]]
        token = page.get("NextToken")
        if not token:
            break
    assert any('"requestParameters": {' in e or '"requestParameters":{' in e for e in stored)
    every = "\n".join(stored)
    log = srv.log.read_text()
    assert "AssumeRoleWithWebIdentity" in log and "CreateAccessKey" in log
    for secret in srv.handed_out:
        assert secret not in every
        assert secret not in log
    assert files_containing(srv.data_dir, [s.encode() for s in srv.handed_out]) == []
