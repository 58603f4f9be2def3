"""Memory hygiene (issue 19, item 5): the server can write no core file, whatever kills it."""

import os
import signal
from pathlib import Path

import pytest

from conftest import start_durable_server


def test_the_server_runs_with_core_dumps_off_and_a_crash_leaves_no_core(tmp_path):
    data_dir = tmp_path / "data"
    server = start_durable_server(data_dir)
    pid = server.proc.pid
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core
    # SIGABRT would dump core by default; the server must leave none behind.
    os.kill(pid, signal.SIGABRT)
    server.wait_exit(timeout=10)
    assert server.proc.returncode == -signal.SIGABRT
    cores = [p for p in list(tmp_path.rglob("core*")) + list(Path.cwd().glob("core*")) if p.is_file()]
    assert cores == []
