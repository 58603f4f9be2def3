"""The AWS CLI (v1) against Coffer, including the seed examples for update-secret."""

import base64
import json
import os
import subprocess
import sys

import pytest

from conftest import ACCESS_KEY, MSG_NOT_FOUND, REGION, SECRET_KEY, unique_name

def aws(url, *args, check=True, access_key=ACCESS_KEY, service="secretsmanager"):
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_PAGER="",
    )
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    cmd = [
        sys.executable, "-m", "awscli", service, *args,
        "--endpoint-url", url, "--region", REGION, "--output", "json",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stderr}"
    return proc


def aws_json(url, *args, **kwargs):
    out = aws(url, *args, **kwargs).stdout
    return json.loads(out) if out.strip() else {}


@pytest.fixture
def seeded(url):
    """The seed's MyTestSecret, under a unique name so tests and reruns do not collide."""
    name = unique_name("cli") + "/MyTestSecret"
    created = aws_json(url, "create-secret", "--name", name, "--secret-string", '{"username":"anika","password":"first"}')
    return name, created


def test_cli_create_secret_prints_arn_name_version(seeded):
    name, created = seeded
    assert set(created) == {"ARN", "Name", "VersionId"}
    assert created["Name"] == name


def test_cli_seed_update_description(url, seeded):
    name, created = seeded
    out = aws_json(url, "update-secret", "--secret-id", name, "--description", "This is a new description for the secret.")
    assert out == {"ARN": created["ARN"], "Name": name}
    desc = aws_json(url, "describe-secret", "--secret-id", name)
    assert desc["Description"] == "This is a new description for the secret."
    assert list(desc["VersionIdsToStages"]) == [created["VersionId"]]


def test_cli_seed_update_kms_key(url, seeded):
    name, created = seeded
    key_arn = aws_json(url, "create-key", service="kms")["KeyMetadata"]["Arn"]
    out = aws_json(url, "update-secret", "--secret-id", name, "--kms-key-id", key_arn)
    assert out == {"ARN": created["ARN"], "Name": name}
    desc = aws_json(url, "describe-secret", "--secret-id", name)
    assert desc["KmsKeyId"] == key_arn


def test_cli_seed_update_secret_string(url, seeded):
    name, created = seeded
    value = '{"username":"anika","password":"a different password"}'
    out = aws_json(url, "update-secret", "--secret-id", name, "--secret-string", value)
    assert set(out) == {"ARN", "Name", "VersionId"}
    assert out["ARN"] == created["ARN"]
    got = aws_json(url, "get-secret-value", "--secret-id", name)
    assert got["SecretString"] == value
    assert got["VersionId"] == out["VersionId"]
    assert got["VersionStages"] == ["AWSCURRENT"]
    prev = aws_json(url, "get-secret-value", "--secret-id", name, "--version-stage", "AWSPREVIOUS")
    assert prev["VersionId"] == created["VersionId"]


def test_cli_binary_secret_from_file_round_trips(url, tmp_path):
    name = unique_name("cli-bin")
    data = b"\x00\x01\x02\xff" + bytes(range(256))
    path = tmp_path / "secret.bin"
    path.write_bytes(data)
    aws_json(url, "create-secret", "--name", name, "--secret-binary", f"fileb://{path}")
    got = aws_json(url, "get-secret-value", "--secret-id", name)
    assert base64.b64decode(got["SecretBinary"]) == data
    assert "SecretString" not in got


def test_cli_put_secret_value_with_stages(url):
    name = unique_name("cli-put")
    aws_json(url, "create-secret", "--name", name, "--secret-string", "v1")
    out = aws_json(url, "put-secret-value", "--secret-id", name, "--secret-string", "v2", "--version-stages", "AWSPENDING")
    assert set(out) == {"ARN", "Name", "VersionId", "VersionStages"}
    assert out["VersionStages"] == ["AWSPENDING"]
    assert aws_json(url, "get-secret-value", "--secret-id", name)["SecretString"] == "v1"


def test_cli_error_shows_code_and_message(url):
    proc = aws(url, "get-secret-value", "--secret-id", unique_name("cli-missing"), check=False)
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr
    assert MSG_NOT_FOUND in proc.stderr


def test_cli_list_secrets_follows_pages(fresh_server):
    url = fresh_server.url
    names = {f"cli-page/{i}" for i in range(7)}
    for n in names:
        aws_json(url, "create-secret", "--name", n, "--secret-string", "v")
    out = aws_json(url, "list-secrets", "--page-size", "2")
    assert sorted(s["Name"] for s in out["SecretList"]) == sorted(names)


def test_cli_tag_untag_and_delete(url):
    name = unique_name("cli-tag")
    aws_json(url, "create-secret", "--name", name, "--secret-string", "v")
    tag = aws(url, "tag-resource", "--secret-id", name, "--tags",
              '[{"Key":"costcenter","Value":"12345"},{"Key":"environment","Value":"production"}]')
    assert tag.stdout.strip() == ""
    aws(url, "untag-resource", "--secret-id", name, "--tag-keys", "environment")
    desc = aws_json(url, "describe-secret", "--secret-id", name)
    assert desc["Tags"] == [{"Key": "costcenter", "Value": "12345"}]
    deleted = aws_json(url, "delete-secret", "--secret-id", name, "--force-delete-without-recovery")
    assert set(deleted) == {"ARN", "DeletionDate", "Name"}


def test_cli_get_random_password(url):
    out = aws_json(url, "get-random-password", "--password-length", "20", "--exclude-punctuation")
    assert len(out["RandomPassword"]) == 20
    assert out["RandomPassword"].isalnum()
