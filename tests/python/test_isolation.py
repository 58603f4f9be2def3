"""Regions and accounts are separate namespaces chosen by the SigV4 credential scope."""

import pytest
from botocore.exceptions import ClientError

from conftest import MSG_NOT_FOUND, expect_error, make_client

OTHER_ACCOUNT = "111122223333"


def test_same_name_in_two_regions_are_separate_secrets(url, sm, name):
    west = make_client(url, region="eu-west-1")
    east_arn = sm.create_secret(Name=name, SecretString="east")["ARN"]
    west_arn = west.create_secret(Name=name, SecretString="west")["ARN"]
    assert east_arn.startswith("arn:aws:secretsmanager:us-east-1:000000000000:secret:")
    assert west_arn.startswith("arn:aws:secretsmanager:eu-west-1:000000000000:secret:")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "east"
    assert west.get_secret_value(SecretId=name)["SecretString"] == "west"
    west.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "east"


def test_secret_in_one_region_is_invisible_in_another(url, sm, name):
    sm.create_secret(Name=name, SecretString="east-only")
    west = make_client(url, region="eu-west-1")
    expect_error(west.describe_secret, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name)
    listed = west.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
    assert listed == []


def test_twelve_digit_access_key_selects_the_account(url, sm, name):
    other = make_client(url, access_key=OTHER_ACCOUNT)
    arn = other.create_secret(Name=name, SecretString="other")["ARN"]
    assert arn.startswith(f"arn:aws:secretsmanager:us-east-1:{OTHER_ACCOUNT}:secret:{name}-")
    expect_error(sm.describe_secret, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name)
    default_arn = sm.create_secret(Name=name, SecretString="default")["ARN"]
    assert default_arn.startswith(f"arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}-")
    assert other.get_secret_value(SecretId=name)["SecretString"] == "other"
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "default"


def test_other_account_cannot_read_by_full_arn(url, sm, name):
    arn = sm.create_secret(Name=name, SecretString="private")["ARN"]
    other = make_client(url, access_key=OTHER_ACCOUNT)
    with pytest.raises(ClientError):
        other.get_secret_value(SecretId=arn)
    with pytest.raises(ClientError):
        other.put_secret_value(SecretId=arn, SecretString="overwritten")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "private"


def test_list_secrets_sees_only_its_own_account(url, sm, name):
    other = make_client(url, access_key="444455556666")
    other.create_secret(Name=name, SecretString="v")
    names = {s["Name"] for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]}
    assert name not in names
    names = {s["Name"] for s in other.list_secrets()["SecretList"]}
    assert names == {name}
