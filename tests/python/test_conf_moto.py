"""Conformance findings from running moto's Secrets Manager test suite against Coffer.

Each test pins a behaviour where moto agrees with the real service and Coffer did not;
the source of the AWS behaviour is named in the test's docstring. Divergences where moto
itself differs from AWS are not tested here (they are listed in docs/design/conf-moto.md).
"""

from __future__ import annotations

import pytest

from conftest import expect_error, make_client, unique_name

RECOVERY_WINDOW_RANGE = "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive)."
FORCE_WITH_WINDOW = (
    "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays."
)


# --- DeleteSecret: the window's range is checked before its clash with a forced delete ---


@pytest.mark.parametrize("days", [0, 2, 6, 31, 100])
def test_force_delete_with_out_of_range_window_reports_the_range(sm, days):
    """AWS answers RecoveryWindowInDays=0 with ForceDeleteWithoutRecovery=true with the
    range error, not the "in conjunction" one (moto issue 6461, reproduced on AWS): the
    range is checked first, whether the secret exists or not."""
    name = unique_name("force-window")
    for secret_id in (name, unique_name("never-made")):
        if secret_id == name:
            sm.create_secret(Name=name, SecretString="s")
        expect_error(
            sm.delete_secret,
            "InvalidParameterException",
            RECOVERY_WINDOW_RANGE,
            SecretId=secret_id,
            RecoveryWindowInDays=days,
            ForceDeleteWithoutRecovery=True,
        )
    # Nothing changed: the secret is neither deleted nor scheduled.
    assert "DeletedDate" not in sm.describe_secret(SecretId=name)


def test_force_delete_with_in_range_window_still_clashes(sm):
    name = unique_name("force-window-ok")
    sm.create_secret(Name=name, SecretString="s")
    expect_error(
        sm.delete_secret,
        "InvalidParameterException",
        FORCE_WITH_WINDOW,
        SecretId=name,
        RecoveryWindowInDays=7,
        ForceDeleteWithoutRecovery=True,
    )
    assert "DeletedDate" not in sm.describe_secret(SecretId=name)


# --- ListSecrets: a filter without Key or without Values ---


def test_filter_without_key_is_an_invalid_parameter(sm):
    """Key is not a required member of Filter in the model, so a filter without one is not
    a serialization error: the service refuses it as an invalid filter key."""
    for call in (sm.list_secrets, sm.batch_get_secret_value):
        expect_error(
            call, "InvalidParameterException", "Invalid filter key", Filters=[{"Values": ["foo"]}]
        )


def test_filter_without_values_is_an_invalid_parameter(sm):
    """A filter that names a key but no values selects nothing meaningful: refused, naming
    the key, rather than silently matching."""
    sm.create_secret(Name=unique_name("no-values"), SecretString="s", Description="hello")
    for key in ("description", "name", "tag-key", "all"):
        expect_error(
            sm.list_secrets,
            "InvalidParameterException",
            f"Invalid filter values for key: {key}",
            Filters=[{"Key": key}],
        )


# --- ListSecrets: primary-region selects replicated secrets only ---


def test_primary_region_filter_skips_secrets_never_replicated(fresh_server):
    """A secret that was never replicated has no PrimaryRegion (every DescribeSecret snapshot
    of AWS), so the primary-region filter, which filters on that attribute, does not select
    it, negated or not; a primary with replicas and its replicas are selected."""
    use1 = make_client(fresh_server.url, region="us-east-1")
    use2 = make_client(fresh_server.url, region="us-east-2")
    use1.create_secret(Name="simple", SecretString="s")
    use1.create_secret(Name="dup", SecretString="s", AddReplicaRegions=[{"Region": "us-east-2"}])

    def names(client, values):
        listed = client.list_secrets(Filters=[{"Key": "primary-region", "Values": values}])
        return sorted(s["Name"] for s in listed["SecretList"])

    assert names(use1, ["us-east-1"]) == ["dup"]
    assert names(use1, ["us-east-2"]) == []
    assert names(use1, ["!us-east-2"]) == ["dup"]
    assert sorted(s["Name"] for s in use1.list_secrets()["SecretList"]) == ["dup", "simple"]
    replicas = use2.list_secrets(Filters=[{"Key": "primary-region", "Values": ["us-east-1"]}])
    assert [(s["Name"], s["PrimaryRegion"]) for s in replicas["SecretList"]] == [
        ("dup", "us-east-1")
    ]
