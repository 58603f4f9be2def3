"""BatchGetSecretValue by id list and by filters, with per-secret errors and paging."""

import pytest
from botocore.exceptions import ClientError

from conftest import unique_name

VALUE_KEYS = {"ARN", "CreatedDate", "Name", "SecretString", "VersionId", "VersionStages"}


def test_batch_get_by_id_list_returns_values_and_reports_missing_ids(sm):
    a, b, missing = unique_name("bga"), unique_name("bgb"), unique_name("bgmissing")
    arn_a = sm.create_secret(Name=a, SecretString="value-a")["ARN"]
    sm.create_secret(Name=b, SecretString="value-b")
    resp = sm.batch_get_secret_value(SecretIdList=[arn_a, b, missing])
    values = {v["Name"]: v for v in resp["SecretValues"]}
    assert set(values) == {a, b}
    assert values[a]["SecretString"] == "value-a"
    assert values[b]["SecretString"] == "value-b"
    assert values[a]["ARN"] == arn_a
    for v in values.values():
        assert VALUE_KEYS <= set(v), v
        assert v["VersionStages"] == ["AWSCURRENT"]
    assert len(resp["Errors"]) == 1
    err = resp["Errors"][0]
    assert err["SecretId"] == missing
    assert err["ErrorCode"] == "ResourceNotFoundException"


def test_batch_get_returns_binary_values(sm):
    n = unique_name("bgbin")
    sm.create_secret(Name=n, SecretBinary=b"\x00\x01\x02\xff")
    resp = sm.batch_get_secret_value(SecretIdList=[n])
    assert resp["SecretValues"][0]["SecretBinary"] == b"\x00\x01\x02\xff"
    assert "SecretString" not in resp["SecretValues"][0]


def test_batch_get_returns_the_current_version(sm):
    n = unique_name("bgcur")
    sm.create_secret(Name=n, SecretString="old")
    vid = sm.put_secret_value(SecretId=n, SecretString="new")["VersionId"]
    got = sm.batch_get_secret_value(SecretIdList=[n])["SecretValues"][0]
    assert got["SecretString"] == "new"
    assert got["VersionId"] == vid


def test_batch_get_by_filters_pages_with_max_results(sm):
    prefix = unique_name("bgf") + "/"
    made = {}
    for i in range(5):
        n = f"{prefix}s{i}"
        sm.create_secret(Name=n, SecretString=f"value-{i}")
        made[n] = f"value-{i}"
    sm.create_secret(Name=unique_name("bgf-other"), SecretString="not-wanted")
    seen, sizes, next_token = {}, [], None
    while True:
        args = {"Filters": [{"Key": "name", "Values": [prefix]}], "MaxResults": 2}
        if next_token:
            args["NextToken"] = next_token
        page = sm.batch_get_secret_value(**args)
        sizes.append(len(page["SecretValues"]))
        for v in page["SecretValues"]:
            assert v["Name"] not in seen, "returned twice"
            seen[v["Name"]] = v["SecretString"]
        next_token = page.get("NextToken")
        if not next_token:
            assert "NextToken" not in page
            break
        assert len(sizes) < 10
    assert seen == made
    assert sizes == [2, 2, 1]


def test_batch_get_with_id_list_and_filters_is_rejected(sm):
    n = unique_name("bgboth")
    sm.create_secret(Name=n, SecretString="v")
    with pytest.raises(ClientError) as excinfo:
        sm.batch_get_secret_value(SecretIdList=[n], Filters=[{"Key": "name", "Values": [n]}])
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_batch_get_records_last_accessed_date_on_every_secret_it_read(sm):
    names = [unique_name(f"bgacc{i}") for i in range(3)]
    for n in names:
        sm.create_secret(Name=n, SecretString="v")
    untouched = unique_name("bgacc-untouched")
    sm.create_secret(Name=untouched, SecretString="v")
    sm.batch_get_secret_value(SecretIdList=names + [unique_name("bgacc-missing")])
    for n in names:
        assert "LastAccessedDate" in sm.describe_secret(SecretId=n), n
        current = [
            v
            for v in sm.list_secret_version_ids(SecretId=n)["Versions"]
            if "AWSCURRENT" in v["VersionStages"]
        ]
        assert "LastAccessedDate" in current[0], n
    assert "LastAccessedDate" not in sm.describe_secret(SecretId=untouched)
