"""Regression tests for review 15b: a quick adversarial review of what the fifteenth
session merged (managed session policies, review 15's Deny rewriting across partitions,
`POST /` without routing, the appender's gathering, model15's validation, the console's
new forms). Findings are `test_NN_*`, what held `test_held_*`.

Each test drives the real binary through boto3: an enforcing server whose users, roles
and policies are made through the IAM API.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config

from conftest import REGION
from iam_api_support import Server

# The helpers of review 15's tests (same server shape, same users and clients); the
# `account` fixture there reads this module's `srv`.
from test_sec_review15 import (
    CN, account, allow, client, error, uname, user, with_credentials)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("review15b")
    server = Server(data, extra=["--quota-scale", "100"])
    yield server
    server.server.stop()


# ------------- 01: review 15's Deny rewriting narrowed a Deny on data that holds an ARN

@pytest.mark.parametrize("region", [REGION, CN])
def test_01_a_deny_on_a_tag_holding_an_iam_arn_holds_in_every_partition(srv, account, region):
    """Review 15 (finding 02) reads a caller's Deny statements with their IAM and STS
    ARNs written in the request's partition, so that a Deny naming a principal by its
    `arn:aws:` ARN holds for a request signed for cn-north-1. It rewrote every condition
    value that looks like an IAM ARN, whatever its key: a Deny comparing a resource tag (data, which
    no partition rewrites) with `arn:aws:iam::...` compared it with `arn:aws-cn:iam::...`
    in cn-north-1, so a secret the Deny keeps from the caller in us-east-1 was readable
    by signing for cn-north-1."""
    owner = f"arn:aws:iam::{account}:user/bob"
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/owner": owner}}}]})
    _, key = user(srv, policy)
    name = uname("r15b-01")
    client(srv, "secretsmanager", region=region).create_secret(
        Name=name, SecretString="bobs-value", Tags=[{"Key": "owner", "Value": owner}])
    sm = client(srv, "secretsmanager", key, region=region)
    code, message = error(lambda: sm.get_secret_value(SecretId=name))
    assert code == "AccessDeniedException", message
    assert "bobs-value" not in message


# ------------- 02: every member of a large PolicyArns list was looked for, each by a scan

def test_02_policy_arns_are_read_no_further_than_one_past_their_bound(srv, account):
    """`PolicyArns.member.N.arn` was read for N = 1, 2, ... until one was missing, each by
    a scan of the whole form: a form naming thousands (any caller, before authorization)
    cost their square, 8,000 members holding a worker 17 s. Reading stops one past AWS's
    bound of 10, which refuses the list: a bad member further on is not reached (before,
    its length was reported, so it had been read)."""
    arns = [{"arn": f"arn:aws:iam::{account}:policy/p{i}"} for i in range(11)] + [{"arn": "short"}]
    sts = boto3.client("sts", endpoint_url=srv.url, region_name=REGION,
                       aws_access_key_id=srv.admin_key[0], aws_secret_access_key=srv.admin_key[1],
                       config=Config(retries={"total_max_attempts": 1}, parameter_validation=False))
    code, message = error(lambda: sts.get_federation_token(Name="r15b-02", PolicyArns=arns))
    assert (code, message) == ("ValidationError", "1 validation error detected: Value at 'policyArns' "
                               "failed to satisfy constraint: Member must have length less than or "
                               "equal to 10")


def test_02_session_tags_are_read_no_further_than_one_past_their_bound(srv, account):
    """The same for session tags (`Tags.member.N.Key`, AWS's bound 50): a duplicate key
    past the 51st member is not reached, the count refuses the list."""
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)] + [{"Key": "k0", "Value": "v"}]
    sts = boto3.client("sts", endpoint_url=srv.url, region_name=REGION,
                       aws_access_key_id=srv.admin_key[0], aws_secret_access_key=srv.admin_key[1],
                       config=Config(retries={"total_max_attempts": 1}, parameter_validation=False))
    code, message = error(lambda: sts.get_federation_token(Name="r15b-02", Tags=tags))
    assert (code, message) == ("ValidationError", "1 validation error detected: Value at 'tags' failed "
                               "to satisfy constraint: Member must have length less than or equal to 50")


def test_02_transitive_tag_keys_past_the_models_bound_are_refused(srv, account):
    """The same for `TransitiveTagKeys.member.N` (the model's bound: 50), which had no
    bound at all: 51 keys, each one of the session's tags, were taken."""
    role = uname("r15b-02")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": account}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
    srv.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    keys = [f"k{i}" for i in range(50)] + ["k0"]
    sts = boto3.client("sts", endpoint_url=srv.url, region_name=REGION,
                       aws_access_key_id=srv.admin_key[0], aws_secret_access_key=srv.admin_key[1],
                       config=Config(retries={"total_max_attempts": 1}, parameter_validation=False))
    code, message = error(lambda: sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="r15b-02", Tags=tags,
        TransitiveTagKeys=keys))
    assert (code, message) == ("ValidationError", "1 validation error detected: Value at "
                               "'transitiveTagKeys' failed to satisfy constraint: Member must have "
                               "length less than or equal to 50")


# ------------------------------------------------------------------ what held

def managed(srv, document: str) -> str:
    return srv.client("iam").create_policy(
        PolicyName=uname("r15b-msp"), PolicyDocument=document)["Policy"]["Arn"]


def test_held_a_managed_session_policy_named_in_another_partition_is_refused(srv, account):
    """A managed session policy is one of the session's account, named in the request's
    partition: the same policy named `arn:aws-cn:` by a us-east-1 request (or `arn:aws:`
    by a cn-north-1 one) is refused, never read as the policy nor ignored."""
    role = uname("r15b-role")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": account}, "Action": "sts:AssumeRole"}]})
    srv.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    policy = managed(srv, allow("secretsmanager:ListSecrets"))
    in_cn = policy.replace("arn:aws:", "arn:aws-cn:", 1)
    sts = client(srv, "sts")
    code, message = error(lambda: sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="s15b",
        PolicyArns=[{"arn": in_cn}]))
    assert (code, message) == ("MalformedPolicyDocument",
                               f"Policy {in_cn} does not exist or is not attachable.")
    code, _ = error(lambda: client(srv, "sts", region=CN).assume_role(
        RoleArn=f"arn:aws-cn:iam::{account}:role/{role}", RoleSessionName="s15b",
        PolicyArns=[{"arn": policy}]))
    assert code == "MalformedPolicyDocument"


def test_held_a_user_made_again_under_the_same_name_does_not_revive_old_sessions(srv):
    """The user session index is keyed by the user's unique id: sessions of a deleted user
    stay dead when a user of the same name is made again, and renaming the new user (which
    moves its own sessions through the index) does not move them either."""
    name, key = user(srv, allow("secretsmanager:ListSecrets"))
    creds = client(srv, "sts", key).get_session_token()["Credentials"]
    assert with_credentials(srv, "secretsmanager", creds).list_secrets() is not None
    iam = srv.client("iam")
    iam.delete_access_key(UserName=name, AccessKeyId=key[0])
    iam.delete_user_policy(UserName=name, PolicyName="p")
    iam.delete_user(UserName=name)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=allow("secretsmanager:*"))
    sm = with_credentials(srv, "secretsmanager", creds)
    assert error(lambda: sm.list_secrets())[0] == "UnrecognizedClientException"
    iam.update_user(UserName=name, NewUserName=name + "-x")
    assert error(lambda: sm.list_secrets())[0] == "UnrecognizedClientException"
    iam.update_user(UserName=name + "-x", NewUserName=name)
    assert error(lambda: sm.list_secrets())[0] == "UnrecognizedClientException"
