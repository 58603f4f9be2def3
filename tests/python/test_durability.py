"""The SQLite store: acknowledged writes survive SIGKILL, values are encrypted at rest, and a wrong
master key stops the server instead of serving."""

import base64
import os
import uuid
from pathlib import Path

import pytest

from conftest import (
    MSG_NOT_FOUND,
    ServerProcess,
    expect_error,
    make_client,
    start_durable_server,
    start_server,
    stages,
)


def canary(tag: str) -> str:
    return f"coffer-canary-{tag}-{uuid.uuid4().hex}"


def leaked(data_dir: Path, needles: list[bytes]) -> list[str]:
    """Every (file, needle) pair where a needle's bytes occur in a file under data_dir."""
    hits = []
    for path in sorted(data_dir.rglob("*")):
        if not path.is_file():
            continue
        blob = path.read_bytes()
        for needle in needles:
            if needle in blob:
                hits.append(f"{path.name}: {needle[:40]!r}")
    return hits


def needles_for(values: list[bytes]) -> list[bytes]:
    out = []
    for v in values:
        out.append(v)
        out.append(base64.b64encode(v))
        out.append(v.hex().encode())
    return out


def populate(sm):
    """Writes of every kind; returns what a reader must see afterwards."""
    s = {}
    a_vals = [canary("a1"), canary("a2"), canary("a3")]
    a1 = sm.create_secret(
        Name="durable/a", SecretString=a_vals[0], Description="kept", Tags=[{"Key": "env", "Value": "prod"}]
    )
    a2 = sm.put_secret_value(SecretId="durable/a", SecretString=a_vals[1])["VersionId"]
    a3 = sm.put_secret_value(SecretId="durable/a", SecretString=a_vals[2], VersionStages=["AWSPENDING"])["VersionId"]
    sm.update_secret_version_stage(SecretId="durable/a", VersionStage="CUSTOM", MoveToVersionId=a3)
    s["a"] = {
        "arn": a1["ARN"],
        "versions": {a1["VersionId"]: a_vals[0], a2: a_vals[1], a3: a_vals[2]},
        "stages": {a1["VersionId"]: ["AWSPREVIOUS"], a2: ["AWSCURRENT"], a3: ["AWSPENDING", "CUSTOM"]},
    }
    b_val = (canary("b") + "\x00\xff").encode("latin-1")
    b = sm.create_secret(Name="durable/b", SecretBinary=b_val)
    s["b"] = {"arn": b["ARN"], "value": b_val}
    c_val, d_val = canary("c"), canary("d")
    sm.create_secret(Name="durable/scheduled", SecretString=c_val)
    sm.delete_secret(SecretId="durable/scheduled", RecoveryWindowInDays=7)
    sm.create_secret(Name="durable/gone", SecretString=d_val)
    sm.delete_secret(SecretId="durable/gone", ForceDeleteWithoutRecovery=True)
    sm.create_secret(Name="durable/untagged", SecretString="x", Tags=[{"Key": "t", "Value": "1"}])
    sm.untag_resource(SecretId="durable/untagged", TagKeys=["t"])
    sm.update_secret(SecretId="durable/a", Description="changed last")
    s["a"]["created"] = sm.describe_secret(SecretId="durable/a")["CreatedDate"]
    # Everything that must never appear in plaintext, as latin-1 text so bytes map one to one.
    s["values"] = a_vals + [b_val.decode("latin-1"), c_val, d_val]
    return s


def verify(sm, s):
    a = sm.describe_secret(SecretId="durable/a")
    assert a["ARN"] == s["a"]["arn"]
    assert a["Description"] == "changed last"
    assert a["Tags"] == [{"Key": "env", "Value": "prod"}]
    assert a["CreatedDate"] == s["a"]["created"]
    assert stages(sm, "durable/a") == s["a"]["stages"]
    for vid, value in s["a"]["versions"].items():
        assert sm.get_secret_value(SecretId="durable/a", VersionId=vid)["SecretString"] == value
    assert sm.get_secret_value(SecretId="durable/b")["SecretBinary"] == s["b"]["value"]
    assert sm.describe_secret(SecretId="durable/b")["ARN"] == s["b"]["arn"]
    assert "DeletedDate" in sm.describe_secret(SecretId="durable/scheduled")
    expect_error(sm.describe_secret, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId="durable/gone")
    assert sm.describe_secret(SecretId="durable/untagged")["Tags"] == []


def test_acknowledged_writes_survive_sigkill_and_values_are_encrypted_at_rest(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    first = start_durable_server(data_dir)
    try:
        sm = make_client(first.url)
        state = populate(sm)
        west_val = canary("west")
        make_client(first.url, region="eu-west-1").create_secret(Name="durable/a", SecretString=west_val)
        other_val = canary("acct")
        make_client(first.url, access_key="111122223333").create_secret(Name="durable/a", SecretString=other_val)
    finally:
        first.kill()  # SIGKILL right after the last acknowledged write.
    assert (data_dir / "master.key").is_file()
    values = [v.encode("latin-1") for v in state["values"]] + [west_val.encode(), other_val.encode()]
    needles = needles_for(values)
    assert leaked(data_dir, needles) == []
    assert not any(v.decode("latin-1") in first.output() for v in values), "secret value in server output"

    second = start_durable_server(data_dir)
    try:
        verify(make_client(second.url), state)
        assert make_client(second.url, region="eu-west-1").get_secret_value(SecretId="durable/a")["SecretString"] == west_val
        other = make_client(second.url, access_key="111122223333")
        assert other.get_secret_value(SecretId="durable/a")["SecretString"] == other_val
        # Writes after a restart land too and survive another SIGKILL.
        late = canary("late")
        make_client(second.url).put_secret_value(SecretId="durable/b", SecretString=late)
    finally:
        second.kill()
    assert leaked(data_dir, needles_for([late.encode()]) + needles) == []

    third = start_durable_server(data_dir)
    try:
        sm = make_client(third.url)
        assert sm.get_secret_value(SecretId="durable/b")["SecretString"] == late
        assert sm.get_secret_value(SecretId="durable/b", VersionStage="AWSPREVIOUS")["SecretBinary"] == state["b"]["value"]
    finally:
        third.stop()


def test_many_quick_writes_all_survive_sigkill(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    srv = start_durable_server(data_dir)
    try:
        sm = make_client(srv.url)
        for i in range(30):
            sm.create_secret(Name=f"bulk/{i}", SecretString=f"value-{i}")
    finally:
        srv.kill()
    srv = start_durable_server(data_dir)
    try:
        sm = make_client(srv.url)
        for i in range(30):
            assert sm.get_secret_value(SecretId=f"bulk/{i}")["SecretString"] == f"value-{i}"
    finally:
        srv.stop()


@pytest.fixture
def populated_dir(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    srv = start_durable_server(data_dir)
    try:
        make_client(srv.url).create_secret(Name="keyed", SecretString="needs-the-right-key")
    finally:
        srv.stop()
    assert (data_dir / "master.key").is_file()
    return data_dir


def refuses_to_serve(data_dir: Path, env=None) -> ServerProcess:
    srv = ServerProcess(["serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"], env)
    rc = srv.wait_exit(timeout=20)
    if rc is None:
        srv.kill()
        pytest.fail(f"server kept running with a wrong master key:\n{srv.output()}")
    assert rc != 0, srv.output()
    assert srv.url is None, "server printed a listening line before exiting"
    assert "key" in srv.output().lower(), f"no clear message about the key:\n{srv.output()}"
    assert "needs-the-right-key" not in srv.output()
    return srv


def still_readable(data_dir: Path) -> None:
    srv = start_durable_server(data_dir)
    try:
        got = make_client(srv.url).get_secret_value(SecretId="keyed")["SecretString"]
        assert got == "needs-the-right-key"
    finally:
        srv.stop()


def test_wrong_master_key_in_environment_stops_the_server(populated_dir):
    wrong = base64.b64encode(os.urandom(32)).decode()
    refuses_to_serve(populated_dir, {"COFFER_MASTER_KEY": wrong})
    still_readable(populated_dir)


def test_garbage_master_key_file_stops_the_server(populated_dir):
    key_file = populated_dir / "master.key"
    original = key_file.read_bytes()
    key_file.write_bytes(b"this is not a master key\n")
    refuses_to_serve(populated_dir)
    key_file.write_bytes(original)
    still_readable(populated_dir)


def _decode_key_file(raw: bytes):
    """(key bytes, encoder) for the two plausible encodings of master.key, or None."""
    if len(raw) == 32:
        return raw, lambda k: k
    text = raw.strip()
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    if len(key) == 32:
        trailer = raw[len(text):]
        return key, lambda k: base64.b64encode(k) + trailer
    return None


def test_master_key_file_with_one_flipped_bit_stops_the_server(populated_dir):
    key_file = populated_dir / "master.key"
    original = key_file.read_bytes()
    decoded = _decode_key_file(original)
    if decoded is None:
        pytest.skip("master.key is neither 32 raw bytes nor base64 of 32 bytes")
    key, encode = decoded
    flipped = bytes([key[0] ^ 0x01]) + key[1:]
    key_file.write_bytes(encode(flipped))
    refuses_to_serve(populated_dir)
    key_file.write_bytes(original)
    still_readable(populated_dir)


def test_right_master_key_in_environment_serves(populated_dir):
    decoded = _decode_key_file((populated_dir / "master.key").read_bytes())
    if decoded is None:
        pytest.skip("master.key is neither 32 raw bytes nor base64 of 32 bytes")
    env = {"COFFER_MASTER_KEY": base64.b64encode(decoded[0]).decode()}
    srv = start_server(["serve", "--dev", "--data-dir", str(populated_dir), "--listen", "127.0.0.1:0"], env)
    try:
        assert make_client(srv.url).get_secret_value(SecretId="keyed")["SecretString"] == "needs-the-right-key"
    finally:
        srv.stop()


def test_secret_values_never_reach_the_logs(tmp_path):
    value = canary("log")
    srv = start_server(
        ["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"],
        {"RUST_LOG": "trace", "COFFER_LOG": "trace"},
    )
    try:
        sm = make_client(srv.url)
        sm.create_secret(Name="logged", SecretString=value)
        sm.get_secret_value(SecretId="logged")
        sm.put_secret_value(SecretId="logged", SecretString=value + "-2")
        sm.batch_get_secret_value(SecretIdList=["logged"])
        expect_error(sm.create_secret, "ResourceExistsException", Name="logged", SecretString=value)
    finally:
        srv.stop()
    assert value not in srv.output()
