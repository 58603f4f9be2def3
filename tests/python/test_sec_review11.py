"""Review 11: findings about the tenth session's features, through the real binary.

The `--audit-log` copy keeps the lines of committed events it could not write queued in
memory, and `/ready` answers 503 while any are: a node a load balancer then takes out of
service receives no call, and so never wrote its queue again (only a call's audit check
did), stayed unready for good, and lost the lines when restarted."""

from __future__ import annotations

import json
import time

import requests

from conftest import make_client, start_server, unique_name


def probe(url: str, path: str) -> requests.Response:
    return requests.get(url + path, timeout=10)


def logged_names(log) -> list[str]:
    if not log.is_file():
        return []
    return [json.loads(line)["requestParameters"]["name"]
            for line in log.read_text().splitlines()
            if json.loads(line)["eventName"] == "CreateSecret"]


def server_with_a_queued_line(tmp_path):
    """A server whose log lost its file after one committed call: that call's line is queued.
    Returns the server, the log path and the name of the call's secret."""
    log = tmp_path / "audit.jsonl"
    srv = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "data"),
                        "--listen", "127.0.0.1:0", "--audit-log", str(log)])
    sm = make_client(srv.url)
    first = unique_name("logged")
    sm.create_secret(Name=first, SecretString="v")
    # A directory where the file was: the next line cannot be written after its commit.
    log.unlink()
    log.mkdir()
    queued = unique_name("queued")
    sm.create_secret(Name=queued, SecretString="v")
    assert probe(srv.url, "/ready").status_code == 503
    log.rmdir()
    return srv, log, queued


def test_ready_writes_the_queued_lines_once_the_log_can_take_them(tmp_path):
    srv, log, queued = server_with_a_queued_line(tmp_path)
    try:
        # No call comes (the node is out of service): the probe itself writes the queue.
        ready = probe(srv.url, "/ready")
        assert ready.status_code == 200, ready.text
        assert logged_names(log) == [queued]
    finally:
        srv.stop()


def test_a_stopping_server_writes_its_queued_lines(tmp_path):
    srv, log, queued = server_with_a_queued_line(tmp_path)
    srv.stop()
    assert srv.proc.returncode == 0, srv.output()
    assert logged_names(log) == [queued]
