"""AWS's published PostgreSQL rotation functions, run unchanged against Coffer.

The single-user and alternating-users templates of aws-samples/aws-secrets-manager-rotation-
lambdas (``tests/python/aws_templates/``, see its README) are imported as they are and their
``lambda_handler(event, context)`` is called once per Invoke by the Lambda-compatible runner
(``lambda_runner.Runner``), with the environment a Lambda function would have: its
credentials and region, and ``SECRETS_MANAGER_ENDPOINT`` pointing at Coffer, which the
templates read. They talk to a real, throwaway PostgreSQL whose test roles log in with
passwords. After a full rotation the new AWSCURRENT credentials really log in; single-user:
the old password no longer does; alternating users: the clone exists and the old user still
logs in.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
from conftest import ACCESS_KEY, REGION, SECRET_KEY, make_client, start_server

TEMPLATES = Path(__file__).resolve().parent / "aws_templates"
SINGLE = "SecretsManagerRDSPostgreSQLRotationSingleUser"
MULTI = "SecretsManagerRDSPostgreSQLRotationMultiUser"
# The upstream files, byte for byte (README.md says at which commit): a changed template
# would no longer show that the published functions work unchanged.
SHA256 = {
    SINGLE: "c583008854283dd48f4ee04a7a2ff51a9b31b51543622242d8b40cdae768fbd1",
    MULTI: "f881d91ff2fd1d9996ebe8c01316721ff7df9488a1c5f0d7c168ed1d971d6fb4",
}
ACCOUNT_FN = "arn:aws:lambda:us-east-1:000000000000:function:"
# The roles these tests make; only they log in with a password (everyone else is trusted).
ROLES = ["tmpl_single", "tmpl_app", "tmpl_app_clone", "tmpl_master"]


def load_template(folder: str):
    """Imports a template's lambda_function.py as it is, checking it is the upstream file."""
    path = TEMPLATES / folder / "lambda_function.py"
    if not path.is_file():
        pytest.fail(f"{path} is not present: see {TEMPLATES / 'README.md'} for how to add it")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == SHA256[folder], f"{path} differs from the upstream template"
    spec = importlib.util.spec_from_file_location(f"aws_template_{folder}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def admin(server, sql: str):
    """Runs `sql` as the (trusted) postgres superuser."""
    import pg

    db = pg.DB(dbname="postgres", host="127.0.0.1", port=server.port, user="postgres")
    try:
        return db.query(sql)
    finally:
        db.close()


def logs_in(value: dict) -> bool:
    import pg

    try:
        conn = pg.DB(
            dbname=value.get("dbname", "postgres"), host=value["host"], port=int(value["port"]),
            user=value["username"], passwd=value["password"],
        )
    except pg.InternalError:
        return False
    conn.close()
    return True


@pytest.fixture(scope="module")
def server(runner):
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0", "--lambda-endpoint", runner.url])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lambda_environment(server):
    """What AWS Lambda gives a function: its credentials and region in the environment, plus
    the SECRETS_MANAGER_ENDPOINT variable the templates read (here: Coffer)."""
    saved = dict(os.environ)
    os.environ.update(
        SECRETS_MANAGER_ENDPOINT=server.url,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def sm(server, lambda_environment):
    return make_client(server.url)


def wait_current(sm, name, version_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    stages = {}
    while time.monotonic() < deadline:
        stages = sm.describe_secret(SecretId=name).get("VersionIdsToStages", {})
        if "AWSCURRENT" in stages.get(version_id, []):
            return stages
        time.sleep(0.1)
    raise AssertionError(f"{version_id} never became AWSCURRENT: {stages}")


def db_value(postgres, user, password, **extra):
    return {"engine": "postgres", "host": "127.0.0.1", "port": postgres.port, "username": user,
            "password": password, "dbname": "postgres", **extra}


def test_single_user_template_rotates_a_real_password(sm, runner, postgres, name):
    template = load_template(SINGLE)
    runner.functions["pg-single-user"] = template.lambda_handler
    admin(postgres, "CREATE ROLE tmpl_single LOGIN PASSWORD 'single-old'")
    old = db_value(postgres, "tmpl_single", "single-old")
    assert logs_in(old)
    created = sm.create_secret(Name=name, SecretString=json.dumps(old))
    before = len(runner.events())
    rotated = sm.rotate_secret(
        SecretId=name, RotationLambdaARN=ACCOUNT_FN + "pg-single-user",
        RotationRules={"AutomaticallyAfterDays": 30},
    )
    stages = wait_current(sm, name, rotated["VersionId"])
    assert [e["Step"] for e in runner.events()[before:]] == [
        "createSecret", "setSecret", "testSecret", "finishSecret"]
    assert stages[created["VersionId"]] == ["AWSPREVIOUS"]
    new = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    assert new["username"] == "tmpl_single" and new["password"] != "single-old"
    assert logs_in(new), "the rotated password logs in"
    assert not logs_in(old), "the old password no longer logs in"

    # Rotating again from the stored configuration: AWSPREVIOUS moves along.
    again = sm.rotate_secret(SecretId=name)
    stages = wait_current(sm, name, again["VersionId"])
    assert stages[rotated["VersionId"]] == ["AWSPREVIOUS"]
    newer = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    assert logs_in(newer) and not logs_in(new)


def test_alternating_users_template_creates_the_clone(sm, runner, postgres, name):
    template = load_template(MULTI)
    runner.functions["pg-multi-user"] = template.lambda_handler
    admin(postgres, "CREATE ROLE tmpl_master LOGIN CREATEROLE PASSWORD 'master-pass'")
    admin(postgres, "CREATE ROLE tmpl_app LOGIN PASSWORD 'app-old'")
    admin(postgres, "GRANT tmpl_app TO tmpl_master WITH ADMIN OPTION")
    master = sm.create_secret(Name=name + "-master",
                              SecretString=json.dumps(db_value(postgres, "tmpl_master", "master-pass")))
    old = db_value(postgres, "tmpl_app", "app-old", masterarn=master["ARN"])
    created = sm.create_secret(Name=name, SecretString=json.dumps(old))
    rotated = sm.rotate_secret(SecretId=name, RotationLambdaARN=ACCOUNT_FN + "pg-multi-user")
    stages = wait_current(sm, name, rotated["VersionId"])
    assert stages[created["VersionId"]] == ["AWSPREVIOUS"]
    new = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    assert new["username"] == "tmpl_app_clone" and new["masterarn"] == master["ARN"]
    assert logs_in(new), "the clone logs in with AWSCURRENT"
    assert logs_in(old), "the previous user still logs in"
    roles = admin(postgres, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tmpl_app%' ORDER BY 1").getresult()
    assert [r[0] for r in roles] == ["tmpl_app", "tmpl_app_clone"]
    members = admin(postgres, "SELECT pg_has_role('tmpl_app_clone', 'tmpl_app', 'MEMBER')").getresult()
    assert members == [(True,)], "the clone was granted the current user's role"

    # The next rotation alternates back to the original user with a new password.
    again = sm.rotate_secret(SecretId=name)
    wait_current(sm, name, again["VersionId"])
    back = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    assert back["username"] == "tmpl_app" and back["password"] != "app-old"
    assert logs_in(back) and logs_in(new)
    assert not logs_in(old)
