"""STS and IAM conformance (confsts12): where Coffer's answers differed from the real
service's, as recorded in other emulators' snapshots of AWS and in the API models. Each
test pins one such divergence: the error code and message AWS gives, or the members its
answer has (and has not)."""

from __future__ import annotations

import json
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from iam_api_support import serve

ACCOUNT = "000000000000"


@pytest.fixture(scope="module", params=["sqlite"])
def srv(request, tmp_path_factory):
    return serve(request, tmp_path_factory, "confsts")


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def trusting_account(actions=("sts:AssumeRole",)) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": list(actions)}],
    })


@pytest.fixture(scope="module")
def role_arn(srv):
    iam = srv.client("iam")
    return iam.create_role(RoleName=uname("conf-role"),
                           AssumeRolePolicyDocument=trusting_account(("sts:AssumeRole", "sts:TagSession")))["Role"]["Arn"]


def unchecked_sts(srv):
    """An STS client that sends what botocore would refuse to, as a raw caller can."""
    return boto3.client("sts", endpoint_url=srv.url, region_name="us-east-1",
                        aws_access_key_id=srv.admin_key[0], aws_secret_access_key=srv.admin_key[1],
                        config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))


def unchecked_iam(srv):
    """An IAM client that sends what botocore would refuse to, as a raw caller can."""
    return boto3.client("iam", endpoint_url=srv.url, region_name="us-east-1",
                        aws_access_key_id=srv.admin_key[0], aws_secret_access_key=srv.admin_key[1],
                        config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))


def refused(call, code: str, message: str, status: int = 400):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert (err["Code"], err["Message"]) == (code, message)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return e.value.response


# --- AssumeRole ---------------------------------------------------------------------------

def test_a_session_name_too_long_is_refused_for_its_length(srv, role_arn):
    name = "s" * 65
    refused(lambda: srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=name),
            "ValidationError",
            f"1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy "
            "constraint: Member must have length less than or equal to 64")


def test_a_session_name_too_short_is_refused_for_its_length(srv, role_arn):
    refused(lambda: unchecked_sts(srv).assume_role(RoleArn=role_arn, RoleSessionName="s"),
            "ValidationError",
            "1 validation error detected: Value 's' at 'roleSessionName' failed to satisfy "
            "constraint: Member must have length greater than or equal to 2")


def test_a_session_name_outside_the_pattern_names_the_pattern(srv, role_arn):
    refused(lambda: srv.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="Session1:2"),
            "ValidationError",
            "1 validation error detected: Value 'Session1:2' at 'roleSessionName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*")


@pytest.mark.parametrize("arn", [
    "nothing-valid-in-here",
    "arn::b:::something/test-role",
    "arn:a::::something/test-role",
    "arn:a:::something/test-role",
    "arn:a:a::aaaaaaaaaa:",
])
def test_a_malformed_role_arn_is_invalid_not_a_refusal(srv, arn):
    refused(lambda: srv.client("sts").assume_role(RoleArn=arn, RoleSessionName="conf-session"),
            "ValidationError", f"{arn} is invalid")


def test_a_well_formed_arn_of_no_role_is_still_a_refusal(srv):
    arn = f"arn:aws:iam::{ACCOUNT}:role/no-such-role-{uuid.uuid4().hex[:6]}"
    refused(lambda: srv.client("sts").assume_role(RoleArn=arn, RoleSessionName="conf-session"),
            "AccessDenied",
            f"User: arn:aws:iam::{ACCOUNT}:user/admin is not authorized to perform: "
            f"sts:AssumeRole on resource: {arn}", 403)


def test_packed_policy_size_only_when_a_policy_or_tags_are_passed(srv, role_arn):
    sts = srv.client("sts")
    plain = sts.assume_role(RoleArn=role_arn, RoleSessionName="conf-plain")
    assert "PackedPolicySize" not in plain
    policy = json.dumps({"Version": "2012-10-17",
                         "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]})
    narrowed = sts.assume_role(RoleArn=role_arn, RoleSessionName="conf-policy", Policy=policy)
    assert 0 < narrowed["PackedPolicySize"] <= 100
    tagged = sts.assume_role(RoleArn=role_arn, RoleSessionName="conf-tags",
                             Tags=[{"Key": "team", "Value": "blue"}])
    assert 0 < tagged["PackedPolicySize"] <= 100


def test_duplicate_session_tag_keys_differing_in_case_are_refused(srv, role_arn):
    refused(lambda: srv.client("sts").assume_role(
        RoleArn=role_arn, RoleSessionName="conf-dup",
        Tags=[{"Key": "Team", "Value": "a"}, {"Key": "team", "Value": "b"}]),
        "InvalidParameterValue",
        "Duplicate tag keys found. Please note that Tag keys are case insensitive.")


def test_a_transitive_tag_key_must_be_one_of_the_session_tags(srv, role_arn):
    refused(lambda: srv.client("sts").assume_role(
        RoleArn=role_arn, RoleSessionName="conf-trans",
        Tags=[{"Key": "team", "Value": "a"}], TransitiveTagKeys=["project"]),
        "InvalidParameterValue",
        "The specified transitive tag key must be included in the requested tags.")
    # Named in another case it is the same key: accepted.
    ok = srv.client("sts").assume_role(
        RoleArn=role_arn, RoleSessionName="conf-trans",
        Tags=[{"Key": "team", "Value": "a"}], TransitiveTagKeys=["Team"])
    assert ok["AssumedRoleUser"]["Arn"].endswith("/conf-trans")


# --- IAM roles ----------------------------------------------------------------------------

EC2_TRUST = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}


def test_a_trust_policy_that_is_not_json_is_invalid_json(srv):
    iam = srv.client("iam")
    refused(lambda: iam.create_role(RoleName=uname("bad-json"), AssumeRolePolicyDocument="{not json"),
            "MalformedPolicyDocument", "This policy contains invalid Json")
    name = uname("trust-json")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    refused(lambda: iam.update_assume_role_policy(RoleName=name, PolicyDocument="{not json"),
            "MalformedPolicyDocument", "This policy contains invalid Json")


def test_a_trust_policy_may_only_name_sts_actions(srv):
    iam = srv.client("iam")
    name = uname("trust-action")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    doc = json.loads(json.dumps(EC2_TRUST))
    doc["Statement"][0]["Action"] = ["sts:AssumeRole", "s3:GetObject"]
    refused(lambda: iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(doc)),
            "MalformedPolicyDocument", "AssumeRole policy may only specify STS AssumeRole actions.")
    refused(lambda: iam.create_role(RoleName=uname("trust-action"), AssumeRolePolicyDocument=json.dumps(doc)),
            "MalformedPolicyDocument", "AssumeRole policy may only specify STS AssumeRole actions.")
    # The role's trust is unchanged by the refused update.
    got = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    assert got["Statement"][0]["Action"] == "sts:AssumeRole"


def test_a_trust_policy_may_not_name_a_resource(srv):
    iam = srv.client("iam")
    name = uname("trust-resource")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    for member in ("Resource", "NotResource"):
        doc = json.loads(json.dumps(EC2_TRUST))
        doc["Statement"][0][member] = "*"
        refused(lambda: iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(doc)),
                "MalformedPolicyDocument", "Has prohibited field Resource")


def test_role_members_as_each_operation_shows_them(srv):
    """CreateRole shows no MaxSessionDuration; GetRole shows it and an empty RoleLastUsed;
    ListRoles shows no tags (AWS's recorded answers)."""
    iam = srv.client("iam")
    name = uname("shape")
    path = f"/{uname('p')}/"
    created = iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(EC2_TRUST),
                              Tags=[{"Key": "test", "Value": "value"}])["Role"]
    assert set(created) == {"Arn", "AssumeRolePolicyDocument", "CreateDate", "Path", "RoleId",
                            "RoleName", "Tags"}
    got = iam.get_role(RoleName=name)["Role"]
    assert set(got) == {"Arn", "AssumeRolePolicyDocument", "CreateDate", "MaxSessionDuration",
                        "Path", "RoleId", "RoleLastUsed", "RoleName", "Tags"}
    assert got["RoleLastUsed"] == {} and got["MaxSessionDuration"] == 3600
    listed = iam.list_roles(PathPrefix=path)["Roles"]
    assert [set(r) for r in listed] == [{"Arn", "AssumeRolePolicyDocument", "CreateDate",
                                         "MaxSessionDuration", "Path", "RoleId", "RoleName"}]


# --- IAM managed policies -----------------------------------------------------------------

def policy_doc(action: str) -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": [action], "Resource": "*"}]})


def test_get_policy_shows_an_empty_tag_list_and_create_none(srv):
    iam = srv.client("iam")
    created = iam.create_policy(PolicyName=uname("pol"), PolicyDocument=policy_doc("s3:ListBucket"))["Policy"]
    assert "Tags" not in created
    got = iam.get_policy(PolicyArn=created["Arn"])["Policy"]
    assert got["Tags"] == []


def test_policy_versions_are_listed_newest_first(srv):
    iam = srv.client("iam")
    arn = iam.create_policy(PolicyName=uname("pol"), PolicyDocument=policy_doc("s3:ListBucket"))["Policy"]["Arn"]
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=policy_doc("s3:GetObject"), SetAsDefault=True)
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=policy_doc("ec2:DescribeInstances"))
    listed = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    assert [(v["VersionId"], v["IsDefaultVersion"]) for v in listed] == [
        ("v3", False), ("v2", True), ("v1", False)]


def test_a_version_of_a_missing_policy_is_a_missing_version(srv):
    iam = srv.client("iam")
    arn = f"arn:aws:iam::{ACCOUNT}:policy/{uname('no-such-policy')}"
    message = f"Policy {arn} version v1 does not exist or is not attachable."
    refused(lambda: iam.get_policy_version(PolicyArn=arn, VersionId="v1"), "NoSuchEntity", message, 404)
    refused(lambda: iam.set_default_policy_version(PolicyArn=arn, VersionId="v1"), "NoSuchEntity", message, 404)


def test_a_malformed_version_id_is_a_validation_error(srv):
    iam = srv.client("iam")
    arn = iam.create_policy(PolicyName=uname("pol"), PolicyDocument=policy_doc("s3:ListBucket"))["Policy"]["Arn"]
    refused(lambda: iam.set_default_policy_version(PolicyArn=arn, VersionId="wrong_version_id"),
            "ValidationError",
            "1 validation error detected: Value at 'versionId' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: v[1-9][0-9]*(\\.[A-Za-z0-9-]*)?")
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v1"


# --- IAM OpenID Connect providers ---------------------------------------------------------

THUMB = "b" * 40


def test_an_oidc_url_that_is_not_https_is_an_invalid_provider_url(srv):
    refused(lambda: srv.client("iam").create_open_id_connect_provider(
        Url="example.org", ThumbprintList=[THUMB]),
        "ValidationError", "Invalid Open ID Connect Provider URL")


def test_more_than_five_thumbprints_is_invalid_input(srv):
    refused(lambda: srv.client("iam").create_open_id_connect_provider(
        Url=f"https://{uname('oidc')}.example.com", ThumbprintList=[THUMB] * 6),
        "InvalidInput", "Thumbprint list must contain fewer than 5 entries.")


def test_more_than_a_hundred_client_ids_is_a_quota(srv):
    refused(lambda: srv.client("iam").create_open_id_connect_provider(
        Url=f"https://{uname('oidc')}.example.com", ThumbprintList=[THUMB],
        ClientIDList=[f"client-{i}" for i in range(101)]),
        "LimitExceeded", "Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: 100", 409)


def test_oidc_members_out_of_bounds_are_reported_together(srv):
    refused(lambda: unchecked_iam(srv).create_open_id_connect_provider(
        Url="https://" + "a" * 300, ThumbprintList=["c" * 41], ClientIDList=["x" * 256]),
        "ValidationError",
        "3 validation errors detected: Value at 'clientIDList' failed to satisfy constraint: "
        "Member must satisfy constraint: [Member must have length less than or equal to 255, "
        "Member must have length greater than or equal to 1]; Value at 'thumbprintList' failed "
        "to satisfy constraint: Member must satisfy constraint: [Member must have length less "
        "than or equal to 40, Member must have length greater than or equal to 40]; Value at "
        "'url' failed to satisfy constraint: Member must have length less than or equal to 255")


def test_get_oidc_provider_shows_an_empty_tag_list(srv):
    iam = srv.client("iam")
    arn = iam.create_open_id_connect_provider(
        Url=f"https://{uname('oidc')}.example.com", ThumbprintList=[THUMB],
        ClientIDList=["client-id-1"])["OpenIDConnectProviderArn"]
    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert got["Tags"] == [] and got["ClientIDList"] == ["client-id-1"]


def test_deleting_an_oidc_provider_is_idempotent(srv):
    iam = srv.client("iam")
    arn = iam.create_open_id_connect_provider(
        Url=f"https://{uname('oidc')}.example.com", ThumbprintList=[THUMB])["OpenIDConnectProviderArn"]
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    refused(lambda: iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn),
            "NoSuchEntity", f"OpenIDConnect Provider not found for arn {arn}", 404)


# --- IAM groups ---------------------------------------------------------------------------

def test_removing_a_user_who_is_not_a_member_succeeds(srv):
    iam = srv.client("iam")
    user, group = uname("u"), uname("g")
    iam.create_user(UserName=user)
    iam.create_group(GroupName=group)
    iam.remove_user_from_group(GroupName=group, UserName=user)
    iam.add_user_to_group(GroupName=group, UserName=user)
    iam.remove_user_from_group(GroupName=group, UserName=user)
    iam.remove_user_from_group(GroupName=group, UserName=user)
    assert iam.get_group(GroupName=group)["Users"] == []
    assert iam.list_groups_for_user(UserName=user)["Groups"] == []


def test_membership_of_an_unknown_user_in_an_unknown_group_names_the_user(srv):
    iam = srv.client("iam")
    refused(lambda: iam.remove_user_from_group(GroupName=uname("no-group"), UserName="any-user"),
            "NoSuchEntity", "The user with name any-user cannot be found.", 404)


def test_a_managed_policy_keeps_the_tags_it_is_created_with(srv):
    iam = srv.client("iam")
    tags = [{"Key": "somekey", "Value": "somevalue"}, {"Key": "someotherkey", "Value": "someothervalue"}]
    created = iam.create_policy(PolicyName=uname("pol"), PolicyDocument=policy_doc("s3:ListBucket"),
                                Tags=tags)["Policy"]
    assert created["Tags"] == tags
    assert iam.get_policy(PolicyArn=created["Arn"])["Policy"]["Tags"] == tags
    listed = [p for p in iam.list_policies(Scope="Local")["Policies"] if p["Arn"] == created["Arn"]]
    assert listed and "Tags" not in listed[0]


def test_a_managed_policy_with_too_many_tags_is_refused(srv):
    iam = srv.client("iam")
    name = uname("pol")
    with pytest.raises(botocore.exceptions.ClientError):
        iam.create_policy(PolicyName=name, PolicyDocument=policy_doc("s3:ListBucket"),
                          Tags=[{"Key": str(i), "Value": str(i)} for i in range(51)])
    arns = [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]]
    assert not any(a.endswith(f"/{name}") for a in arns)


@pytest.mark.parametrize("entity", ["user", "role", "group"])
def test_attaching_a_policy_arn_that_is_not_an_arn_is_invalid_input(srv, entity):
    # Unchecked: botocore itself refuses a PolicyArn shorter than 20 characters.
    iam = unchecked_iam(srv)
    name = uname(entity)
    if entity == "user":
        iam.create_user(UserName=name)
        attach = lambda arn: iam.attach_user_policy(UserName=name, PolicyArn=arn)
    elif entity == "role":
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
        attach = lambda arn: iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    else:
        iam.create_group(GroupName=name)
        attach = lambda arn: iam.attach_group_policy(GroupName=name, PolicyArn=arn)
    policy = iam.create_policy(PolicyName=uname("pol"), PolicyDocument=policy_doc("s3:ListBucket"))["Policy"]
    refused(lambda: attach("longpolicynamebutnoarn"), "InvalidInput",
            "ARN longpolicynamebutnoarn is not valid.")
    refused(lambda: attach(policy["PolicyName"]), "InvalidInput",
            f"ARN {policy['PolicyName']} is not valid.")
    refused(lambda: attach(policy["Arn"] + "123"), "NoSuchEntity",
            f"Policy {policy['Arn']}123 does not exist or is not attachable.", 404)
    attach(policy["Arn"])


def test_reading_a_policy_arn_that_is_not_an_arn_is_invalid_input(srv):
    refused(lambda: unchecked_iam(srv).get_policy(PolicyArn="not-an-arn-at-all"), "InvalidInput",
            "ARN not-an-arn-at-all is not valid.")


def test_a_policy_description_is_shown_only_by_get_policy(srv):
    iam = srv.client("iam")
    path = f"/{uname('p')}/"
    created = iam.create_policy(PolicyName=uname("pol"), Path=path, Description="test description",
                                PolicyDocument=policy_doc("s3:ListBucket"))["Policy"]
    assert "Description" not in created
    assert iam.get_policy(PolicyArn=created["Arn"])["Policy"]["Description"] == "test description"
    listed = iam.list_policies(PathPrefix=path)["Policies"]
    assert len(listed) == 1 and "Description" not in listed[0]


# --- What Coffer does not provide is refused, not ignored ---------------------------------

def test_a_permissions_boundary_is_refused_rather_than_ignored(srv):
    """Coffer has no permissions boundaries: dropping one silently would leave the user or
    role with more access than its creator meant, so the request is refused and nothing is
    made."""
    iam = srv.client("iam")
    boundary = iam.create_policy(PolicyName=uname("boundary"), PolicyDocument=policy_doc("s3:ListBucket"))["Policy"]["Arn"]
    role, user = uname("bounded-role"), uname("bounded-user")
    message = "PermissionsBoundary is not supported by Coffer."
    refused(lambda: iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(EC2_TRUST),
                                    PermissionsBoundary=boundary), "ValidationError", message)
    refused(lambda: iam.create_user(UserName=user, PermissionsBoundary=boundary), "ValidationError", message)
    refused(lambda: iam.get_role(RoleName=role), "NoSuchEntity",
            f"The role with name {role} cannot be found.", 404)
    refused(lambda: iam.get_user(UserName=user), "NoSuchEntity",
            f"The user with name {user} cannot be found.", 404)


def test_a_description_over_a_thousand_characters_is_refused(srv):
    """AWS's model bound on role and policy descriptions. The value is quoted cut to 512
    characters, as every error of Coffer's quotes what the client sent."""
    iam = unchecked_iam(srv)
    text = "d" * 1001
    tail = "' at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000"
    role = uname("long-desc")
    for call in (
        lambda: iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(EC2_TRUST), Description=text),
        lambda: iam.create_policy(PolicyName=uname("long-desc"), PolicyDocument=policy_doc("s3:ListBucket"),
                                  Description=text),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        err = e.value.response["Error"]
        assert err["Code"] == "ValidationError"
        assert err["Message"].startswith("1 validation error detected: Value 'ddd") and err["Message"].endswith(tail)
    refused(lambda: iam.get_role(RoleName=role), "NoSuchEntity",
            f"The role with name {role} cannot be found.", 404)
