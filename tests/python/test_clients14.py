"""Differences found by driving Coffer with other real clients (fourteenth session): the AWS
SDK for JavaScript v3 and the Python Secrets Manager caching library
(`docs/design/clients.md`). Each test reproduces, through boto3, what the other client sends
or expects, so CI needs neither npm nor the other library.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from conftest import ACCESS_KEY, REGION, SECRET_KEY, unique_name

NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=60)
# The Smithy-generated SDKs (JavaScript v3, Go v2, Rust, Kotlin) and clients such as ExAws name
# CloudTrail by its service shape, `CloudTrail_20131101`, in X-Amz-Target; botocore and the
# CLI send the long `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101` prefix. AWS
# answers both (the generated SDKs work against it), so Coffer must too.
SMITHY_TARGET = "CloudTrail_20131101.LookupEvents"


def trail_client(url: str, key: tuple[str, str] = (ACCESS_KEY, SECRET_KEY)):
    return boto3.client(
        "cloudtrail",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=NO_RETRY,
    )


def send_smithy_target(client) -> None:
    """Rewrites the X-Amz-Target of every LookupEvents call before it is signed, as the
    Smithy-generated SDKs write it."""

    def rewrite(request, **_):
        request.headers.replace_header("X-Amz-Target", SMITHY_TARGET)

    client.meta.events.register("before-sign.cloudtrail.LookupEvents", rewrite)


def test_lookup_events_answers_the_smithy_target_in_dev(sm, url, name):
    created = sm.create_secret(Name=name, SecretString="v")
    trail = trail_client(url)
    send_smithy_target(trail)
    found = trail.lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": created["ARN"]}]
    )
    assert [e["EventName"] for e in found["Events"]] == ["CreateSecret"]


def test_lookup_events_answers_the_smithy_target_when_signed(tmp_path):
    from test_auth import Secured

    secured = Secured(tmp_path)
    try:
        admin_sm = secured.admin()
        admin_sm.create_secret(Name=unique_name("smithy"), SecretString="v")
        trail = trail_client(secured.url, secured.admin_key)
        send_smithy_target(trail)
        found = trail.lookup_events(
            LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateSecret"}]
        )
        assert len(found["Events"]) == 1
        # The target is signed: a client that cannot read the trail is refused the same way
        # whichever prefix it sends.
        reader = secured.user("reader", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]})
        refused = trail_client(secured.url, reader)
        send_smithy_target(refused)
        with pytest.raises(refused.exceptions.ClientError) as excinfo:
            refused.lookup_events()
        assert excinfo.value.response["Error"]["Code"] == "AccessDeniedException"
    finally:
        secured.server.stop()
