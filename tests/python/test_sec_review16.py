"""Regression tests for review 16: an adversarial review of the fifteenth session's changes
(managed session policies and what temporary credentials may call, `POST /` answered
without the router, the console's replication and key/value forms, model15's tag and
grant checks, the lookup caches' eviction, the appender's gathering). Findings are
`test_NN_*` (each seen failing before its fix), what held `test_held_*`.

Each test drives the real binary through boto3 (or a raw socket): an enforcing server
whose users, roles and policies are made through the IAM API.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from conftest import REGION
from iam_api_support import Server

# The helpers of review 15's tests (same server shape, same users and clients); the
# `account` fixture there reads this module's `srv`.
from test_sec_review15 import account, allow, client, error, uname, user  # noqa: F401


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("review16")
    server = Server(data, extra=["--quota-scale", "100", "--audit-log",
                                 str(data.parent / "review16-audit.log")])
    server.audit_log = data.parent / "review16-audit.log"
    yield server
    server.server.stop()


# ------------------- 01: a Secrets Manager tag without a Value escaped tag-key conditions

GUARDED = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
    # The guardrail: restricted secrets are not read, and nobody changes the tag that
    # marks them (ABAC as AWS's documentation teaches it).
    {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
     "Condition": {"StringEquals": {"aws:ResourceTag/classification": "restricted"}}},
    {"Effect": "Deny", "Action": ["secretsmanager:TagResource", "secretsmanager:UntagResource",
                                  "secretsmanager:CreateSecret"],
     "Resource": "*",
     "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["classification"]}}}]})


def test_01_a_tag_without_a_value_cannot_overwrite_a_guarded_tag(srv):
    """model15 decodes a Secrets Manager tag without `Value` (the model does not require
    it) and stores it with an empty value; the authorization context (`aws:TagKeys`,
    `aws:RequestTag/<key>`) skipped such a tag. So a Deny on changing the tag key
    `classification` passed `TagResource(Tags=[{"Key": "classification"}])`, which
    overwrote `restricted` with `""`, and the Deny on reading restricted secrets no longer
    matched: the value was read."""
    _, key = user(srv, GUARDED, prefix="r16")
    name = uname("r16-01")
    client(srv, "secretsmanager").create_secret(
        Name=name, SecretString="restricted-value",
        Tags=[{"Key": "classification", "Value": "restricted"}])
    sm = client(srv, "secretsmanager", key)
    code, _ = error(lambda: sm.get_secret_value(SecretId=name))
    assert code == "AccessDeniedException"
    code, message = error(lambda: sm.tag_resource(SecretId=name, Tags=[{"Key": "classification"}]))
    assert code == "AccessDeniedException", message
    tags = client(srv, "secretsmanager").describe_secret(SecretId=name)["Tags"]
    assert {"Key": "classification", "Value": "restricted"} in tags
    code, _ = error(lambda: sm.get_secret_value(SecretId=name))
    assert code == "AccessDeniedException"


def test_01_a_tag_without_a_value_is_a_request_tag_to_create_secret(srv):
    """The same on CreateSecret: a tag key the caller may not set is refused whether or
    not the request gives it a value, and `aws:RequestTag/<key>` is the empty value that
    is stored."""
    _, key = user(srv, GUARDED, prefix="r16")
    sm = client(srv, "secretsmanager", key)
    name = uname("r16-01b")
    code, message = error(lambda: sm.create_secret(
        Name=name, SecretString="v", Tags=[{"Key": "classification"}]))
    assert code == "AccessDeniedException", message
    required = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "secretsmanager:CreateSecret", "Resource": "*",
         "Condition": {"StringNotEquals": {"aws:RequestTag/team": ""}}}]})
    _, key = user(srv, required, prefix="r16")
    # A policy that admits exactly the value stored admits a tag given without a value.
    client(srv, "secretsmanager", key).create_secret(
        Name=uname("r16-01c"), SecretString="v", Tags=[{"Key": "team"}])


# ----------------------------------------------------------------- what held: sts15

def trust_account(account: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "sts:AssumeRole"}]})


def managed_policy(srv, document: str) -> str:
    return srv.client("iam").create_policy(
        PolicyName=uname("r16-mp"), PolicyDocument=document)["Policy"]["Arn"]


def test_held_a_managed_session_policy_is_read_at_each_request(srv, account):
    """A session bounded by a managed session policy only: a new default version applies
    at the next request (within the role's own policies, never beyond them), and once the
    policy is deleted the session may do nothing, even when a policy is made again under
    another path with the same name (its ARN differs)."""
    iam = srv.client("iam")
    role = uname("r16-role")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust_account(account))
    iam.put_role_policy(RoleName=role, PolicyName="p",
                        PolicyDocument=allow(["secretsmanager:GetSecretValue",
                                              "secretsmanager:DescribeSecret"]))
    secret = uname("r16-s")
    srv.client("secretsmanager").create_secret(Name=secret, SecretString="v")
    arn = managed_policy(srv, allow("secretsmanager:DescribeSecret"))
    creds = srv.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="s16",
        PolicyArns=[{"arn": arn}, {"arn": arn}])["Credentials"]
    sm = srv.session_client("secretsmanager", creds)
    sm.describe_secret(SecretId=secret)
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    # Wider than the role: the role's policies still bound the session.
    iam.create_policy_version(PolicyArn=arn, SetAsDefault=True, PolicyDocument=allow("*"))
    assert sm.get_secret_value(SecretId=secret)["SecretString"] == "v"
    assert error(lambda: sm.list_secrets())[0] == "AccessDeniedException"
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    for v in versions:
        if not v["IsDefaultVersion"]:
            iam.delete_policy_version(PolicyArn=arn, VersionId=v["VersionId"])
    iam.delete_policy(PolicyArn=arn)
    assert error(lambda: sm.describe_secret(SecretId=secret))[0] == "AccessDeniedException"
    name = arn.rsplit("/", 1)[1]
    iam.create_policy(PolicyName=name, Path="/other/", PolicyDocument=allow("*"))
    assert error(lambda: sm.describe_secret(SecretId=secret))[0] == "AccessDeniedException"


def test_held_policy_arns_of_a_policy_the_caller_cannot_see_only_narrow(srv, account):
    """A managed session policy of the role's account that the caller may not read, or one
    allowing everything, adds nothing beyond the role: a session policy only narrows. An
    ARN naming a role, a user or a policy that does not exist is refused, as is an eleventh
    ARN."""
    iam = srv.client("iam")
    role = uname("r16-role")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust_account(account))
    iam.put_role_policy(RoleName=role, PolicyName="p",
                        PolicyDocument=allow("secretsmanager:DescribeSecret"))
    everything = managed_policy(srv, allow("*"))
    _, key = user(srv, allow("sts:AssumeRole"), prefix="r16")
    sts = client(srv, "sts", key)
    role_arn = f"arn:aws:iam::{account}:role/{role}"
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="s16",
                            PolicyArns=[{"arn": everything}])["Credentials"]
    sm = srv.session_client("secretsmanager", creds)
    secret = uname("r16-s")
    srv.client("secretsmanager").create_secret(Name=secret, SecretString="v")
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    assert error(lambda: srv.session_client("iam", creds).list_users())[0] == "AccessDenied"
    for bad in (role_arn, f"arn:aws:iam::{account}:user/nobody",
                f"arn:aws:iam::{account}:policy/none-{uname('x')}",
                f"arn:aws:iam::{account}:policy/../policy/x"):
        code, _ = error(lambda: sts.assume_role(RoleArn=role_arn, RoleSessionName="s16",
                                                PolicyArns=[{"arn": bad}]))
        assert code == "MalformedPolicyDocument", bad
    code, _ = error(lambda: sts.assume_role(RoleArn=role_arn, RoleSessionName="s16",
                                            PolicyArns=[{"arn": everything}] * 11))
    assert code == "ValidationError"


def test_held_what_temporary_credentials_may_call(srv, account):
    """GetSessionToken's credentials: AssumeRole and GetCallerIdentity of STS, no IAM
    call (they carry no MFA), no GetAccessKeyInfo, no GetSessionToken or
    GetFederationToken; a role session's: no GetSessionToken or GetFederationToken;
    a federated user's: GetCallerIdentity only. As AWS documents."""
    name, key = user(srv, allow("*"), prefix="r16")
    session = client(srv, "sts", key).get_session_token()["Credentials"]
    sts = srv.session_client("sts", session)
    assert sts.get_caller_identity()["Arn"].endswith(f":user/{name}")
    assert error(lambda: srv.session_client("iam", session).create_access_key(
        UserName=name))[0] in ("InvalidClientTokenId", "AccessDenied")
    assert error(lambda: sts.get_session_token())[0] == "AccessDenied"
    assert error(lambda: sts.get_federation_token(Name="fed"))[0] == "AccessDenied"
    assert error(lambda: sts.get_access_key_info(AccessKeyId=key[0]))[0] == "AccessDenied"
    role = uname("r16-role")
    srv.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust_account(account))
    srv.client("iam").put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=allow("*"))
    role_creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}",
                                 RoleSessionName="s16")["Credentials"]
    role_sts = srv.session_client("sts", role_creds)
    assert error(lambda: role_sts.get_session_token())[0] == "AccessDenied"
    assert error(lambda: role_sts.get_federation_token(Name="fed"))[0] == "AccessDenied"
    fed = client(srv, "sts", key).get_federation_token(Name="fed16", Policy=allow("*"))
    fed_sts = srv.session_client("sts", fed["Credentials"])
    for call in (lambda: fed_sts.get_access_key_info(AccessKeyId=key[0]),
                 lambda: fed_sts.get_session_token(),
                 lambda: fed_sts.get_federation_token(Name="again"),
                 lambda: fed_sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}",
                                             RoleSessionName="s16")):
        assert error(call)[0] == "AccessDenied"
    assert error(lambda: srv.session_client("iam", fed["Credentials"]).list_users())[0] in (
        "InvalidClientTokenId", "AccessDenied")


def test_held_a_renamed_users_session_gets_nothing_of_a_new_user_of_the_old_name(srv):
    """UpdateUser renames a user's GetSessionToken and GetFederationToken sessions with it
    (they are bound to the unique id): they keep the user's own permissions under the new
    name, and a user made afterwards under the old name lends them nothing."""
    iam = srv.client("iam")
    old, key = user(srv, allow(["secretsmanager:DescribeSecret", "sts:GetFederationToken"]),
                    prefix="r16")
    session = client(srv, "sts", key).get_session_token()["Credentials"]
    fed = client(srv, "sts", key).get_federation_token(
        Name="fed16r", Policy=allow("*"))["Credentials"]
    new = uname("r16-new")
    iam.update_user(UserName=old, NewUserName=new)
    iam.create_user(UserName=old)
    iam.put_user_policy(UserName=old, PolicyName="p", PolicyDocument=allow("*"))
    secret = uname("r16-s")
    srv.client("secretsmanager").create_secret(Name=secret, SecretString="v")
    for creds in (session, fed):
        assert srv.session_client("sts", creds).get_caller_identity()["Arn"].split(":")[-1] in (
            f"user/{new}", "federated-user/fed16r")
        sm = srv.session_client("secretsmanager", creds)
        sm.describe_secret(SecretId=secret)
        assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"


# ---------------------------------------------------------------- what held: console15

class Console:
    """A browser session against the console, over plain HTTP (review 7's, in short)."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()
        self.csrf = ""

    def sign_in(self, key: tuple[str, str], region: str = REGION) -> None:
        form = self.http.get(f"{self.base}/console/signin")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
        signed = self.http.post(f"{self.base}/console/signin", allow_redirects=False, data={
            "csrf": token, "access_key_id": key[0], "secret_access_key": key[1],
            "region": region})
        assert signed.status_code == 303, signed.text
        page = self.http.get(f"{self.base}/console/secrets")
        self.csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)

    def post(self, path: str, **data) -> requests.Response:
        return self.http.post(f"{self.base}/console{path}", allow_redirects=False,
                              data={"csrf": self.csrf, **data})


def test_held_console_replication_is_decided_as_the_api_decides(srv, account):
    """The console's replicate, remove and promote buttons call the API as the signed-in
    user: a user denied ReplicateSecretToRegions, RemoveRegionsFromReplication and
    StopReplicationToReplica by policy is refused each through the console, and nothing
    changes; without the CSRF token nothing is called."""
    denied = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Deny", "Resource": "*", "Action": [
            "secretsmanager:ReplicateSecretToRegions",
            "secretsmanager:RemoveRegionsFromReplication",
            "secretsmanager:StopReplicationToReplica"]}]})
    _, key = user(srv, denied, prefix="r16")
    admin = client(srv, "secretsmanager")
    name = uname("r16-rep")
    admin.create_secret(Name=name, SecretString="v", AddReplicaRegions=[{"Region": "us-west-2"}])
    other = uname("r16-rep2")
    admin.create_secret(Name=other, SecretString="v")
    home = Console(srv.url)
    home.sign_in(key)
    refused = home.post("/secret/replication", id=name, op="remove", region="us-west-2")
    assert refused.status_code == 400 or refused.status_code == 403, refused.status_code
    assert "AccessDenied" in refused.text
    refused = home.post("/secret/replication", id=other, op="add", region="eu-west-1")
    assert "AccessDenied" in refused.text
    replica = Console(srv.url)
    replica.sign_in(key, region="us-west-2")
    refused = replica.post("/secret/replication", id=name, op="promote")
    assert "AccessDenied" in refused.text
    no_token = home.http.post(f"{srv.url}/console/secret/replication", allow_redirects=False,
                              data={"id": name, "op": "remove", "region": "us-west-2"})
    assert no_token.status_code == 403
    described = admin.describe_secret(SecretId=name)
    assert [r["Region"] for r in described["ReplicationStatus"]] == ["us-west-2"]
    assert "ReplicationStatus" not in admin.describe_secret(SecretId=other)
    west = client(srv, "secretsmanager", region="us-west-2")
    assert west.describe_secret(SecretId=name)["PrimaryRegion"] == REGION


def test_held_console_escapes_keys_values_and_descriptions(srv):
    """What a secret holds reaches the page escaped: key names and values in the
    key/value editor, the editor's refusal naming a repeated key, the description."""
    _, key = user(srv, allow("secretsmanager:*"), prefix="r16")
    mark = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    name = uname("r16-xss")
    client(srv, "secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({mark: mark, "n": 5}), Description=mark)
    c = Console(srv.url)
    c.sign_in(key)
    pages = [c.http.get(f"{srv.url}/console/secret", params={"id": name}).text,
             c.post("/secret/value/edit", id=name, op="start").text,
             c.post("/secret/value/save", id=name, n="2", k0=mark, v0="a", k1=mark, v1="b").text]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in pages[1] and "&lt;script&gt;" in pages[2]


# ---------------- 02: policy documents padded with whitespace past the model's length

MODEL_MAX = 131072


def padded(document: str, length: int) -> str:
    """`document` with whitespace inserted after its first brace, `length` characters."""
    return document[0] + " " * (length - len(document)) + document[1:]


def test_02_a_policy_document_is_refused_past_the_models_length(srv, account):
    """IAM's limits (the trust policy's 2,048, sts15; a managed policy's 6,144; a user's
    inline 2,048) count characters without whitespace, as IAM counts them; the model also
    bounds every policy document member at 131,072 characters, whitespace included. Coffer
    did not enforce that bound: a trust policy, an inline or a managed policy of up to the
    request body's megabyte was stored as sent, each a few dozen characters of policy and
    the rest spaces, and read and parsed again at every AssumeRole, every lookup of a
    caller holding it, and every session naming the managed policy in PolicyArns (up to
    ten per session)."""
    iam = srv.client("iam")
    role = uname("r16-02")
    trust = trust_account(account)
    over = MODEL_MAX + 1
    constraint = f"Member must have length less than or equal to {MODEL_MAX}"
    calls = {
        "CreateRole": lambda: iam.create_role(
            RoleName=role, AssumeRolePolicyDocument=padded(trust, over)),
        "PutUserPolicy": lambda: iam.put_user_policy(
            UserName=name, PolicyName="p", PolicyDocument=padded(allow("*"), over)),
        "PutRolePolicy": lambda: iam.put_role_policy(
            RoleName=role, PolicyName="p", PolicyDocument=padded(allow("*"), over)),
        "UpdateAssumeRolePolicy": lambda: iam.update_assume_role_policy(
            RoleName=role, PolicyDocument=padded(trust, over)),
        "CreatePolicy": lambda: iam.create_policy(
            PolicyName=uname("r16-02p"), PolicyDocument=padded(allow("*"), over)),
        "CreatePolicyVersion": lambda: iam.create_policy_version(
            PolicyArn=arn, PolicyDocument=padded(allow("*"), over)),
    }
    name, _ = user(srv, None, prefix="r16")
    arn = managed_policy(srv, allow("*"))
    code, message = error(calls.pop("CreateRole"))
    assert code == "ValidationError", message
    assert "assumeRolePolicyDocument" in message and constraint in message
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    for op, call in calls.items():
        code, message = error(call)
        assert (code, "policyDocument" in message, constraint in message) == (
            "ValidationError", True, True), (op, message)
        assert len(message) < 1024, op
    # The model's bound itself is accepted, as IAM accepts it.
    iam.update_assume_role_policy(RoleName=role, PolicyDocument=padded(trust, MODEL_MAX))


def test_held_console_edits_leave_no_value_in_the_trail_or_the_logs(srv):
    """The key/value editor's post-backs, a refused save (a repeated key) and a saved one
    (typed rows kept as numbers) put no value in LookupEvents, the --audit-log file or the
    server's output; the saved value is what the rows said."""
    _, key = user(srv, allow(["secretsmanager:*", "cloudtrail:LookupEvents"]), prefix="r16")
    name = uname("r16-trail")
    client(srv, "secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"user": "u", "port": 5432}))
    c = Console(srv.url)
    c.sign_in(key)
    marks = [f"r16-value-{uname('m')}" for _ in range(3)]
    c.post("/secret/value/edit", id=name, op="start")
    c.post("/secret/value/edit", id=name, op="add", n="2", k0="user", v0=marks[0], k1="port",
           v1="5433", t1="json")
    refused = c.post("/secret/value/save", id=name, n="2", k0="dup", v0=marks[1], k1="dup",
                     v1=marks[1])
    assert refused.status_code == 400 and marks[1] not in refused.text.split("value=")[0]
    saved = c.post("/secret/value/save", id=name, n="2", k0="user", v0=marks[2], k1="port",
                   v1="5433", t1="json")
    assert saved.status_code == 303, saved.text
    value = client(srv, "secretsmanager").get_secret_value(SecretId=name)["SecretString"]
    assert json.loads(value) == {"user": marks[2], "port": 5433}
    trail = client(srv, "cloudtrail", key)
    events, token = [], None
    for _ in range(50):
        page = trail.lookup_events(MaxResults=50, **({"NextToken": token} if token else {}))
        events += page["Events"]
        token = page.get("NextToken")
        if not token:
            break
    recorded = json.dumps(events, default=str)
    assert "PutSecretValue" in recorded
    # The audit log's lines are written before a call is answered (`appender::run`).
    log = srv.audit_log.read_text()
    for mark in marks:
        assert mark not in recorded and mark not in log and mark not in srv.server.output(), mark


# ------------- 03: IAM's tagging calls carried no aws:TagKeys or aws:RequestTag/<key>

def abac_user(srv, guard: list[dict]) -> tuple[str, tuple[str, str]]:
    """A user who may manage IAM, read the secrets of its team (ABAC: the secret's `team`
    tag is the principal's), and is held by `guard` (Deny statements on tagging)."""
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": {"StringEquals": {
             "aws:ResourceTag/team": "${aws:PrincipalTag/team}"}}}, *guard]})
    return user(srv, policy, prefix="r16")


TAG_ACTIONS = ["iam:TagUser", "iam:TagRole", "iam:UntagUser", "iam:UntagRole",
               "iam:CreateUser", "iam:CreateRole", "iam:CreatePolicy", "iam:TagPolicy"]


def test_03_a_deny_on_tag_keys_holds_for_iams_tagging_calls(srv, account):
    """AWS's ABAC guidance: keep principals from changing the tags access is decided on
    with a Deny on `aws:TagKeys` for iam:TagUser, iam:TagRole (and the calls that create
    tagged entities). Coffer gave IAM's calls neither `aws:TagKeys` nor
    `aws:RequestTag/<key>`, so such a Deny never matched: a user tagged itself
    `team=finance` and read the finance team's secret."""
    guard = [{"Effect": "Deny", "Action": TAG_ACTIONS, "Resource": "*",
              "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}}}]
    name, key = abac_user(srv, guard)
    secret = uname("r16-03")
    client(srv, "secretsmanager").create_secret(
        Name=secret, SecretString="finance-value", Tags=[{"Key": "team", "Value": "finance"}])
    iam = client(srv, "iam", key)
    code, message = error(lambda: iam.tag_user(
        UserName=name, Tags=[{"Key": "other", "Value": "x"}, {"Key": "team", "Value": "finance"}]))
    assert code == "AccessDenied", message
    code, _ = error(lambda: client(srv, "secretsmanager", key).get_secret_value(SecretId=secret))
    assert code == "AccessDeniedException"
    # A role made or tagged with the key: refused too (its sessions would carry the tag).
    role = uname("r16-03r")
    code, _ = error(lambda: iam.create_role(
        RoleName=role, AssumeRolePolicyDocument=trust_account(account),
        Tags=[{"Key": "team", "Value": "finance"}]))
    assert code == "AccessDenied"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust_account(account))
    assert error(lambda: iam.tag_role(RoleName=role, Tags=[{"Key": "team", "Value": "f"}]))[0] == (
        "AccessDenied")
    assert error(lambda: iam.create_user(UserName=uname("r16-03u"),
                                         Tags=[{"Key": "team", "Value": "f"}]))[0] == "AccessDenied"
    assert error(lambda: iam.create_policy(PolicyName=uname("r16-03p"), PolicyDocument=allow("*"),
                                           Tags=[{"Key": "team", "Value": "f"}]))[0] == "AccessDenied"
    # Untagging names its keys in aws:TagKeys.
    client(srv, "iam").tag_user(UserName=name, Tags=[{"Key": "team", "Value": "ops"}])
    assert error(lambda: iam.untag_user(UserName=name, TagKeys=["team"]))[0] == "AccessDenied"
    # Other keys stay open.
    iam.tag_user(UserName=name, Tags=[{"Key": "other", "Value": "x"}])
    iam.tag_role(RoleName=role, Tags=[{"Key": "other", "Value": "x"}])


def test_03_a_deny_on_a_request_tag_holds_for_iams_tagging_calls(srv):
    """The same with `aws:RequestTag/team` (the value a tag is given), on TagUser."""
    guard = [{"Effect": "Deny", "Action": TAG_ACTIONS, "Resource": "*",
              "Condition": {"StringEquals": {"aws:RequestTag/team": "finance"}}}]
    name, key = abac_user(srv, guard)
    iam = client(srv, "iam", key)
    code, message = error(lambda: iam.tag_user(
        UserName=name, Tags=[{"Key": "team", "Value": "finance"}]))
    assert code == "AccessDenied", message
    iam.tag_user(UserName=name, Tags=[{"Key": "team", "Value": "ops"}])


# -------------- 04: IAM's calls and AssumeRole carried no aws:ResourceTag of their entity

PROTECTED = [{"Effect": "Deny", "Action": ["iam:*", "sts:AssumeRole"], "Resource": "*",
              "Condition": {"StringEquals": {"aws:ResourceTag/protected": "true"}}}]


def test_04_a_deny_on_a_resource_tag_protects_iam_users_and_roles(srv, account):
    """AWS's guidance for protecting administrators' users and roles: Deny iam:* (and
    sts:AssumeRole) on resources tagged so (`aws:ResourceTag/<key>`, which IAM gives its
    users, roles and policies). Coffer set no resource tag for IAM's calls or for
    AssumeRole, so that Deny never matched: a user allowed IAM but denied its protected
    administrator made an access key for the administrator (or rewrote the protected role's
    trust and assumed it) and acted as it."""
    iam_admin = client(srv, "iam")
    admin_user = uname("r16-04-admin")
    iam_admin.create_user(UserName=admin_user, Tags=[{"Key": "protected", "Value": "true"}])
    iam_admin.put_user_policy(UserName=admin_user, PolicyName="p", PolicyDocument=allow("*"))
    admin_role = uname("r16-04-role")
    iam_admin.create_role(RoleName=admin_role, AssumeRolePolicyDocument=trust_account(account),
                          Tags=[{"Key": "protected", "Value": "true"}])
    iam_admin.put_role_policy(RoleName=admin_role, PolicyName="p", PolicyDocument=allow("*"))
    guarded = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:*", "sts:AssumeRole"], "Resource": "*"},
        *PROTECTED]})
    _, key = user(srv, guarded, prefix="r16")
    iam = client(srv, "iam", key)
    attempts = {
        "CreateAccessKey": lambda: iam.create_access_key(UserName=admin_user),
        "PutUserPolicy": lambda: iam.put_user_policy(
            UserName=admin_user, PolicyName="q", PolicyDocument=allow("*")),
        "UntagUser": lambda: iam.untag_user(UserName=admin_user, TagKeys=["protected"]),
        "UpdateAssumeRolePolicy": lambda: iam.update_assume_role_policy(
            RoleName=admin_role, PolicyDocument=trust_account(account)),
        "PutRolePolicy": lambda: iam.put_role_policy(
            RoleName=admin_role, PolicyName="q", PolicyDocument=allow("*")),
        "DeleteRolePolicy": lambda: iam.delete_role_policy(RoleName=admin_role, PolicyName="p"),
        "AssumeRole": lambda: client(srv, "sts", key).assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/{admin_role}", RoleSessionName="s16"),
    }
    for op, call in attempts.items():
        code, message = error(call)
        assert code == "AccessDenied", (op, message)
    assert iam_admin.list_access_keys(UserName=admin_user)["AccessKeyMetadata"] == []
    # Entities without the tag stay open to the same user.
    other = uname("r16-04-other")
    iam.create_user(UserName=other)
    iam.create_access_key(UserName=other)


def test_04_a_deny_on_a_managed_policys_tag_holds(srv):
    """The same for a customer managed policy tagged `protected=true`: its versions are
    not changed by a caller the Deny names."""
    arn = srv.client("iam").create_policy(
        PolicyName=uname("r16-04p"), PolicyDocument=allow("secretsmanager:DescribeSecret"),
        Tags=[{"Key": "protected", "Value": "true"}])["Policy"]["Arn"]
    guarded = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"}, *PROTECTED]})
    _, key = user(srv, guarded, prefix="r16")
    iam = client(srv, "iam", key)
    code, message = error(lambda: iam.create_policy_version(
        PolicyArn=arn, PolicyDocument=allow("*"), SetAsDefault=True))
    assert code == "AccessDenied", message


# -------------------- 05: GetFederationToken took session tags without sts:TagSession

def test_05_a_federated_users_session_tags_need_sts_tag_session(srv):
    """AWS: passing session tags needs `sts:TagSession` "in addition to the action that
    matches the API operation", GetFederationToken included; the tags become the federated
    user's `aws:PrincipalTag/<key>`, over its user's. Coffer decided only
    sts:GetFederationToken, so a user tagged `team=ops`, allowed its team's secrets by
    ABAC, minted a federated user tagged `team=finance` and read the finance secret."""
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:GetFederationToken", "Resource": "*"},
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": {"StringEquals": {
             "aws:ResourceTag/team": "${aws:PrincipalTag/team}"}}}]})
    name, key = user(srv, policy, prefix="r16")
    srv.client("iam").tag_user(UserName=name, Tags=[{"Key": "team", "Value": "ops"}])
    secret = uname("r16-05")
    client(srv, "secretsmanager").create_secret(
        Name=secret, SecretString="finance-value", Tags=[{"Key": "team", "Value": "finance"}])
    sts = client(srv, "sts", key)
    code, message = error(lambda: sts.get_federation_token(
        Name="fed16t", Policy=allow("*"), Tags=[{"Key": "team", "Value": "finance"}]))
    assert code == "AccessDenied", message
    assert "sts:TagSession" in message
    # Without tags the federated user is its user's team, and reads nothing of finance.
    creds = sts.get_federation_token(Name="fed16t", Policy=allow("*"))["Credentials"]
    code, _ = error(lambda: srv.session_client("secretsmanager", creds).get_secret_value(
        SecretId=secret))
    assert code == "AccessDeniedException"


def test_05_sts_tag_session_on_get_federation_token_reads_the_request_tags(srv):
    """Allowed sts:TagSession only for some values (`aws:RequestTag/<key>`), a user passes
    those and no other."""
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:GetFederationToken", "Resource": "*"},
        {"Effect": "Allow", "Action": "sts:TagSession", "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestTag/team": "ops"}}}]})
    _, key = user(srv, policy, prefix="r16")
    sts = client(srv, "sts", key)
    sts.get_federation_token(Name="fed16u", Tags=[{"Key": "team", "Value": "ops"}])
    code, message = error(lambda: sts.get_federation_token(
        Name="fed16u", Tags=[{"Key": "team", "Value": "finance"}]))
    assert code == "AccessDenied", message


def test_held_a_replica_carries_its_primarys_resource_policy_and_tags(srv, account):
    """A caller denied a secret by its resource policy, and allowed to replicate it, does
    not read the replica instead: the replica answers with the primary's resource policy
    (and tags), and the Deny holds in the replica's Region."""
    name, key = user(srv, allow("secretsmanager:*"), prefix="r16")
    secret = uname("r16-rp")
    admin = client(srv, "secretsmanager")
    admin.create_secret(Name=secret, SecretString="rp-value")
    admin.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{account}:user/{name}"},
            "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}))
    sm = client(srv, "secretsmanager", key)
    assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    sm.replicate_secret_to_regions(SecretId=secret, AddReplicaRegions=[{"Region": "us-west-2"}])
    west = client(srv, "secretsmanager", key, region="us-west-2")
    code, message = error(lambda: west.get_secret_value(SecretId=secret))
    assert code == "AccessDeniedException" and "rp-value" not in message
