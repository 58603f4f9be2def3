"""Unauthenticated connection exhaustion (issue 21, finding 11).

A server limited to 64 open files must keep answering signed calls while 100 clients hold
half-sent requests: it caps its connections below its file limit, closes a connection whose
request headers do not arrive within ``--header-timeout``, and one whose body does not arrive
within ``--body-timeout``. No timing thresholds: the tests only wait for timeouts to elapse.
"""

from __future__ import annotations

import functools
import resource
import socket
import subprocess
from urllib.parse import urlparse

import pytest

from conftest import make_client, start_server, unique_name

FILE_LIMIT = 64
HALF_SENT = 100
# Short timeouts so the test waits seconds, not minutes.
TIMEOUT_FLAGS = ["--header-timeout", "2", "--body-timeout", "2"]


def limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture
def limited_server(monkeypatch, tmp_path):
    """A SQLite-backed server whose file limit is 64, as under `ulimit -n 64`."""
    monkeypatch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, preexec_fn=limit_files))
    srv = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                        *TIMEOUT_FLAGS])
    monkeypatch.undo()
    yield srv
    srv.stop()


def address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname, parsed.port


def half_sent(addr: tuple[str, int], count: int) -> list[socket.socket]:
    """`count` connections that each sent the start of a request's headers and nothing more."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(addr, timeout=30)
        s.sendall(b"POST / HTTP/1.1\r\nHost: coffer\r\nX-Amz-Target: secretsmanager.ListSecrets\r\n")
        socks.append(s)
    return socks


def closed_by_server(s: socket.socket) -> bool:
    """Whether the server ends the connection (it may answer first) before 30 s pass."""
    s.settimeout(30)
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_half_sent_requests_do_not_stop_a_server_with_64_files(limited_server):
    addr = address(limited_server.url)
    socks = half_sent(addr, HALF_SENT)
    try:
        # A signed call made while the half-sent requests hold their connections is answered
        # once the header timeout has closed enough of them (the client waits up to 60 s).
        sm = make_client(limited_server.url)
        name = unique_name("conn")
        sm.create_secret(Name=name, SecretString="still-serving")
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "still-serving"
        # The connections that sent half a request were closed, not left to hold a file.
        assert closed_by_server(socks[0])
    finally:
        for s in socks:
            s.close()
    assert limited_server.proc.poll() is None, limited_server.output()
    out = limited_server.output()
    # The cap keeps connections below the file limit: accept never runs out of files.
    assert "Too many open files" not in out, out


def test_a_body_that_stops_arriving_is_dropped_after_the_body_timeout(limited_server):
    addr = address(limited_server.url)
    s = socket.create_connection(addr, timeout=30)
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: coffer\r\nX-Amz-Target: secretsmanager.ListSecrets\r\n"
                  b"Content-Type: application/x-amz-json-1.1\r\n"
                  b"Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=00\r\n"
                  b"Content-Length: 100\r\n\r\n{\"Max")
        s.settimeout(30)
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"RequestTimeoutException" in answer, answer
    finally:
        s.close()
    # The server still answers.
    assert make_client(limited_server.url).list_secrets()["SecretList"] is not None


def test_an_idle_keep_alive_connection_is_closed(limited_server):
    """An idle connection holds a file as a half-sent request does: the same timeout ends it."""
    addr = address(limited_server.url)
    s = socket.create_connection(addr, timeout=30)
    try:
        assert closed_by_server(s)
    finally:
        s.close()


def test_a_keep_alive_connection_left_idle_after_an_answer_is_closed(limited_server):
    addr = address(limited_server.url)
    s = socket.create_connection(addr, timeout=30)
    try:
        body = b"{}"
        s.sendall(b"POST / HTTP/1.1\r\nHost: coffer\r\nX-Amz-Target: secretsmanager.ListSecrets\r\n"
                  b"Content-Type: application/x-amz-json-1.1\r\n"
                  b"Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=00\r\n"
                  b"Content-Length: 2\r\n\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b"connection: close" not in answer.lower()
        # Kept alive, then closed once no next request comes within the header timeout.
        assert closed_by_server(s)
    finally:
        s.close()


def test_the_connection_flags_are_validated(tmp_path):
    done = subprocess.run([*start_args(), "--max-connections", "0"], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "--max-connections" in done.stderr


def start_args() -> list[str]:
    from conftest import coffer_bin
    return [coffer_bin(), "serve", "--dev", "--listen", "127.0.0.1:0"]


def test_the_server_reports_its_connection_cap(limited_server):
    # 64 files, less those the server keeps for itself: far fewer than the default 1024.
    out = limited_server.output_once_it_shows("connections at most")
    assert "connections at most" in out, out
    cap = int(out.split("connections at most ")[1].split()[0].rstrip(","))
    assert 0 < cap < FILE_LIMIT
