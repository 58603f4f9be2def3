"""Backup and restore: a snapshot of the embedded SQLite store, taken while the server runs,
restored into PostgreSQL (the migration path) and into a fresh SQLite store, reads back
identical through the AWS CLI: every secret, version, value, label, tag, policy and date.

PostgreSQL is a throwaway server started from the installed binaries (``initdb`` and
``pg_ctl`` in a temporary directory, on a free port, as the ``postgres`` user when the tests
run as root). Without the binaries these tests fail with what to install; they never skip.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import io
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import awscli.clidriver
import pytest

from conftest import ACCESS_KEY, SECRET_KEY, coffer_bin, start_server

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found: install them "
    "(apt-get install -y postgresql; scripts/test.sh does this) or set COFFER_PG_BIN"
)
MASTER_KEY_FILE = "master.key"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
        }
    ],
}
# Values that must never appear in a backup file, which holds only sealed values.
MARKER = "plaintext-marker-" + uuid.uuid4().hex


def find_pg_bin() -> Path:
    candidates = []
    if os.environ.get("COFFER_PG_BIN"):
        candidates.append(Path(os.environ["COFFER_PG_BIN"]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(d) for d in versioned), key=lambda d: int(d.parent.name), reverse=True)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres", "createdb")):
            return directory
    pytest.fail(INSTALL_HINT)


class Postgres:
    """A throwaway PostgreSQL server in a temporary directory."""

    def __init__(self) -> None:
        self.bin = find_pg_bin()
        self.demote = None
        self.base = Path(tempfile.mkdtemp(prefix="coffer-pytest-pg-"))
        if os.geteuid() == 0:
            # initdb refuses root: run the server as the unprivileged postgres user.
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs a `postgres` user for the test server; " + INSTALL_HINT)
            os.chown(self.base, account.pw_uid, account.pw_gid)

            def demote(uid=account.pw_uid, gid=account.pw_gid):
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

            self.demote = demote
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        data = self.base / "data"
        self.run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                 "--locale=C", "--no-sync")
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", str(data), "-l", str(self.base / "server.log"), "-w", "-t", "60",
                 "-o", options, "start")
        self.data = data

    def run(self, tool: str, *args: str) -> str:
        proc = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True,
                              timeout=120, preexec_fn=self.demote, cwd=self.base)
        if proc.returncode != 0:
            log = self.base / "server.log"
            extra = log.read_text() if log.exists() else ""
            pytest.fail(f"{tool} failed ({proc.returncode}): {proc.stdout}{proc.stderr}{extra}")
        return proc.stdout

    def create_database(self) -> str:
        name = "coffer_" + uuid.uuid4().hex[:12]
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}?sslmode=disable"

    def stop(self) -> None:
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, preexec_fn=self.demote, cwd=self.base)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    yield server
    server.stop()


def coffer(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COFFER_MASTER_KEY", "COFFER_STORE")}
    proc = subprocess.run([coffer_bin(), *args], capture_output=True, text=True, timeout=120, env=env)
    if check:
        assert proc.returncode == 0, f"coffer {args}: rc={proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc


@contextlib.contextmanager
def cli_environment():
    """The AWS CLI's credentials and no user configuration, only for the duration of a call."""
    saved = dict(os.environ)
    os.environ.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_PAGER="",
    )
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(var, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def aws(url: str, region: str, *args: str) -> dict:
    """Runs the AWS CLI (v1) and returns its JSON output. The CLI's own driver runs in this
    process (the same argument parsing, request signing and output formatting as the `aws`
    command) because starting a Python interpreter per call would make this suite slow."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["secretsmanager", *args, "--endpoint-url", url, "--region", region, "--output", "json"]
    with cli_environment(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = awscli.clidriver.create_clidriver().main(argv)
    assert rc == 0, f"aws {' '.join(args)}: rc={rc}\n{err.getvalue()}"
    text = out.getvalue()
    return json.loads(text) if text.strip() else {}


def populate(url: str, workdir: Path) -> None:
    """Secrets with everything a store keeps, in two regions."""
    east = "us-east-1"
    aws(url, east, "create-secret", "--name", "app/db", "--description", "the database",
        "--secret-string", json.dumps({"user": "app", "password": MARKER + "-1"}),
        "--tags", "Key=env,Value=prod", "Key=team,Value=")
    aws(url, east, "put-secret-value", "--secret-id", "app/db", "--secret-string", MARKER + "-2")
    aws(url, east, "put-secret-value", "--secret-id", "app/db", "--secret-string", MARKER + "-3",
        "--version-stages", "AWSCURRENT", "blue")
    aws(url, east, "update-secret", "--secret-id", "app/db", "--secret-string", MARKER + "-4")
    binary = workdir / "cert.bin"
    binary.write_bytes(bytes(range(256)) + MARKER.encode())
    aws(url, east, "create-secret", "--name", "tls/cert", "--secret-binary", f"fileb://{binary}")
    aws(url, east, "put-resource-policy", "--secret-id", "tls/cert",
        "--resource-policy", json.dumps(POLICY))
    aws(url, east, "create-secret", "--name", "empty-shell", "--description", "no value yet")
    aws(url, east, "create-secret", "--name", "doomed", "--secret-string", MARKER + "-doomed")
    aws(url, east, "delete-secret", "--secret-id", "doomed", "--recovery-window-in-days", "7")
    aws(url, "eu-west-1", "create-secret", "--name", "app/db", "--secret-string", MARKER + "-eu")


def without_access_dates(described: dict) -> dict:
    """LastAccessedDate is day-precise and set by reads; a run across midnight would change it."""
    return {k: v for k, v in described.items() if k != "LastAccessedDate"}


def read_everything(url: str) -> dict:
    """Every secret of both regions as the AWS CLI shows it, with every version's value."""
    out = {}
    for region in ("us-east-1", "eu-west-1"):
        listed = aws(url, region, "list-secrets", "--include-planned-deletion", "--sort-order", "asc")
        names = sorted(s["Name"] for s in listed["SecretList"])
        out[region, "list"] = [without_access_dates(s) for s in sorted(listed["SecretList"],
                                                                         key=lambda s: s["Name"])]
        for name in names:
            described = aws(url, region, "describe-secret", "--secret-id", name)
            out[region, name, "describe"] = without_access_dates(described)
            versions = aws(url, region, "list-secret-version-ids", "--secret-id", name,
                           "--include-deprecated")
            out[region, name, "versions"] = sorted(
                ({k: v for k, v in version.items() if k != "LastAccessedDate"}
                 for version in versions["Versions"]),
                key=lambda v: v["VersionId"],
            )
            if "DeletedDate" in described:
                # A secret scheduled for deletion answers neither its value nor its resource
                # policy (InvalidRequestException, as on AWS); its description and versions
                # above still show it came back as it was.
                continue
            out[region, name, "policy"] = aws(url, region, "get-resource-policy", "--secret-id", name)
            for version in versions["Versions"]:
                value = aws(url, region, "get-secret-value", "--secret-id", name,
                            "--version-id", version["VersionId"])
                out[region, name, version["VersionId"]] = value
    return out


def key_of(data_dir: Path) -> list[str]:
    """The master key option of a command reading or writing a backup of `data_dir`'s data:
    backups are authenticated under a key derived from it."""
    return ["--master-key-file", str(data_dir / MASTER_KEY_FILE)]


def serve(args: list[str], key_file: Path) -> object:
    return start_server(["serve", "--dev", "--listen", "127.0.0.1:0", *args,
                         "--master-key-file", str(key_file)])


@pytest.fixture(scope="module")
def sqlite_backup(tmp_path_factory):
    """A populated SQLite data directory, what the CLI read from it, and its backup file,
    taken while the server was still running."""
    workdir = tmp_path_factory.mktemp("backup")
    data_dir = workdir / "sqlite-data"
    server = start_server(["serve", "--dev", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"])
    try:
        populate(server.url, workdir)
        expected = read_everything(server.url)
        values = [v for k, v in expected.items() if "SecretString" in v or "SecretBinary" in v]
        assert len(values) == 6, values  # four of app/db, the certificate, the eu secret
        current = aws(server.url, "us-east-1", "get-secret-value", "--secret-id", "app/db")
        assert current["SecretString"] == MARKER + "-4"
        backup = workdir / "snapshot.jsonl"
        done = coffer("backup", "--data-dir", str(data_dir), "--out", str(backup))
        assert "5 secrets" in done.stdout, done.stdout
    finally:
        server.stop()
    return data_dir, expected, backup


def test_backup_file_is_private_complete_and_holds_no_plaintext_value(sqlite_backup):
    _, _, backup = sqlite_backup
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    text = backup.read_bytes()
    assert MARKER.encode() not in text
    assert base64.b64encode(MARKER.encode()) not in text
    lines = text.decode().splitlines()
    assert json.loads(lines[0])["header"]["format"] == "coffer-backup"
    assert "end" in json.loads(lines[-1])
    # A second backup to the same file is refused rather than overwriting it.
    data_dir = sqlite_backup[0]
    again = coffer("backup", "--data-dir", str(data_dir), "--out", str(backup), check=False)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_sqlite_backup_restored_into_postgres_reads_back_identical(sqlite_backup, postgres, tmp_path):
    data_dir, expected, backup = sqlite_backup
    url = postgres.create_database()
    migrated = coffer("migrate", "--store", url)
    assert "migrated from version 0" in migrated.stdout, migrated.stdout
    assert "already at version" in coffer("migrate", "--store", url).stdout
    restored = coffer("restore", "--store", url, "--in", str(backup), *key_of(data_dir))
    assert "restored 5 secrets" in restored.stdout, restored.stdout
    assert "postgres://postgres@127.0.0.1" in restored.stdout

    server = serve(["--store", url, "--data-dir", str(tmp_path / "node")], data_dir / MASTER_KEY_FILE)
    try:
        assert read_everything(server.url) == expected
    finally:
        server.stop()

    # Restoring twice would duplicate or clobber data: the second attempt is refused.
    second = coffer("restore", "--store", url, "--in", str(backup), *key_of(data_dir), check=False)
    assert second.returncode != 0 and "not empty" in second.stderr, second.stderr


def test_sqlite_backup_restored_into_a_new_sqlite_store_reads_back_identical(sqlite_backup, tmp_path):
    data_dir, expected, backup = sqlite_backup
    target = tmp_path / "restored"
    coffer("restore", "--data-dir", str(target), "--in", str(backup), *key_of(data_dir))
    server = serve(["--data-dir", str(target)], data_dir / MASTER_KEY_FILE)
    try:
        assert read_everything(server.url) == expected
    finally:
        server.stop()


def test_a_postgres_store_backs_up_and_restores_into_sqlite(sqlite_backup, postgres, tmp_path):
    data_dir, expected, backup = sqlite_backup
    url = postgres.create_database()
    coffer("restore", "--store", url, "--in", str(backup), *key_of(data_dir))
    second_backup = tmp_path / "from-postgres.jsonl"
    coffer("backup", "--store", url, "--out", str(second_backup), *key_of(data_dir))
    target = tmp_path / "back-to-sqlite"
    coffer("restore", "--store", f"sqlite:{target / 'coffer.db'}", "--in", str(second_backup), *key_of(data_dir))
    server = serve(["--data-dir", str(target)], data_dir / MASTER_KEY_FILE)
    try:
        assert read_everything(server.url) == expected
    finally:
        server.stop()


def test_a_truncated_backup_is_refused_and_restores_nothing(sqlite_backup, tmp_path):
    _, _, backup = sqlite_backup
    lines = backup.read_text().splitlines()
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:-1]) + "\n")
    target = tmp_path / "target"
    proc = coffer("restore", "--data-dir", str(target), "--in", str(truncated), *key_of(sqlite_backup[0]), check=False)
    assert proc.returncode != 0 and "incomplete" in proc.stderr, proc.stderr
    assert not (target / "coffer.db").exists()
