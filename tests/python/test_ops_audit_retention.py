"""Audit retention (issue 17, part 8): events older than ``--audit-retention`` leave the store
for JSON-lines archives; ``coffer audit verify`` still checks the part kept, each archive on its
own and the chain across every cut; removing, editing or re-pointing any piece is named.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from audit_records import as_json, decode
from conftest import ACCESS_KEY, REGION, SECRET_KEY, coffer_bin, make_client, start_server

RETENTION_SECONDS = 2
VALUE = "retention-secret-value-5f1c2e"


def verify(data_dir: Path, *archives: Path) -> subprocess.CompletedProcess:
    args = [coffer_bin(), "audit", "verify", "--data-dir", str(data_dir)]
    for a in archives:
        args += ["--archives", str(a)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def trail(url: str):
    return boto3.client("cloudtrail", endpoint_url=url, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=Config(retries={"max_attempts": 1}))


def names_in_trail(url: str) -> list[str]:
    names = []
    kwargs: dict = {"MaxResults": 50}
    while True:
        page = trail(url).lookup_events(**kwargs)
        for e in page["Events"]:
            params = json.loads(e["CloudTrailEvent"]).get("requestParameters") or {}
            names.append(params.get("name") or params.get("secretId") or "")
        if "NextToken" not in page:
            return names
        kwargs["NextToken"] = page["NextToken"]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def db_rows(db: Path, sql: str, *params):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def tamper(db: Path, sql: str, *params) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()


@pytest.fixture(scope="module")
def cut_twice(tmp_path_factory):
    """A SQLite server whose trail was cut twice: two archives, then newer events kept."""
    data_dir = tmp_path_factory.mktemp("retention")
    server = start_server(["serve", "--dev", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
                           "--sweep-interval", "1", "--audit-retention", f"{RETENTION_SECONDS}s"])
    archive_dir = data_dir / "audit-archive"
    try:
        client = make_client(server.url)
        for i in range(3):
            client.create_secret(Name=f"old-{i}", SecretString=VALUE)
            client.get_secret_value(SecretId=f"old-{i}")
        wait_for(lambda: len(list(archive_dir.glob("*.jsonl"))) >= 1, what="a first archive")
        for i in range(2):
            client.create_secret(Name=f"middle-{i}", SecretString=VALUE)
        # Archives are contiguous: once the last middle call is archived, so is every older one.
        wait_for(lambda: len(list(archive_dir.glob("*.jsonl"))) >= 2
                 and any(b'"middle-1"' in f.read_bytes() for f in archive_dir.glob("*.jsonl")),
                 what="a second archive")
        # Events this recent stay in the store for now.
        for i in range(2):
            client.create_secret(Name=f"new-{i}", SecretString=VALUE)
        names = names_in_trail(server.url)
        metrics = requests.get(server.url + "/metrics", timeout=10).text
    finally:
        server.stop()
    return data_dir, archive_dir, names, metrics


def test_old_events_leave_the_store_for_archives_that_verify_with_it(cut_twice):
    data_dir, archive_dir, names, metrics = cut_twice
    # The old calls are no longer in the store, the recent ones are.
    assert not any(n.startswith("old-") for n in names), names
    assert {"new-0", "new-1"} <= set(names)
    archived = [line for line in metrics.splitlines()
                if line.startswith("coffer_audit_events_archived_total ")]
    assert archived and float(archived[0].split()[1]) >= 6, metrics
    stored = [line for line in metrics.splitlines() if line.startswith("coffer_audit_events_stored ")]
    assert stored and float(stored[0].split()[1]) < len(names) + 10, metrics

    files = sorted(archive_dir.glob("*.jsonl"))
    assert len(files) >= 2
    archived_names = set()
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        lines = f.read_bytes().splitlines()
        assert json.loads(lines[0])["cofferAuditArchive"] == 1
        assert "end" in json.loads(lines[-1])
        for line in lines[1:-1]:
            params = json.loads(line)["event"].get("requestParameters") or {}
            archived_names.add(params.get("name") or params.get("secretId"))
    assert {f"old-{i}" for i in range(3)} <= archived_names
    # No value reached an archive (nor any other file).
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert VALUE.encode() not in path.read_bytes(), path

    ok = verify(data_dir, archive_dir)
    assert ok.returncode == 0, ok.stderr
    assert "audit trail intact" in ok.stdout and "audit archives intact" in ok.stdout, ok.stdout
    # Each archive also verifies on its own.
    for f in files:
        alone = verify(data_dir, f)
        assert alone.returncode == 0, (f, alone.stderr)
    # The store alone verifies from its cut.
    assert verify(data_dir).returncode == 0


def test_an_edited_or_truncated_archive_is_named(cut_twice, tmp_path):
    data_dir, archive_dir, _, _ = cut_twice
    # An event line naming an old secret, in whichever archive the cuts put it.
    target, index = next((f, i) for f in sorted(archive_dir.glob("*.jsonl"))
                         for i, line in enumerate(f.read_bytes().split(b"\n"))
                         if b'"old-' in line)
    original = target.read_bytes()
    try:
        lines = original.split(b"\n")
        lines[index] = lines[index].replace(b'"old-', b'"odd-', 1)
        target.write_bytes(b"\n".join(lines))
        bad = verify(data_dir, archive_dir)
        assert bad.returncode != 0 and target.name in bad.stderr, bad.stderr
        assert f"line {index + 1}" in bad.stderr, bad.stderr

        # The last event and the end dropped: truncated.
        target.write_bytes(b"\n".join(original.split(b"\n")[:-3]) + b"\n")
        bad = verify(data_dir, target)
        assert bad.returncode != 0 and "end checkpoint" in bad.stderr, bad.stderr
    finally:
        target.write_bytes(original)
    assert verify(data_dir, archive_dir).returncode == 0


def test_a_removed_archive_is_missed_by_the_directory_check(cut_twice):
    data_dir, archive_dir, _, _ = cut_twice
    files = sorted(archive_dir.glob("*.jsonl"))
    for victim in (files[0], files[-1]):
        moved = victim.with_suffix(".hidden")
        victim.rename(moved)
        try:
            bad = verify(data_dir, archive_dir)
            assert bad.returncode != 0 and "missing" in bad.stderr, bad.stderr
        finally:
            moved.rename(victim)
    assert verify(data_dir, archive_dir).returncode == 0


def test_the_store_cut_cannot_be_moved_or_dropped_without_the_key(cut_twice):
    data_dir, _, _, _ = cut_twice
    db = data_dir / "coffer.db"
    (chain, base), = db_rows(db, "SELECT key, value FROM records WHERE kind = 'audit.base'")
    events = db_rows(db, "SELECT key, value FROM records WHERE kind = 'audit.event' ORDER BY key DESC")
    oldest_key, oldest_value = events[0]
    try:
        # The oldest kept event removed: a gap after the cut.
        tamper(db, "DELETE FROM records WHERE kind = 'audit.event' AND key = ?", oldest_key)
        bad = verify(data_dir)
        assert bad.returncode != 0 and "removed" in bad.stderr, bad.stderr
        # ... and the base moved over the gap without the key: forged.
        oldest = decode(oldest_value)
        moved = json.dumps({"seq": oldest["seq"], "hash": oldest["hash"],
                            "mac": json.loads(base)["mac"]}).encode()
        tamper(db, "UPDATE records SET value = ? WHERE kind = 'audit.base'", moved)
        bad = verify(data_dir)
        assert bad.returncode != 0 and "checkpoint" in bad.stderr, bad.stderr
        tamper(db, "INSERT INTO records (kind, key, value) VALUES ('audit.event', ?, ?)",
               oldest_key, oldest_value)
        tamper(db, "UPDATE records SET value = ? WHERE kind = 'audit.base'", base)
        assert verify(data_dir).returncode == 0
        # The base removed: the kept part no longer starts where the chain does.
        tamper(db, "DELETE FROM records WHERE kind = 'audit.base'")
        bad = verify(data_dir)
        assert bad.returncode != 0 and "removed" in bad.stderr, bad.stderr
    finally:
        tamper(db, "DELETE FROM records WHERE kind = 'audit.base'")
        tamper(db, "INSERT INTO records (kind, key, value) VALUES ('audit.base', ?, ?)", chain, base)
        tamper(db, "INSERT OR REPLACE INTO records (kind, key, value) VALUES ('audit.event', ?, ?)",
               oldest_key, oldest_value)
    assert verify(data_dir).returncode == 0


def test_a_server_restarted_on_a_cut_trail_continues_it(cut_twice):
    data_dir, archive_dir, _, _ = cut_twice
    server = start_server(["serve", "--dev", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
                           "--audit-retention", "off"])
    try:
        make_client(server.url).create_secret(Name="after-restart", SecretString=VALUE)
        assert "after-restart" in names_in_trail(server.url)
    finally:
        server.stop()
    ok = verify(data_dir, archive_dir)
    assert ok.returncode == 0, ok.stderr


def test_bad_retention_periods_are_refused_at_start():
    for bad in ("90", "0d", "1y"):
        done = subprocess.run([coffer_bin(), "serve", "--dev", "--audit-retention", bad],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and "audit-retention" in done.stderr, done.stderr


def test_retention_on_postgresql_archives_and_verifies(tmp_path):
    from test_backup_restore import Postgres

    pg = Postgres()
    server = None
    try:
        store = pg.create_database()
        data_dir = tmp_path / "data"
        server = start_server(["serve", "--dev", "--store", store, "--data-dir", str(data_dir),
                               "--listen", "127.0.0.1:0", "--sweep-interval", "1",
                               "--audit-retention", f"{RETENTION_SECONDS}s"])
        archive_dir = data_dir / "audit-archive"
        client = make_client(server.url)
        for i in range(3):
            client.create_secret(Name=f"pg-old-{i}", SecretString=VALUE)
        wait_for(lambda: any(b'"pg-old-2"' in f.read_bytes() for f in archive_dir.glob("*.jsonl")),
                 what="an archive on PostgreSQL")
        client.create_secret(Name="pg-new", SecretString=VALUE)
        names = names_in_trail(server.url)
        assert "pg-new" in names and not any(n.startswith("pg-old-") for n in names), names
        server.stop()
        server = None
        done = subprocess.run([coffer_bin(), "audit", "verify", "--store", store, "--data-dir",
                               str(data_dir), "--archives", str(archive_dir)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "audit archives intact" in done.stdout
    finally:
        if server is not None:
            server.stop()
        pg.stop()


def test_a_cut_stops_before_a_tampered_event_and_never_seals_over_it(tmp_path):
    """Archiving past an edited event would seal a checkpoint over it and launder the edit."""
    server = start_server(["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                           "--audit-retention", "off"])
    try:
        client = make_client(server.url)
        for i in range(4):
            client.create_secret(Name=f"chained-{i}", SecretString=VALUE)
    finally:
        server.stop()
    db = tmp_path / "coffer.db"
    rows = db_rows(db, "SELECT key, value FROM records WHERE kind = 'audit.event' ORDER BY key DESC")
    # Oldest first: edit the third event.
    key, value = rows[2]
    edited = as_json(value).replace(b"chained-2", b"chained-X")
    assert edited != value
    tamper(db, "UPDATE records SET value = ? WHERE kind = 'audit.event' AND key = ?", edited, key)

    server = start_server(["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                           "--sweep-interval", "1", "--audit-retention", "1s"])
    try:
        out = server.output_once_it_shows("stopped before a damaged event", timeout=30)
        assert "stopped before a damaged event" in out, out
    finally:
        server.stop()
    archive_dir = tmp_path / "audit-archive"
    archived = b"".join(f.read_bytes() for f in archive_dir.glob("*.jsonl"))
    assert b"chained-1" in archived and b"chained-X" not in archived
    # The edit is still in the store, and still named.
    (_, still), = db_rows(db, "SELECT key, value FROM records WHERE kind = 'audit.event' AND key = ?", key)
    assert still == edited
    bad = verify(tmp_path, archive_dir)
    assert bad.returncode != 0 and "changed" in bad.stderr, bad.stderr
