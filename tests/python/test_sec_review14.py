"""Regression tests for the fourteenth adversarial review's findings (the thirteenth
session's changes: `--dev` STS and IAM, IAM renames, key last use and GetAccessKeyInfo,
the session lookup cache, IAM's words for policy documents, cross-account fidelity,
replica re-sealing, and review 13's and attack 13's fixes), and what held.

Each test drives the real binary through boto3: an enforcing server whose users, roles and
keys are made through the IAM API, or a `--dev` server.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import start_dev_server
from test_sec_review7 import Server

ACCOUNT = "000000000000"
PARTNER = "111122223333"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("review14"), ["--quota-scale", "100"])
    yield s
    s.server.stop()


@pytest.fixture(scope="module")
def dev():
    s = start_dev_server()
    yield s
    s.stop()


def code_of(fn, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def policy_of(n_resources: int, tag: str = "p") -> str:
    """An identity policy of about 70 characters per resource."""
    resources = [f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{tag}-{i:06d}"
                 for i in range(n_resources)]
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": resources}]})


def trust_for(arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "sts:AssumeRole"}]})


# ------------------------------------------ 01: policy text held by every cached session

def test_01_a_roles_inline_policies_are_bounded_as_iams(srv):
    """Each session's cached caller holds its role's parsed policies (the thirteenth
    session's session cache): without IAM's size limits a role of a few megabytes of
    inline policies made every session of it hold as much again (measured: 1.1 MB per
    session for 0.8 MB of policy text, 4,096 sessions cached), which anyone allowed to
    assume the role could multiply until the server ran out of memory. IAM refuses the
    aggregate inline policy of a role past 10,240 characters (whitespace not counted)."""
    iam = srv.any_client("iam")
    me = srv.any_client("sts").get_caller_identity()["Arn"]
    iam.create_role(RoleName="r14-big", AssumeRolePolicyDocument=trust_for(me))
    fits = policy_of(75, "a")  # ~4,900 characters
    assert len(fits) < 10240 // 2
    iam.put_role_policy(RoleName="r14-big", PolicyName="a", PolicyDocument=fits)
    # Pretty-printed: whitespace does not count.
    iam.put_role_policy(RoleName="r14-big", PolicyName="b",
                        PolicyDocument=json.dumps(json.loads(policy_of(75, "b")), indent=8))
    code, message = code_of(iam.put_role_policy, RoleName="r14-big", PolicyName="c",
                            PolicyDocument=policy_of(20, "c"))
    assert (code, message) == ("LimitExceeded",
                               "Maximum policy size of 10240 bytes exceeded for role r14-big")
    # Replacing a policy counts the new text in its place.
    iam.put_role_policy(RoleName="r14-big", PolicyName="b", PolicyDocument=policy_of(10, "b"))
    assert sorted(iam.list_role_policies(RoleName="r14-big")["PolicyNames"]) == ["a", "b"]
    # One huge document is refused the same way, and nothing is stored.
    code, _ = code_of(iam.put_role_policy, RoleName="r14-big", PolicyName="d",
                      PolicyDocument=policy_of(12000, "d"))
    assert code == "LimitExceeded"
    assert sorted(iam.list_role_policies(RoleName="r14-big")["PolicyNames"]) == ["a", "b"]


def test_01_users_groups_and_managed_policies_are_bounded_too(srv):
    iam = srv.any_client("iam")
    iam.create_user(UserName="r14-sized")
    iam.create_group(GroupName="r14-sized")
    iam.put_user_policy(UserName="r14-sized", PolicyName="a", PolicyDocument=policy_of(20, "u"))
    assert code_of(iam.put_user_policy, UserName="r14-sized", PolicyName="b",
                   PolicyDocument=policy_of(20, "v")) == (
        "LimitExceeded", "Maximum policy size of 2048 bytes exceeded for user r14-sized")
    iam.put_group_policy(GroupName="r14-sized", PolicyName="a", PolicyDocument=policy_of(60, "g"))
    assert code_of(iam.put_group_policy, GroupName="r14-sized", PolicyName="b",
                   PolicyDocument=policy_of(20, "h")) == (
        "LimitExceeded", "Maximum policy size of 5120 bytes exceeded for group r14-sized")
    managed = iam.create_policy(PolicyName="r14-sized", PolicyDocument=policy_of(80, "m"))["Policy"]
    too_big = policy_of(100, "n")
    assert code_of(iam.create_policy, PolicyName="r14-too-big", PolicyDocument=too_big) == (
        "LimitExceeded", "Cannot exceed quota for PolicySize: 6144")
    assert code_of(iam.create_policy_version, PolicyArn=managed["Arn"], PolicyDocument=too_big,
                   SetAsDefault=True) == ("LimitExceeded", "Cannot exceed quota for PolicySize: 6144")
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=managed["Arn"])["Versions"]] == ["v1"]
