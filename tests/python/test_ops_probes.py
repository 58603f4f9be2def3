"""Health probes: ``GET /health`` (liveness) and ``GET /ready`` (the store answers, the audit
log can be written). Unauthenticated, no data, on the main listener, with and without
``--dev``; ``/ready`` follows a PostgreSQL store going away and coming back."""

from __future__ import annotations

import time

import requests

from conftest import make_client, start_server, unique_name
from test_backup_restore import Postgres


def probe(url: str, path: str) -> requests.Response:
    return requests.get(url + path, timeout=10)


def test_probes_answer_on_a_dev_server(server, url):
    health = probe(url, "/health")
    assert health.status_code == 200
    assert health.text == "ok\n"
    ready = probe(url, "/ready")
    assert ready.status_code == 200
    assert ready.text == "ready\n"
    assert ready.headers["Cache-Control"] == "no-store"
    # The API itself is untouched by the probe routes.
    sm = make_client(url)
    name = unique_name("probe")
    sm.create_secret(Name=name, SecretString="v")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"


def test_probes_need_no_credentials_on_an_enforcing_server(tmp_path):
    srv = start_server(["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"])
    try:
        assert probe(srv.url, "/health").status_code == 200
        assert probe(srv.url, "/ready").status_code == 200
        # ...while an API call without a signature is still refused.
        refused = requests.post(srv.url + "/", data=b"{}", timeout=10,
                                headers={"X-Amz-Target": "secretsmanager.ListSecrets",
                                         "Content-Type": "application/x-amz-json-1.1"})
        assert refused.status_code in (400, 403)
    finally:
        srv.stop()


def test_ready_fails_when_the_audit_log_cannot_be_written(tmp_path):
    data = tmp_path / "data"
    audit_log = tmp_path / "audit.jsonl"
    srv = start_server(["serve", "--dev", "--data-dir", str(data), "--listen", "127.0.0.1:0",
                        "--audit-log", str(audit_log)])
    try:
        assert probe(srv.url, "/ready").status_code == 200
        # A directory where the file was: opening it for appending fails, as writes would.
        audit_log.unlink()
        audit_log.mkdir()
        assert probe(srv.url, "/ready").status_code == 503
        assert probe(srv.url, "/health").status_code == 200
        audit_log.rmdir()
        assert probe(srv.url, "/ready").status_code == 200
    finally:
        srv.stop()


class StoppablePostgres(Postgres):
    """The throwaway server of test_backup_restore, stopped and started again in place."""

    def pause(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-t", "60",
                 "-o", options, "start")


def wait_for_status(url: str, path: str, status: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe(url, path).status_code
        except requests.RequestException:
            last = None
        if last == status:
            return last
        time.sleep(0.2)
    return last


def test_ready_follows_postgres_going_away_and_coming_back(tmp_path):
    pg = StoppablePostgres()
    srv = None
    try:
        store = pg.create_database()
        srv = start_server(["serve", "--dev", "--store", store, "--data-dir", str(tmp_path / "data"),
                            "--listen", "127.0.0.1:0"])
        assert probe(srv.url, "/ready").status_code == 200
        pg.pause()
        assert wait_for_status(srv.url, "/ready", 503) == 503
        # Liveness is not readiness: the process still answers.
        assert probe(srv.url, "/health").status_code == 200
        pg.resume()
        assert wait_for_status(srv.url, "/ready", 200) == 200
        sm = make_client(srv.url)
        name = unique_name("pgprobe")
        sm.create_secret(Name=name, SecretString="v")
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"
    finally:
        if srv is not None:
            srv.stop()
        pg.stop()


def test_probes_reject_other_methods(server, url):
    assert requests.post(url + "/health", timeout=10).status_code == 405
