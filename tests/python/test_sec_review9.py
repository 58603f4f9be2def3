"""Regression tests for the ninth adversarial review (the eighth session's features: per-node
audit chains and LookupEvents across them, compact audit records, the PostgreSQL cache).

Most of review 9's findings are covered next to the code (Rust unit and PostgreSQL tests);
these drive the real binary's LookupEvents through boto3 with NextTokens a caller forged.
"""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, SECRET_KEY, make_client, unique_name

OWNER = "111111111111"
OTHER = "222222222222"
MAX_U64 = 2**64 - 1


def trail(url: str, account: str):
    return boto3.client(
        "cloudtrail",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=account,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def chains_token(positions: dict[str, int]) -> str:
    text = "coffer-lookup-chains:" + json.dumps(positions, separators=(",", ":"))
    return base64.b64encode(text.encode()).decode()


def test_a_forged_token_reads_no_other_accounts_chain_and_a_huge_one_is_refused(fresh_server):
    """A NextToken names chains and positions: naming another account's chain (its own or a
    node's), or the caller's region chain of another account through a crafted node name,
    reads none of it; positions past any sequence number read nothing twice; a token naming
    more chains than any scope could have is refused as CloudTrail refuses a bad token."""
    secret = unique_name("review9")
    make_client(fresh_server.url, access_key=OWNER).create_secret(Name=secret, SecretString="x")
    other = trail(fresh_server.url, OTHER)
    forged = {
        f"{OWNER}/{REGION}": MAX_U64,
        f"{OWNER}/{REGION}@node:1": MAX_U64,
        f"{OTHER}/{REGION}@x/../../{OWNER}/{REGION}": MAX_U64,
        f"{OTHER}/{REGION}": 0,
    }
    page = other.lookup_events(NextToken=chains_token(forged))
    assert all(secret not in e["CloudTrailEvent"] for e in page["Events"]), page["Events"]
    assert all(json.loads(e["CloudTrailEvent"])["recipientAccountId"] == OTHER for e in page["Events"])
    # The owner's own lookup still finds it.
    mine = trail(fresh_server.url, OWNER).lookup_events()
    assert any(secret in e["CloudTrailEvent"] for e in mine["Events"])
    # Far more chains than a scope has: refused (by the token's cap or, first, the body's),
    # not read.
    many = {f"{OTHER}/{REGION}@n{i}": MAX_U64 for i in range(70_000)}
    with pytest.raises(ClientError) as e:
        other.lookup_events(NextToken=chains_token(many))
    code = e.value.response["Error"]["Code"]
    assert code in ("InvalidNextTokenException", "RequestEntityTooLargeException"), code
    # Thousands of chains that do not exist, within the body: nothing, and quickly (each
    # named chain that does not exist is no longer read).
    ghosts = {f"{OTHER}/{REGION}@g{i}": MAX_U64 for i in range(2_000)}
    assert other.lookup_events(NextToken=chains_token(ghosts))["Events"] == []
