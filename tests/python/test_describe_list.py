"""DescribeSecret key presence rules and ListSecrets filters, sorting and paging."""

import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from conftest import ACCESS_KEY, REGION, SECRET_KEY, expect_error, keys

ROTATION_KEYS = {"RotationEnabled", "RotationRules", "RotationLambdaARN"}


# --- DescribeSecret -----------------------------------------------------------------------


def test_describe_of_plain_secret_has_exact_keys(sm, name):
    created = sm.create_secret(Name=name, SecretString="v")
    desc = sm.describe_secret(SecretId=name)
    assert keys(desc) == {"ARN", "CreatedDate", "LastChangedDate", "Name", "VersionIdsToStages"}
    assert desc["ARN"] == created["ARN"]
    assert desc["Name"] == name
    assert desc["VersionIdsToStages"] == {created["VersionId"]: ["AWSCURRENT"]}
    now = datetime.now(timezone.utc)
    assert abs(desc["CreatedDate"] - now) < timedelta(minutes=2)
    assert desc["LastChangedDate"] >= desc["CreatedDate"]


def test_describe_of_secret_without_value_has_no_version_map(sm, name):
    sm.create_secret(Name=name)
    assert keys(sm.describe_secret(SecretId=name)) == {"ARN", "CreatedDate", "LastChangedDate", "Name"}


def test_describe_omits_empty_description(sm, name):
    sm.create_secret(Name=name, SecretString="v", Description="")
    assert "Description" not in sm.describe_secret(SecretId=name)


def test_describe_omits_description_cleared_to_empty(sm, name):
    sm.create_secret(Name=name, SecretString="v", Description="something")
    assert sm.describe_secret(SecretId=name)["Description"] == "something"
    sm.update_secret(SecretId=name, Description="")
    assert "Description" not in sm.describe_secret(SecretId=name)


def test_describe_tags_absent_until_tagged_then_empty_list_after_all_removed(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    assert "Tags" not in sm.describe_secret(SecretId=name)
    sm.tag_resource(SecretId=name, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    assert sorted(sm.describe_secret(SecretId=name)["Tags"], key=lambda t: t["Key"]) == [
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "2"},
    ]
    sm.untag_resource(SecretId=name, TagKeys=["a", "b"])
    desc = sm.describe_secret(SecretId=name)
    assert "Tags" in desc
    assert desc["Tags"] == []


def test_describe_has_no_rotation_keys_and_no_default_kms_key(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    sm.put_secret_value(SecretId=name, SecretString="v2")
    desc = sm.describe_secret(SecretId=name)
    assert not (ROTATION_KEYS & set(desc)), desc
    assert "KmsKeyId" not in desc


def test_describe_reports_kms_key_given_at_create(sm, url, name):
    kms = boto3.client(
        "kms",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    key = kms.create_key()["KeyMetadata"]["Arn"]
    sm.create_secret(Name=name, SecretString="v", KmsKeyId=key)
    assert sm.describe_secret(SecretId=name)["KmsKeyId"] == key


def test_describe_shows_deleted_date_only_while_scheduled(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    assert "DeletedDate" not in sm.describe_secret(SecretId=name)
    sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    assert "DeletedDate" in sm.describe_secret(SecretId=name)
    sm.restore_secret(SecretId=name)
    assert "DeletedDate" not in sm.describe_secret(SecretId=name)


def test_describe_last_accessed_date_only_after_get(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    sm.describe_secret(SecretId=name)
    sm.list_secret_version_ids(SecretId=name)
    assert "LastAccessedDate" not in sm.describe_secret(SecretId=name)
    sm.get_secret_value(SecretId=name)
    assert "LastAccessedDate" in sm.describe_secret(SecretId=name)


def test_describe_does_not_move_last_changed_date(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    first = sm.describe_secret(SecretId=name)["LastChangedDate"]
    sm.get_secret_value(SecretId=name)
    assert sm.describe_secret(SecretId=name)["LastChangedDate"] == first


def test_description_update_raises_last_changed_date(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    first = sm.describe_secret(SecretId=name)["LastChangedDate"]
    sm.update_secret(SecretId=name, Description="changed")
    assert sm.describe_secret(SecretId=name)["LastChangedDate"] > first


# --- ListSecrets ------------------------------------------------------------------------


def list_all(client, **kwargs):
    out, next_token, pages = [], None, 0
    while True:
        args = dict(kwargs)
        if next_token:
            args["NextToken"] = next_token
        page = client.list_secrets(**args)
        pages += 1
        out.extend(page["SecretList"])
        next_token = page.get("NextToken")
        if not next_token:
            assert "NextToken" not in page
            return out
        assert pages < 100, "ListSecrets does not terminate"


def names_for(client, filters, **kwargs):
    return sorted(s["Name"] for s in list_all(client, Filters=filters, **kwargs))


def test_list_secrets_entries_carry_metadata_but_no_values(sm, name):
    created = sm.create_secret(Name=name, SecretString="hidden-value", Description="desc")
    found = [s for s in list_all(sm, Filters=[{"Key": "name", "Values": [name]}]) if s["Name"] == name]
    assert len(found) == 1
    entry = found[0]
    assert entry["ARN"] == created["ARN"]
    assert entry["Description"] == "desc"
    assert "hidden-value" not in repr(entry)
    assert not {"SecretString", "SecretBinary"} & set(entry)


@pytest.fixture
def filter_fixture(fresh_sm):
    """A fresh server holding a small, known set of secrets for filter tests."""
    specs = [
        ("/testing2/alpha", "a secret", [{"Key": "env", "Value": "prod"}]),
        ("testing1/one", "an secret here", [{"Key": "environment", "Value": "staging"}]),
        ("testing1/two", "asecret", [{"Key": "team", "Value": "prod-ops"}]),
        ("zebra/other", "Nothing Else", None),
        ("plain", None, [{"Key": "Owner", "Value": "Zebra"}]),
    ]
    for n, d, tags in specs:
        kwargs = {"Name": n, "SecretString": "v"}
        if d is not None:
            kwargs["Description"] = d
        if tags:
            kwargs["Tags"] = tags
        fresh_sm.create_secret(**kwargs)
    return fresh_sm


def test_list_without_filters_returns_everything(filter_fixture):
    assert len(names_for(filter_fixture, [])) == 5


@pytest.mark.parametrize(
    "values, expected",
    [
        (["/"], ["/testing2/alpha"]),
        (["testing1"], ["testing1/one", "testing1/two"]),
        (["testing1/one"], ["testing1/one"]),
        (["testing1 one"], []),
        (["Testing1"], []),
        (["!testing1"], ["/testing2/alpha", "plain", "zebra/other"]),
        (["!/"], ["plain", "testing1/one", "testing1/two", "zebra/other"]),
    ],
)
def test_name_filter_is_a_case_sensitive_prefix_match_with_negation(filter_fixture, values, expected):
    assert names_for(filter_fixture, [{"Key": "name", "Values": values}]) == expected


@pytest.mark.parametrize(
    "values, expected",
    [
        (["a secret"], ["/testing2/alpha", "testing1/one"]),
        (["A SECRET"], ["/testing2/alpha", "testing1/one"]),
        (["secret"], ["/testing2/alpha", "testing1/one"]),
        (["asec"], ["testing1/two"]),
        (["here an"], ["testing1/one"]),
        (["nothing"], ["zebra/other"]),
        (["xyz"], []),
    ],
)
def test_description_filter_matches_when_every_term_prefixes_a_word(filter_fixture, values, expected):
    assert names_for(filter_fixture, [{"Key": "description", "Values": values}]) == expected


@pytest.mark.parametrize(
    "key, values, expected",
    [
        ("tag-key", ["env"], ["/testing2/alpha", "testing1/one"]),
        ("tag-key", ["environment"], ["testing1/one"]),
        ("tag-key", ["Env"], []),
        ("tag-key", ["Owner"], ["plain"]),
        ("tag-value", ["prod"], ["/testing2/alpha", "testing1/two"]),
        ("tag-value", ["stag"], ["testing1/one"]),
        ("tag-value", ["Prod"], []),
    ],
)
def test_tag_filters_are_case_sensitive_prefix_matches(filter_fixture, key, values, expected):
    assert names_for(filter_fixture, [{"Key": key, "Values": values}]) == expected


def test_all_filter_searches_name_description_and_tags_ignoring_case(filter_fixture):
    # "zebra" is in one secret's name and in another's tag value.
    assert names_for(filter_fixture, [{"Key": "all", "Values": ["zebra"]}]) == ["plain", "zebra/other"]
    assert names_for(filter_fixture, [{"Key": "all", "Values": ["ZEBRA"]}]) == ["plain", "zebra/other"]
    assert "testing1/one" in names_for(filter_fixture, [{"Key": "all", "Values": ["here"]}])


def test_several_filters_are_anded(filter_fixture):
    filters = [{"Key": "name", "Values": ["testing1"]}, {"Key": "tag-key", "Values": ["env"]}]
    assert names_for(filter_fixture, filters) == ["testing1/one"]
    filters = [{"Key": "name", "Values": ["testing1"]}, {"Key": "description", "Values": ["a secret"]}]
    assert names_for(filter_fixture, filters) == ["testing1/one"]
    filters = [{"Key": "name", "Values": ["/"]}, {"Key": "tag-value", "Values": ["staging"]}]
    assert names_for(filter_fixture, filters) == []


def test_include_planned_deletion(fresh_sm):
    fresh_sm.create_secret(Name="kept", SecretString="v")
    fresh_sm.create_secret(Name="doomed", SecretString="v")
    fresh_sm.delete_secret(SecretId="doomed", RecoveryWindowInDays=7)
    assert [s["Name"] for s in list_all(fresh_sm)] == ["kept"]
    assert [s["Name"] for s in list_all(fresh_sm, IncludePlannedDeletion=False)] == ["kept"]
    both = {s["Name"]: s for s in list_all(fresh_sm, IncludePlannedDeletion=True)}
    assert set(both) == {"kept", "doomed"}
    assert "DeletedDate" in both["doomed"]
    assert "DeletedDate" not in both["kept"]


def test_sort_order_by_created_date(fresh_sm):
    created = []
    for i in range(4):
        n = f"sorted-{i}"
        fresh_sm.create_secret(Name=n, SecretString="v")
        created.append(n)
        time.sleep(0.01)
    asc = [s["Name"] for s in list_all(fresh_sm, SortOrder="asc")]
    desc = [s["Name"] for s in list_all(fresh_sm, SortOrder="desc")]
    assert asc == created
    assert desc == list(reversed(created))


def test_paging_returns_every_secret_exactly_once(fresh_sm):
    made = {fresh_sm.create_secret(Name=f"page/{i:02d}", SecretString="v")["Name"] for i in range(25)}
    pages, next_token = [], None
    while True:
        args = {"MaxResults": 10}
        if next_token:
            args["NextToken"] = next_token
        page = fresh_sm.list_secrets(**args)
        pages.append([s["Name"] for s in page["SecretList"]])
        next_token = page.get("NextToken")
        if not next_token:
            assert "NextToken" not in page
            break
        assert len(pages) < 10
    assert [len(p) for p in pages] == [10, 10, 5]
    flat = [n for p in pages for n in p]
    assert len(flat) == len(set(flat)) == 25
    assert set(flat) == made


def test_paging_with_filters_applies_filter_before_paging(fresh_sm):
    for i in range(7):
        fresh_sm.create_secret(Name=f"wanted/{i}", SecretString="v")
        fresh_sm.create_secret(Name=f"noise/{i}", SecretString="v")
    got = list_all(fresh_sm, Filters=[{"Key": "name", "Values": ["wanted/"]}], MaxResults=3)
    assert sorted(s["Name"] for s in got) == [f"wanted/{i}" for i in range(7)]


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_paging_stays_correct_when_a_secret_is_created_between_pages(fresh_sm, sort_order):
    originals = set()
    for i in range(12):
        originals.add(fresh_sm.create_secret(Name=f"orig/{i:02d}", SecretString="v")["Name"])
        time.sleep(0.002)
    first = fresh_sm.list_secrets(MaxResults=5, SortOrder=sort_order)
    seen = [s["Name"] for s in first["SecretList"]]
    next_token = first["NextToken"]
    fresh_sm.create_secret(Name="late/arrival", SecretString="v")
    while next_token:
        page = fresh_sm.list_secrets(MaxResults=5, SortOrder=sort_order, NextToken=next_token)
        seen.extend(s["Name"] for s in page["SecretList"])
        next_token = page.get("NextToken")
    assert len(seen) == len(set(seen)), f"returned twice: {seen}"
    assert originals <= set(seen), f"missed: {originals - set(seen)}"


def test_paging_stays_correct_when_a_secret_is_deleted_between_pages(fresh_sm):
    originals = [fresh_sm.create_secret(Name=f"d/{i:02d}", SecretString="v")["Name"] for i in range(10)]
    first = fresh_sm.list_secrets(MaxResults=4, SortOrder="asc")
    seen = [s["Name"] for s in first["SecretList"]]
    victim = seen[0]
    fresh_sm.delete_secret(SecretId=victim, ForceDeleteWithoutRecovery=True)
    next_token = first["NextToken"]
    while next_token:
        page = fresh_sm.list_secrets(MaxResults=4, SortOrder="asc", NextToken=next_token)
        seen.extend(s["Name"] for s in page["SecretList"])
        next_token = page.get("NextToken")
    assert len(seen) == len(set(seen))
    assert set(originals) == set(seen)


def test_list_secrets_max_results_out_of_range_is_rejected(sm):
    expect_error(sm.list_secrets, "ValidationException", MaxResults=101)



def test_list_secrets_with_garbage_next_token_is_invalid_next_token(sm):
    # The model lists InvalidNextTokenException for ListSecrets; a token the server never issued
    # must not be read as a position.
    expect_error(sm.list_secrets, "InvalidNextTokenException", NextToken="not-a-token-the-server-issued")
