"""STS and the IAM API (AWS's query protocol) go through the one pipeline every JSON call takes
(issue 13): identified, audited, counted against a request quota, decoded, authorized and
answered there, so a query-protocol call is throttled and recorded exactly as a JSON call is.

The quotas set here are tiny (2 calls per second) and every burst is far larger than what could
refill while it runs, so no test depends on how fast the machine is.
"""

from __future__ import annotations

import configparser
import json

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import REGION, start_server
from test_auth import NO_RETRY, PROFILE, Secured

BURST = 40
OWNER = "000000000000"
RETRYING = Config(retries={"total_max_attempts": 20, "mode": "standard"}, connect_timeout=5, read_timeout=60)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """An enforcing server whose STS and IAM quotas are 2 calls per second."""
    data_dir = tmp_path_factory.mktemp("query-pipeline")
    srv = Secured.__new__(Secured)
    srv.data_dir = data_dir
    srv.server = start_server(["serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
                               "--quotas", "on", "--quota", "sts=2", "--quota", "iam=2"])
    srv.url = srv.server.url
    srv.credentials_file = data_dir / "admin-credentials"
    parsed = configparser.ConfigParser()
    parsed.read(srv.credentials_file)
    srv.admin_key = (parsed[PROFILE]["aws_access_key_id"], parsed[PROFILE]["aws_secret_access_key"])
    yield srv
    srv.server.stop()


def events(srv: Secured, **attribute) -> list[dict]:
    trail = srv.client(srv.admin_key, service="cloudtrail")
    [(name, value)] = attribute.items()
    found = trail.lookup_events(LookupAttributes=[{"AttributeKey": name, "AttributeValue": value}],
                                MaxResults=50)["Events"]
    return [json.loads(e["CloudTrailEvent"]) for e in found]


def signed_form(srv: Secured, key: tuple[str, str], service: str, form: str) -> requests.Response:
    req = AWSRequest(method="POST", url=srv.url + "/", data=form,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(*key), service, REGION).add_auth(req)
    return requests.post(srv.url + "/", data=req.body, headers=dict(req.headers), timeout=30)


def until_throttled(call) -> tuple[int, ClientError]:
    """Calls until one is throttled: (calls that went through, the error)."""
    through = 0
    for _ in range(BURST):
        try:
            call()
            through += 1
        except ClientError as e:
            if e.response["Error"]["Code"] != "Throttling":
                raise
            return through, e
    raise AssertionError(f"{BURST} calls at a quota of 2/s were never throttled")


def test_sts_calls_are_throttled_and_audited_like_json_calls(secured):
    sts = secured.client(secured.admin_key, service="sts")
    through, error = until_throttled(sts.get_caller_identity)
    assert through >= 2  # the bucket holds one second's worth
    # STS's own words, in the query protocol: `Throttling: Rate exceeded`, HTTP 400.
    assert error.response["Error"]["Message"] == "Rate exceeded"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    for _ in range(BURST):
        resp = signed_form(secured, secured.admin_key, "sts", "Action=GetCallerIdentity&Version=2011-06-15")
        if resp.status_code != 200:
            break
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "text/xml"
    assert "<Type>Sender</Type>" in resp.text
    assert "<Code>Throttling</Code>" in resp.text and "<Message>Rate exceeded</Message>" in resp.text
    request_id = resp.headers["x-amzn-RequestId"]
    assert f"<RequestId>{request_id}</RequestId>" in resp.text
    # The throttled call is in the trail with its error, under the request id it was answered with.
    records = events(secured, EventName="GetCallerIdentity")
    [throttled] = [r for r in records if r.get("requestID") == request_id]
    assert throttled["eventSource"] == "sts.amazonaws.com"
    assert throttled["errorCode"] == "Throttling"
    assert throttled["errorMessage"] == "Rate exceeded"
    assert throttled["userIdentity"]["arn"] == f"arn:aws:iam::{OWNER}:user/admin"
    # Another service's quota is not touched: Secrets Manager still serves.
    secured.admin().list_secrets()


def test_iam_calls_are_throttled_change_nothing_and_are_audited(secured):
    iam = secured.client(secured.admin_key, service="iam")
    created, throttled, error = [], [], None
    for i in range(BURST):
        name = f"quota-user-{i}"
        try:
            iam.create_user(UserName=name)
            created.append(name)
        except ClientError as e:
            if e.response["Error"]["Code"] != "Throttling":
                raise
            throttled.append(name)
            error = error or e
    assert error is not None, f"{BURST} CreateUser calls at a quota of 2/s were never throttled"
    assert error.response["Error"]["Message"] == "Rate exceeded"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # A throttled CreateUser made no user (a retrying client gets through the quota).
    patient = boto3.client("iam", endpoint_url=secured.url, region_name=REGION, config=RETRYING,
                           aws_access_key_id=secured.admin_key[0], aws_secret_access_key=secured.admin_key[1])
    assert patient.get_user(UserName=created[0])["User"]["UserName"] == created[0]
    with pytest.raises(ClientError) as missing:
        patient.get_user(UserName=throttled[0])
    assert missing.value.response["Error"]["Code"] == "NoSuchEntity"
    # Each throttled call is audited with its error, like a JSON call.
    records = events(secured, EventName="CreateUser")
    errors = [r for r in records if r.get("errorCode") == "Throttling"]
    assert len(errors) == len(throttled)
    assert all(r["errorMessage"] == "Rate exceeded" and r["eventSource"] == "iam.amazonaws.com" for r in errors)
    # A throttled call is refused before its form is read: no parameters, as a throttled
    # JSON call's. The others record the user they named and made (test_audit_query.py).
    assert all(r.get("requestParameters") is None and r.get("responseElements") is None for r in errors)
    made = {r["requestParameters"]["userName"]: r for r in records if r.get("errorCode") is None}
    assert all(made[name]["responseElements"]["user"]["userName"] == name for name in created)


def test_a_failed_iam_signature_of_a_known_key_is_recorded(secured):
    wrong = (secured.admin_key[0], "y" * 40)
    resp = signed_form(secured, wrong, "iam", "Action=ListGroups&Version=2010-05-08")
    assert resp.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in resp.text
    request_id = resp.headers["x-amzn-RequestId"]
    [failed] = [e for e in events(secured, EventName="ListGroups") if e.get("requestID") == request_id]
    assert failed["eventSource"] == "iam.amazonaws.com"
    assert failed["errorCode"] == "SignatureDoesNotMatch"
    assert failed["userIdentity"]["accessKeyId"] == secured.admin_key[0]
    assert failed["userIdentity"]["userName"] == "admin"


def test_a_failed_sts_signature_of_a_known_key_is_recorded(secured):
    wrong = (secured.admin_key[0], "z" * 40)
    resp = signed_form(secured, wrong, "sts", "Action=GetSessionToken&Version=2011-06-15")
    assert resp.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in resp.text
    request_id = resp.headers["x-amzn-RequestId"]
    [failed] = [e for e in events(secured, EventName="GetSessionToken") if e.get("requestID") == request_id]
    assert failed["eventSource"] == "sts.amazonaws.com"
    assert failed["errorCode"] == "SignatureDoesNotMatch"
    assert failed["userIdentity"]["accessKeyId"] == secured.admin_key[0]


def test_an_unknown_query_action_is_refused_after_authentication(secured):
    # Unsigned: the signature is what is refused, not the action.
    resp = requests.post(secured.url + "/", data="Action=FlyToTheMoon&Version=2011-06-15",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert resp.status_code == 403
    assert "<Code>MissingAuthenticationToken</Code>" in resp.text
    # Signed: InvalidAction, the name echoed at most 128 characters.
    long = "Fly" * 400
    resp = signed_form(secured, secured.admin_key, "sts", f"Action={long}&Version=2011-06-15")
    assert resp.status_code == 400
    assert "<Code>InvalidAction</Code>" in resp.text
    assert long not in resp.text and long[:128] in resp.text


def test_an_sts_call_is_audited_like_a_json_call(secured):
    patient = boto3.client("sts", endpoint_url=secured.url, region_name=REGION, config=RETRYING,
                           aws_access_key_id=secured.admin_key[0], aws_secret_access_key=secured.admin_key[1])
    answer = patient.get_session_token(DurationSeconds=900)
    request_id = answer["ResponseMetadata"]["RequestId"]
    [event] = [e for e in events(secured, EventName="GetSessionToken") if e.get("requestID") == request_id]
    assert event["eventSource"] == "sts.amazonaws.com"
    assert event.get("errorCode") is None
    assert event["userIdentity"]["type"] == "IAMUser"
    assert event["awsRegion"] == REGION
    assert event["sourceIPAddress"] == "127.0.0.1"
    # No credentials in the trail: only their access key id and expiry.
    assert answer["Credentials"]["SecretAccessKey"] not in json.dumps(event)
    assert answer["Credentials"]["SessionToken"] not in json.dumps(event)
    assert event["requestParameters"] == {"durationSeconds": 900}
    assert set(event["responseElements"]["credentials"]) == {"accessKeyId", "expiration"}
