"""Regression tests for the thirteenth adversarial review's findings (the twelfth session's
features: `--dev` cross-account isolation, the AWS managed key refused across accounts, the
memory store's trail lock, the PostgreSQL handoff as a value, KMS's predefined aliases and
IncorrectKeyException, STS/IAM validation, managed policy versions; and the paths a caller
denied one route could take instead).

Each test drives the real binary through boto3: an enforcing server whose users, roles and
keys are made through the IAM API (a partner account's user through `coffer admin`), or a
`--dev` server where the account is the access key id's.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import REGION, SECRET_KEY, make_client, start_dev_server
from test_sec_review7 import Server

ACCOUNT = "000000000000"
PARTNER = "111122223333"
DEFAULT_KEY_ACROSS_ACCOUNTS = (
    "You can't access a secret from a different AWS account if you encrypt the secret "
    "with the default KMS service key."
)
EVERYTHING = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["secretsmanager:*", "kms:*"], "Resource": "*"}]}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("review13"), ["--quota-scale", "100"])
    yield s
    s.server.stop()


@pytest.fixture(scope="module")
def partner(srv):
    """Secrets Manager and KMS clients of a user of the partner account who may do anything
    its own identity policy can grant (what reaches the owner's secrets is their policies)."""
    key = srv.user("partner13", EVERYTHING, account=PARTNER)
    return srv.any_client("secretsmanager", key), srv.any_client("kms", key)


@pytest.fixture(scope="module")
def dev():
    s = start_dev_server()
    yield s
    s.stop()


def code_of(fn, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def let_in(account: str) -> str:
    """A resource policy letting `account` do anything to the secret."""
    return doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "secretsmanager:*", "Resource": "*"})


def key_shared_with(account: str) -> str:
    """A key policy: the owner may do anything, `account` may use the key."""
    return doc(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                    "kms:DescribeKey"], "Resource": "*"})


def dev_clients(dev, account: str):
    """`--dev` clients of `account` (the account is the access key id's)."""
    sm = make_client(dev.url, access_key=account, secret_key=SECRET_KEY)
    kms = boto3.client("kms", endpoint_url=dev.url, region_name=REGION,
                       aws_access_key_id=account, aws_secret_access_key=SECRET_KEY)
    return sm, kms


# ------------------------------- 01: `--dev` decided another account's calls on the secret's
# policy alone, never on the key that seals what they open or seal

def default_keyed_shared(sm, name: str) -> tuple[str, str]:
    """A secret under the AWS managed key (the default) whose resource policy lets PARTNER do
    anything, with three versions: the first left without a label. (ARN, first version.)"""
    arn = sm.create_secret(Name=name, SecretString="FIRST")["ARN"]
    first = sm.list_secret_version_ids(SecretId=arn)["Versions"][0]["VersionId"]
    sm.put_secret_value(SecretId=arn, SecretString="SECOND")
    sm.put_secret_value(SecretId=arn, SecretString="THIRD")
    sm.put_resource_policy(SecretId=arn, ResourcePolicy=let_in(PARTNER))
    return arn, first


def test_01_dev_another_account_cannot_move_a_default_keyed_value_under_a_key_it_may_use(dev):
    """The twelfth session made `--dev` refuse another account a value the AWS managed key
    seals (GetSecretValue, PutSecretValue, UpdateSecret with a value), looking at the key
    the secret names. But UpdateSecret with a new KmsKeyId re-encrypts the labelled versions
    for the caller: the other account moved them under a key it may use and then read them.
    The managed key's policy (kms:CallerAccount) refuses that on AWS, as Coffer does when
    enforcing (test_01_enforcing below)."""
    owner, owner_kms = dev_clients(dev, ACCOUNT)
    other, _ = dev_clients(dev, PARTNER)
    shared = owner_kms.create_key(Policy=key_shared_with(PARTNER))["KeyMetadata"]["Arn"]
    arn, _ = default_keyed_shared(owner, unique("r13-01"))
    code, message = code_of(other.update_secret, SecretId=arn, KmsKeyId=shared)
    assert code == "AccessDeniedException", message
    assert "KmsKeyId" not in owner.describe_secret(SecretId=arn)
    code, message = code_of(other.get_secret_value, SecretId=arn)
    assert (code, message) == ("InvalidRequestException", DEFAULT_KEY_ACROSS_ACCOUNTS)
    assert owner.get_secret_value(SecretId=arn)["SecretString"] == "THIRD"


def test_01_dev_an_old_version_the_managed_key_sealed_stays_out_of_another_accounts_reach(dev):
    """The managed-key refusal looked at the key the secret names now: once the owner moved
    the secret to a key it shares, a version left unlabelled (still sealed by the AWS
    managed key) was opened for the other account by its VersionId."""
    owner, owner_kms = dev_clients(dev, ACCOUNT)
    other, _ = dev_clients(dev, PARTNER)
    shared = owner_kms.create_key(Policy=key_shared_with(PARTNER))["KeyMetadata"]["Arn"]
    arn, first = default_keyed_shared(owner, unique("r13-01-old"))
    owner.update_secret(SecretId=arn, KmsKeyId=shared)
    # The labelled versions moved under the shared key: those the other account may read.
    assert other.get_secret_value(SecretId=arn)["SecretString"] == "THIRD"
    code, message = code_of(other.get_secret_value, SecretId=arn, VersionId=first)
    assert code == "AccessDeniedException", message
    batch = other.batch_get_secret_value(SecretIdList=[arn])
    assert [v["SecretString"] for v in batch["SecretValues"]] == ["THIRD"]


def test_01_dev_a_key_policy_that_does_not_share_the_key_keeps_another_account_out(dev):
    """On AWS another account reads or writes a secret only if the secret's resource policy
    and the policy of the key that seals it both let it in. `--dev` asked the resource policy
    alone: a customer managed key whose policy names only its own account still sealed and
    opened values for the other account (GetSecretValue, PutSecretValue, a batch)."""
    owner, owner_kms = dev_clients(dev, ACCOUNT)
    other, _ = dev_clients(dev, PARTNER)
    mine_only = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                     "Action": "kms:*", "Resource": "*"})
    key = owner_kms.create_key(Policy=mine_only)["KeyMetadata"]["Arn"]
    arn = owner.create_secret(Name=unique("r13-01-key"), SecretString="KEPT", KmsKeyId=key)["ARN"]
    owner.put_resource_policy(SecretId=arn, ResourcePolicy=let_in(PARTNER))
    # Metadata needs no key.
    assert other.describe_secret(SecretId=arn)["ARN"] == arn
    for call, kwargs in ((other.get_secret_value, {}),
                         (other.put_secret_value, {"SecretString": "overwritten"})):
        code, message = code_of(call, SecretId=arn, **kwargs)
        assert code == "AccessDeniedException", message
        assert f"kms:" in message and key in message, message
    batch = other.batch_get_secret_value(SecretIdList=[arn])
    assert batch["SecretValues"] == []
    assert [e["ErrorCode"] for e in batch["Errors"]] == ["AccessDeniedException"]
    assert len(owner.list_secret_version_ids(SecretId=arn)["Versions"]) == 1
    assert owner.get_secret_value(SecretId=arn)["SecretString"] == "KEPT"
    # Once the key policy shares the key, the same calls go through.
    owner_kms.put_key_policy(KeyId=key, PolicyName="default", Policy=key_shared_with(PARTNER))
    assert other.get_secret_value(SecretId=arn)["SecretString"] == "KEPT"
    other.put_secret_value(SecretId=arn, SecretString="WRITTEN")
    assert owner.get_secret_value(SecretId=arn)["SecretString"] == "WRITTEN"


def test_01_enforcing_refuses_the_same_three_routes(srv, partner):
    """What the `--dev` tests above expect is what the enforcing server already answers."""
    admin = srv.admin()
    kms = srv.any_client("kms")
    sm, _ = partner
    shared = kms.create_key(Policy=key_shared_with(PARTNER))["KeyMetadata"]["Arn"]
    arn, first = default_keyed_shared(admin, unique("r13-01-enf"))
    code, message = code_of(sm.update_secret, SecretId=arn, KmsKeyId=shared)
    assert code == "AccessDeniedException", message
    admin.update_secret(SecretId=arn, KmsKeyId=shared)
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "THIRD"
    code, message = code_of(sm.get_secret_value, SecretId=arn, VersionId=first)
    assert code == "AccessDeniedException", message
    mine_only = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                     "Action": "kms:*", "Resource": "*"})
    key = kms.create_key(Policy=mine_only)["KeyMetadata"]["Arn"]
    arn = admin.create_secret(Name=unique("r13-01-enf-key"), SecretString="K", KmsKeyId=key)["ARN"]
    admin.put_resource_policy(SecretId=arn, ResourcePolicy=let_in(PARTNER))
    code, message = code_of(sm.get_secret_value, SecretId=arn)
    assert code == "AccessDeniedException", message


# ------------------------------- 02: TransitiveTagKeys were accepted and ignored

def chain_world(srv, prefix: str):
    """A broker user who assumes `first` with session tags; `first`'s sessions may assume
    `second` (its trust policy allows sts:AssumeRole and sts:TagSession from `first`, AWS's
    setup for chaining with session tags) and `untagging` (sts:AssumeRole only). The second
    role reads a secret only if the secret's team tag is the session's. (broker STS client,
    first, second, untagging, the red and blue secrets' names)"""
    iam = srv.any_client("iam")
    admin = srv.admin()
    red, blue = unique(f"{prefix}-red"), unique(f"{prefix}-blue")
    admin.create_secret(Name=red, SecretString="RED", Tags=[{"Key": "team", "Value": "red"}])
    admin.create_secret(Name=blue, SecretString="BLUE", Tags=[{"Key": "team", "Value": "blue"}])
    assume_and_tag = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}]}
    broker_key, broker_arn = srv.iam_user(unique(f"{prefix}-broker"), assume_and_tag)

    def role(name: str, trusted: str, actions: list[str], policy: dict) -> str:
        trust = doc({"Effect": "Allow", "Principal": {"AWS": trusted}, "Action": actions})
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        return arn

    first = role(unique(f"{prefix}-first"), broker_arn, ["sts:AssumeRole", "sts:TagSession"],
                 assume_and_tag)
    abac = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
        "Condition": {"StringEquals": {"secretsmanager:ResourceTag/team": "${aws:PrincipalTag/team}"}}}]}
    second = role(unique(f"{prefix}-second"), first, ["sts:AssumeRole", "sts:TagSession"], abac)
    untagging = role(unique(f"{prefix}-untagging"), first, ["sts:AssumeRole"], abac)
    return srv.any_client("sts", broker_key), first, second, untagging, red, blue


def test_02_a_transitive_session_tag_cannot_be_replaced_down_the_role_chain(srv):
    """A broker hands out a session tagged team=blue, transitive, so that every role the
    session goes on to assume acts for team blue (AWS's ABAC with role chaining: the tag
    passes to each later session, and a later AssumeRole that passes the same key fails).
    Coffer accepted TransitiveTagKeys and ignored them: the chained session carried only
    the tags it was asked for, so it set team=red itself and read team red's secrets."""
    broker, first, second, untagging, red, blue = chain_world(srv, "r13-02")
    creds = broker.assume_role(RoleArn=first, RoleSessionName="broker",
                               Tags=[{"Key": "team", "Value": "blue"}],
                               TransitiveTagKeys=["team"])["Credentials"]
    chained = srv.session_client("sts", creds)
    code, message = code_of(chained.assume_role, RoleArn=second, RoleSessionName="escape",
                            Tags=[{"Key": "Team", "Value": "red"}])
    assert (code, message) == (
        "InvalidParameterValue",
        "One of the specified transitive tag keys can't be set because it conflicts with a "
        "transitive tag key from the calling session.")
    # Without tags of its own, the chained session inherits team=blue, and keeps it
    # transitive for the next hop.
    inherited = chained.assume_role(RoleArn=second, RoleSessionName="honest")["Credentials"]
    sm = srv.session_client("secretsmanager", inherited)
    assert sm.get_secret_value(SecretId=blue)["SecretString"] == "BLUE"
    code, _ = code_of(sm.get_secret_value, SecretId=red)
    assert code == "AccessDeniedException"
    # Inherited tags are session tags of the new session: a role whose trust policy does
    # not allow sts:TagSession cannot be chained to with them, as on AWS.
    code, message = code_of(chained.assume_role, RoleArn=untagging, RoleSessionName="drop")
    assert code == "AccessDenied" and "sts:TagSession" in message, message


def test_02_tags_that_are_not_transitive_stay_with_their_session(srv):
    """What did hold, and must keep holding: a session tag not named transitive does not
    pass to the next session, which may set that key itself."""
    broker, first, second, _, red, _ = chain_world(srv, "r13-02b")
    creds = broker.assume_role(RoleArn=first, RoleSessionName="broker",
                               Tags=[{"Key": "team", "Value": "blue"}])["Credentials"]
    chained = srv.session_client("sts", creds)
    own = chained.assume_role(RoleArn=second, RoleSessionName="own",
                              Tags=[{"Key": "team", "Value": "red"}])["Credentials"]
    sm = srv.session_client("secretsmanager", own)
    assert sm.get_secret_value(SecretId=red)["SecretString"] == "RED"


def test_02_a_trust_policy_limits_which_tags_may_be_set_transitive(srv):
    """AWS's trust policies limit the keys a caller may set as transitive with the
    condition key sts:TransitiveTagKeys (`ForAllValues:StringEquals`). Coffer never set
    it, so such a limit held vacuously: any key could be made transitive, and so fixed for
    the whole chain."""
    iam = srv.any_client("iam")
    assume_and_tag = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}]}
    key, user_arn = srv.iam_user(unique("r13-02c-user"), assume_and_tag)
    trust = doc(
        {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:TagSession",
         "Condition": {"ForAllValues:StringEquals": {"sts:TransitiveTagKeys": ["project"]}}})
    role = iam.create_role(RoleName=unique("r13-02c"), AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    sts = srv.any_client("sts", key)
    tags = [{"Key": "project", "Value": "p"}, {"Key": "team", "Value": "blue"}]
    sts.assume_role(RoleArn=role, RoleSessionName="fine", Tags=tags, TransitiveTagKeys=["project"])
    code, message = code_of(sts.assume_role, RoleArn=role, RoleSessionName="wider", Tags=tags,
                            TransitiveTagKeys=["project", "team"])
    assert code == "AccessDenied" and "sts:TagSession" in message, message


# ------------------------------- 03: temporary credentials had no aws:MultiFactorAuthPresent

NOT_WITHOUT_MFA = {"Effect": "Deny", "Action": "*", "Resource": "*",
                   "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}}


def test_03_a_deny_on_sessions_without_mfa_applies_to_sessions(srv):
    """AWS sets aws:MultiFactorAuthPresent to false for temporary credentials obtained
    without MFA (AssumeRole, GetSessionToken), and leaves it out only for long-term access
    keys; its documented statement "Deny when `Bool aws:MultiFactorAuthPresent false`"
    therefore refuses every session made without MFA. Coffer never set the key, so the
    Deny never matched: sessions made without MFA (Coffer verifies none) did what it was
    to refuse."""
    admin = srv.admin()
    name = unique("r13-03")
    admin.create_secret(Name=name, SecretString="MFA-ONLY")
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "sts:AssumeRole",
                                       "sts:GetSessionToken"], "Resource": "*"},
        NOT_WITHOUT_MFA]}
    user = unique("r13-03-user")
    key, user_arn = srv.iam_user(user, policy)
    # A long-term key carries no such key (as on AWS): the Deny does not apply to it.
    assert srv.any_client("secretsmanager", key).get_secret_value(SecretId=name)["SecretString"] == "MFA-ONLY"
    token = srv.any_client("sts", key).get_session_token()["Credentials"]
    code, message = code_of(srv.session_client("secretsmanager", token).get_secret_value, SecretId=name)
    assert code == "AccessDeniedException" and "explicit deny" in message, message
    iam = srv.any_client("iam")
    trust = doc({"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"})
    role = iam.create_role(RoleName=unique("r13-03-role"), AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="p", PolicyDocument=json.dumps(policy))
    # A role session made without MFA (by the long-term key, which the Deny lets through).
    creds = srv.any_client("sts", key).assume_role(RoleArn=role["Arn"], RoleSessionName="no-mfa")["Credentials"]
    code, message = code_of(srv.session_client("secretsmanager", creds).get_secret_value, SecretId=name)
    assert code == "AccessDeniedException" and "explicit deny" in message, message


def test_03_revoking_a_roles_older_sessions_the_aws_way_refuses_them(srv):
    """AWS revokes a role's active sessions (the IAM console's "Revoke active sessions")
    with an inline policy on the role: Deny everything when `DateLessThan
    aws:TokenIssueTime <now>`. Coffer never set aws:TokenIssueTime, so the Deny never
    matched: sessions an operator meant to revoke (leaked credentials) went on working
    until they expired, up to 12 hours later."""
    import datetime
    import time

    admin = srv.admin()
    name = unique("r13-03-revoke")
    admin.create_secret(Name=name, SecretString="REVOKED")
    iam = srv.any_client("iam")
    trust = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                 "Action": "sts:AssumeRole"})
    role = iam.create_role(RoleName=unique("r13-03-revoke"), AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="read", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}))
    sts = srv.any_client("sts")
    leaked = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="leaked")["Credentials"]
    sm = srv.session_client("secretsmanager", leaked)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "REVOKED"
    # The policy AWS attaches, with a time a second past now (whole seconds, as AWS
    # writes it).
    cutoff = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cutoff += datetime.timedelta(seconds=1)
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="AWSRevokeOlderSessions",
                        PolicyDocument=doc({"Effect": "Deny", "Action": "*", "Resource": "*",
                                            "Condition": {"DateLessThan": {
                                                "aws:TokenIssueTime": cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")}}}))
    code, message = code_of(sm.get_secret_value, SecretId=name)
    assert code == "AccessDeniedException" and "explicit deny" in message, message
    # A session issued after the cutoff is not revoked.
    time.sleep(max(0.0, (cutoff - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 1.1)
    fresh = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="fresh")["Credentials"]
    fresh_sm = srv.session_client("secretsmanager", fresh)
    assert fresh_sm.get_secret_value(SecretId=name)["SecretString"] == "REVOKED"


# ------------------------------- 04: a session policy of any size was kept with the session

def padded_policy(length: int) -> str:
    """A session policy of exactly `length` characters (spaces pad it, as JSON allows)."""
    text = doc({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"})
    assert len(text) <= length
    return text[:-1] + " " * (length - len(text)) + text[-1]


def test_04_a_session_policy_over_2048_characters_is_refused(srv):
    """AWS refuses a session policy whose plain text exceeds 2,048 characters (the STS
    model's documentation). Coffer took any size up to the 1 MiB body, stored it with the
    session and parsed it on every call the session made: whoever may assume a role could
    grow the store by a megabyte per AssumeRole (600 a second under the default quota)
    and make each of its calls parse one."""
    iam = srv.any_client("iam")
    trust = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                 "Action": "sts:AssumeRole"})
    role = iam.create_role(RoleName=unique("r13-04"), AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName=role.rsplit("/", 1)[1], PolicyName="p", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}))
    sts = srv.any_client("sts")
    creds = sts.assume_role(RoleArn=role, RoleSessionName="fits", Policy=padded_policy(2048))
    assert creds["Credentials"]["AccessKeyId"].startswith("ASIA")
    for length in (2049, 200_000):
        code, message = code_of(sts.assume_role, RoleArn=role, RoleSessionName="big",
                                Policy=padded_policy(length))
        assert code == "ValidationError", message
        assert message.endswith("at 'policy' failed to satisfy constraint: Member must have "
                                "length less than or equal to 2048"), message
        assert len(message) <= 512


# ------------------------------- 05: aws:ViaAWSService was never in the context

def test_05_a_key_denied_outside_secrets_manager_cannot_be_used_directly(srv):
    """AWS's context always holds aws:ViaAWSService: true when a service (Secrets Manager)
    uses the key for the caller, false when the caller calls KMS itself. A Deny on
    `Bool aws:ViaAWSService false` is how a key is kept for use through services only.
    Coffer never set it, so the Deny never matched: the caller, denied that route, called
    KMS Decrypt and Encrypt with the key directly."""
    kms = srv.any_client("kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    name = unique("r13-05")
    srv.admin().create_secret(Name=name, KmsKeyId=key, SecretString="VIA-SERVICE-ONLY")
    blob = kms.encrypt(KeyId=key, Plaintext=b"direct")["CiphertextBlob"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                                       "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
         "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:*", "Resource": "*",
         "Condition": {"Bool": {"aws:ViaAWSService": "false"}}}]}
    ak, _ = srv.iam_user(unique("r13-05-user"), policy)
    sm = srv.any_client("secretsmanager", ak)
    # Through Secrets Manager the key serves (reads and writes), twice (the memo).
    for _ in range(2):
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "VIA-SERVICE-ONLY"
    sm.put_secret_value(SecretId=name, SecretString="WRITTEN-VIA-SERVICE")
    direct = srv.any_client("kms", ak)
    for call, kwargs in ((direct.decrypt, {"CiphertextBlob": blob}),
                         (direct.encrypt, {"KeyId": key, "Plaintext": b"x"})):
        code, message = code_of(call, **kwargs)
        assert code == "AccessDeniedException" and "explicit deny" in message, message


# ------------------------------- 06: managed policy versions and remembered decisions (held)

def test_06_a_policy_version_made_default_applies_to_the_next_read(srv):
    """Held: a managed policy's default version decides from the very next call, also where
    the KMS decision memo remembered an Allow from the version before (every IAM write gives
    the caller a new record)."""
    iam = srv.any_client("iam")
    key = srv.any_client("kms").create_key()["KeyMetadata"]["Arn"]
    name = unique("r13-06")
    srv.admin().create_secret(Name=name, KmsKeyId=key, SecretString="R13-06")
    both = doc({"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "kms:Decrypt"],
                "Resource": "*"})
    without_kms = doc({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"})
    policy = iam.create_policy(PolicyName=unique("r13-06"), PolicyDocument=both)["Policy"]["Arn"]
    user = unique("r13-06-user")
    ak, _ = srv.iam_user(user)
    iam.attach_user_policy(UserName=user, PolicyArn=policy)
    sm = srv.any_client("secretsmanager", ak)
    for _ in range(2):
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "R13-06"
    iam.create_policy_version(PolicyArn=policy, PolicyDocument=without_kms, SetAsDefault=True)
    code, message = code_of(sm.get_secret_value, SecretId=name)
    assert code == "AccessDeniedException" and "kms:Decrypt" in message, message
    iam.set_default_policy_version(PolicyArn=policy, VersionId="v1")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "R13-06"
    iam.set_default_policy_version(PolicyArn=policy, VersionId="v2")
    code, _ = code_of(sm.get_secret_value, SecretId=name)
    assert code == "AccessDeniedException"
    # The default version cannot be deleted; v1 can, and changes nothing.
    code, _ = code_of(iam.delete_policy_version, PolicyArn=policy, VersionId="v2")
    assert code == "DeleteConflict"
    iam.delete_policy_version(PolicyArn=policy, VersionId="v1")
    code, _ = code_of(sm.get_secret_value, SecretId=name)
    assert code == "AccessDeniedException"
