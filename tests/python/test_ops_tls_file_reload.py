"""The TLS certificate is reloaded when its files change, without SIGHUP (issue 17: "SIGHUP or
a file change"): replaced by rename one file at a time, as a certificate manager does, while a
kept-alive client goes on calling; a broken file keeps the certificate in use."""

from __future__ import annotations

import os
import time

from test_ops_tls import client, make_ca, make_leaf, served_fingerprint, start_https
from conftest import unique_name


def replace(source, target) -> None:
    staged = target.with_suffix(".new")
    staged.write_bytes(source.read_bytes())
    os.replace(staged, target)


def wait_for_fingerprint(url, ca, old, timeout=15.0):
    deadline = time.monotonic() + timeout
    new = old
    while new == old and time.monotonic() < deadline:
        new = served_fingerprint(url, ca)
        time.sleep(0.1)
    return new


def test_a_certificate_replaced_on_disk_is_served_without_a_signal(tmp_path):
    ca = make_ca(tmp_path)
    first_cert, first_key = make_leaf(tmp_path, "first")
    second_cert, second_key = make_leaf(tmp_path, "second")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(first_cert.read_bytes())
    live_key.write_bytes(first_key.read_bytes())
    srv, url = start_https(["serve", "--dev", "--listen", "127.0.0.1:0",
                            "--tls-cert", str(live_cert), "--tls-key", str(live_key)])
    try:
        old = served_fingerprint(url, ca)
        sm = client(url, ca)
        name = unique_name("filewatch")
        sm.create_secret(Name=name, SecretString="steady")
        # The certificate first: until the key follows, the pair does not load and the old
        # certificate stays.
        replace(second_cert, live_cert)
        time.sleep(2.5)
        assert served_fingerprint(url, ca) == old
        replace(second_key, live_key)
        new = wait_for_fingerprint(url, ca, old)
        assert new != old, "the replaced certificate was not served"
        assert "reloaded the TLS certificate (its files changed)" in srv.output_once_it_shows(
            "its files changed")
        # The kept-alive client's connection, opened before the change, still works.
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "steady"
        # A broken key file keeps the certificate in use.
        live_key.write_text("not a key")
        assert "do not load" in srv.output_once_it_shows("do not load", timeout=10)
        assert served_fingerprint(url, ca) == new
    finally:
        srv.stop()
