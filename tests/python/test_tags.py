"""TagResource and UntagResource: response shapes, overwrite semantics and DescribeSecret's view of tags."""

from conftest import MSG_NOT_FOUND, expect_error, keys


def tags_of(sm, name):
    return sorted(sm.describe_secret(SecretId=name).get("Tags", []), key=lambda t: t["Key"])


def test_tag_and_untag_return_empty_responses(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    assert keys(sm.tag_resource(SecretId=name, Tags=[{"Key": "k", "Value": "v"}])) == set()
    assert keys(sm.untag_resource(SecretId=name, TagKeys=["k"])) == set()


def test_tags_are_added_and_existing_keys_overwritten(sm, name):
    sm.create_secret(Name=name, SecretString="v", Tags=[{"Key": "env", "Value": "dev"}])
    sm.tag_resource(
        SecretId=name,
        Tags=[{"Key": "env", "Value": "prod"}, {"Key": "costcenter", "Value": "12345"}],
    )
    assert tags_of(sm, name) == [
        {"Key": "costcenter", "Value": "12345"},
        {"Key": "env", "Value": "prod"},
    ]


def test_tag_keys_are_case_sensitive(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    sm.tag_resource(SecretId=name, Tags=[{"Key": "ABC", "Value": "1"}, {"Key": "abc", "Value": "2"}])
    assert tags_of(sm, name) == [{"Key": "ABC", "Value": "1"}, {"Key": "abc", "Value": "2"}]
    sm.untag_resource(SecretId=name, TagKeys=["abc"])
    assert tags_of(sm, name) == [{"Key": "ABC", "Value": "1"}]


def test_untag_removes_only_named_keys_and_ignores_absent_ones(sm, name):
    sm.create_secret(
        Name=name,
        SecretString="v",
        Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}, {"Key": "c", "Value": "3"}],
    )
    sm.untag_resource(SecretId=name, TagKeys=["b", "not-there"])
    assert tags_of(sm, name) == [{"Key": "a", "Value": "1"}, {"Key": "c", "Value": "3"}]


def test_removing_every_tag_leaves_empty_tag_list(sm, name):
    sm.create_secret(Name=name, SecretString="v", Tags=[{"Key": "only", "Value": "one"}])
    sm.untag_resource(SecretId=name, TagKeys=["only"])
    desc = sm.describe_secret(SecretId=name)
    assert desc["Tags"] == []


def test_empty_tag_value_is_kept(sm, name):
    sm.create_secret(Name=name, SecretString="v")
    sm.tag_resource(SecretId=name, Tags=[{"Key": "flag", "Value": ""}])
    assert tags_of(sm, name) == [{"Key": "flag", "Value": ""}]


def test_tag_by_arn(sm, name):
    arn = sm.create_secret(Name=name, SecretString="v")["ARN"]
    sm.tag_resource(SecretId=arn, Tags=[{"Key": "via", "Value": "arn"}])
    assert tags_of(sm, name) == [{"Key": "via", "Value": "arn"}]


def test_tags_show_in_list_secrets(sm, name):
    sm.create_secret(Name=name, SecretString="v", Tags=[{"Key": "team", "Value": "core"}])
    entries = sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
    assert [e["Tags"] for e in entries if e["Name"] == name] == [[{"Key": "team", "Value": "core"}]]


def test_tagging_unknown_secret_is_resource_not_found(sm, name):
    expect_error(
        sm.tag_resource, "ResourceNotFoundException", MSG_NOT_FOUND,
        SecretId=name, Tags=[{"Key": "k", "Value": "v"}],
    )
    expect_error(sm.untag_resource, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name, TagKeys=["k"])


def test_tagging_does_not_create_a_version(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v")["VersionId"]
    sm.tag_resource(SecretId=name, Tags=[{"Key": "k", "Value": "v"}])
    assert sm.describe_secret(SecretId=name)["VersionIdsToStages"] == {v1: ["AWSCURRENT"]}
