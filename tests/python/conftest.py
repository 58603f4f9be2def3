"""Shared fixtures for the end-to-end suite: running Coffer servers and real AWS clients.

The server binary comes from ``COFFER_BIN`` (default ``<repo>/target/debug/coffer``). One
in-memory server is shared by the whole session; tests that need an empty namespace ask for
``fresh_server`` instead, and durability tests start their own SQLite-backed servers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from lambda_runner import Runner

REPO = Path(__file__).resolve().parents[2]


def pytest_ignore_collect(collection_path, config):
    """AWS's rotation templates are AWS's code, not part of the repository
    (tests/python/aws_templates/README.md): their test is collected only once someone has
    put the two files there, so a checkout without them neither fails nor skips."""
    if collection_path.name != "test_rotation_templates.py":
        return None
    folder = collection_path.parent / "aws_templates"
    wanted = ["SecretsManagerRDSPostgreSQLRotationSingleUser",
              "SecretsManagerRDSPostgreSQLRotationMultiUser"]
    return not all((folder / name / "lambda_function.py").is_file() for name in wanted)
REGION = "us-east-1"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DEFAULT_ACCOUNT = "000000000000"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
LISTENING_RE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
STARTUP_TIMEOUT = 20.0

# Exact messages from aws-behaviours.md section 2; tests compare against these verbatim.
MSG_NOT_FOUND = "Secrets Manager can't find the specified secret."
MSG_INVALID_NAME = (
    "Invalid name. Must be a valid name containing alphanumeric characters, "
    "or any of the following: -/_+=.@!"
)
MSG_TOKEN_REQUIRED = "You must provide a ClientRequestToken value. We recommend a UUID-type value."
MSG_MARKED_FOR_DELETION = (
    "You can't perform this operation on the secret because it was marked for deletion."
)
MSG_CREATE_SCHEDULED = (
    "You can't create this secret because a secret with this name is already scheduled for deletion."
)
MSG_STAGE_NOT_OF_VERSION = "You provided a VersionStage that is not associated to the provided VersionId."


def msg_exists(name: str) -> str:
    return f"The operation failed because the secret {name} already exists."


def msg_no_stage(label: str) -> str:
    return f"Secrets Manager can't find the specified secret value for staging label: {label}"


def msg_no_version(version_id: str) -> str:
    return f"Secrets Manager can't find the specified secret value for VersionId: {version_id}"


def coffer_bin() -> str:
    return os.environ.get("COFFER_BIN", str(REPO / "target" / "debug" / "coffer"))


class ServerProcess:
    """A running ``coffer serve`` whose output is drained in background threads.

    Draining matters: a server that logs a lot would otherwise block on a full pipe.
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.args = [coffer_bin(), *args]
        full_env = dict(os.environ)
        # A developer's own store or key settings must not leak into test servers.
        for inherited in ("COFFER_STORE", "COFFER_MASTER_KEY", "COFFER_LOG"):
            full_env.pop(inherited, None)
        full_env.setdefault("RUST_BACKTRACE", "1")
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        self.lines: deque[str] = deque(maxlen=2000)
        self._url_found = threading.Event()
        self.url: str | None = None
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _drain(self, stream, is_stdout: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if is_stdout and self.url is None:
                m = LISTENING_RE.search(line)
                if m:
                    self.url = m.group(1)
                    self._url_found.set()
        stream.close()

    def output(self) -> str:
        return "\n".join(self.lines)

    def output_once_it_shows(self, text: str, timeout: float = 5.0) -> str:
        """The output once `text` is in it (or at the deadline): stdout and stderr are read
        by two threads, so a line written to stderr before the listening line on stdout may
        still be on its way when the listening line has been seen."""
        deadline = time.monotonic() + timeout
        while text not in self.output() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.output()

    def wait_listening(self, timeout: float = STARTUP_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._url_found.wait(0.05):
                return self.url
            if self.proc.poll() is not None:
                # Let the drain threads collect whatever the process printed before dying.
                for t in self._threads:
                    t.join(timeout=2)
                raise RuntimeError(
                    f"{self.args} exited with {self.proc.returncode} before listening:\n{self.output()}"
                )
        self.kill()
        raise RuntimeError(f"{self.args} printed no listening line in {timeout}s:\n{self.output()}")

    def wait_exit(self, timeout: float = STARTUP_TIMEOUT) -> int | None:
        """Wait for the process to end on its own; returns None if it is still running."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._threads:
            t.join(timeout=2)
        return rc

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything that was not already durable."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for t in self._threads:
            t.join(timeout=2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for t in self._threads:
            t.join(timeout=2)


def start_server(args: list[str], env: dict[str, str] | None = None) -> ServerProcess:
    if not Path(coffer_bin()).exists():
        pytest.fail(f"server binary {coffer_bin()} does not exist (set COFFER_BIN or build it)")
    server = ServerProcess(args, env)
    try:
        server.wait_listening()
    except RuntimeError as e:
        server.kill()
        pytest.fail(str(e))
    return server


def start_dev_server() -> ServerProcess:
    return start_server(["serve", "--dev", "--listen", "127.0.0.1:0"])


def start_durable_server(data_dir: Path, env: dict[str, str] | None = None) -> ServerProcess:
    """A SQLite-backed server; ``--dev`` because these clients sign with made-up keys
    (test_auth.py covers serving with authentication)."""
    return start_server(["serve", "--dev", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"], env)


def make_client(
    url: str,
    region: str = REGION,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
):
    return boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


@pytest.fixture(scope="module")
def runner():
    """A Lambda Invoke endpoint of the module's own, running rotation functions in this
    process (``lambda_runner.Runner``): pass ``runner.url`` as ``--lambda-endpoint``."""
    r = Runner()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def server():
    srv = start_dev_server()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def url(server) -> str:
    return server.url


@pytest.fixture(scope="session")
def sm(url):
    """boto3 client against the shared session server."""
    return make_client(url)


@pytest.fixture
def fresh_server():
    """A server of its own, for tests that need to see exactly the secrets they made."""
    srv = start_dev_server()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_sm(fresh_server):
    return make_client(fresh_server.url)


def unique_name(prefix: str = "t") -> str:
    """A secret name no other test uses; the tail is 12 hex digits, never a 6-char ARN suffix."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def name(request) -> str:
    return unique_name(re.sub(r"[^A-Za-z0-9]", "-", request.node.name)[:40])


def token() -> str:
    return str(uuid.uuid4())


def keys(resp: dict) -> set[str]:
    return set(resp) - {"ResponseMetadata"}


def client_error(excinfo) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err.get("Code"), err.get("Message")


def expect_error(fn, code: str, message: str | None = None, **kwargs) -> ClientError:
    """Call fn(**kwargs), assert it fails with the given code (and exact message when given)."""
    with pytest.raises(ClientError) as excinfo:
        fn(**kwargs)
    got_code, got_msg = client_error(excinfo)
    assert got_code == code, f"expected {code}, got {got_code}: {got_msg}"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    if message is not None:
        assert got_msg == message
    return excinfo.value


def stages(client, secret_id: str) -> dict[str, list[str]]:
    """DescribeSecret's VersionIdsToStages with each label list sorted."""
    desc = client.describe_secret(SecretId=secret_id)
    return {v: sorted(s) for v, s in desc.get("VersionIdsToStages", {}).items()}


def signed_request(
    url: str,
    target: str | None,
    body: bytes | str | dict,
    *,
    region: str = REGION,
    access_key: str = ACCESS_KEY,
    sign: bool = True,
    extra_headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> requests.Response:
    """POST / with a JSON 1.1 body, signed with SigV4 the way botocore signs it."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    headers = {"Content-Type": JSON_CONTENT_TYPE}
    if target is not None:
        headers["X-Amz-Target"] = f"secretsmanager.{target}"
    if extra_headers:
        headers.update(extra_headers)
    endpoint = url.rstrip("/") + "/"
    if sign:
        req = AWSRequest(method="POST", url=endpoint, data=body, headers=headers)
        SigV4Auth(Credentials(access_key, SECRET_KEY), "secretsmanager", region).add_auth(req)
        headers = dict(req.prepare().headers)
    return requests.post(endpoint, data=body, headers=headers, timeout=timeout)


def error_of(resp: requests.Response) -> tuple[str, str | None]:
    """(__type, Message) of a raw error response, after checking the JSON 1.1 error shape."""
    body = resp.json()
    assert "__type" in body, body
    assert "message" not in body, f"lowercase 'message' in error body: {body}"
    return body["__type"], body.get("Message")
