"""Memory hygiene (issue 19, item 5): the pages holding the master key and unwrapped KMS key
material are locked in RAM (mlock) where the system allows it; where it does not
(RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK), the server still serves and says so in its log."""

import os
import shutil
from pathlib import Path

import pytest

import conftest
from conftest import make_client, start_durable_server, unique_name


def locked_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmLck:"))
    return int(line.split()[1])


def test_the_master_key_and_kms_key_material_are_in_locked_pages(tmp_path):
    server = start_durable_server(tmp_path / "data")
    try:
        # The master key is loaded before the server listens.
        assert locked_kib(server.proc.pid) > 0, server.output()
        # A secret under the default KMS key unwraps that key's material: still locked,
        # and the server said nothing about failing to lock.
        sm = make_client(server.url)
        name = unique_name("mlock")
        sm.create_secret(Name=name, SecretString="locked away")
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "locked away"
        assert locked_kib(server.proc.pid) > 0
        assert "could not be locked in memory" not in server.output()
    finally:
        server.stop()


def test_without_memlock_the_server_serves_and_logs_why_keys_are_not_locked(tmp_path, monkeypatch):
    real = conftest.coffer_bin()
    # RLIMIT_MEMLOCK 0; as root, also without CAP_IPC_LOCK, which would ignore the limit.
    wrapper = ["prlimit", "--memlock=0:0", "--", real]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("as root this needs setpriv to drop CAP_IPC_LOCK")
        wrapper = ["setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", *wrapper]
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    script = tmp_path / "coffer-without-memlock"
    script.write_text("#!/bin/sh\nexec " + " ".join(f"'{w}'" for w in wrapper) + ' "$@"\n')
    script.chmod(0o755)
    monkeypatch.setattr(conftest, "coffer_bin", lambda: str(script))
    server = start_durable_server(tmp_path / "data")
    try:
        assert locked_kib(server.proc.pid) == 0
        sm = make_client(server.url)
        name = unique_name("nolock")
        sm.create_secret(Name=name, SecretString="still served")
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "still served"
        log = server.output_once_it_shows("could not be locked in memory")
        assert "key material could not be locked in memory (mlock: " in log, log
        assert "RLIMIT_MEMLOCK" in log
    finally:
        server.stop()
