"""Shared by the test_iam_api*.py files (issue 18): a ``coffer serve`` without --dev on
SQLite or PostgreSQL (each test module runs on both), its administrator's key, clients for
any service and temporary credentials, and ``coffer admin`` on the same store."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import boto3
from botocore.config import Config

from conftest import REGION, coffer_bin, start_server

STORES = ["sqlite", "postgres"]
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60)


class Server:
    def __init__(self, data_dir: Path, store_url: str | None = None, extra: list[str] | None = None):
        self.data_dir = data_dir
        self.store_url = store_url
        store = ["--store", store_url] if store_url else []
        # Key set files (the coffer:jwks-file tag) are read only from --jwks-dir: here the
        # test run's temporary directory, where the tests write them.
        jwks = ["--jwks-dir", str(data_dir.parent)]
        # Issuers are fetched only from public addresses unless the operator allows a
        # network (ssrf11): the tests' issuers listen on loopback.
        oidc = ["--oidc-allow-net", "127.0.0.0/8"]
        self.server = start_server(
            ["serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *store, *jwks, *oidc,
             *(extra or [])])
        self.url = self.server.url
        self.credentials_file = data_dir / "admin-credentials"
        parsed = configparser.ConfigParser()
        parsed.read(self.credentials_file)
        self.admin_key = (parsed["coffer"]["aws_access_key_id"], parsed["coffer"]["aws_secret_access_key"])

    def client(self, service: str, key: tuple[str, str] | None = None, token: str | None = None):
        key = key or self.admin_key
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            aws_session_token=token,
            config=NO_RETRY,
        )

    def session_client(self, service: str, creds: dict):
        return self.client(service, (creds["AccessKeyId"], creds["SecretAccessKey"]), creds["SessionToken"])

    def anonymous_sts(self):
        """An STS client that signs nothing (AssumeRoleWithWebIdentity)."""
        from botocore import UNSIGNED

        return boto3.client("sts", endpoint_url=self.url, region_name=REGION,
                            config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}))

    def coffer_admin(self, *args: str, stdin: str | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("COFFER_MASTER_KEY", "COFFER_STORE")}
        store = ["--store", self.store_url] if self.store_url else []
        done = subprocess.run(
            [coffer_bin(), "admin", *args, "--data-dir", str(self.data_dir), *store],
            input=stdin, capture_output=True, text=True, env=env, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def serve(request, tmp_path_factory, name: str):
    """A server on the store `request.param` names; stopped (with its PostgreSQL) at teardown."""
    data_dir = tmp_path_factory.mktemp(f"{name}-{request.param}")
    if request.param == "postgres":
        from test_backup_restore import Postgres

        pg = Postgres()
        srv = Server(data_dir, pg.create_database())
        request.addfinalizer(pg.stop)
    else:
        srv = Server(data_dir)
    request.addfinalizer(srv.server.stop)
    return srv
