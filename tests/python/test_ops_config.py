"""``coffer serve --config FILE``: every flag from TOML, unknown keys refused with their line,
precedence flag > environment > file, ``coffer config check``, and the shipped example."""

from __future__ import annotations

import os
import subprocess

from conftest import REPO, coffer_bin, make_client, start_server, unique_name

EXAMPLE = REPO / "docs" / "coffer.example.toml"


def coffer(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_")}
    full.update(env or {})
    return subprocess.run([coffer_bin(), *args], capture_output=True, text=True, timeout=60, env=full)


def test_the_shipped_example_checks(tmp_path):
    done = coffer("config", "check", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_unknown_keys_are_refused_with_their_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('listen = "127.0.0.1:0"\n\n# a typo\nlisen-addr = "x"\n')
    for args in (("config", "check", str(bad)), ("serve", "--dev", "--config", str(bad))):
        done = coffer(*args)
        assert done.returncode != 0
        assert "unknown key `lisen-addr`" in done.stderr and "line 4" in done.stderr, done.stderr


def test_bad_values_are_refused_as_on_the_command_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('header-timeout = 0\n')
    done = coffer("config", "check", str(bad))
    assert done.returncode != 0 and "header-timeout" in done.stderr
    bad.write_text('dev = "yes"\n')
    done = coffer("config", "check", str(bad))
    assert done.returncode != 0 and "`dev`" in done.stderr and "true or false" in done.stderr


def test_a_server_runs_from_a_file_and_flags_then_environment_win(tmp_path):
    data = tmp_path / "data"
    config = tmp_path / "coffer.toml"
    config.write_text(f'dev = true\nlisten = "127.0.0.1:1"\ndata-dir = "{data}"\nlog-format = "text"\n'
                      'default-account = "111111111111"\n')
    # --listen on the command line beats the file's port 1; COFFER_LOG_FORMAT beats its "text".
    srv = start_server(["serve", "--config", str(config), "--listen", "127.0.0.1:0"],
                       env={"COFFER_LOG_FORMAT": "json"})
    try:
        assert (data / "coffer.db").exists() or any(data.iterdir())
        sm = make_client(srv.url)
        name = unique_name("cfg")
        arn = sm.create_secret(Name=name, SecretString="v")["ARN"]
        # The file's default account applies (dev mode maps the made-up key to it).
        assert ":111111111111:" in arn
        stderr_lines = [line for line in srv.lines if line.startswith("{")]
        assert stderr_lines, srv.output()
    finally:
        srv.stop()
