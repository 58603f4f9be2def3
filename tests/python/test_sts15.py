"""STS and IAM leftovers of the fourteenth session (sts15), in enforcing mode and ``--dev``:

* what temporary credentials may call: GetFederationToken's none of IAM and no STS operation
  but GetCallerIdentity; GetSessionToken's (no MFA in Coffer) none of IAM and of STS only
  AssumeRole and GetCallerIdentity (AWS's GetFederationToken and GetSessionToken references);
* managed session policies (``PolicyArns``) on AssumeRole and GetFederationToken;
* the role trust policy's size limit (2,048 characters) on CreateRole and
  UpdateAssumeRolePolicy."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import start_dev_server
from iam_api_support import Server
from test_sts14 import DEV_ACCOUNT, User, allow, dev_client, error, uname, with_credentials


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("sts15"))
    yield server
    server.server.stop()


@pytest.fixture(scope="module")
def account(srv):
    return srv.client("sts").get_caller_identity()["Account"]


@pytest.fixture(scope="module")
def dev():
    server = start_dev_server()
    yield server
    server.stop()


def trust(account: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}]})


@pytest.fixture(scope="module")
def everything(srv):
    """A user whose policies allow every STS and IAM action (and Secrets Manager's)."""
    return User(srv, allow(["sts:*", "iam:*", "secretsmanager:*", "kms:*"]))


@pytest.fixture(scope="module")
def role(srv, account):
    name = uname("r15")
    srv.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=trust(account))
    srv.client("iam").put_role_policy(RoleName=name, PolicyName="all", PolicyDocument=allow(
        ["secretsmanager:*", "kms:*", "sts:*"]))
    return f"arn:aws:iam::{account}:role/{name}"


# --- 1. what temporary credentials may call -------------------------------------------------

def not_authorized(arn: str, action: str, resource: str) -> str:
    return f"User: {arn} is not authorized to perform: {action} on resource: {resource}"


def test_federated_credentials_call_no_sts_operation_but_get_caller_identity(srv, account, everything, role):
    creds = everything.client("sts").get_federation_token(Name="fed15", Policy=allow(["*"]))["Credentials"]
    sts = with_credentials(srv.url, "sts", creds)
    fed_arn = f"arn:aws:sts::{account}:federated-user/fed15"
    assert sts.get_caller_identity()["Arn"] == fed_arn
    assert error(lambda: sts.assume_role(RoleArn=role, RoleSessionName="s15")) == (
        "AccessDenied", not_authorized(fed_arn, "sts:AssumeRole", role), 403)
    assert error(lambda: sts.get_access_key_info(AccessKeyId=everything.key[0])) == (
        "AccessDenied", not_authorized(fed_arn, "sts:GetAccessKeyInfo", "*"), 403)
    assert error(lambda: sts.get_session_token()) == (
        "AccessDenied", "Cannot call GetSessionToken with session credentials", 403)
    assert error(lambda: with_credentials(srv.url, "iam", creds).get_user())[0] == "InvalidClientTokenId"


def test_session_token_credentials_assume_roles_but_call_no_other_sts_operation(srv, account, everything, role):
    creds = everything.client("sts").get_session_token()["Credentials"]
    sts = with_credentials(srv.url, "sts", creds)
    user_arn = f"arn:aws:iam::{account}:user/{everything.name}"
    assert sts.get_caller_identity()["Arn"] == user_arn
    assert sts.assume_role(RoleArn=role, RoleSessionName="s15")["AssumedRoleUser"]["Arn"].endswith("/s15")
    assert error(lambda: sts.get_access_key_info(AccessKeyId=everything.key[0])) == (
        "AccessDenied", not_authorized(user_arn, "sts:GetAccessKeyInfo", "*"), 403)
    assert error(lambda: with_credentials(srv.url, "iam", creds).list_users())[0] == "InvalidClientTokenId"


def test_role_session_credentials_keep_their_sts_operations(srv, everything, role):
    creds = everything.client("sts").assume_role(RoleArn=role, RoleSessionName="r15")["Credentials"]
    sts = with_credentials(srv.url, "sts", creds)
    assert sts.get_access_key_info(AccessKeyId=everything.key[0])["Account"]


def test_dev_federated_credentials_call_no_sts_operation_but_get_caller_identity(dev):
    creds = dev_client(dev.url, "sts").get_federation_token(Name="devfed")["Credentials"]
    sts = with_credentials(dev.url, "sts", creds)
    fed_arn = f"arn:aws:sts::{DEV_ACCOUNT}:federated-user/devfed"
    role = f"arn:aws:iam::{DEV_ACCOUNT}:role/anything"
    assert sts.get_caller_identity()["Arn"] == fed_arn
    assert error(lambda: sts.assume_role(RoleArn=role, RoleSessionName="s15")) == (
        "AccessDenied", not_authorized(fed_arn, "sts:AssumeRole", role), 403)
    assert error(lambda: sts.get_access_key_info(AccessKeyId="AKIAIOSFODNN7EXAMPLE")) == (
        "AccessDenied", not_authorized(fed_arn, "sts:GetAccessKeyInfo", "*"), 403)
    assert error(lambda: with_credentials(dev.url, "iam", creds).list_users())[0] == "InvalidClientTokenId"


def test_dev_session_token_credentials_assume_roles_but_call_no_iam_operation(dev):
    iam = dev_client(dev.url, "iam")
    name = uname("devu")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    user = dev_client(dev.url, "sts", key["AccessKeyId"])
    creds = user.get_session_token()["Credentials"]
    sts = with_credentials(dev.url, "sts", creds)
    user_arn = f"arn:aws:iam::{DEV_ACCOUNT}:user/{name}"
    assert sts.get_caller_identity()["Arn"] == user_arn
    role = f"arn:aws:iam::{DEV_ACCOUNT}:role/anything"
    assert sts.assume_role(RoleArn=role, RoleSessionName="s15")["AssumedRoleUser"]["Arn"].endswith("/s15")
    assert error(lambda: sts.get_access_key_info(AccessKeyId=key["AccessKeyId"])) == (
        "AccessDenied", not_authorized(user_arn, "sts:GetAccessKeyInfo", "*"), 403)
    assert error(lambda: with_credentials(dev.url, "iam", creds).list_users())[0] == "InvalidClientTokenId"
    # A role session's credentials still manage IAM, as on AWS.
    assumed = sts.assume_role(RoleArn=role, RoleSessionName="s15")["Credentials"]
    with_credentials(dev.url, "iam", assumed).list_users()


# --- 3. the trust policy's size -------------------------------------------------------------

# IAM's words (recorded in public reports of CreateRole and UpdateAssumeRolePolicy failing).
TRUST_TOO_LONG = "Cannot exceed quota for ACLSizePerRole: 2048"


def padded_trust(account: str, chars: int) -> str:
    """A trust policy of exactly `chars` characters once whitespace is removed (a Sid pads it),
    written with extra whitespace that IAM does not count."""
    base = {"Version": "2012-10-17", "Statement": [
        {"Sid": "", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "sts:AssumeRole"}]}
    compact = len(json.dumps(base, separators=(",", ":")))
    base["Statement"][0]["Sid"] = "S" * (chars - compact)
    return json.dumps(base, indent=4)


@pytest.mark.parametrize("mode", ["enforcing", "dev"])
def test_a_trust_policy_over_2048_characters_is_refused(request, mode, account):
    if mode == "dev":
        iam, acct = dev_client(request.getfixturevalue("dev").url, "iam"), DEV_ACCOUNT
    else:
        iam, acct = request.getfixturevalue("srv").client("iam"), account
    name = uname("big")
    fits = padded_trust(acct, 2048)
    assert len(fits) > 2048
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=fits)
    over = padded_trust(acct, 2049)
    assert error(lambda: iam.create_role(RoleName=uname("big"), AssumeRolePolicyDocument=over)) == (
        "LimitExceeded", TRUST_TOO_LONG, 409)
    assert error(lambda: iam.update_assume_role_policy(RoleName=name, PolicyDocument=over)) == (
        "LimitExceeded", TRUST_TOO_LONG, 409)
    kept = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    assert kept["Statement"][0]["Sid"] == json.loads(fits)["Statement"][0]["Sid"]


# --- 2. managed session policies (PolicyArns) ------------------------------------------------

@pytest.fixture(scope="module")
def two_secrets(srv):
    sm = srv.client("secretsmanager")
    names = [uname("msp-a"), uname("msp-b")]
    return [(n, sm.create_secret(Name=n, SecretString=f"value-{n}")["ARN"]) for n in names]


def reads(arns: list[str]) -> str:
    """Reading `arns` (and decrypting under the AWS managed key that seals them)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arns},
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]})


def managed(srv, document: str) -> str:
    return srv.client("iam").create_policy(PolicyName=uname("msp"), PolicyDocument=document)["Policy"]["Arn"]


def can_read(sm, name: str) -> bool:
    try:
        sm.get_secret_value(SecretId=name)
        return True
    except Exception as e:  # noqa: BLE001 - the code is what matters
        assert e.response["Error"]["Code"] == "AccessDeniedException", e
        return False


def test_managed_session_policies_bound_a_role_session_as_they_are_at_each_request(
        srv, everything, role, two_secrets):
    (a, a_arn), (b, b_arn) = two_secrets
    policy = managed(srv, reads([a_arn]))
    answer = everything.client("sts").assume_role(
        RoleArn=role, RoleSessionName="managed", PolicyArns=[{"arn": policy}])
    assert 1 <= answer["PackedPolicySize"] <= 100
    sm = with_credentials(srv.url, "secretsmanager", answer["Credentials"])
    assert (can_read(sm, a), can_read(sm, b)) == (True, False)
    # A new default version applies to the session already issued (AWS packs the ARN).
    iam = srv.client("iam")
    iam.create_policy_version(PolicyArn=policy, PolicyDocument=reads([a_arn, b_arn]), SetAsDefault=True)
    assert (can_read(sm, a), can_read(sm, b)) == (True, True)
    iam.set_default_policy_version(PolicyArn=policy, VersionId="v1")
    assert (can_read(sm, a), can_read(sm, b)) == (True, False)
    # Inline and managed session policies together: what either allows.
    both = everything.client("sts").assume_role(
        RoleArn=role, RoleSessionName="both", Policy=reads([b_arn]), PolicyArns=[{"arn": policy}])
    sm_both = with_credentials(srv.url, "secretsmanager", both["Credentials"])
    assert (can_read(sm_both, a), can_read(sm_both, b)) == (True, True)
    # A deleted managed session policy allows nothing any more (fail closed).
    iam.delete_policy_version(PolicyArn=policy, VersionId="v2")
    iam.delete_policy(PolicyArn=policy)
    assert (can_read(sm, a), can_read(sm, b)) == (False, False)
    assert (can_read(sm_both, a), can_read(sm_both, b)) == (False, True)


def test_managed_session_policies_alone_give_a_federated_user_its_permissions(
        srv, everything, two_secrets):
    (a, a_arn), (b, _) = two_secrets
    policy = managed(srv, reads([a_arn]))
    answer = everything.client("sts").get_federation_token(Name="fedmsp", PolicyArns=[{"arn": policy}])
    assert 1 <= answer["PackedPolicySize"] <= 100
    sm = with_credentials(srv.url, "secretsmanager", answer["Credentials"])
    assert (can_read(sm, a), can_read(sm, b)) == (True, False)


def test_managed_session_policies_are_not_wider_than_the_identity(srv, account, two_secrets):
    (a, a_arn), _ = two_secrets
    user = User(srv, allow(["sts:GetFederationToken"]))
    policy = managed(srv, reads([a_arn]))
    creds = user.client("sts").get_federation_token(Name="narrowmsp", PolicyArns=[{"arn": policy}])["Credentials"]
    assert not can_read(with_credentials(srv.url, "secretsmanager", creds), a)


def policy_refusal(arn: str) -> tuple[str, str, int]:
    return ("MalformedPolicyDocument", f"Policy {arn} does not exist or is not attachable.", 400)


def test_managed_session_policies_that_name_no_policy_of_the_account_are_refused(srv, account, everything, role):
    sts = everything.client("sts")
    missing = f"arn:aws:iam::{account}:policy/not-there-{uuid.uuid4().hex[:6]}"
    # One Coffer has not got (managed16 serves ReadOnlyAccess and a few others).
    aws_managed = "arn:aws:iam::aws:policy/Nope"
    elsewhere = "arn:aws:iam::111122223333:policy/theirs"
    not_a_policy = role
    for arn in (missing, aws_managed, elsewhere, not_a_policy):
        assert error(lambda: sts.assume_role(RoleArn=role, RoleSessionName="bad", PolicyArns=[{"arn": arn}])) == \
            policy_refusal(arn)
        assert error(lambda: sts.get_federation_token(Name="bad", PolicyArns=[{"arn": arn}])) == \
            policy_refusal(arn)


@pytest.mark.parametrize("mode", ["enforcing", "dev"])
def test_policy_arns_input_is_checked_as_aws_checks_it(request, mode):
    if mode == "dev":
        sts, acct = dev_client(request.getfixturevalue("dev").url, "sts"), DEV_ACCOUNT
        role = f"arn:aws:iam::{acct}:role/anything"
    else:
        sts = request.getfixturevalue("everything").client("sts")
        role, acct = request.getfixturevalue("role"), request.getfixturevalue("account")
    calls = [lambda **kw: sts.assume_role(RoleArn=role, RoleSessionName="check", **kw),
             lambda **kw: sts.get_federation_token(Name="check", **kw)]
    for call in calls:
        assert error(lambda: call(PolicyArns=[{"arn": "arn:aws:iam::1:p"}])) == (
            "ValidationError", "1 validation error detected: Value 'arn:aws:iam::1:p' at 'policyArns.1.member.arn' "
            "failed to satisfy constraint: Member must have length greater than or equal to 20", 400)
        eleven = [{"arn": f"arn:aws:iam::{acct}:policy/p{i:02}"} for i in range(11)]
        assert error(lambda: call(PolicyArns=eleven)) == (
            "ValidationError", "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: "
            "Member must have length less than or equal to 10", 400)
        # The inline policy and the ARNs, as plain text, at most 2,048 characters together.
        long_arns = [{"arn": f"arn:aws:iam::{acct}:policy/{'p' * 180}{i}"} for i in range(10)]
        code, message, status = error(lambda: call(PolicyArns=long_arns, Policy=allow(["secretsmanager:*"])))
        assert (code, status) == ("PackedPolicyTooLarge", 400)
        assert message.startswith("Packed policy consumes ") and message.endswith(
            "% of allotted space, please use smaller policy for this request.")


def test_dev_takes_managed_session_policies_it_does_not_hold(dev):
    sts = dev_client(dev.url, "sts")
    arns = [{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}, {"arn": f"arn:aws:iam::{DEV_ACCOUNT}:policy/made-up"}]
    answer = sts.assume_role(RoleArn=f"arn:aws:iam::{DEV_ACCOUNT}:role/anything", RoleSessionName="devmsp",
                             PolicyArns=arns)
    assert 1 <= answer["PackedPolicySize"] <= 100
    fed = sts.get_federation_token(Name="devmsp", PolicyArns=arns)
    assert 1 <= fed["PackedPolicySize"] <= 100


@pytest.fixture(scope="module")
def file_issuer(srv, tmp_path_factory):
    from test_iam_api_web_identity import AUDIENCE, Issuer

    directory = tmp_path_factory.mktemp("issuer15")
    issuer = Issuer(directory, f"https://oidc.cluster-{uuid.uuid4().hex[:6]}.example.test/id")
    jwks = directory / "jwks.json"
    jwks.write_text(issuer.jwks())
    issuer.arn = srv.client("iam").create_open_id_connect_provider(
        Url=issuer.url, ClientIDList=[AUDIENCE], ThumbprintList=["a" * 40],
        Tags=[{"Key": "coffer:jwks-file", "Value": str(jwks)}])["OpenIDConnectProviderArn"]
    return issuer


def test_managed_session_policies_bound_a_web_identity_session(srv, account, file_issuer, two_secrets):
    from test_iam_api_web_identity import web_role

    (a, a_arn), (b, _) = two_secrets
    role_arn = web_role(srv, file_issuer)
    srv.client("iam").put_role_policy(RoleName=role_arn.rsplit("/", 1)[1], PolicyName="kms",
                                      PolicyDocument=allow(["kms:Decrypt"]))
    policy = managed(srv, reads([a_arn]))
    creds = srv.anonymous_sts().assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="pod", WebIdentityToken=file_issuer.token(),
        PolicyArns=[{"arn": policy}])["Credentials"]
    sm = with_credentials(srv.url, "secretsmanager", creds)
    assert (can_read(sm, a), can_read(sm, b)) == (True, False)
    missing = f"arn:aws:iam::{account}:policy/gone-{uuid.uuid4().hex[:6]}"
    assert error(lambda: srv.anonymous_sts().assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="pod", WebIdentityToken=file_issuer.token(),
        PolicyArns=[{"arn": missing}])) == policy_refusal(missing)


# --- 5. the trail of IAM calls ----------------------------------------------------------------

def events_named(srv, attribute: str, value: str) -> list[dict]:
    found = srv.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": attribute, "AttributeValue": value}], MaxResults=50)["Events"]
    return [json.loads(e["CloudTrailEvent"]) for e in found]


def test_create_oidc_provider_and_update_role_description_record_their_answers(srv, account):
    iam = srv.client("iam")
    url = f"https://oidc-{uuid.uuid4().hex[:6]}.example.test/id"
    arn = iam.create_open_id_connect_provider(Url=url, ClientIDList=["aud"], ThumbprintList=["c" * 40],
                                              Tags=[{"Key": "team", "Value": "blue"}])["OpenIDConnectProviderArn"]
    event = next(e for e in events_named(srv, "EventName", "CreateOpenIDConnectProvider")
                 if e["requestParameters"]["url"] == url)
    assert event["responseElements"] == {"openIDConnectProviderArn": arn,
                                         "tags": [{"key": "team", "value": "blue"}]}
    name = uname("described")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust(account), MaxSessionDuration=7200)
    role = iam.update_role_description(RoleName=name, Description="now described")["Role"]
    event = next(e for e in events_named(srv, "EventName", "UpdateRoleDescription")
                 if e["requestParameters"]["roleName"] == name)
    shown = event["responseElements"]["role"]
    assert {k: shown[k] for k in ("path", "roleName", "roleId", "arn", "description", "maxSessionDuration")} == {
        "path": "/", "roleName": name, "roleId": role["RoleId"], "arn": role["Arn"],
        "description": "now described", "maxSessionDuration": 7200}


def test_lookup_events_finds_iam_calls_by_the_resources_they_name(srv, account):
    iam = srv.client("iam")
    user, role, group = uname("lu"), uname("lr"), uname("lg")
    user_arn = iam.create_user(UserName=user)["User"]["Arn"]
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=allow(["secretsmanager:ListSecrets"]))
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust(account))["Role"]["Arn"]
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=user)
    policy = iam.create_policy(PolicyName=uname("lp"), PolicyDocument=allow(["secretsmanager:ListSecrets"]))["Policy"]
    iam.attach_role_policy(RoleName=role, PolicyArn=policy["Arn"])

    def names(value: str) -> set[str]:
        return {e["eventName"] for e in events_named(srv, "ResourceName", value)}

    assert {"CreateUser", "PutUserPolicy", "AddUserToGroup"} <= names(user)
    assert "CreateUser" in names(user_arn)
    assert {"CreateRole", "AttachRolePolicy"} <= names(role)
    assert "CreateRole" in names(role_arn)
    assert {"CreateGroup", "AddUserToGroup"} <= names(group)
    assert {"CreatePolicy", "AttachRolePolicy"} <= names(policy["Arn"])
