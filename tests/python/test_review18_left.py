"""Regression tests for what review 18 left and its follow-up closed: a user's record kept
before IAM tag keys were one key whatever their case (fidelity17), holding `Team=a` and
`team=c`, keeps both spellings through a tagging call that names another key (the record
is made as an older build left it: the server stopped, the user's stored tags written into
its SQLite store, the server started again on the same data); session tag keys (AssumeRole,
GetFederationToken, inherited transitive keys) are one key by IAM's rule for tag keys, beyond
ASCII too.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from iam_api_support import Server
from test_sec_review15 import client, error, uname, user, with_credentials

DUPLICATE = "Duplicate tag keys found. Please note that Tag keys are case insensitive."


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_a_tagging_call_naming_another_key_keeps_an_older_records_guarded_spellings(tmp_path):
    """The policy engine reads `Team=a` and `team=c` as two values of
    `aws:PrincipalTag/team`, so a Deny on `team=a` applies. TagUser of any key made them one,
    the later kept, so a user allowed to tag only `env` lifted that Deny."""
    data = tmp_path / "older"
    data.mkdir()
    srv = Server(data, extra=["--quota-scale", "100"])
    try:
        iam, sm = srv.client("iam"), srv.client("secretsmanager")
        secret = sm.create_secret(Name="guarded", SecretString="s3cret")["ARN"]
        iam.create_user(UserName="older")
        iam.put_user_policy(UserName="older", PolicyName="p", PolicyDocument=policy(
            {"Effect": "Allow", "Action": ["iam:TagUser", "secretsmanager:GetSecretValue"],
             "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:TagUser", "Resource": "*",
             "Condition": {"ForAnyValue:StringNotEqualsIgnoreCase": {"aws:TagKeys": ["env"]}}},
            {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
             "Condition": {"StringEquals": {"aws:PrincipalTag/team": "a"}}},
        ))
        made = iam.create_access_key(UserName="older")["AccessKey"]
        key = (made["AccessKeyId"], made["SecretAccessKey"])
        iam.tag_user(UserName="older", Tags=[{"Key": "Team", "Value": "a"}])
    finally:
        srv.server.stop()

    db = sqlite3.connect(data / "coffer.db")
    (stored,) = db.execute("SELECT value FROM records WHERE kind = 'iam-user' AND key LIKE '%/older'"
                           ).fetchone()
    record = json.loads(bytes(stored))
    assert record["tags"] == [{"key": "Team", "value": "a"}]
    record["tags"].append({"key": "team", "value": "c"})
    db.execute("UPDATE records SET value = ? WHERE kind = 'iam-user' AND key LIKE '%/older'",
               (json.dumps(record).encode(),))
    db.commit()
    db.close()

    srv = Server(data, extra=["--quota-scale", "100"])
    try:
        listed = srv.client("iam").list_user_tags(UserName="older")["Tags"]
        assert sorted((t["Key"], t["Value"]) for t in listed) == [("Team", "a"), ("team", "c")]
        mine, sm = client(srv, "iam", key), client(srv, "secretsmanager", key)
        assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
        assert error(lambda: mine.tag_user(
            UserName="older", Tags=[{"Key": "team", "Value": "c"}]))[0] == "AccessDenied"
        mine.tag_user(UserName="older", Tags=[{"Key": "env", "Value": "prod"}])
        listed = srv.client("iam").list_user_tags(UserName="older")["Tags"]
        assert [(t["Key"], t["Value"]) for t in listed] == [("Team", "a"), ("team", "c"),
                                                             ("env", "prod")]
        assert error(lambda: sm.get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
        # Naming the key, in any case, replaces every spelling of it.
        srv.client("iam").tag_user(UserName="older", Tags=[{"Key": "TEAM", "Value": "b"}])
        listed = srv.client("iam").list_user_tags(UserName="older")["Tags"]
        assert [(t["Key"], t["Value"]) for t in listed] == [("TEAM", "b"), ("env", "prod")]
        assert sm.get_secret_value(SecretId=secret)["SecretString"] == "s3cret"
    finally:
        srv.server.stop()


# ------------------------------------------------------ session tag keys beyond ASCII

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("left18"), extra=["--quota-scale", "100"])
    yield server
    server.server.stop()


@pytest.fixture(scope="module")
def account(srv):
    return srv.client("sts").get_caller_identity()["Account"]


STS_ALL = policy({"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession",
                                                "sts:GetFederationToken"], "Resource": "*"})


def tagging_role(srv, account: str) -> str:
    """A role the account's principals may assume with session tags, which may assume
    such roles itself (role chaining); returns its ARN."""
    name = uname("l18")
    trust = policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"]})
    iam = srv.client("iam")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=STS_ALL)
    return f"arn:aws:iam::{account}:role/{name}"


# Pairs that fold to one condition key (lower case, whole and per character): `É`/`é`, the
# Kelvin sign and `k`; and in ASCII.
ONE_KEY = [("CAFÉ", "café"), ("\u212aey", "key"), ("Team", "team")]


@pytest.mark.parametrize("a,b", ONE_KEY)
def test_session_tags_giving_one_key_twice_beyond_ascii_are_refused(srv, account, a, b):
    """Session tag keys were compared in ASCII only, so `CAFÉ` and `café` were two tags
    of one condition key `aws:PrincipalTag/café`; IAM's rule for tag keys (`same_tag_key`)
    takes them for one key, which a request may not give twice."""
    role = tagging_role(srv, account)
    _, key = user(srv, STS_ALL, prefix="l18")
    tags = [{"Key": a, "Value": "1"}, {"Key": b, "Value": "2"}]
    sts = client(srv, "sts", key)
    assert error(lambda: sts.assume_role(RoleArn=role, RoleSessionName="l18", Tags=tags)) == \
        ("InvalidParameterValue", DUPLICATE)
    assert error(lambda: sts.get_federation_token(Name="l18", Policy=STS_ALL, Tags=tags)) == \
        ("InvalidParameterValue", DUPLICATE)


def test_session_tag_keys_one_whole_but_two_per_character_stay_two(srv, account):
    """A final sigma lower-cases to `ς` in a word and `σ` alone: `ΟΔΟΣ` and `οδος` are two
    keys to IAM's rule (a guardrail under `StringLike` reads them apart), as for a user's
    tags."""
    role = tagging_role(srv, account)
    _, key = user(srv, STS_ALL, prefix="l18")
    tags = [{"Key": "ΟΔΟΣ", "Value": "1"}, {"Key": "οδος", "Value": "2"}]
    assert client(srv, "sts", key).assume_role(RoleArn=role, RoleSessionName="l18", Tags=tags)


def test_a_transitive_key_beyond_ascii_names_its_tag_in_any_case_and_binds_the_chain(srv, account):
    """`TransitiveTagKeys=["CAFÉ"]` names the tag `café` (it was refused as naming no tag),
    is inherited by the role the session assumes, and may not be set again there as
    `CAFÉ` (it was set, giving the chained session two values of one condition key)."""
    first, second = tagging_role(srv, account), tagging_role(srv, account)
    _, key = user(srv, STS_ALL, prefix="l18")
    creds = client(srv, "sts", key).assume_role(
        RoleArn=first, RoleSessionName="l18", Tags=[{"Key": "café", "Value": "a"}],
        TransitiveTagKeys=["CAFÉ"])["Credentials"]
    chained = with_credentials(srv, "sts", creds)
    code, message = error(lambda: chained.assume_role(
        RoleArn=second, RoleSessionName="l18", Tags=[{"Key": "CAFÉ", "Value": "b"}]))
    assert (code, message) == (
        "InvalidParameterValue",
        "One of the specified transitive tag keys can't be set because it conflicts with a "
        "transitive tag key from the calling session.")
    # ASCII as before.
    creds = client(srv, "sts", key).assume_role(
        RoleArn=first, RoleSessionName="l18", Tags=[{"Key": "team", "Value": "a"}],
        TransitiveTagKeys=["TEAM"])["Credentials"]
    chained = with_credentials(srv, "sts", creds)
    assert error(lambda: chained.assume_role(
        RoleArn=second, RoleSessionName="l18", Tags=[{"Key": "Team", "Value": "b"}]))[0] == \
        "InvalidParameterValue"


def test_a_session_tag_overrides_the_roles_tag_of_its_key_in_any_case(srv, account):
    """AWS: a session tag replaces the role's tag of the same key, keys compared without
    regard to case. A role tagged `Team=red` assumed with the session tag `team=blue` gave
    `aws:PrincipalTag/team` both values (an Allow on `blue` then failed, every value must
    match); the session's value alone is the principal's now."""
    iam, sm = srv.client("iam"), srv.client("secretsmanager")
    secret = sm.create_secret(Name=uname("l18s"), SecretString="s3cret")["ARN"]
    name = uname("l18")
    trust = policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"]})
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust,
                    Tags=[{"Key": "Team", "Value": "red"}])
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=policy(
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalTag/team": "blue"}}}))
    _, key = user(srv, STS_ALL, prefix="l18")
    sts = client(srv, "sts", key)
    role = f"arn:aws:iam::{account}:role/{name}"
    as_role = sts.assume_role(RoleArn=role, RoleSessionName="l18")["Credentials"]
    assert error(lambda: with_credentials(srv, "secretsmanager", as_role)
                 .get_secret_value(SecretId=secret))[0] == "AccessDeniedException"
    for spelling in ("team", "TEAM", "Team"):
        blue = sts.assume_role(RoleArn=role, RoleSessionName="l18",
                               Tags=[{"Key": spelling, "Value": "blue"}])["Credentials"]
        got = with_credentials(srv, "secretsmanager", blue).get_secret_value(SecretId=secret)
        assert got["SecretString"] == "s3cret", spelling
