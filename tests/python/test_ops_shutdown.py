"""Graceful shutdown: SIGTERM or SIGINT stops accepting, lets a call in progress finish, keeps
every acknowledged write, releases the background-work lease so another node takes it at
once, and exits 0."""

from __future__ import annotations

import json
import signal
import socket
import threading
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import make_client, start_server, unique_name
from test_backup_restore import Postgres

AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/secretsmanager/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_call_in_progress_finishes_and_the_server_exits_0(tmp_path, sig):
    srv = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0"])
    host, port = srv.url.removeprefix("http://").split(":")
    name = unique_name("inflight")
    body = json.dumps({"Name": name, "SecretString": "finished", "ClientRequestToken": str(uuid.uuid4())}).encode()
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        head = (f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\nX-Amz-Target: secretsmanager.CreateSecret\r\n"
                f"Content-Type: application/x-amz-json-1.1\r\nAuthorization: {AUTH}\r\n"
                f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        conn.sendall(head)
        # "100 Continue" comes once the handler reads the body: the call is in progress.
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = conn.recv(1)
            assert chunk, "the connection closed before 100 Continue"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100"), interim
        # Half the body is in when the signal comes...
        conn.sendall(body[:10])
        srv.proc.send_signal(sig)
        # ...the listener is closed (this line follows), so new connections are refused...
        assert "stopped accepting" in srv.output_once_it_shows("stopped accepting")
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=5).close()
        # ...and the rest arrives and is answered.
        conn.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            assert chunk, "the connection closed before the answer"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert srv.wait_exit(timeout=30) == 0
    assert "stopped" in srv.output()
    # The write is there after a restart.
    again = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0"])
    try:
        assert make_client(again.url).get_secret_value(SecretId=name)["SecretString"] == "finished"
    finally:
        again.stop()


def test_sigterm_under_load_loses_no_acknowledged_write(tmp_path):
    data = tmp_path / "d"
    srv = start_server(["serve", "--dev", "--data-dir", str(data), "--listen", "127.0.0.1:0"])
    names = [unique_name(f"load{i}") for i in range(4)]
    setup = make_client(srv.url)
    for name in names:
        setup.create_secret(Name=name, SecretString="v0")
    acknowledged: dict[str, list[str]] = {name: [] for name in names}
    enough = threading.Event()
    lock = threading.Lock()

    def writer(name: str):
        sm = make_client(srv.url)
        for _ in range(90):
            token = str(uuid.uuid4())
            try:
                sm.put_secret_value(SecretId=name, SecretString="v-" + token, ClientRequestToken=token)
            except (ClientError, Exception):  # noqa: BLE001 - refused once the server stops
                return
            with lock:
                acknowledged[name].append(token)
                if sum(len(v) for v in acknowledged.values()) >= 40:
                    enough.set()

    threads = [threading.Thread(target=writer, args=(n,)) for n in names]
    for t in threads:
        t.start()
    enough.wait(timeout=60)
    srv.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    assert srv.wait_exit(timeout=30) == 0
    again = start_server(["serve", "--dev", "--data-dir", str(data), "--listen", "127.0.0.1:0"])
    try:
        sm = make_client(again.url)
        for name, tokens in acknowledged.items():
            stored = set()
            kwargs = {"SecretId": name, "IncludeDeprecated": True}
            while True:
                page = sm.list_secret_version_ids(**kwargs)
                stored |= {v["VersionId"] for v in page["Versions"]}
                if "NextToken" not in page:
                    break
                kwargs["NextToken"] = page["NextToken"]
            missing = [t for t in tokens if t not in stored]
            assert not missing, f"{name}: {len(missing)} acknowledged writes lost"
    finally:
        again.stop()


def test_sigterm_releases_the_background_lease_to_the_next_node(tmp_path):
    pg = Postgres()
    nodes = []
    try:
        store = pg.create_database()
        # A lease lasts three rounds: with an hour a round, only a released lease can pass
        # to another node within this test.
        args = ["serve", "--dev", "--store", store, "--data-dir", str(tmp_path / "d"),
                "--listen", "127.0.0.1:0", "--sweep-interval", "3600"]
        first = start_server(args)
        nodes.append(first)
        assert "this node now does the background work" in first.output_once_it_shows("background work", 15)
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait_exit(timeout=30) == 0
        second = start_server(args)
        nodes.append(second)
        assert "this node now does the background work" in second.output_once_it_shows("background work", 15)
    finally:
        for node in nodes:
            node.stop()
        pg.stop()


def test_sighup_without_tls_does_not_stop_the_server(tmp_path):
    # `systemctl reload` sends SIGHUP; without a certificate to reload it must be harmless.
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0"])
    try:
        srv.proc.send_signal(signal.SIGHUP)
        assert "nothing to reload" in srv.output_once_it_shows("nothing to reload")
        assert srv.proc.poll() is None
        make_client(srv.url).list_secrets()
    finally:
        srv.stop()
