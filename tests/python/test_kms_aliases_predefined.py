"""KMS ListAliases lists AWS's predefined managed aliases in every account and region, as the
real service does: without a TargetKeyId (and without dates) until their AWS managed key
exists, with it once it does; paging stays consistent over stored and predefined aliases."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import make_client
from test_kms import ACCOUNT, kms_client, new_key

# The AWS managed aliases every account and region lists (moto's and LocalStack's list).
PREDEFINED = [
    "alias/aws/acm",
    "alias/aws/dynamodb",
    "alias/aws/ebs",
    "alias/aws/elasticfilesystem",
    "alias/aws/es",
    "alias/aws/glue",
    "alias/aws/kinesisvideo",
    "alias/aws/lambda",
    "alias/aws/rds",
    "alias/aws/redshift",
    "alias/aws/s3",
    "alias/aws/secretsmanager",
    "alias/aws/ssm",
    "alias/aws/xray",
]


def all_pages(kms, **kwargs) -> list[dict]:
    out, marker = [], None
    while True:
        page = kms.list_aliases(**kwargs, **({"Marker": marker} if marker else {}))
        out += page["Aliases"]
        if not page["Truncated"]:
            assert "NextMarker" not in page
            return out
        marker = page["NextMarker"]


def test_a_fresh_region_lists_the_predefined_aliases_without_keys(fresh_server):
    kms = kms_client(fresh_server.url)
    aliases = kms.list_aliases()["Aliases"]
    assert [a["AliasName"] for a in aliases] == PREDEFINED
    for alias in aliases:
        # No key yet: only the name and the ARN, as AWS answers.
        assert set(alias) == {"AliasName", "AliasArn"}, alias
        region = kms.meta.region_name
        assert alias["AliasArn"] == f"arn:aws:kms:{region}:{ACCOUNT}:{alias['AliasName']}"


def test_the_managed_key_shows_once_secrets_manager_created_it(fresh_server):
    kms, sm = kms_client(fresh_server.url), make_client(fresh_server.url)
    sm.create_secret(Name="s", SecretString="v")
    aliases = {a["AliasName"]: a for a in kms.list_aliases()["Aliases"]}
    assert sorted(aliases) == PREDEFINED
    managed = kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]["KeyId"]
    listed = aliases["alias/aws/secretsmanager"]
    assert listed["TargetKeyId"] == managed
    assert "CreationDate" in listed and "LastUpdatedDate" in listed
    assert all("TargetKeyId" not in a for n, a in aliases.items() if n != "alias/aws/secretsmanager")
    # Filtered by key: only that key's aliases; a predefined alias without a key never matches.
    by_key = kms.list_aliases(KeyId=managed)["Aliases"]
    assert [a["AliasName"] for a in by_key] == ["alias/aws/secretsmanager"]


def test_key_filter_never_matches_predefined_aliases_without_a_key(fresh_server):
    kms = kms_client(fresh_server.url)
    key = new_key(kms)
    assert kms.list_aliases(KeyId=key["KeyId"])["Aliases"] == []
    kms.create_alias(AliasName="alias/mine", TargetKeyId=key["KeyId"])
    assert [a["AliasName"] for a in kms.list_aliases(KeyId=key["KeyId"])["Aliases"]] == ["alias/mine"]


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 13, 14, 15, 100])
def test_paging_walks_the_merged_list_once_in_name_order(fresh_server, limit):
    kms, sm = kms_client(fresh_server.url), make_client(fresh_server.url)
    key = new_key(kms)
    # Names before, among and after the predefined ones, in byte order.
    mine = ["alias/Upper", "alias/a", "alias/aws-not-reserved", "alias/aws0", "alias/zz"]
    for name in mine:
        kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    sm.create_secret(Name="s", SecretString="v")  # stores alias/aws/secretsmanager
    expected = sorted(mine + PREDEFINED)
    walked = all_pages(kms, Limit=limit)
    assert [a["AliasName"] for a in walked] == expected
    pages = kms.list_aliases(Limit=limit)
    assert len(pages["Aliases"]) == min(limit, len(expected))


def test_predefined_aliases_stay_reserved(fresh_server):
    kms = kms_client(fresh_server.url)
    key = new_key(kms)
    for call, kwargs in [
        (kms.create_alias, {"AliasName": "alias/aws/s3", "TargetKeyId": key["KeyId"]}),
        (kms.update_alias, {"AliasName": "alias/aws/s3", "TargetKeyId": key["KeyId"]}),
        (kms.delete_alias, {"AliasName": "alias/aws/s3"}),
    ]:
        with pytest.raises(ClientError) as excinfo:
            call(**kwargs)
        assert excinfo.value.response["Error"]["Code"] == "InvalidAliasNameException"
    assert [a["AliasName"] for a in kms.list_aliases()["Aliases"]] == PREDEFINED


def test_a_bad_marker_is_still_refused(fresh_server):
    kms = kms_client(fresh_server.url)
    with pytest.raises(ClientError) as excinfo:
        kms.list_aliases(Marker="not a marker!")
    assert excinfo.value.response["Error"]["Code"] == "InvalidMarkerException"
