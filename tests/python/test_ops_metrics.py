"""Metrics: ``GET /metrics`` serves OpenMetrics text (unauthenticated, on the main listener or
only on ``--metrics-listen``); it parses, its counters move with calls, and no series carries a
secret's name or value."""

from __future__ import annotations

import re
import subprocess
import uuid

import requests
from botocore.exceptions import ClientError

from conftest import coffer_bin, make_client, start_server, unique_name

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an OpenMetrics text exposition: {(name, labels): value}."""
    lines = text.splitlines()
    assert lines[-1] == "# EOF"
    samples = {}
    for line in lines:
        if line.startswith("#"):
            assert re.match(r"^# (TYPE|HELP|UNIT|EOF)", line), line
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str) -> tuple[str, dict]:
    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    return response.text, parse(response.text)


def test_counters_and_histograms_move_with_calls(tmp_path):
    srv = start_server(["serve", "--dev", "--listen", "127.0.0.1:0"])
    try:
        secret_value = "metric-marker-" + uuid.uuid4().hex
        name = unique_name("metric-name-" + uuid.uuid4().hex[:8])
        _, before = scrape(srv.url)
        sm = make_client(srv.url)
        sm.create_secret(Name=name, SecretString=secret_value)
        for _ in range(3):
            sm.get_secret_value(SecretId=name)
        try:
            sm.get_secret_value(SecretId=name + "-missing")
        except ClientError:
            pass
        text, after = scrape(srv.url)
        ok = dict(service="secretsmanager", operation="GetSecretValue", outcome="success")
        failed = dict(ok, outcome="client_error")
        assert value(after, "coffer_requests_total", **ok) - value(before, "coffer_requests_total", **ok) == 3
        assert value(after, "coffer_requests_total", **failed) - value(before, "coffer_requests_total", **failed) == 1
        created = dict(service="secretsmanager", operation="CreateSecret", outcome="success")
        assert value(after, "coffer_requests_total", **created) == 1
        op = dict(service="secretsmanager", operation="GetSecretValue")
        assert value(after, "coffer_request_duration_seconds_count", **op) == 4
        assert value(after, "coffer_request_duration_seconds_bucket", **op, le="+Inf") == 4
        assert value(after, "coffer_request_duration_seconds_sum", **op) > 0
        builds = [labels for (n, labels) in after if n == "coffer_build_info"]
        assert len(builds) == 1 and dict(builds[0])["version"] and dict(builds[0])["commit"]
        version = subprocess.run([coffer_bin(), "--version"], capture_output=True, text=True).stdout
        assert dict(builds[0])["commit"] in version
        assert value(after, "coffer_connections_open") >= 1
        # Neither the secret's name nor its value is in any series.
        assert secret_value not in text and name not in text
        # An unknown target is counted under a fixed label, not under what the client sent.
        requests.post(srv.url + "/", data=b"{}", timeout=10,
                      headers={"X-Amz-Target": "secretsmanager.Leak" + name,
                               "Content-Type": "application/x-amz-json-1.1"})
        text, _ = scrape(srv.url)
        assert name not in text
        assert 'operation="Unknown"' in text
    finally:
        srv.stop()


def test_metrics_listen_moves_metrics_off_the_main_listener(tmp_path):
    srv = start_server(["serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                        "--metrics-listen", "127.0.0.1:0"])
    try:
        m = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", srv.output_once_it_shows("metrics on"))
        metrics_url = m.group(1)
        # Without --dev, still no credentials needed for metrics and probes on their listener.
        text, samples = scrape(metrics_url)
        assert any(n == "coffer_build_info" for (n, _) in samples)
        assert requests.get(metrics_url + "/ready", timeout=10).status_code == 200
        # The main listener no longer answers /metrics as metrics.
        main = requests.get(srv.url + "/metrics", timeout=10)
        assert main.status_code != 200 or "coffer_build_info" not in main.text
        # ...and the metrics listener serves nothing else.
        assert requests.post(metrics_url + "/", data=b"{}", timeout=10).status_code == 404
    finally:
        srv.stop()
