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
