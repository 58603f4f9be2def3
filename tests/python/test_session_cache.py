"""Temporary credentials served from the IAM lookup cache (thirteenth session, hygiene13):
a session used several times is refused, or narrowed, exactly as an uncached one was, on
the very next call after its role or user changes: the role deleted (or made again under
its name), its inline policy, its managed policy's default version or its tags changed;
a GetSessionToken user's policy detached or the user deleted by ``coffer admin`` (another
process); on PostgreSQL, a change made through one node reaches a session used on
another (within the watcher's 1 s bound). Expiry is in coffer-iam's unit tests, as no
session lasts less than AWS's 15 minutes.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid

import boto3
import botocore.exceptions
import pytest

from conftest import REGION, start_server
from iam_api_support import NO_RETRY, STORES, Server, serve

ACCOUNT = "000000000000"
READ = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}],
}
DENY_READ = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}],
}
TRUST = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                   "Action": "sts:AssumeRole"}],
})
# How long a change made through another process (``coffer admin``, another node) may take
# to reach a PostgreSQL node: the watcher's bound is 1 s; this only keeps a slow machine
# from failing the test, which still fails if the change is never seen.
ELSEWHERE_DEADLINE = 10.0


@pytest.fixture(scope="module", params=STORES)
def srv(request, tmp_path_factory):
    return serve(request, tmp_path_factory, "sessioncache")


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_code(fn, **kwargs) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        fn(**kwargs)
    return excinfo.value.response["Error"]["Code"]


def a_secret(srv) -> str:
    name = uname("cached")
    srv.client("secretsmanager").create_secret(Name=name, SecretString="cached-value")
    return name


def a_role(srv, policy: dict | None = READ) -> str:
    name = uname("role")
    srv.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
    if policy is not None:
        srv.client("iam").put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return name


def warm_session(srv, role: str, secret: str, url: str | None = None):
    """A session of `role`, used three times to read `secret` (through the node at `url`,
    if given), so its lookup is cached when the test changes something."""
    arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
    creds = srv.client("sts").assume_role(RoleArn=arn, RoleSessionName="warm")["Credentials"]
    if url is None:
        sm = srv.session_client("secretsmanager", creds)
    else:
        sm = boto3.client("secretsmanager", endpoint_url=url, region_name=REGION, config=NO_RETRY,
                          aws_access_key_id=creds["AccessKeyId"],
                          aws_secret_access_key=creds["SecretAccessKey"],
                          aws_session_token=creds["SessionToken"])
    for _ in range(3):
        assert sm.get_secret_value(SecretId=secret)["SecretString"] == "cached-value"
    return sm


def refused_at_once(fn, code: str, **kwargs) -> None:
    assert error_code(fn, **kwargs) == code


def refused_soon(fn, code: str, **kwargs) -> None:
    """`fn` fails with `code` within ELSEWHERE_DEADLINE (a change made by another process)."""
    deadline = time.monotonic() + ELSEWHERE_DEADLINE
    while True:
        try:
            fn(**kwargs)
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == code
            return
        assert time.monotonic() < deadline, f"still allowed {ELSEWHERE_DEADLINE} s after the change"
        time.sleep(0.05)


def test_a_used_session_stops_at_once_when_its_role_is_deleted_or_made_again(srv):
    secret = a_secret(srv)
    role = a_role(srv)
    sm = warm_session(srv, role, secret)
    iam = srv.client("iam")
    iam.delete_role_policy(RoleName=role, PolicyName="p")
    iam.delete_role(RoleName=role)
    refused_at_once(sm.get_secret_value, "UnrecognizedClientException", SecretId=secret)
    # Made again under the same name (another unique id): the old session stays dead,
    # even after the new role's first use.
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST)
    iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(READ))
    warm_session(srv, role, secret)
    refused_at_once(sm.get_secret_value, "UnrecognizedClientException", SecretId=secret)


def test_a_role_policy_change_reaches_a_used_session_at_once(srv):
    secret = a_secret(srv)
    role = a_role(srv)
    sm = warm_session(srv, role, secret)
    iam = srv.client("iam")
    iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(DENY_READ))
    refused_at_once(sm.get_secret_value, "AccessDeniedException", SecretId=secret)
    iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(READ))
    assert sm.get_secret_value(SecretId=secret)["SecretString"] == "cached-value"
    iam.delete_role_policy(RoleName=role, PolicyName="p")
    refused_at_once(sm.get_secret_value, "AccessDeniedException", SecretId=secret)


def test_a_managed_policy_version_change_reaches_a_used_session_at_once(srv):
    secret = a_secret(srv)
    role = a_role(srv, policy=None)
    iam = srv.client("iam")
    policy_arn = iam.create_policy(PolicyName=uname("managed"), PolicyDocument=json.dumps(READ))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=policy_arn)
    sm = warm_session(srv, role, secret)
    iam.create_policy_version(PolicyArn=policy_arn, PolicyDocument=json.dumps(DENY_READ), SetAsDefault=True)
    refused_at_once(sm.get_secret_value, "AccessDeniedException", SecretId=secret)
    iam.set_default_policy_version(PolicyArn=policy_arn, VersionId="v1")
    assert sm.get_secret_value(SecretId=secret)["SecretString"] == "cached-value"
    iam.detach_role_policy(RoleName=role, PolicyArn=policy_arn)
    refused_at_once(sm.get_secret_value, "AccessDeniedException", SecretId=secret)


def test_a_role_tag_change_reaches_a_used_session_at_once(srv):
    secret = a_secret(srv)
    blue_only = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
                       "Condition": {"StringEquals": {"aws:PrincipalTag/team": "blue"}}}],
    }
    role = a_role(srv, policy=blue_only)
    iam = srv.client("iam")
    iam.tag_role(RoleName=role, Tags=[{"Key": "team", "Value": "blue"}])
    sm = warm_session(srv, role, secret)
    iam.tag_role(RoleName=role, Tags=[{"Key": "team", "Value": "red"}])
    refused_at_once(sm.get_secret_value, "AccessDeniedException", SecretId=secret)
    iam.untag_role(RoleName=role, TagKeys=["team"])
    refused_at_once(sm.get_secret_value, "AccessDeniedException", SecretId=secret)
    iam.tag_role(RoleName=role, Tags=[{"Key": "team", "Value": "blue"}])
    assert sm.get_secret_value(SecretId=secret)["SecretString"] == "cached-value"


def test_a_user_session_stops_when_coffer_admin_changes_its_user(srv):
    """`coffer admin` is another process: on SQLite its change is seen on the very next
    call; on PostgreSQL it is another node, seen within the watcher's bound."""
    secret = a_secret(srv)
    user = uname("user")
    srv.coffer_admin("create-user", user, "--account", ACCOUNT)
    srv.coffer_admin("attach-policy", user, "--name", "p", "--file", "-", "--account", ACCOUNT,
                     stdin=json.dumps(READ))
    key = srv.client("iam").create_access_key(UserName=user)["AccessKey"]
    creds = srv.client("sts", (key["AccessKeyId"], key["SecretAccessKey"])).get_session_token()["Credentials"]
    sm = srv.session_client("secretsmanager", creds)
    for _ in range(3):
        assert sm.get_secret_value(SecretId=secret)["SecretString"] == "cached-value"
    refused = refused_soon if srv.store_url else refused_at_once
    srv.coffer_admin("detach-policy", user, "--name", "p", "--account", ACCOUNT)
    refused(sm.get_secret_value, "AccessDeniedException", SecretId=secret)
    srv.coffer_admin("delete-user", user, "--account", ACCOUNT)
    refused(sm.get_secret_value, "UnrecognizedClientException", SecretId=secret)


# ---- PostgreSQL, two nodes: a change made through one reaches sessions used on the other ----


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    from test_backup_restore import Postgres

    pg = Postgres()
    base = tmp_path_factory.mktemp("sessioncache-nodes")
    key_file = base / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    key_file.chmod(0o600)
    url = pg.create_database()
    # The first node bootstraps the administrator; the second finds it made.
    first = Server(base / "node0", url, extra=["--master-key-file", str(key_file)])
    second = start_server(["serve", "--data-dir", str(base / "node1"), "--listen", "127.0.0.1:0",
                           "--store", url, "--master-key-file", str(key_file)])
    yield first, second.url
    second.stop()
    first.server.stop()
    pg.stop()


def test_on_postgresql_a_change_through_one_node_reaches_a_session_used_on_the_other(two_nodes):
    first, second_url = two_nodes
    secret = a_secret(first)
    role = a_role(first)
    other = warm_session(first, role, secret, url=second_url)
    iam = first.client("iam")
    iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(DENY_READ))
    refused_soon(other.get_secret_value, "AccessDeniedException", SecretId=secret)
    iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(READ))
    deadline = time.monotonic() + ELSEWHERE_DEADLINE
    while True:
        try:
            assert other.get_secret_value(SecretId=secret)["SecretString"] == "cached-value"
            break
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDeniedException"
            assert time.monotonic() < deadline, "the restored policy never reached the other node"
            time.sleep(0.05)
    iam.delete_role_policy(RoleName=role, PolicyName="p")
    iam.delete_role(RoleName=role)
    refused_soon(other.get_secret_value, "UnrecognizedClientException", SecretId=secret)
