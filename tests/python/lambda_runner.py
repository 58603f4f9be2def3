"""A Lambda-compatible runner for rotation tests: an HTTP server speaking the Invoke API
(POST /2015-03-31/functions/{name}/invocations) that runs Python handlers in-process.

Handlers are written the way AWS's rotation templates are (aws-samples/
aws-secrets-manager-rotation-lambdas, SecretsManagerRotationTemplate): they read
``SECRETS_MANAGER_ENDPOINT`` and call Coffer through boto3. A handler that raises is
answered as Lambda answers an unhandled error: HTTP 200 with ``X-Amz-Function-Error:
Unhandled`` and an ``errorMessage`` payload. Unknown functions get Lambda's 404
ResourceNotFoundException.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config

logger = logging.getLogger(__name__)


class Runner:
    """``ssl_context``: serve https with it (a server-side ``ssl.SSLContext``)."""

    def __init__(self, ssl_context=None):
        self.functions: dict[str, object] = {}
        self.invocations: list[tuple[str, dict]] = []
        self.dry_runs: list[str] = []
        self.lock = threading.Lock()
        runner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                parts = self.path.split("/")
                # /2015-03-31/functions/{name}/invocations
                if len(parts) != 5 or parts[1] != "2015-03-31" or parts[4] != "invocations":
                    return self.answer(404, {"Message": "not found"})
                function = urllib.parse.unquote(parts[3])
                name = function.rsplit(":", 1)[-1]
                handler = runner.functions.get(name)
                signed = self.headers.get("Authorization", "")
                if "/lambda/aws4_request" not in signed:
                    return self.answer(403, {"Message": "not signed for lambda"})
                if handler is None:
                    self.send_response(404)
                    self.send_header("X-Amzn-ErrorType", "ResourceNotFoundException")
                    payload = json.dumps({"Type": "User", "Message": f"Function not found: {function}"}).encode()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if self.headers.get("X-Amz-Invocation-Type") == "DryRun":
                    with runner.lock:
                        runner.dry_runs.append(name)
                    self.send_response(204)
                    self.end_headers()
                    return
                event = json.loads(body)
                with runner.lock:
                    runner.invocations.append((name, event))
                try:
                    result = handler(event, None)
                except Exception as e:  # the Lambda runtime's "Unhandled" error
                    payload = {"errorMessage": str(e), "errorType": type(e).__name__}
                    return self.answer(200, payload, function_error="Unhandled")
                return self.answer(200, result)

            def answer(self, status, payload, function_error=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                if function_error:
                    self.send_header("X-Amz-Function-Error", function_error)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except BrokenPipeError:  # the caller (a killed server) is gone
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def steps(self, name: str | None = None) -> list[str]:
        with self.lock:
            return [e["Step"] for n, e in self.invocations if name is None or n == name]

    def events(self) -> list[dict]:
        with self.lock:
            return [e for _, e in self.invocations]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class TemplateRotation:
    """AWS's generic rotation template (SecretsManagerRotationTemplate/lambda_function.py),
    kept as written there, with hooks a test can set: ``fail_in`` (a step that raises),
    ``fail_times`` (how many times it raises, None for always) and ``gates`` (a step that
    waits on a threading.Event before it runs)."""

    def __init__(self, endpoint: str, region: str, access_key: str, secret_key: str):
        self.env = {"SECRETS_MANAGER_ENDPOINT": endpoint}
        self.client_args = dict(
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(retries={"total_max_attempts": 1}),
        )
        self.fail_in: str | None = None
        self.fail_times: int | None = None
        self.gates: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}

    def __call__(self, event, context):
        arn = event["SecretId"]
        token = event["ClientRequestToken"]
        step = event["Step"]
        if step in self.entered:
            self.entered[step].set()
        if step in self.gates:
            self.gates[step].wait(30)
        if self.fail_in == step and (self.fail_times is None or self.fail_times > 0):
            if self.fail_times is not None:
                self.fail_times -= 1
            raise RuntimeError(f"injected failure in {step}")

        # Setup the client (the template: endpoint_url=os.environ['SECRETS_MANAGER_ENDPOINT'])
        service_client = boto3.client("secretsmanager", **self.client_args)

        # Make sure the version is staged correctly
        metadata = service_client.describe_secret(SecretId=arn)
        if not metadata["RotationEnabled"]:
            raise ValueError("Secret %s is not enabled for rotation" % arn)
        versions = metadata["VersionIdsToStages"]
        if token not in versions:
            raise ValueError("Secret version %s has no stage for rotation of secret %s." % (token, arn))
        if "AWSCURRENT" in versions[token]:
            return
        elif "AWSPENDING" not in versions[token]:
            raise ValueError("Secret version %s not set as AWSPENDING for rotation of secret %s." % (token, arn))

        if step == "createSecret":
            create_secret(service_client, arn, token)
        elif step == "setSecret":
            pass
        elif step == "testSecret":
            service_client.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
        elif step == "finishSecret":
            finish_secret(service_client, arn, token)
        else:
            raise ValueError("Invalid step parameter")


def create_secret(service_client, arn, token):
    # Make sure the current secret exists
    service_client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
    # Now try to get the secret version, if that fails, put a new secret
    try:
        service_client.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
    except service_client.exceptions.ResourceNotFoundException:
        exclude_characters = ":/@\"'\\"
        passwd = service_client.get_random_password(ExcludeCharacters=exclude_characters)
        service_client.put_secret_value(
            SecretId=arn, ClientRequestToken=token, SecretString=passwd["RandomPassword"], VersionStages=["AWSPENDING"]
        )


def finish_secret(service_client, arn, token):
    metadata = service_client.describe_secret(SecretId=arn)
    current_version = None
    for version in metadata["VersionIdsToStages"]:
        if "AWSCURRENT" in metadata["VersionIdsToStages"][version]:
            if version == token:
                return
            current_version = version
            break
    service_client.update_secret_version_stage(
        SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=current_version
    )
