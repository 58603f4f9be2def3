"""File modes (issue 21, finding 15): the files a server writes are private (0600) whatever
the umask, and a master key file that others can read is named in a warning, as ssh does.

The servers here run with umask 022, the usual default, under which a file created without
an explicit mode is 0644.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import make_client, start_server, unique_name

UMASK = 0o022


def umask_022() -> None:
    os.umask(UMASK)


@pytest.fixture
def with_umask(monkeypatch):
    """Servers started while this is active run with umask 022."""
    monkeypatch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, preexec_fn=umask_022))
    yield
    monkeypatch.undo()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def use_the_store(url: str) -> None:
    """Writes enough that SQLite creates its -wal and -shm files."""
    sm = make_client(url)
    name = unique_name("modes")
    sm.create_secret(Name=name, SecretString="v")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"


def assert_private(*paths: Path) -> None:
    modes = {str(p): oct(mode(p)) for p in paths}
    assert all(m == oct(0o600) for m in modes.values()), modes


def database_files(db: Path) -> list[Path]:
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    for f in files:
        assert f.exists(), f"{f} was not created"
    return files


def test_a_pre_existing_data_directory_gets_a_private_database(with_umask, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    srv = start_server(["serve", "--dev", "--data-dir", str(data), "--listen", "127.0.0.1:0"])
    try:
        use_the_store(srv.url)
        assert_private(*database_files(data / "coffer.db"))
    finally:
        srv.stop()


def test_a_sqlite_store_path_gets_a_private_database(with_umask, tmp_path):
    db = tmp_path / "elsewhere" / "store.db"
    db.parent.mkdir()
    srv = start_server(["serve", "--dev", "--store", f"sqlite:{db}", "--data-dir", str(tmp_path / "data"),
                        "--listen", "127.0.0.1:0"])
    try:
        use_the_store(srv.url)
        assert_private(*database_files(db))
    finally:
        srv.stop()


def test_a_database_left_readable_by_an_older_version_is_made_private(with_umask, tmp_path):
    data = tmp_path / "data"
    srv = start_server(["serve", "--dev", "--data-dir", str(data), "--listen", "127.0.0.1:0"])
    use_the_store(srv.url)
    srv.stop()
    db = data / "coffer.db"
    for f in database_files(db) if Path(f"{db}-wal").exists() else [db]:
        f.chmod(0o644)
    srv = start_server(["serve", "--dev", "--data-dir", str(data), "--listen", "127.0.0.1:0"])
    try:
        use_the_store(srv.url)
        assert_private(*database_files(db))
    finally:
        srv.stop()


def test_the_audit_log_and_its_rotated_files_are_private(with_umask, tmp_path):
    log = tmp_path / "logs" / "audit.jsonl"
    log.parent.mkdir()
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0", "--audit-log", str(log),
                        "--audit-log-max-bytes", "2000"])
    try:
        sm = make_client(srv.url)
        for _ in range(6):
            sm.list_secrets()
        rotated = Path(f"{log}.1")
        assert rotated.exists(), "the log did not rotate"
        assert_private(log, rotated)
        assert json.loads(log.read_text().splitlines()[-1])["eventName"] == "ListSecrets"
    finally:
        srv.stop()


def test_a_master_key_file_others_can_read_is_warned_about(with_umask, tmp_path):
    data = tmp_path / "data"
    srv = start_server(["serve", "--dev", "--data-dir", str(data), "--listen", "127.0.0.1:0"])
    srv.stop()
    key = data / "master.key"
    assert mode(key) == 0o600
    assert "group or others" not in srv.output()
    key.chmod(0o644)
    srv = start_server(["serve", "--dev", "--data-dir", str(data), "--listen", "127.0.0.1:0"])
    try:
        out = srv.output_once_it_shows("group or others")
        warnings = [line for line in out.splitlines() if "group or others" in line]
        assert len(warnings) == 1, out
        assert "WARN" in warnings[0] and str(key) in warnings[0] and "0644" in warnings[0], warnings
        # The key itself is never printed.
        assert key.read_text().strip() not in out
    finally:
        srv.stop()
    # --master-key-file is checked the same way.
    srv = start_server(["serve", "--dev", "--data-dir", str(data), "--master-key-file", str(key),
                        "--listen", "127.0.0.1:0"])
    try:
        assert "group or others" in srv.output_once_it_shows("group or others")
    finally:
        srv.stop()
