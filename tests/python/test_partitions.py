"""ARN partitions (partition14): every ARN Coffer writes is in the partition of the region it
is written for (`arn:aws-cn:` in `cn-*`, `arn:aws-us-gov:` in `us-gov-*`, botocore's
partitions.json), IAM's and STS's (global) in the partition of the region the request was
signed for; an ARN of another partition names nothing: a secret or key so named is not
found, a policy so naming a resource or principal does not match."""

from __future__ import annotations

import json
import re
import time
import uuid

import boto3
import botocore.exceptions
import pytest
import requests
from botocore.config import Config

from conftest import start_dev_server
from iam_api_support import Server

ACCOUNT = "000000000000"
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60)
PARTITIONS = [("cn-north-1", "aws-cn", "cn-northwest-1"), ("us-gov-west-1", "aws-us-gov", "us-gov-east-1")]
BUILTIN_ROTATOR = "coffer-builtin-random-password"


@pytest.fixture(scope="module", params=PARTITIONS, ids=[p for _, p, _ in PARTITIONS])
def where(request):
    return request.param


@pytest.fixture(scope="module")
def dev():
    srv = start_dev_server()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("partitions"))
    yield srv
    srv.server.stop()


def client(url: str, service: str, region: str, key=("AKIAIOSFODNN7EXAMPLE", "x" * 40), token=None):
    return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id=key[0],
                        aws_secret_access_key=key[1], aws_session_token=token, config=NO_RETRY)


def uname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_code(call, **kwargs) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kwargs)
    return e.value.response["Error"]["Code"]


def in_aws(arn: str, partition: str) -> str:
    """The same ARN in the `aws` partition: another partition's, which must name nothing."""
    assert arn.startswith(f"arn:{partition}:"), arn
    return "arn:aws:" + arn[len(f"arn:{partition}:"):]


# --- --dev: Secrets Manager, KMS, STS, CloudTrail -------------------------------------------


def test_secret_arns_are_in_the_regions_partition(dev, where):
    region, partition, _ = where
    sm = client(dev.url, "secretsmanager", region)
    name = uname("p")
    arn = sm.create_secret(Name=name, SecretString="v1")["ARN"]
    assert arn.startswith(f"arn:{partition}:secretsmanager:{region}:{ACCOUNT}:secret:{name}-"), arn
    assert sm.describe_secret(SecretId=name)["ARN"] == arn
    assert sm.get_secret_value(SecretId=arn)["ARN"] == arn
    assert sm.put_secret_value(SecretId=arn, SecretString="v2")["ARN"] == arn
    listed = sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
    assert [s["ARN"] for s in listed] == [arn]
    batch = sm.batch_get_secret_value(SecretIdList=[arn])["SecretValues"]
    assert [s["ARN"] for s in batch] == [arn]
    # The partial ARN (without the suffix) resolves in its own partition.
    assert sm.describe_secret(SecretId=arn[:-7])["ARN"] == arn


def test_a_secret_named_by_another_partitions_arn_is_not_found(dev, where):
    region, partition, _ = where
    sm = client(dev.url, "secretsmanager", region)
    arn = sm.create_secret(Name=uname("p"), SecretString="v")["ARN"]
    for wrong in (in_aws(arn, partition), in_aws(arn, partition)[:-7]):
        assert error_code(sm.get_secret_value, SecretId=wrong) == "ResourceNotFoundException"
        assert error_code(sm.describe_secret, SecretId=wrong) == "ResourceNotFoundException"
    errors = sm.batch_get_secret_value(SecretIdList=[in_aws(arn, partition)])["Errors"]
    assert [e["ErrorCode"] for e in errors] == ["ResourceNotFoundException"]


def test_replicas_stay_in_the_partition(dev, where):
    region, partition, other_region = where
    sm = client(dev.url, "secretsmanager", region)
    arn = sm.create_secret(Name=uname("r"), SecretString="v")["ARN"]
    answer = sm.replicate_secret_to_regions(SecretId=arn, AddReplicaRegions=[{"Region": other_region}])
    assert [r["Status"] for r in answer["ReplicationStatus"]] == ["InSync"]
    replica = client(dev.url, "secretsmanager", other_region).describe_secret(SecretId=arn.replace(region, other_region))
    assert replica["ARN"] == arn.replace(f":{region}:", f":{other_region}:")
    assert replica["ARN"].startswith(f"arn:{partition}:")
    # A region of another partition does not exist from this one: the replica fails, as
    # for a region that is not enabled, and nothing is made there.
    answer = sm.replicate_secret_to_regions(SecretId=arn, AddReplicaRegions=[{"Region": "us-east-1"}])
    failed = [r for r in answer["ReplicationStatus"] if r["Region"] == "us-east-1"]
    assert [r["Status"] for r in failed] == ["Failed"]
    aws_sm = client(dev.url, "secretsmanager", "us-east-1")
    assert error_code(aws_sm.describe_secret, SecretId=arn.split(":secret:")[1][:-7]) == "ResourceNotFoundException"


def test_kms_key_and_alias_arns_are_in_the_regions_partition(dev, where):
    region, partition, _ = where
    kms = client(dev.url, "kms", region)
    key = kms.create_key()["KeyMetadata"]
    assert key["Arn"] == f"arn:{partition}:kms:{region}:{ACCOUNT}:key/{key['KeyId']}"
    alias = f"alias/{uname('a')}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    aliases = {a["AliasName"]: a["AliasArn"] for a in kms.list_aliases()["Aliases"]}
    assert aliases[alias] == f"arn:{partition}:kms:{region}:{ACCOUNT}:{alias}"
    assert aliases["alias/aws/secretsmanager"] == f"arn:{partition}:kms:{region}:{ACCOUNT}:alias/aws/secretsmanager"
    assert kms.describe_key(KeyId=key["Arn"])["KeyMetadata"]["Arn"] == key["Arn"]
    assert kms.describe_key(KeyId=aliases[alias])["KeyMetadata"]["KeyId"] == key["KeyId"]
    assert error_code(kms.describe_key, KeyId=in_aws(key["Arn"], partition)) == "NotFoundException"
    assert error_code(kms.describe_key, KeyId=in_aws(aliases[alias], partition)) == "NotFoundException"
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Principal"]["AWS"] == f"arn:{partition}:iam::{ACCOUNT}:root"


def test_the_aws_managed_key_is_in_the_regions_partition(dev, where):
    region, partition, _ = where
    sm = client(dev.url, "secretsmanager", region)
    sm.create_secret(Name=uname("m"), SecretString="v")
    managed = client(dev.url, "kms", region).describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]
    assert managed["Arn"] == f"arn:{partition}:kms:{region}:{ACCOUNT}:key/{managed['KeyId']}"


def test_sts_answers_are_in_the_signing_regions_partition(dev, where):
    region, partition, _ = where
    me = client(dev.url, "sts", region).get_caller_identity()
    assert me["Arn"] == f"arn:{partition}:iam::{ACCOUNT}:root"
    iam = client(dev.url, "iam", region)
    name = uname("role")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "AWS": f"arn:{partition}:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    assert role["Arn"] == f"arn:{partition}:iam::{ACCOUNT}:role/{name}"
    answer = client(dev.url, "sts", region).assume_role(RoleArn=role["Arn"], RoleSessionName="s1")
    assumed = f"arn:{partition}:sts::{ACCOUNT}:assumed-role/{name}/s1"
    assert answer["AssumedRoleUser"]["Arn"] == assumed
    creds = answer["Credentials"]
    key = (creds["AccessKeyId"], creds["SecretAccessKey"])
    me = client(dev.url, "sts", region, key, creds["SessionToken"]).get_caller_identity()
    assert me["Arn"] == assumed


def test_rotation_function_arns_are_in_the_regions_partition(dev, where):
    region, partition, _ = where
    sm = client(dev.url, "secretsmanager", region)
    arn = sm.create_secret(Name=uname("rot"), SecretString="v")["ARN"]
    function = f"arn:{partition}:lambda:{region}:{ACCOUNT}:function:{BUILTIN_ROTATOR}"
    sm.rotate_secret(SecretId=arn, RotationLambdaARN=function, RotationRules={"AutomaticallyAfterDays": 30})
    described = sm.describe_secret(SecretId=arn)
    assert described["RotationLambdaARN"] == function
    # The built-in rotator recognizes its ARN in the partition: the rotation completes.
    deadline = time.monotonic() + 30
    while sm.get_secret_value(SecretId=arn)["SecretString"] == "v" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sm.get_secret_value(SecretId=arn)["SecretString"] != "v"
    # Another partition's ARN is not the built-in rotator: no such function can be invoked.
    other = sm.create_secret(Name=uname("rot"), SecretString="v")["ARN"]
    assert error_code(sm.rotate_secret, SecretId=other, RotationLambdaARN=in_aws(function, partition),
                      RotationRules={"AutomaticallyAfterDays": 30}) == "AccessDeniedException"


def test_lookup_events_name_resources_and_callers_in_the_partition(dev, where):
    region, partition, _ = where
    name = uname("trail")
    arn = client(dev.url, "secretsmanager", region).create_secret(Name=name, SecretString="v")["ARN"]
    trail = client(dev.url, "cloudtrail", region)
    events = trail.lookup_events(LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": arn}])["Events"]
    assert [e["EventName"] for e in events] == ["CreateSecret"]
    assert [r["ResourceName"] for r in events[0]["Resources"]] == [arn]
    record = json.loads(events[0]["CloudTrailEvent"])
    assert record["userIdentity"]["arn"] == f"arn:{partition}:iam::{ACCOUNT}:root"
    assert record["responseElements"]["arn"] == arn


# --- enforcing: IAM, STS, identity, resource and key policies ---------------------------------


@pytest.fixture(scope="module")
def enforced(enforcing, where):
    """A user `u` of the enforcing server with a key and no policy yet, for `where`."""
    region, partition, _ = where
    iam = client(enforcing.url, "iam", region, enforcing.admin_key)
    name = uname("u")
    iam.create_user(UserName=name)
    made = iam.create_access_key(UserName=name)["AccessKey"]
    return iam, name, (made["AccessKeyId"], made["SecretAccessKey"])


def test_iam_arns_are_in_the_signing_regions_partition(enforcing, where):
    region, partition, _ = where
    iam = client(enforcing.url, "iam", region, enforcing.admin_key)
    user = uname("user")
    assert iam.create_user(UserName=user, Path="/team/")["User"]["Arn"] == f"arn:{partition}:iam::{ACCOUNT}:user/team/{user}"
    assert iam.get_user(UserName=user)["User"]["Arn"] == f"arn:{partition}:iam::{ACCOUNT}:user/team/{user}"
    group = uname("group")
    assert iam.create_group(GroupName=group)["Group"]["Arn"] == f"arn:{partition}:iam::{ACCOUNT}:group/{group}"
    policy = uname("policy")
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]})
    made = iam.create_policy(PolicyName=policy, PolicyDocument=doc)["Policy"]
    assert made["Arn"] == f"arn:{partition}:iam::{ACCOUNT}:policy/{policy}"
    iam.attach_user_policy(UserName=user, PolicyArn=made["Arn"])
    attached = iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [made["Arn"]]
    # Another partition's policy ARN names no policy.
    assert error_code(iam.get_policy, PolicyArn=in_aws(made["Arn"], partition)) in ("NoSuchEntity", "InvalidInput")
    me = client(enforcing.url, "sts", region, enforcing.admin_key).get_caller_identity()
    assert me["Arn"] == f"arn:{partition}:iam::{ACCOUNT}:user/admin"


def test_assume_role_trusts_only_its_own_partitions_principals(enforcing, where):
    region, partition, _ = where
    iam = client(enforcing.url, "iam", region, enforcing.admin_key)
    sts = client(enforcing.url, "sts", region, enforcing.admin_key)
    arns = {}
    for trusted in (partition, "aws"):
        name = uname("role")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
            "AWS": f"arn:{trusted}:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
        arns[trusted] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        assert arns[trusted] == f"arn:{partition}:iam::{ACCOUNT}:role/{name}"
    answer = sts.assume_role(RoleArn=arns[partition], RoleSessionName="s1")
    name = arns[partition].rsplit("/", 1)[1]
    assert answer["AssumedRoleUser"]["Arn"] == f"arn:{partition}:sts::{ACCOUNT}:assumed-role/{name}/s1"
    assert error_code(sts.assume_role, RoleArn=arns["aws"], RoleSessionName="s1") == "AccessDenied"
    # The role named by another partition's ARN is not found: AWS answers a role it cannot
    # assume with AccessDenied whether or not it exists.
    assert error_code(sts.assume_role, RoleArn=in_aws(arns[partition], partition), RoleSessionName="s1") == "AccessDenied"


def test_identity_policies_match_only_their_own_partitions_resources(enforcing, enforced, where):
    region, partition, _ = where
    iam, user, key = enforced
    sm_admin = client(enforcing.url, "secretsmanager", region, enforcing.admin_key)
    name = uname("id")
    arn = sm_admin.create_secret(Name=name, SecretString="v")["ARN"]
    sm = client(enforcing.url, "secretsmanager", region, key)
    for resource, allowed in ((f"arn:aws:secretsmanager:*:*:secret:{name}-*", False),
                              (f"arn:{partition}:secretsmanager:*:*:secret:{name}-*", True)):
        doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": resource}]}
        iam.put_user_policy(UserName=user, PolicyName="read", PolicyDocument=json.dumps(doc))
        if allowed:
            assert sm.get_secret_value(SecretId=arn)["SecretString"] == "v"
        else:
            with pytest.raises(botocore.exceptions.ClientError) as e:
                sm.get_secret_value(SecretId=arn)
            assert e.value.response["Error"]["Code"] == "AccessDeniedException"
            message = e.value.response["Error"]["Message"]
            assert f"User: arn:{partition}:iam::{ACCOUNT}:user/{user} is not authorized" in message, message
            assert f"on resource: {arn}" in message, message
    iam.delete_user_policy(UserName=user, PolicyName="read")


def test_resource_policies_match_only_their_own_partitions_principals(enforcing, enforced, where):
    region, partition, _ = where
    iam, user, key = enforced
    sm_admin = client(enforcing.url, "secretsmanager", region, enforcing.admin_key)
    arn = sm_admin.create_secret(Name=uname("rp"), SecretString="v")["ARN"]
    sm = client(enforcing.url, "secretsmanager", region, key)

    def policy(principal: str) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal},
                           "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]})

    # A user named by another partition's ARN does not exist: refused as AWS refuses any
    # principal that names no one.
    wrong_user = f"arn:aws:iam::{ACCOUNT}:user/{user}"
    assert error_code(sm_admin.put_resource_policy, SecretId=arn, ResourcePolicy=policy(wrong_user)) == \
        "MalformedPolicyDocumentException"
    sm_admin.put_resource_policy(SecretId=arn, ResourcePolicy=policy(f"arn:{partition}:iam::{ACCOUNT}:user/{user}"))
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "v"
    shown = json.loads(sm_admin.get_resource_policy(SecretId=arn)["ResourcePolicy"])
    assert shown["Statement"][0]["Principal"]["AWS"] == f"arn:{partition}:iam::{ACCOUNT}:user/{user}"


def test_key_policies_name_the_account_root_in_its_partition(enforcing, enforced, where):
    region, partition, _ = where
    iam, user, key = enforced
    kms_admin = client(enforcing.url, "kms", region, enforcing.admin_key)
    made = kms_admin.create_key()["KeyMetadata"]
    assert made["Arn"].startswith(f"arn:{partition}:kms:{region}:{ACCOUNT}:key/")
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:DescribeKey", "Resource": made["Arn"]}]}
    iam.put_user_policy(UserName=user, PolicyName="kms", PolicyDocument=json.dumps(doc))
    kms = client(enforcing.url, "kms", region, key)
    # The default key policy delegates to the account by `arn:<partition>:iam::<acct>:root`.
    assert kms.describe_key(KeyId=made["Arn"])["KeyMetadata"]["KeyId"] == made["KeyId"]
    # The wrong partition's last: it locks out the administrator too, whose ARN is not it.
    for principal, allowed in ((f"arn:{partition}:iam::{ACCOUNT}:root", True), (f"arn:aws:iam::{ACCOUNT}:root", False)):
        policy = {"Version": "2012-10-17", "Statement": [{"Sid": "s", "Effect": "Allow", "Principal": {"AWS": principal},
                  "Action": "kms:*", "Resource": "*"}]}
        kms_admin.put_key_policy(KeyId=made["KeyId"], PolicyName="default", Policy=json.dumps(policy),
                                 BypassPolicyLockoutSafetyCheck=True)
        if allowed:
            assert kms.describe_key(KeyId=made["Arn"])["KeyMetadata"]["KeyId"] == made["KeyId"]
        else:
            assert error_code(kms.describe_key, KeyId=made["Arn"]) == "AccessDeniedException"
    iam.delete_user_policy(UserName=user, PolicyName="kms")


# --- the console -------------------------------------------------------------------------------


def console_sign_in(base: str, fields: dict) -> requests.Session:
    http = requests.Session()
    form = http.get(f"{base}/console/signin")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
    done = http.post(f"{base}/console/signin", allow_redirects=False, data={"csrf": token, **fields})
    assert done.status_code == 303, done.text
    return http


def test_the_console_names_the_caller_and_secrets_in_the_partition(dev, enforcing, where):
    region, partition, _ = where
    http = console_sign_in(dev.url, {"account": "111122223333", "region": region})
    arn = client(dev.url, "secretsmanager", region, ("111122223333", "x" * 40)).create_secret(
        Name=uname("console"), SecretString="v")["ARN"]
    page = http.get(f"{dev.url}/console/secrets").text
    assert f"arn:{partition}:iam::111122223333:root" in page
    details = http.get(f"{dev.url}/console/secret", params={"id": arn}).text
    assert arn in details
    rotation = http.get(f"{dev.url}/console/secret/rotation", params={"id": arn}).text
    assert f'placeholder="arn:{partition}:lambda:REGION:ACCOUNT:function:' in rotation
    key_id, secret = enforcing.admin_key
    http = console_sign_in(enforcing.url, {"access_key_id": key_id, "secret_access_key": secret, "region": region})
    assert f"arn:{partition}:iam::{ACCOUNT}:user/admin" in http.get(f"{enforcing.url}/console/secrets").text


def test_audit_records_name_the_caller_in_the_partition(enforcing, enforced, where):
    region, partition, _ = where
    iam, user, key = enforced
    assert error_code(client(enforcing.url, "secretsmanager", region, (key[0], "x" * 40)).list_secrets) == \
        "InvalidSignatureException"
    client(enforcing.url, "sts", region, key).get_caller_identity()
    trail = client(enforcing.url, "cloudtrail", region, enforcing.admin_key)
    found = trail.lookup_events(LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": key[0]}])["Events"]
    records = [json.loads(e["CloudTrailEvent"]) for e in found]
    failed = [r for r in records if r.get("errorCode") == "InvalidSignatureException"]
    assert len(failed) == 1, records
    for r in records:
        assert r["userIdentity"]["arn"] == f"arn:{partition}:iam::{ACCOUNT}:user/{user}", r
