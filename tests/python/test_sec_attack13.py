"""Regression tests for the thirteenth session's second adversarial review (`attack13`):
the console, backup and restore, rotation and replication, LookupEvents, KMS grants.

Each test drives the real binary through boto3 on an enforcing server whose users are
made through the IAM API, as an attacker holding an ordinary IAM user would.
Findings and what held: docs/design/attack13.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from test_sec_review7 import Server

ACCOUNT = "000000000000"
FUNCTIONS = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:"
SINGLE_USER = FUNCTIONS + "coffer-builtin-postgres-single-user"
# The PostgreSQL roles these tests make; only they log in with a password.
ROLES = ["atk_single"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("attack13"), ["--quota-scale", "100"])
    yield s
    s.server.stop()


def psql(server, user: str, password: str | None, sql: str) -> subprocess.CompletedProcess:
    """Runs `sql` through psql as `user` (the test server trusts `postgres` alone)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(
        [str(server.bin / "psql"), "-X", "-h", "127.0.0.1", "-p", str(server.port), "-U", user,
         "-d", "postgres", "-w", "-tA", "-c", sql],
        capture_output=True, text=True, env=env, timeout=60,
    )


def admin(server, sql: str) -> None:
    done = psql(server, "postgres", None, sql)
    assert done.returncode == 0, done.stderr


def logs_in(server, value: dict) -> bool:
    return psql(server, value["username"], value["password"], "SELECT 1").returncode == 0


@pytest.fixture(scope="module")
def postgres():
    from test_backup_restore import Postgres

    server = Postgres()
    hba = server.data / "pg_hba.conf"
    roles = ",".join(ROLES)
    lines = f"host all {roles} 127.0.0.1/32 scram-sha-256\nhost all {roles} ::1/128 scram-sha-256\n"
    hba.write_text(lines + hba.read_text())
    admin(server, "SELECT pg_reload_conf()")
    yield server
    server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def attacker(srv, name: str, statements: list[dict]):
    """A Secrets Manager client for a new IAM user with exactly `statements`."""
    key, _ = srv.iam_user(name, {"Version": "2012-10-17", "Statement": statements})
    return srv.any_client("secretsmanager", key)


def wait_rotation_over(sm, name: str, timeout: float = 30.0) -> dict:
    """DescribeSecret once no version is AWSPENDING without AWSCURRENT, or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        desc = sm.describe_secret(SecretId=name)
        stages = desc.get("VersionIdsToStages", {})
        pending = [v for v, s in stages.items() if "AWSPENDING" in s and "AWSCURRENT" not in s]
        if not pending or time.monotonic() > deadline:
            return desc
        time.sleep(0.1)


# ------------------ 02: a writer who may not read fills the built-in rotator's AWSPENDING

def test_02_a_writer_cannot_choose_the_password_a_builtin_rotator_sets(srv, postgres):
    """Whoever may write a database secret's value but not read it must not get Coffer's
    single-user rotator to set, on the real database, a password they chose. Writing the
    current value broken makes createSecret fail and retry; meanwhile PutSecretValue with
    the rotation's token filled its AWSPENDING placeholder with the writer's password, and
    UpdateSecretVersionStage put the real credentials back as AWSCURRENT: the retry then
    logged in with them and set the writer's password."""
    admin(postgres, "CREATE ROLE atk_single LOGIN PASSWORD 'real-pass'")
    real = {"engine": "postgres", "host": "127.0.0.1", "port": str(postgres.port),
            "username": "atk_single", "password": "real-pass", "dbname": "postgres"}
    assert logs_in(postgres, real)
    owner = srv.any_client("secretsmanager")
    name = unique("atk-db")
    arn = owner.create_secret(Name=name, SecretString=json.dumps(real))["ARN"]
    original = owner.describe_secret(SecretId=name)["VersionIdsToStages"]
    (original_id,) = original
    sm = attacker(srv, unique("writer"), [
        {"Effect": "Allow", "Resource": arn, "Action": [
            "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:RotateSecret", "secretsmanager:DescribeSecret"]},
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"},
    ])
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=arn)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    broken = sm.put_secret_value(SecretId=arn, SecretString="not json")["VersionId"]
    token = str(uuid.uuid4())
    sm.rotate_secret(SecretId=arn, RotationLambdaARN=SINGLE_USER, ClientRequestToken=token)
    chosen = dict(real, password="attacker-knows-this")
    # As the templates' createSecret fills it (labelled AWSPENDING), and with the default
    # labels: whichever check answers, the placeholder stays the rotator's to fill.
    filled = []
    for stages, code in [(["AWSPENDING"], "InvalidRequestException"),
                         (None, "ResourceExistsException")]:
        try:
            sm.put_secret_value(SecretId=arn, ClientRequestToken=token,
                                SecretString=json.dumps(chosen),
                                **({"VersionStages": stages} if stages else {}))
            filled.append(stages)
        except ClientError as refused:
            assert refused.response["Error"]["Code"] == code
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT",
                                   MoveToVersionId=original_id, RemoveFromVersionId=broken)
    wait_rotation_over(owner, name)
    assert not logs_in(postgres, chosen), "the writer's chosen password was set on the database"
    assert not filled, f"PutSecretValue filled the built-in rotator's placeholder: {filled}"
    # The rotation itself still works: the rotator's own password is set and stored.
    now = json.loads(owner.get_secret_value(SecretId=arn)["SecretString"])
    assert now["password"] not in ("real-pass", chosen["password"])
    assert logs_in(postgres, now)


# ------------- 03: a writer who may not read labels its own version AWSPENDING instead

def test_03_a_writer_cannot_label_a_value_of_theirs_awspending_under_a_builtin_rotator(srv):
    """The scheduler reattempts a version left AWSPENDING under its own token, and the
    built-in rotator's createSecret keeps the value it finds there, as AWS's templates do:
    a writer who labelled a value of theirs AWSPENDING (PutSecretValue's VersionStages or
    UpdateSecretVersionStage) had the next scheduled rotation set its password on the
    database. Under a built-in rotator only the rotator labels a version AWSPENDING."""
    owner = srv.any_client("secretsmanager")
    name = unique("atk-sched")
    value = {"engine": "postgres", "host": "127.0.0.1", "port": "1", "username": "u",
             "password": "p"}
    arn = owner.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
    # A rotation configured with a built-in rotator, not due for days; its test-only first
    # run, against no database, fails and removes its own AWSPENDING version (checked).
    first = owner.rotate_secret(SecretId=arn, RotationLambdaARN=SINGLE_USER,
                                RotationRules={"AutomaticallyAfterDays": 30},
                                RotateImmediately=False)["VersionId"]
    desc = wait_rotation_over(owner, name)
    assert first not in desc["VersionIdsToStages"]
    assert desc["RotationLambdaARN"] == SINGLE_USER
    sm = attacker(srv, unique("labeller"), [
        {"Effect": "Allow", "Resource": arn, "Action": [
            "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"]},
    ])
    chosen = json.dumps(dict(value, password="attacker-knows-this"))
    with pytest.raises(ClientError) as e:
        sm.put_secret_value(SecretId=arn, SecretString=chosen, VersionStages=["AWSPENDING"])
    assert e.value.response["Error"]["Code"] == "InvalidRequestException"
    staged = sm.put_secret_value(SecretId=arn, SecretString=chosen, VersionStages=["mine"])
    with pytest.raises(ClientError) as e:
        sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING",
                                       MoveToVersionId=staged["VersionId"])
    assert e.value.response["Error"]["Code"] == "InvalidRequestException"
    stages = owner.describe_secret(SecretId=arn)["VersionIdsToStages"]
    assert not any("AWSPENDING" in s for s in stages.values()), stages
