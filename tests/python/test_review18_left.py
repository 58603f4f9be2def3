"""Regression tests for what review 18 left and its follow-up closed: a user's record kept
before IAM tag keys were one key whatever their case (fidelity17), holding `Team=a` and
`team=c`, keeps both spellings through a tagging call that names another key.

The record is made as an older build left it: the server stopped, the user's stored tags
written into its SQLite store, the server started again on the same data.
"""

from __future__ import annotations

import json
import sqlite3

from iam_api_support import Server
from test_sec_review15 import client, error


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
