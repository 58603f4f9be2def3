"""PutSecretValue's labels and the 100-version quota, end to end: the put path moves labels
among the labelled versions only and builds every version's labels only at the quota
(branch devcpu10); these hold it to the same answers."""

from conftest import expect_error, stages, token

QUOTA_MESSAGE = (
    "The request failed because it would exceed the quota of 100 versions for this secret. "
    "Secrets Manager removes versions without staging labels only once they are more than "
    "24 hours old."
)


def test_labels_move_over_many_deprecated_versions(sm, name):
    sm.create_secret(Name=name, SecretString="v0")
    for i in range(1, 30):
        sm.put_secret_value(SecretId=name, SecretString=f"v{i}", ClientRequestToken=token())
    pending = token()
    sm.put_secret_value(
        SecretId=name, SecretString="p", ClientRequestToken=pending, VersionStages=["AWSPENDING"]
    )
    last = token()
    sm.put_secret_value(SecretId=name, SecretString="last", ClientRequestToken=last)
    labelled = stages(sm, name)
    assert labelled[last] == ["AWSCURRENT"]
    assert labelled[pending] == ["AWSPENDING"]
    assert sorted(v for labels in labelled.values() for v in labels) == [
        "AWSCURRENT",
        "AWSPENDING",
        "AWSPREVIOUS",
    ]
    versions = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True, MaxResults=100)
    assert len(versions["Versions"]) == 32
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "last"


def test_the_101st_version_is_refused_and_changes_nothing(sm, name):
    sm.create_secret(Name=name, SecretString="v0")
    for i in range(1, 100):
        sm.put_secret_value(SecretId=name, SecretString=f"v{i}", ClientRequestToken=token())
    before = stages(sm, name)
    listed = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True, MaxResults=100)
    assert len(listed["Versions"]) == 100
    expect_error(
        lambda: sm.put_secret_value(SecretId=name, SecretString="over", ClientRequestToken=token()),
        "LimitExceededException",
        QUOTA_MESSAGE,
    )
    assert stages(sm, name) == before
    after = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True, MaxResults=100)
    assert len(after["Versions"]) == 100 and "NextToken" not in after
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v99"
