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

import pytest

from iam_api_support import Server

# The helpers of review 15's tests (same server shape, same users and clients); the
# `account` fixture there reads this module's `srv`.
from test_sec_review15 import account, allow, client, error, uname, user  # noqa: F401


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("review16")
    server = Server(data, extra=["--quota-scale", "100"])
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
