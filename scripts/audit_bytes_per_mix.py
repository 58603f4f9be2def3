#!/usr/bin/env python3
"""Stored bytes per audit event (issue 20): for each mix of calls, a fresh server (SQLite,
not --dev, quotas raised) runs 20 rounds of the mix, then the average `length(value)` of
the `audit.event` records in its store is printed. Compare two builds:

    .venv/bin/python scripts/audit_bytes_per_mix.py target/debug/coffer

(docs/design/audit.md, "KMS and Secrets Manager records", has the figures.)"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/python"))
os.environ["COFFER_BIN"] = str(Path(sys.argv[1]).resolve())
from iam_api_support import Server  # noqa: E402


def avg(data_dir: Path):
    db = sqlite3.connect(data_dir / "coffer.db")
    rows = db.execute("SELECT length(value) FROM records WHERE kind='audit.event'").fetchall()
    db.close()
    return len(rows), sum(r[0] for r in rows) / max(1, len(rows))


def kms_mix(srv):
    kms = srv.client("kms")
    for _ in range(20):
        k = kms.create_key(Description="measured")["KeyMetadata"]
        kms.disable_key(KeyId=k["KeyId"]); kms.enable_key(KeyId=k["KeyId"])
        kms.enable_key_rotation(KeyId=k["KeyId"])
        kms.tag_resource(KeyId=k["KeyId"], Tags=[{"TagKey": "a", "TagValue": "b"}])
        kms.encrypt(KeyId=k["KeyId"], Plaintext=b"x"); kms.describe_key(KeyId=k["KeyId"])
        kms.schedule_key_deletion(KeyId=k["KeyId"], PendingWindowInDays=7)
        kms.cancel_key_deletion(KeyId=k["KeyId"])


def iam_kms_mix(srv):
    iam, kms = srv.client("iam"), srv.client("kms")
    for i in range(20):
        u = f"u-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=u); iam.get_user(UserName=u)
        iam.put_user_policy(UserName=u, PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
        k = kms.create_key()["KeyMetadata"]
        kms.disable_key(KeyId=k["KeyId"]); kms.enable_key(KeyId=k["KeyId"])
        kms.encrypt(KeyId=k["KeyId"], Plaintext=b"x")


def sm_by_name_mix(srv):
    sm = srv.client("secretsmanager")
    for _ in range(20):
        n = f"app/db-{uuid.uuid4().hex[:8]}"
        sm.create_secret(Name=n, SecretString="v")
        for _ in range(3):
            sm.get_secret_value(SecretId=n)
        sm.describe_secret(SecretId=n); sm.put_secret_value(SecretId=n, SecretString="w")


def sm_by_arn_mix(srv):
    sm = srv.client("secretsmanager")
    for _ in range(20):
        a = sm.create_secret(Name=f"app/db-{uuid.uuid4().hex[:8]}", SecretString="v")["ARN"]
        for _ in range(3):
            sm.get_secret_value(SecretId=a)
        sm.describe_secret(SecretId=a); sm.put_secret_value(SecretId=a, SecretString="w")


for mix in (iam_kms_mix, kms_mix, sm_by_name_mix, sm_by_arn_mix):
    d = Path(tempfile.mkdtemp(prefix="t17m-"))
    srv = Server(d, extra=["--quota-scale", "100"])
    try:
        mix(srv)
    finally:
        srv.server.stop()
    n, a = avg(d)
    shutil.rmtree(d)
    print(f"{mix.__name__:16s} events={n:4d} avg_bytes={a:.1f}")
