"""CreateSecret and GetSecretValue through boto3: response shapes, values, names and ARNs."""

import re
from datetime import datetime, timedelta, timezone

import pytest

from conftest import (
    DEFAULT_ACCOUNT,
    MSG_NOT_FOUND,
    MSG_STAGE_NOT_OF_VERSION,
    REGION,
    expect_error,
    keys,
    msg_exists,
    msg_no_stage,
    msg_no_version,
    token,
    unique_name,
)


def arn_pattern(name: str, region: str = REGION, account: str = DEFAULT_ACCOUNT) -> re.Pattern:
    return re.compile(
        rf"^arn:aws:secretsmanager:{region}:{account}:secret:{re.escape(name)}-[A-Za-z0-9]{{6}}$"
    )


def test_create_with_value_returns_arn_name_and_version_id(sm, name):
    tok = token()
    resp = sm.create_secret(Name=name, SecretString="s3cr3t", ClientRequestToken=tok)
    assert keys(resp) == {"ARN", "Name", "VersionId"}
    assert resp["Name"] == name
    assert resp["VersionId"] == tok
    assert arn_pattern(name).match(resp["ARN"]), resp["ARN"]


def test_create_without_value_returns_only_arn_and_name_and_makes_no_version(sm, name):
    resp = sm.create_secret(Name=name)
    assert keys(resp) == {"ARN", "Name"}
    assert arn_pattern(name).match(resp["ARN"])
    desc = sm.describe_secret(SecretId=name)
    assert "VersionIdsToStages" not in desc
    assert sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"] == []


def test_get_value_of_secret_without_value_names_the_missing_awscurrent_label(sm, name):
    sm.create_secret(Name=name)
    expect_error(sm.get_secret_value, "ResourceNotFoundException", msg_no_stage("AWSCURRENT"), SecretId=name)


def test_get_secret_value_returns_exact_key_set(sm, name):
    created = sm.create_secret(Name=name, SecretString="value-1")
    resp = sm.get_secret_value(SecretId=name)
    assert keys(resp) == {"ARN", "CreatedDate", "Name", "SecretString", "VersionId", "VersionStages"}
    assert resp["SecretString"] == "value-1"
    assert resp["VersionId"] == created["VersionId"]
    assert resp["VersionStages"] == ["AWSCURRENT"]
    assert resp["ARN"] == created["ARN"]
    assert resp["Name"] == name
    now = datetime.now(timezone.utc)
    assert abs(resp["CreatedDate"] - now) < timedelta(minutes=2)


def test_get_secret_value_created_date_is_the_version_creation_time(sm, name):
    sm.create_secret(Name=name, SecretString="one")
    first = sm.get_secret_value(SecretId=name)
    second_id = sm.put_secret_value(SecretId=name, SecretString="two")["VersionId"]
    second = sm.get_secret_value(SecretId=name, VersionId=second_id)
    secret_created = sm.describe_secret(SecretId=name)["CreatedDate"]
    assert second["CreatedDate"] > first["CreatedDate"]
    assert second["CreatedDate"] > secret_created
    # Reading the old version again still reports its own creation time.
    again = sm.get_secret_value(SecretId=name, VersionId=first["VersionId"])
    assert again["CreatedDate"] == first["CreatedDate"]


def test_create_with_existing_name_fails_with_resource_exists(sm, name):
    sm.create_secret(Name=name, SecretString="x")
    expect_error(sm.create_secret, "ResourceExistsException", msg_exists(name), Name=name, SecretString="y")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "x"


def test_modeled_error_message_is_copied_to_top_level_by_boto3(sm, name):
    err = expect_error(sm.get_secret_value, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name)
    # boto3 copies a capital-M body Message to the top level only for modeled error shapes.
    assert err.response.get("Message") == MSG_NOT_FOUND


def test_unknown_secret_is_resource_not_found(sm, name):
    for op, kwargs in [
        (sm.get_secret_value, {}),
        (sm.describe_secret, {}),
        (sm.list_secret_version_ids, {}),
        (sm.put_secret_value, {"SecretString": "v"}),
        (sm.update_secret, {"Description": "d"}),
        (sm.delete_secret, {}),
        (sm.restore_secret, {}),
        (sm.tag_resource, {"Tags": [{"Key": "k", "Value": "v"}]}),
        (sm.untag_resource, {"TagKeys": ["k"]}),
    ]:
        expect_error(op, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name, **kwargs)


def test_binary_value_round_trips_arbitrary_bytes(sm, name):
    data = b"\x00\x01\x02\xff"
    sm.create_secret(Name=name, SecretBinary=data)
    resp = sm.get_secret_value(SecretId=name)
    assert resp["SecretBinary"] == data
    assert "SecretString" not in resp
    assert keys(resp) == {"ARN", "CreatedDate", "Name", "SecretBinary", "VersionId", "VersionStages"}


def test_every_byte_value_round_trips(sm, name):
    data = bytes(range(256)) * 4
    sm.create_secret(Name=name, SecretBinary=data)
    assert sm.get_secret_value(SecretId=name)["SecretBinary"] == data


def test_unicode_string_round_trips(sm, name):
    value = '{"user":"zoë","pw":"пароль密码🔑","quote":"\\"","nl":"a\\nb"}'
    sm.create_secret(Name=name, SecretString=value)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == value


def test_64_kib_string_value_is_accepted(sm, name):
    value = "x" * 65536
    sm.create_secret(Name=name, SecretString=value)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == value


def test_64_kib_binary_value_is_accepted(sm, name):
    data = bytes(i % 251 for i in range(65536))
    sm.create_secret(Name=name, SecretBinary=data)
    assert sm.get_secret_value(SecretId=name)["SecretBinary"] == data


def test_string_value_over_64_kib_is_rejected(sm, name):
    expect_error(sm.create_secret, "ValidationException", Name=name, SecretString="x" * 65537)
    expect_error(sm.describe_secret, "ResourceNotFoundException", SecretId=name)


def test_binary_value_over_64_kib_is_rejected(sm, name):
    expect_error(sm.create_secret, "ValidationException", Name=name, SecretBinary=b"x" * 65537)


def test_put_of_oversized_value_is_rejected(sm, name):
    sm.create_secret(Name=name, SecretString="small")
    expect_error(sm.put_secret_value, "ValidationException", SecretId=name, SecretString="y" * 65537)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "small"


def test_create_with_string_and_binary_is_invalid_parameter(sm, name):
    expect_error(
        sm.create_secret, "InvalidParameterException", Name=name, SecretString="s", SecretBinary=b"b"
    )


def test_client_request_token_becomes_version_id(sm, name):
    tok = token()
    sm.create_secret(Name=name, SecretString="v", ClientRequestToken=tok)
    assert sm.get_secret_value(SecretId=name)["VersionId"] == tok
    assert sm.describe_secret(SecretId=name)["VersionIdsToStages"] == {tok: ["AWSCURRENT"]}


def test_get_by_version_stage_and_version_id(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="one")["VersionId"]
    v2 = sm.put_secret_value(SecretId=name, SecretString="two")["VersionId"]
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"] == "one"
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"] == "two"
    assert sm.get_secret_value(SecretId=name, VersionId=v1)["SecretString"] == "one"
    both = sm.get_secret_value(SecretId=name, VersionId=v2, VersionStage="AWSCURRENT")
    assert both["SecretString"] == "two"


def test_get_with_unknown_stage_names_the_label(sm, name):
    sm.create_secret(Name=name, SecretString="one")
    expect_error(
        sm.get_secret_value, "ResourceNotFoundException", msg_no_stage("AWSPREVIOUS"),
        SecretId=name, VersionStage="AWSPREVIOUS",
    )
    expect_error(
        sm.get_secret_value, "ResourceNotFoundException", msg_no_stage("NOSUCHLABEL"),
        SecretId=name, VersionStage="NOSUCHLABEL",
    )


def test_get_with_unknown_version_id_names_the_version(sm, name):
    sm.create_secret(Name=name, SecretString="one")
    missing = token()
    expect_error(
        sm.get_secret_value, "ResourceNotFoundException", msg_no_version(missing),
        SecretId=name, VersionId=missing,
    )


def test_get_with_version_id_and_foreign_stage_is_invalid_request(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="one")["VersionId"]
    sm.put_secret_value(SecretId=name, SecretString="two")
    expect_error(
        sm.get_secret_value, "InvalidRequestException", MSG_STAGE_NOT_OF_VERSION,
        SecretId=name, VersionId=v1, VersionStage="AWSCURRENT",
    )


def test_full_arn_and_partial_arn_resolve(sm, name):
    arn = sm.create_secret(Name=name, SecretString="by-arn")["ARN"]
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "by-arn"
    partial = arn[: -len("-XXXXXX")]
    assert partial.endswith(name)
    assert sm.get_secret_value(SecretId=partial)["SecretString"] == "by-arn"
    assert sm.describe_secret(SecretId=partial)["ARN"] == arn


def test_name_with_all_allowed_punctuation_and_trailing_hyphen_resolves_by_partial_arn(sm):
    name = unique_name("p") + "/Valid/_+=.@-Name-a1b2c3-"
    arn = sm.create_secret(Name=name, SecretString="valid")["ARN"]
    assert arn_pattern(name).match(arn), arn
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "valid"
    assert sm.get_secret_value(SecretId=arn[:-7])["SecretString"] == "valid"


def test_partial_arn_of_name_ending_in_six_char_tail_does_not_resolve(sm):
    name = unique_name("p") + "/Invalid/_+=.@-Name-a1b2c3"
    arn = sm.create_secret(Name=name, SecretString="ambiguous")["ARN"]
    assert arn_pattern(name).match(arn), arn
    # By name and by full ARN it is found.
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "ambiguous"
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "ambiguous"
    # The partial ARN's "-a1b2c3" tail reads as a random suffix, so it names another secret.
    expect_error(sm.get_secret_value, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=arn[:-7])


def test_arn_with_wrong_suffix_does_not_resolve(sm, name):
    arn = sm.create_secret(Name=name, SecretString="v")["ARN"]
    suffix = arn[-6:]
    wrong = "".join("A" if c != "A" else "B" for c in suffix)
    expect_error(sm.get_secret_value, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=arn[:-6] + wrong)


def test_arns_of_different_secrets_have_independent_suffixes(sm):
    arns = [sm.create_secret(Name=unique_name("sfx"))["ARN"] for _ in range(5)]
    assert len({a[-6:] for a in arns}) > 1


def test_name_of_512_characters_is_accepted(sm):
    name = unique_name("long")
    name = name + "x" * (512 - len(name))
    assert sm.create_secret(Name=name, SecretString="v")["Name"] == name
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v"


@pytest.mark.parametrize("description", ["", None])
def test_create_with_tags_and_description_shows_them(sm, name, description):
    kwargs = {"Description": "hello world"} if description is None else {"Description": description}
    sm.create_secret(Name=name, SecretString="v", Tags=[{"Key": "team", "Value": "core"}], **kwargs)
    desc = sm.describe_secret(SecretId=name)
    assert desc["Tags"] == [{"Key": "team", "Value": "core"}]
    if description == "":
        assert "Description" not in desc
    else:
        assert desc["Description"] == "hello world"
