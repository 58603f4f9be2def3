"""IAM policy documents refused in IAM's own words, and the IAM/STS operations added in
the thirteenth session (UpdateUser, UpdateGroup, UpdateRole, UpdateRoleDescription,
GetAccessKeyLastUsed, STS GetAccessKeyInfo), through boto3 against an enforcing server.

The refusal messages are AWS's, as moto's IAM tests record them (its test_iam_policies.py,
checked against AWS); LocalStack's recorded trust-policy answers are kept."""

from __future__ import annotations

import json
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from iam_api_support import serve

V = "2012-10-17"
BUCKET = "arn:aws:s3:::example_bucket"


@pytest.fixture(scope="module", params=["sqlite"])
def srv(request, tmp_path_factory):
    return serve(request, tmp_path_factory, "iam13")


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def unchecked(srv, service: str, key=None, token=None):
    """A client that sends what botocore would refuse to, as a raw caller can."""
    key = key or srv.admin_key
    return boto3.client(service, endpoint_url=srv.url, region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1], aws_session_token=token,
                        config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))


def refused(call, code: str, message: str | None = None, status: int | None = None) -> dict:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert err["Code"] == code, err
    if message is not None:
        assert err["Message"] == message
    if status is not None:
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return err


def stmt(**members) -> dict:
    return {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": BUCKET, **members}


def doc(*statements, version=V, **top) -> dict:
    out = {"Statement": list(statements) if len(statements) != 1 else statements[0], **top}
    if version is not None:
        out["Version"] = version
    return out


SYNTAX = "Syntax errors in policy."
LEGACY = "The policy failed legacy parsing"
VERSION = "Policy document must be version 2012-10-17 or greater."
NO_VENDOR = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."

# (document, IAM's message): one or more of each of IAM's checks, in the order it checks.
REFUSALS = [
    ("This is not a json document", SYNTAX),
    (doc(stmt(), version=None), VERSION),
    (doc(stmt(), version="2008-10-17"), VERSION),
    (doc(stmt(), version="2013-10-17"), SYNTAX),
    ({"Version": V}, SYNTAX),
    ({"Version": V, "Statement": []}, SYNTAX),
    ({"Version": V, "Statement": ["afd"]}, SYNTAX),
    (doc(stmt(), **{"Extra field": "value"}), SYNTAX),
    (doc(stmt(**{"Extra field": "value"})), SYNTAX),
    (doc(stmt(), Id=["cd3a"]), SYNTAX),
    (doc(stmt(Effect="invalid")), SYNTAX),
    (doc({"Action": "s3:ListBucket", "Resource": BUCKET}), SYNTAX),
    (doc(stmt(Resource={"a": BUCKET})), SYNTAX),
    (doc(stmt(NotResource="*")), SYNTAX),
    (doc(stmt(NotAction="iam:dsf")), SYNTAX),
    (doc(stmt(Condition=[])), SYNTAX),
    (doc(stmt(Condition={"DateGreaterThan": []})), SYNTAX),
    (doc(stmt(Condition={"x": {"a": "1"}})), SYNTAX),
    (doc(stmt(Condition={"ForAnyValue::StringEqualsIfExists": {"a": "asf"}})), SYNTAX),
    (doc(stmt(Sid=[])), SYNTAX),
    (doc({"Effect": "denY", "Action": "s3:ListBucket", "Resource": BUCKET}, version=None), VERSION),
    (doc(stmt(Effect="denY")), LEGACY),
    (doc(stmt(Condition={"DateGreaterThan": {"a": "sdfdsf"}})), LEGACY),
    (doc(stmt(Condition={"DateLessThanEquals": {"a": "2016-12-13t2:00:00.593194+1"}})), LEGACY),
    (doc(stmt(Condition={"DateLessThan": {"a": "9223372036854775808"}})), LEGACY),
    (doc(stmt(Resource="arn:aws:s3::example_bucket")), LEGACY),
    (doc(stmt(Resource="arn:aws::fdsasf")), LEGACY),
    (doc(stmt(Sid="sdf"), {"Sid": "sdf", "Effect": "Allow"}),
     "Statement IDs (SID) in a single policy must be unique."),
    (doc({"Effect": "Allow", "Resource": BUCKET}), "Policy statement must contain actions."),
    (doc({"Effect": "Deny"}, stmt()), "Policy statement must contain actions."),
    (doc(stmt(Action=[])), "Policy statement must contain actions."),
    (doc(stmt(Resource="invalid resource")), 'Resource invalid resource must be in ARN format or "*".'),
    (doc(stmt(Resource="")), 'Resource  must be in ARN format or "*".'),
    (doc(stmt(Resource="a:bsdfdsafsad")), 'Partition "bsdfdsafsad" is not valid for resource "arn:bsdfdsafsad:*:*:*:*".'),
    (doc(stmt(Resource="aws:s3:::example_bucket")), 'Partition "s3" is not valid for resource "arn:s3:::example_bucket:*".'),
    (doc(stmt(Resource=["arn:error:s3:::example_bucket", "arn:error:s3::example_bucket"])),
     'Partition "error" is not valid for resource "arn:error:s3:::example_bucket".'),
    (doc(stmt(Resource="arn:aws")), "Resource vendor must be fully qualified and cannot contain regexes."),
    (doc(stmt(Resource="arn:aws:iam:::example_bucket")),
     'IAM resource path must either be "*" or start with user/, federated-user/, role/, group/, '
     "instance-profile/, mfa/, server-certificate/, policy/, sms-mfa/, saml-provider/, oidc-provider/, "
     "report/, access-report/."),
    (doc(stmt(Resource="arn:aws:iam:us-east-1::example_bucket")),
     "IAM resource arn:aws:iam:us-east-1::example_bucket cannot contain region information."),
    (doc(stmt(Resource="arn:aws:s3:us-east-1::example_bucket")),
     "Resource arn:aws:s3:us-east-1::example_bucket can not contain region information."),
    (doc(stmt(Action="invalid")), NO_VENDOR),
    (doc({"Effect": "Allow", "NotAction": "", "Resource": BUCKET}), NO_VENDOR),
    (doc(stmt(Action="a a:ListBucket")), "Vendor a a is not valid"),
    (doc(stmt(Action="s3:List:Bucket")), "Actions/Condition can contain only one colon."),
    (doc({"Effect": "Allow", "Action": "s3:ListBucket"}), "Policy statement must contain resources."),
    (doc(stmt(Resource=[])), "Policy statement must contain resources."),
]


@pytest.mark.parametrize("document,message", REFUSALS, ids=[f"{i}" for i in range(len(REFUSALS))])
def test_create_policy_refuses_a_document_in_iams_words(srv, document, message):
    text = document if isinstance(document, str) else json.dumps(document)
    iam = srv.client("iam")
    name = uname("p")
    refused(lambda: iam.create_policy(PolicyName=name, PolicyDocument=text),
            "MalformedPolicyDocument", message, 400)
    # Nothing was created.
    arn = f"arn:aws:iam::{srv.client('sts').get_caller_identity()['Account']}:policy/{name}"
    refused(lambda: iam.get_policy(PolicyArn=arn), "NoSuchEntity")


# Documents IAM accepts (moto's valid_policy_documents, checked against AWS) that Coffer's
# own grammar refused: odd but harmless action and resource patterns, condition keys
# without a prefix, operators IAM does not know with no keys, empty value lists, nulls.
ACCEPTED = [
    doc(stmt(Action="iam: asdf safdsf af ")),
    doc(stmt(Action="service-prefix:action-name", Resource="*")),
    doc(stmt(Action="s3.s:ListBucket")),
    doc(stmt(Resource="arn:aws:fdsasf")),
    doc(stmt(Condition={"a": {}})),
    doc(stmt(Condition={"x": {}, "y": {}})),
    doc(stmt(Condition={"DateGreaterThan": {}})),
    doc(stmt(Condition={"DateGreaterThan": {"a": []}})),
    doc(stmt(Condition={"DateGreaterThan": {"a": "01T"}})),
    doc(stmt(Condition={"StringEqualsIfExists": {"a": "asf"}})),
    doc(stmt(Condition={"DateLessThanEquals": {"a": "2016-12-13t2:00:00.593194+23"}})),
    doc(stmt(Condition={"DateLessThan": {"a": "-292275054"}})),
    doc(stmt(Resource=["arn:aws:s3:::example_bucket", None])),
    doc(stmt(Resource="arn:aws:s3:us-west-2:123456789012:accesspoint/my-access-point")),
    doc(stmt(Sid=""), stmt(Sid="")),
]


@pytest.mark.parametrize("document", ACCEPTED, ids=[f"{i}" for i in range(len(ACCEPTED))])
def test_create_policy_accepts_what_iam_accepts(srv, document):
    srv.client("iam").create_policy(PolicyName=uname("p"), PolicyDocument=json.dumps(document))


def test_inline_policies_are_refused_in_iams_words_and_need_no_version(srv):
    iam = srv.client("iam")
    user = uname("inline")
    iam.create_user(UserName=user)
    refused(lambda: iam.put_user_policy(UserName=user, PolicyName="p",
                                        PolicyDocument=json.dumps(doc(stmt(Action="invalid")))),
            "MalformedPolicyDocument", NO_VENDOR, 400)
    refused(lambda: iam.put_user_policy(UserName=user, PolicyName="p",
                                        PolicyDocument=json.dumps(doc(stmt(Resource="arn:aws:s3::x")))),
            "MalformedPolicyDocument", LEGACY, 400)
    assert iam.list_user_policies(UserName=user)["PolicyNames"] == []
    # An inline policy in the 2008-10-17 language (no Version) is still accepted.
    iam.put_user_policy(UserName=user, PolicyName="old", PolicyDocument=json.dumps(doc(stmt(), version=None)))
    assert iam.list_user_policies(UserName=user)["PolicyNames"] == ["old"]


def test_a_new_policy_version_must_be_2012_10_17(srv):
    iam = srv.client("iam")
    arn = iam.create_policy(PolicyName=uname("p"), PolicyDocument=json.dumps(doc(stmt())))["Policy"]["Arn"]
    refused(lambda: iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(doc(stmt(), version="2008-10-17"))),
            "MalformedPolicyDocument", VERSION, 400)
    assert len(iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 1


def trust(*statements, version=V) -> str:
    return json.dumps(doc(*statements, version=version))


def test_trust_policies_are_refused_in_iams_words(srv):
    iam = srv.client("iam")
    account = srv.client("sts").get_caller_identity()["Account"]
    allow = {"Effect": "Allow", "Principal": {"AWS": account}, "Action": "sts:AssumeRole"}
    role = uname("trust")
    refused(lambda: iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust({**allow, "Sid": "a"}, {**allow, "Sid": "a"})),
            "MalformedPolicyDocument", "Statement IDs (SID) in a single policy must be unique.", 400)
    refused(lambda: iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust({**allow, "Effect": "allow"})),
            "MalformedPolicyDocument", LEGACY, 400)
    # LocalStack's recorded answers of AWS stay as they were.
    refused(lambda: iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust({**allow, "Resource": "*"})),
            "MalformedPolicyDocument", "Has prohibited field Resource", 400)
    # A trust policy in the 2008-10-17 language is accepted, as AWS's older examples are.
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust(allow, version="2008-10-17"))
    refused(lambda: iam.update_assume_role_policy(RoleName=role, PolicyDocument=trust({**allow, "Sid": "a"}, {**allow, "Sid": "a"})),
            "MalformedPolicyDocument", "Statement IDs (SID) in a single policy must be unique.", 400)


def test_secrets_manager_keeps_its_own_words_for_a_bad_resource_policy(srv):
    sm = srv.client("secretsmanager")
    name = uname("rp")
    sm.create_secret(Name=name, SecretString="v")
    bad = json.dumps(doc({"Effect": "Allow", "Principal": "*", "Action": "invalid", "Resource": "*"}))
    err = refused(lambda: sm.put_resource_policy(SecretId=name, ResourcePolicy=bad), "MalformedPolicyDocumentException")
    assert err["Message"] != NO_VENDOR and err["Message"].startswith("This resource policy contains")


def test_a_long_quoted_value_keeps_the_words_after_it(srv):
    iam = unchecked(srv, "iam")
    long_resource = "x" * 3000
    err = refused(lambda: iam.create_policy(PolicyName=uname("p"), PolicyDocument=json.dumps(doc(stmt(Resource=long_resource)))),
                  "MalformedPolicyDocument")
    assert err["Message"].endswith(' must be in ARN format or "*".'), err["Message"]
    assert len(err["Message"]) <= 512
    long_name = "a" * 3000
    err = refused(lambda: iam.create_user(UserName=long_name), "ValidationError")
    assert err["Message"].endswith("Member must have length less than or equal to 64"), err["Message"]
    assert err["Message"].count("a" * 513) == 0
    err = refused(lambda: iam.get_user(UserName=long_name), "NoSuchEntity")
    assert err["Message"].endswith(" cannot be found."), err["Message"]
    assert err["Message"].count("a" * 513) == 0


# --- UpdateUser, UpdateGroup, UpdateRole, UpdateRoleDescription ----------------------------

def account_of(srv) -> str:
    return srv.client("sts").get_caller_identity()["Account"]


def user_with_key(srv, name: str) -> tuple[str, str]:
    iam = srv.client("iam")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_a_renamed_user_keeps_its_keys_groups_policies_sessions_and_resource_grants(srv):
    iam, sm = srv.client("iam"), srv.client("secretsmanager")
    account = account_of(srv)
    old, new, group = uname("bob"), uname("robert"), uname("team")
    key = user_with_key(srv, old)
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=old)
    iam.put_group_policy(GroupName=group, PolicyName="list", PolicyDocument=json.dumps(
        doc({"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"})))
    iam.put_user_policy(UserName=old, PolicyName="own", PolicyDocument=json.dumps(doc(stmt())))
    session = srv.client("sts", key).get_session_token()["Credentials"]
    secret = uname("shared")
    sm.create_secret(Name=secret, SecretString="s3cr3t")
    grant = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:user/{old}"},
                 "Action": "secretsmanager:GetSecretValue", "Resource": "*"})
    sm.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps(grant))

    iam.update_user(UserName=old, NewUserName=new, NewPath="/moved/")

    refused(lambda: iam.get_user(UserName=old), "NoSuchEntity", f"The user with name {old} cannot be found.", 404)
    user = iam.get_user(UserName=new)["User"]
    assert (user["Path"], user["Arn"]) == ("/moved/", f"arn:aws:iam::{account}:user/moved/{new}")
    # The access key authenticates as the renamed user, with the group's policy.
    as_user = srv.client("sts", key).get_caller_identity()
    assert as_user["Arn"] == f"arn:aws:iam::{account}:user/moved/{new}"
    srv.client("secretsmanager", key).list_secrets()
    assert [k["UserName"] for k in iam.list_access_keys(UserName=new)["AccessKeyMetadata"]] == [new]
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName=new)["Groups"]] == [group]
    assert [u["UserName"] for u in iam.get_group(GroupName=group)["Users"]] == [new]
    assert iam.list_user_policies(UserName=new)["PolicyNames"] == ["own"]
    # Its GetSessionToken session goes on, as the renamed user.
    as_session = srv.session_client("sts", session).get_caller_identity()
    assert as_session["Arn"] == f"arn:aws:iam::{account}:user/moved/{new}"
    # The resource policy named the user, bound to its unique id: it still grants, and
    # shows the new ARN, as AWS updates resource policies naming a renamed user.
    assert srv.client("secretsmanager", key).get_secret_value(SecretId=secret)["SecretString"] == "s3cr3t"
    shown = sm.get_resource_policy(SecretId=secret)["ResourcePolicy"]
    assert f"user/moved/{new}" in shown and f"user/{old}\"" not in shown
    # The old ARN names nobody now.
    refused(lambda: sm.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps(grant)),
            "MalformedPolicyDocumentException")
    events = srv.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "UpdateUser"}])["Events"]
    assert events, "UpdateUser was not audited"


def test_a_user_is_not_renamed_onto_another_nor_when_missing(srv):
    iam = srv.client("iam")
    first, second = uname("u"), uname("u")
    iam.create_user(UserName=first)
    iam.create_user(UserName=second)
    refused(lambda: iam.update_user(UserName=first, NewUserName=second.upper()),
            "EntityAlreadyExists", f"User with name {second.upper()} already exists.", 409)
    iam.get_user(UserName=first)
    refused(lambda: iam.update_user(UserName=uname("none"), NewUserName=uname("x")), "NoSuchEntity", status=404)
    refused(lambda: unchecked(srv, "iam").update_user(UserName=first, NewUserName="bad name"), "ValidationError")
    # A change of case only is the same user.
    iam.update_user(UserName=first, NewUserName=first.upper())
    assert iam.get_user(UserName=first.upper())["User"]["UserName"] == first.upper()


def test_renaming_needs_the_permission_on_the_new_name_too(srv):
    iam = srv.client("iam")
    account = account_of(srv)
    ops, target = uname("ops"), uname("bob")
    key = user_with_key(srv, ops)
    iam.create_user(UserName=target)
    only_bob = doc({"Effect": "Allow", "Action": "iam:UpdateUser", "Resource": f"arn:aws:iam::{account}:user/{target}"})
    iam.put_user_policy(UserName=ops, PolicyName="p", PolicyDocument=json.dumps(only_bob))
    as_ops = srv.client("iam", key)
    refused(lambda: as_ops.update_user(UserName=target, NewUserName=target + "-2"), "AccessDenied", status=403)
    iam.get_user(UserName=target)
    both = doc({"Effect": "Allow", "Action": "iam:UpdateUser", "Resource": f"arn:aws:iam::{account}:user/{target}*"})
    iam.put_user_policy(UserName=ops, PolicyName="p", PolicyDocument=json.dumps(both))
    as_ops.update_user(UserName=target, NewUserName=target + "-2")
    iam.get_user(UserName=target + "-2")


def test_a_renamed_group_keeps_its_members_and_policies(srv):
    iam = srv.client("iam")
    account = account_of(srv)
    group, new, member = uname("g"), uname("g2"), uname("m")
    key = user_with_key(srv, member)
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=member)
    iam.put_group_policy(GroupName=group, PolicyName="list", PolicyDocument=json.dumps(
        doc({"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"})))
    iam.update_group(GroupName=group, NewGroupName=new, NewPath="/teams/")
    refused(lambda: iam.get_group(GroupName=group), "NoSuchEntity", status=404)
    got = iam.get_group(GroupName=new)
    assert got["Group"]["Arn"] == f"arn:aws:iam::{account}:group/teams/{new}"
    assert [u["UserName"] for u in got["Users"]] == [member]
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName=member)["Groups"]] == [new]
    assert iam.list_group_policies(GroupName=new)["PolicyNames"] == ["list"]
    srv.client("secretsmanager", key).list_secrets()
    other = uname("g")
    iam.create_group(GroupName=other)
    refused(lambda: iam.update_group(GroupName=other, NewGroupName=new), "EntityAlreadyExists", status=409)


def test_update_role_and_update_role_description(srv):
    iam = srv.client("iam")
    account = account_of(srv)
    role = uname("r")
    trust_doc = trust({"Effect": "Allow", "Principal": {"AWS": account}, "Action": "sts:AssumeRole"})
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust_doc)
    iam.update_role(RoleName=role, Description="first", MaxSessionDuration=7200)
    got = iam.get_role(RoleName=role)["Role"]
    assert (got["Description"], got["MaxSessionDuration"]) == ("first", 7200)
    iam.update_role(RoleName=role, MaxSessionDuration=3600)
    got = iam.get_role(RoleName=role)["Role"]
    assert (got["Description"], got["MaxSessionDuration"]) == ("first", 3600)
    shown = iam.update_role_description(RoleName=role, Description="second")["Role"]
    assert (shown["RoleName"], shown["Description"]) == (role, "second")
    assert iam.get_role(RoleName=role)["Role"]["Description"] == "second"
    refused(lambda: unchecked(srv, "iam").update_role(RoleName=role, MaxSessionDuration=100), "ValidationError",
            "1 validation error detected: Value '100' at 'maxSessionDuration' failed to satisfy "
            "constraint: Member must have value greater than or equal to 3600", 400)
    refused(lambda: iam.update_role(RoleName=uname("none"), Description="x"), "NoSuchEntity", status=404)
    assert iam.get_role(RoleName=role)["Role"]["MaxSessionDuration"] == 3600


# --- GetAccessKeyLastUsed, STS GetAccessKeyInfo ----------------------------------------------

def test_get_access_key_last_used_names_the_keys_user(srv):
    iam = srv.client("iam")
    name = uname("k")
    key = user_with_key(srv, name)
    got = iam.get_access_key_last_used(AccessKeyId=key[0])
    assert got["UserName"] == name
    assert got["AccessKeyLastUsed"] == {"ServiceName": "N/A", "Region": "N/A"}
    missing = "AKIA" + "Z" * 16
    refused(lambda: iam.get_access_key_last_used(AccessKeyId=missing), "NoSuchEntity",
            f"The Access Key with id {missing} cannot be found.", 404)


def test_get_access_key_last_used_tells_when_where_and_for_what(srv):
    import datetime
    import time
    iam = srv.client("iam")
    name = uname("k")
    key = user_with_key(srv, name)
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    srv.client("sts", key).get_caller_identity()
    # Written apart from the request that used the key: it shows within moments.
    for _ in range(50):
        used = iam.get_access_key_last_used(AccessKeyId=key[0])["AccessKeyLastUsed"]
        if "LastUsedDate" in used:
            break
        time.sleep(0.1)
    assert (used["ServiceName"], used["Region"]) == ("sts", "us-east-1"), used
    assert used["LastUsedDate"] >= before.replace(microsecond=0)
    # Deleting the key leaves no use behind for an id that is gone.
    iam.delete_access_key(UserName=name, AccessKeyId=key[0])
    refused(lambda: iam.get_access_key_last_used(AccessKeyId=key[0]), "NoSuchEntity", status=404)


def test_get_access_key_info_names_the_keys_account(srv):
    account = account_of(srv)
    key = user_with_key(srv, uname("k"))
    sts = srv.client("sts")
    assert sts.get_access_key_info(AccessKeyId=key[0])["Account"] == account
    session = srv.client("sts", key).get_session_token()["Credentials"]
    assert sts.get_access_key_info(AccessKeyId=session["AccessKeyId"])["Account"] == account
    refused(lambda: sts.get_access_key_info(AccessKeyId="AKIA" + "Q" * 16), "InvalidParameterValue", status=400)
    refused(lambda: unchecked(srv, "sts").get_access_key_info(AccessKeyId="short"), "ValidationError",
            "1 validation error detected: Value 'short' at 'accessKeyId' failed to satisfy constraint: "
            "Member must have length greater than or equal to 16", 400)
    # A caller without the permission is refused.
    refused(lambda: srv.client("sts", key).get_access_key_info(AccessKeyId=key[0]), "AccessDenied", status=403)


def test_get_access_key_info_with_dev_names_the_account_dev_gives_the_key(url):
    """`--dev` takes a 12-digit key id as the account and any other as the default one."""
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                       aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}))
    assert sts.get_access_key_info(AccessKeyId="AKIAIOSFODNN7EXAMPLE")["Account"] == "000000000000"
    assert sts.get_access_key_info(AccessKeyId="1234567890123456")["Account"] == "000000000000"
