"""The metrics issue 17 lists beyond requests and latency: store group commits (latency and
batch sizes), the audit appender (queue depth, batch sizes, write failures), audit events
archived, connections accepted. Scraped and parsed, and seen to move with calls."""

from __future__ import annotations

import time

import botocore.exceptions
import pytest
import requests

from conftest import make_client, start_server
from test_ops_metrics import scrape, value


def test_store_commits_and_appender_batches_move_with_calls(tmp_path):
    srv = start_server(["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                        "--sweep-interval", "1"])
    try:
        text, before = scrape(srv.url)
        for name in ("coffer_store_commit_duration_seconds", "coffer_store_commit_batch_size",
                     "coffer_audit_appender_batch_size"):
            assert f"# TYPE {name} histogram" in text, name
        assert "# TYPE coffer_audit_appender_queue_depth gauge" in text
        assert "# TYPE coffer_audit_write_failures counter" in text
        assert "# TYPE coffer_connections_accepted counter" in text

        sm = make_client(srv.url)
        sm.create_secret(Name="metrics-internals", SecretString="v")
        for _ in range(5):
            sm.get_secret_value(SecretId="metrics-internals")
        _, after = scrape(srv.url)

        def moved(name):
            return value(after, name) - value(before, name)

        # SQLite: every write is a member of a group commit, committed with its audit event.
        assert moved("coffer_store_commit_duration_seconds_count") >= 1
        assert moved("coffer_store_commit_batch_size_sum") >= moved(
            "coffer_store_commit_batch_size_count") >= 1
        assert moved("coffer_store_commit_duration_seconds_sum") > 0
        # Reads' events go through the appender, in batches of at least one.
        assert moved("coffer_audit_appender_batch_size_sum") >= 5
        assert moved("coffer_audit_appender_batch_size_count") >= 1
        # Nothing is waiting once every call was answered (each waits for its batch).
        assert value(after, "coffer_audit_appender_queue_depth") == 0
        assert moved("coffer_audit_write_failures_total") == 0
        assert moved("coffer_connections_accepted_total") >= 1
        assert value(after, "coffer_audit_events_archived_total") == 0
        # The space the store takes: its files, and the trail's events in it (counted by the
        # background round from each chain's head and cut, without a scan).
        assert value(after, "coffer_store_file_bytes") > 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, latest = scrape(srv.url)
            if value(latest, "coffer_audit_events_stored") >= 6:
                break
            time.sleep(0.2)
        assert value(latest, "coffer_audit_events_stored") >= 6
    finally:
        srv.stop()


@pytest.mark.parametrize("fail_open", [False, True])
def test_audit_write_failures_are_counted(tmp_path, fail_open):
    args = ["serve", "--dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
            "--audit-log", "/dev/full"]
    if fail_open:
        args.append("--audit-fail-open")
    srv = start_server(args)
    try:
        _, before = scrape(srv.url)
        sm = make_client(srv.url)
        for i in range(3):
            try:
                sm.create_secret(Name=f"unaudited-{i}", SecretString="v")
                assert fail_open
            except botocore.exceptions.ClientError as e:
                assert not fail_open
                assert e.response["Error"]["Code"] == "InternalServiceError"
        _, after = scrape(srv.url)
        failed = (value(after, "coffer_audit_write_failures_total")
                  - value(before, "coffer_audit_write_failures_total"))
        assert failed >= 3
        # The scrape itself is unauthenticated and unaudited: it still answers.
        assert requests.get(srv.url + "/health", timeout=5).status_code == 200
    finally:
        srv.stop()
