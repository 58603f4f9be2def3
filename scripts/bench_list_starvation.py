#!/usr/bin/env python3
"""Load test: can a principal allowed only ListSecrets starve another caller?

Starts ``coffer serve`` (enforcing, SQLite) on a fresh data directory, stores N secrets with
50 tags each, then runs two threads that page through ListSecrets with a filter that
matches nothing (as a ListSecrets-only user), while the administrator loops GetSecretValue.
Prints the GetSecretValue latency median, p90 and maximum, and the calls made.

The bound Coffer states (SECURITY.md): the other caller's GetSecretValue stays under 1 s.
This is a measurement, not a test: run it by hand, with a release build for figures.

    .venv/bin/python scripts/bench_list_starvation.py --coffer target/release/coffer
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

REGION = "us-east-1"
CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=600,
                max_pool_connections=32)


def start(coffer: str, data_dir: Path) -> tuple[subprocess.Popen, str]:
    # Quotas off: this measures the scan budget, not AWS's ListSecrets rate limit (100/s).
    proc = subprocess.Popen([coffer, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
                             "--quotas", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, found.group(1)
    raise SystemExit("the server did not start")


def admin(coffer: str, data_dir: Path, *args: str, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COFFER_MASTER_KEY"}
    done = subprocess.run([coffer, "admin", *args, "--data-dir", str(data_dir)], input=stdin,
                          capture_output=True, text=True, env=env, check=True)
    return done.stdout


def client(url: str, key: tuple[str, str]):
    return boto3.client("secretsmanager", endpoint_url=url, region_name=REGION, config=CONFIG,
                        aws_access_key_id=key[0], aws_secret_access_key=key[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coffer", default="target/release/coffer")
    parser.add_argument("--secrets", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        proc, url = start(args.coffer, data_dir)
        try:
            creds = configparser.ConfigParser()
            creds.read(data_dir / "admin-credentials")
            admin_key = (creds["coffer"]["aws_access_key_id"], creds["coffer"]["aws_secret_access_key"])
            admin(args.coffer, data_dir, "create-user", "lister")
            policy = {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]}
            admin(args.coffer, data_dir, "attach-policy", "lister", "--name", "p", "--file", "-",
                  stdin=json.dumps(policy))
            printed = configparser.ConfigParser()
            printed.read_string(admin(args.coffer, data_dir, "create-access-key", "lister"))
            lister_key = (printed["lister"]["aws_access_key_id"], printed["lister"]["aws_secret_access_key"])

            sm = client(url, admin_key)
            tags = [{"Key": f"team-{t:02d}", "Value": f"value-{t:02d}"} for t in range(50)]
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: sm.create_secret(Name=f"load/{i:05d}", SecretString="v", Tags=tags),
                              range(args.secrets)))
            print(f"stored {args.secrets} secrets with 50 tags in {time.monotonic() - started:.1f} s")

            stop = threading.Event()
            listings = [0]

            def list_forever() -> None:
                lister = client(url, lister_key)
                while not stop.is_set():
                    token = None
                    while not stop.is_set():
                        kwargs = {"Filters": [{"Key": "all", "Values": ["nothing-matches-this"]}]}
                        if token:
                            kwargs["NextToken"] = token
                        token = lister.list_secrets(**kwargs).get("NextToken")
                        listings[0] += 1
                        if not token:
                            break

            threads = [threading.Thread(target=list_forever, daemon=True) for _ in range(2)]
            for t in threads:
                t.start()
            latencies = []
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                sm.get_secret_value(SecretId="load/00000")
                latencies.append((time.monotonic() - t0) * 1000)
            stop.set()
            latencies.sort()
            p90 = latencies[int(len(latencies) * 0.9) - 1] if len(latencies) >= 10 else latencies[-1]
            print(f"GetSecretValue under two ListSecrets loops: median {statistics.median(latencies):.1f} ms, "
                  f"p90 {p90:.1f} ms, max {latencies[-1]:.1f} ms, {len(latencies)} calls in {args.seconds:.0f} s; "
                  f"{listings[0]} ListSecrets calls")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
