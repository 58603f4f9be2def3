"""Conformance findings from replaying floci's and kumo's Secrets Manager tests against Coffer.

Each test pins a behaviour where the replayed test agreed with the real service and Coffer
did not; the source of the AWS behaviour is named in the test's docstring. Differences where
the other emulator itself departs from AWS are not tested here: they are listed, with their
reasons, in docs/design/conf-others.md ("floci and kumo").
"""

from __future__ import annotations

import pytest

from conftest import (
    MSG_MARKED_FOR_DELETION,
    error_of,
    expect_error,
    signed_request,
    token,
    unique_name,
)

# A policy that names one account: accepted whatever BlockPublicPolicy says.
SCOPED_POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    '"Principal":{"AWS":"arn:aws:iam::123456789012:root"},'
    '"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}'
)


# --- Resource policy operations on a secret scheduled for deletion ---


@pytest.fixture
def scheduled_with_policy(sm):
    """A secret with a resource policy, then scheduled for deletion."""
    name = unique_name("policy-scheduled")
    sm.create_secret(Name=name, SecretString="s")
    sm.put_resource_policy(SecretId=name, ResourcePolicy=SCOPED_POLICY)
    sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    return name


@pytest.mark.parametrize("operation", ["get_resource_policy", "delete_resource_policy"])
def test_policy_read_and_delete_refuse_a_secret_marked_for_deletion(sm, scheduled_with_policy, operation):
    """AWS answers GetResourcePolicy and DeleteResourcePolicy on a secret scheduled for
    deletion with InvalidRequestException "You can't perform this operation on the secret
    because it was marked for deletion." The Terraform AWS provider, whose acceptance tests run
    against the real service, matches exactly that code and message from both calls
    (internal/service/secretsmanager/secret_policy.go, findSecretPolicyByID and the delete
    path; secret_policy_list.go). floci's handler tests assert the same."""
    expect_error(
        getattr(sm, operation), "InvalidRequestException", MSG_MARKED_FOR_DELETION,
        SecretId=scheduled_with_policy,
    )
    # Nothing changed: once restored, the policy is still there.
    sm.restore_secret(SecretId=scheduled_with_policy)
    assert sm.get_resource_policy(SecretId=scheduled_with_policy)["ResourcePolicy"] == SCOPED_POLICY


def test_policy_put_refuses_a_secret_marked_for_deletion(sm, scheduled_with_policy):
    """PutResourcePolicy is refused like the two calls above (and like TagResource,
    UntagResource and UpdateSecret, aws-behaviours.md section 5): no source records AWS's
    answer for Put itself, so it follows the other writes to a scheduled secret."""
    other = SCOPED_POLICY.replace("123456789012", "210987654321")
    expect_error(
        sm.put_resource_policy, "InvalidRequestException", MSG_MARKED_FOR_DELETION,
        SecretId=scheduled_with_policy, ResourcePolicy=other,
    )
    sm.restore_secret(SecretId=scheduled_with_policy)
    assert sm.get_resource_policy(SecretId=scheduled_with_policy)["ResourcePolicy"] == SCOPED_POLICY


def test_a_malformed_policy_is_refused_before_the_scheduled_secret(sm, scheduled_with_policy):
    """The policy's form is checked before the secret is looked at (as for a secret that does
    not exist), so a malformed policy gets its own error whatever the secret's state."""
    expect_error(
        sm.put_resource_policy, "MalformedPolicyDocumentException",
        SecretId=scheduled_with_policy, ResourcePolicy="not a policy",
    )


def test_policy_calls_work_again_once_the_secret_is_restored(sm, scheduled_with_policy):
    sm.restore_secret(SecretId=scheduled_with_policy)
    sm.delete_resource_policy(SecretId=scheduled_with_policy)
    assert "ResourcePolicy" not in sm.get_resource_policy(SecretId=scheduled_with_policy)
    sm.put_resource_policy(SecretId=scheduled_with_policy, ResourcePolicy=SCOPED_POLICY)


# --- GetSecretValue of a version without labels ---


def test_get_secret_value_of_a_deprecated_version_has_no_version_stages_key(sm, url):
    """A version without labels is read by VersionId with no VersionStages key at all, not
    `[]`: the model's SecretVersionStagesType has at least one member, and AWS leaves the key
    out for such a version in ListSecretVersionIds (aws-behaviours.md section 4). floci's
    handler test getSecretValueOmitsVersionStagesForADeprecatedVersion asserts the same.
    Checked on the raw JSON, where an empty list and an absent key differ."""
    name = unique_name("deprecated-read")
    sm.create_secret(Name=name, SecretString="current")
    pending = token()
    sm.put_secret_value(
        SecretId=name, SecretString="pending", ClientRequestToken=pending, VersionStages=["AWSPENDING"]
    )
    sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=pending)

    resp = signed_request(url, "GetSecretValue", {"SecretId": name, "VersionId": pending})
    assert resp.status_code == 200, error_of(resp)
    body = resp.json()
    assert body["VersionId"] == pending and body["SecretString"] == "pending"
    assert "VersionStages" not in body, body.get("VersionStages")

    # A version with labels still carries them.
    current = signed_request(url, "GetSecretValue", {"SecretId": name}).json()
    assert current["VersionStages"] == ["AWSCURRENT"]
