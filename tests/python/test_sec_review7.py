"""Regression tests for the seventh adversarial review's findings (01, 02, 03, 06, 08, 09, 10).

Each test drives the real binary the way the review's reproduction did (boto3, the console
over plain HTTP), on an enforcing server whose users, roles and keys are made through the IAM
API: what it checks is what AWS does.
"""

from __future__ import annotations

import json
import re
import time

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from conftest import REGION
from test_auth import NO_RETRY, Secured

ACCOUNT = "000000000000"
READ_ALL = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Resource": "*",
    "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "secretsmanager:ListSecrets",
               "secretsmanager:ListSecretVersionIds", "secretsmanager:GetResourcePolicy"]}]}


class Server(Secured):
    """An enforcing server with IAM-API helpers."""

    def any_client(self, service: str, key=None, token=None, region: str = REGION):
        key = key or self.admin_key
        return boto3.client(service, endpoint_url=self.url, region_name=region, aws_access_key_id=key[0],
                            aws_secret_access_key=key[1], aws_session_token=token, config=NO_RETRY)

    def session_client(self, service: str, creds: dict, region: str = REGION):
        return self.any_client(service, (creds["AccessKeyId"], creds["SecretAccessKey"]),
                               creds["SessionToken"], region)

    def iam_user(self, name: str, policy: dict | None = None, path: str | None = None) -> tuple[tuple[str, str], str]:
        """A user made through the IAM API, with an inline policy and a key: (key, ARN)."""
        iam = self.any_client("iam")
        user = iam.create_user(UserName=name, **({"Path": path} if path else {}))["User"]
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        made = iam.create_access_key(UserName=name)["AccessKey"]
        return (made["AccessKeyId"], made["SecretAccessKey"]), user["Arn"]

    def delete_iam_user(self, name: str) -> None:
        iam = self.any_client("iam")
        for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
        for p in iam.list_user_policies(UserName=name)["PolicyNames"]:
            iam.delete_user_policy(UserName=name, PolicyName=p)
        iam.delete_user(UserName=name)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("review7"))
    yield s
    s.server.stop()


def code_of(fn, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


# ---------------------------------------------------------------- 01: console sessions

class Console:
    """A browser session against the console, over plain HTTP."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()

    def sign_in(self, key: tuple[str, str], region: str = REGION) -> requests.Response:
        form = self.http.get(f"{self.base}/console/signin")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
        return self.http.post(f"{self.base}/console/signin", allow_redirects=False, data={
            "csrf": token, "access_key_id": key[0], "secret_access_key": key[1], "region": region})

    def read_value(self, secret_id: str) -> requests.Response:
        """Opens the secret's page and asks for its value; the final answer (redirects followed)."""
        page = self.http.get(f"{self.base}/console/secret", params={"id": secret_id}, allow_redirects=False)
        if page.status_code == 303:
            return page
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
        return self.http.post(f"{self.base}/console/secret/value", data={"csrf": csrf, "id": secret_id},
                              allow_redirects=False)


def test_01_console_stops_at_once_when_the_policy_is_removed(srv):
    srv.admin().create_secret(Name="r7-01/a", SecretString="R7-01-VALUE-A")
    key, _ = srv.iam_user("r7-carol-a", READ_ALL)
    b = Console(srv.url)
    assert b.sign_in(key).status_code == 303
    assert "R7-01-VALUE-A" in b.read_value("r7-01/a").text
    srv.any_client("iam").delete_user_policy(UserName="r7-carol-a", PolicyName="p")
    answer = b.read_value("r7-01/a")
    assert "R7-01-VALUE-A" not in answer.text
    assert answer.status_code == 403 and "AccessDenied" in answer.text


@pytest.mark.parametrize("revoke", ["deactivate", "delete-key", "delete-user"])
def test_01_console_session_ends_when_its_key_is_revoked(srv, revoke):
    name = f"r7-carol-{revoke}"
    secret = f"r7-01/{revoke}"
    srv.admin().create_secret(Name=secret, SecretString="R7-01-VALUE")
    key, _ = srv.iam_user(name, READ_ALL)
    b = Console(srv.url)
    assert b.sign_in(key).status_code == 303
    assert "R7-01-VALUE" in b.read_value(secret).text
    iam = srv.any_client("iam")
    if revoke == "deactivate":
        iam.update_access_key(UserName=name, AccessKeyId=key[0], Status="Inactive")
    elif revoke == "delete-key":
        iam.delete_access_key(UserName=name, AccessKeyId=key[0])
    else:
        srv.delete_iam_user(name)
    answer = b.read_value(secret)
    assert "R7-01-VALUE" not in answer.text
    # The session is over: the browser is sent to sign in again, and stays signed out.
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/console/signin")
    if revoke == "deactivate":
        iam.update_access_key(UserName=name, AccessKeyId=key[0], Status="Active")
    again = b.http.get(f"{srv.url}/console/secrets", allow_redirects=False)
    assert again.status_code == 303 and again.headers["Location"].startswith("/console/signin")
    events = srv.any_client("cloudtrail").lookup_events(LookupAttributes=[
        {"AttributeKey": "ResourceName", "AttributeValue": secret}])["Events"]
    reads = [e for e in events if e["EventName"] == "GetSecretValue" and e.get("Username") == name]
    assert len(reads) == 1, [(e["EventName"], e.get("Username")) for e in events]


# ---------------------------------------------------------------- 02: session tags

def abac_role(srv, user_arn: str, role: str, trust_actions: list[str]) -> str:
    iam = srv.any_client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": trust_actions}]}
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust),
                          Tags=[{"Key": "team", "Value": "blue"}])["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="abac", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
            "Condition": {"StringEquals": {"secretsmanager:ResourceTag/team": "${aws:PrincipalTag/team}"}}}]}))
    return arn


def test_02_session_tags_need_sts_tag_session(srv):
    admin = srv.admin()
    admin.create_secret(Name="r7-02/red", SecretString="R7-RED-ROOT", Tags=[{"Key": "team", "Value": "red"}])
    everything = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}]}
    key, user_arn = srv.iam_user("r7-dave", everything)
    role = abac_role(srv, user_arn, "r7-blue-reader", ["sts:AssumeRole"])
    sts = srv.any_client("sts", key)
    code, message = code_of(sts.assume_role, RoleArn=role, RoleSessionName="evil",
                            Tags=[{"Key": "team", "Value": "red"}])
    assert (code, message) == ("AccessDenied",
                               f"User: {user_arn} is not authorized to perform: sts:TagSession on resource: {role}")
    code, _ = code_of(sts.assume_role, RoleArn=role, RoleSessionName="evil2",
                      Tags=[{"Key": "team", "Value": "red"}], TransitiveTagKeys=["team"])
    assert code == "AccessDenied"
    # Without tags the same caller still gets in.
    plain = sts.assume_role(RoleArn=role, RoleSessionName="honest")["Credentials"]
    code, _ = code_of(srv.session_client("secretsmanager", plain).get_secret_value, SecretId="r7-02/red")
    assert code == "AccessDeniedException"
    # A trust policy that allows sts:TagSession takes the tags (AWS's ABAC setup).
    tagging = abac_role(srv, user_arn, "r7-tagging", ["sts:AssumeRole", "sts:TagSession"])
    tagged = sts.assume_role(RoleArn=tagging, RoleSessionName="tagged", Tags=[{"Key": "team", "Value": "red"}])
    value = srv.session_client("secretsmanager", tagged["Credentials"]).get_secret_value(SecretId="r7-02/red")
    assert value["SecretString"] == "R7-RED-ROOT"


def test_02_tag_session_needs_the_callers_identity_policy_too(srv):
    """A trust policy naming the account (not the caller) needs the caller's own Allow."""
    key, user_arn = srv.iam_user("r7-dora", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]})
    role = abac_role(srv, f"arn:aws:iam::{ACCOUNT}:root", "r7-tagging-2", ["sts:AssumeRole", "sts:TagSession"])
    sts = srv.any_client("sts", key)
    code, message = code_of(sts.assume_role, RoleArn=role, RoleSessionName="tt",
                            Tags=[{"Key": "team", "Value": "red"}])
    assert (code, message) == ("AccessDenied",
                               f"User: {user_arn} is not authorized to perform: sts:TagSession on resource: {role}")
    sts.assume_role(RoleArn=role, RoleSessionName="no-tags")


def test_02_every_tag_key_is_in_aws_tag_keys(srv):
    """A trust policy pinning aws:TagKeys sees all the tag keys, not only the last one."""
    key, user_arn = srv.iam_user("r7-dana", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}]})
    iam = srv.any_client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:TagSession",
         "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["project"]}}}]}
    role = iam.create_role(RoleName="r7-tagkeys", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    sts = srv.any_client("sts", key)
    sts.assume_role(RoleArn=role, RoleSessionName="ok", Tags=[{"Key": "project", "Value": "x"}])
    code, _ = code_of(sts.assume_role, RoleArn=role, RoleSessionName="bad",
                      Tags=[{"Key": "team", "Value": "red"}, {"Key": "project", "Value": "x"}])
    assert code == "AccessDenied"


# ---------------------------------------------------------------- 03: grants

KMS_ENCRYPT_ONLY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:DescribeKey"], "Resource": "*"}]}


def test_03_grant_operations_condition_is_enforced(srv):
    mallory, marn = srv.iam_user("r7-mallory", KMS_ENCRYPT_ONLY)
    _, other = srv.iam_user("r7-otto", None)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "encrypt grants for otto only", "Effect": "Allow", "Principal": {"AWS": marn},
         "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"kms:GrantOperations": ["Encrypt", "DescribeKey"]},
                       "StringEquals": {"kms:GranteePrincipal": other}}}]}
    kadm = srv.any_client("kms")
    key = kadm.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    blob = kadm.encrypt(KeyId=key, Plaintext=b"R7-PAYROLL")["CiphertextBlob"]
    km = srv.any_client("kms", mallory)
    code, _ = code_of(km.create_grant, KeyId=key, GranteePrincipal=marn, Operations=["Decrypt"])
    assert code == "AccessDeniedException"
    code, _ = code_of(km.create_grant, KeyId=key, GranteePrincipal=other, Operations=["Decrypt"])
    assert code == "AccessDeniedException"
    code, _ = code_of(km.create_grant, KeyId=key, GranteePrincipal=marn, Operations=["Encrypt"])
    assert code == "AccessDeniedException"
    code, _ = code_of(km.decrypt, CiphertextBlob=blob)
    assert code == "AccessDeniedException"
    # What the policy allows still works.
    km.create_grant(KeyId=key, GranteePrincipal=other, Operations=["Encrypt"])
    assert len(kadm.list_grants(KeyId=key)["Grants"]) == 1


def test_03_grant_condition_keys_in_the_request_context(srv):
    """kms:GrantConstraintType, kms:RetiringPrincipal and kms:GrantIsForAWSResource are set."""
    user, uarn = srv.iam_user("r7-gus", KMS_ENCRYPT_ONLY)
    _, other = srv.iam_user("r7-olga", None)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": uarn}, "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"StringEquals": {"kms:GrantConstraintType": "EncryptionContextEquals",
                                        "kms:RetiringPrincipal": uarn},
                       "Bool": {"kms:GrantIsForAWSResource": "false"}}}]}
    kadm = srv.any_client("kms")
    key = kadm.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    km = srv.any_client("kms", user)
    code, _ = code_of(km.create_grant, KeyId=key, GranteePrincipal=other, Operations=["Decrypt"],
                      RetiringPrincipal=uarn)
    assert code == "AccessDeniedException"
    code, _ = code_of(km.create_grant, KeyId=key, GranteePrincipal=other, Operations=["Decrypt"],
                      Constraints={"EncryptionContextEquals": {"app": "x"}})
    assert code == "AccessDeniedException"
    km.create_grant(KeyId=key, GranteePrincipal=other, Operations=["Decrypt"], RetiringPrincipal=uarn,
                    Constraints={"EncryptionContextEquals": {"app": "x"}})


def test_03_a_grant_only_hands_on_what_it_holds(srv):
    gina, garn = srv.iam_user("r7-gina", KMS_ENCRYPT_ONLY)
    kadm = srv.any_client("kms")
    key = kadm.create_key()["KeyMetadata"]["KeyId"]
    blob = kadm.encrypt(KeyId=key, Plaintext=b"R7-PAYROLL", EncryptionContext={"app": "a"})["CiphertextBlob"]
    kadm.create_grant(KeyId=key, GranteePrincipal=garn, Operations=["Encrypt", "CreateGrant"])
    kg = srv.any_client("kms", gina)
    code, _ = code_of(kg.create_grant, KeyId=key, GranteePrincipal=garn, Operations=["Decrypt"])
    assert code == "AccessDeniedException"
    code, _ = code_of(kg.decrypt, CiphertextBlob=blob, EncryptionContext={"app": "a"})
    assert code == "AccessDeniedException"
    # Same or fewer operations go through.
    kg.create_grant(KeyId=key, GranteePrincipal=garn, Operations=["Encrypt"])
    # A constrained grant's CreateGrant hands on only equally strict constraints.
    _, harn = srv.iam_user("r7-hana", None)
    hana_key = srv.iam_user("r7-hank", KMS_ENCRYPT_ONLY)
    hank, hkarn = hana_key
    kadm.create_grant(KeyId=key, GranteePrincipal=hkarn, Operations=["Decrypt", "CreateGrant"],
                      Constraints={"EncryptionContextSubset": {"app": "a"}})
    kh = srv.any_client("kms", hank)
    code, _ = code_of(kh.create_grant, KeyId=key, GranteePrincipal=harn, Operations=["Decrypt"])
    assert code == "AccessDeniedException"
    code, _ = code_of(kh.create_grant, KeyId=key, GranteePrincipal=harn, Operations=["Decrypt"],
                      Constraints={"EncryptionContextSubset": {"other": "b"}})
    assert code == "AccessDeniedException"
    kh.create_grant(KeyId=key, GranteePrincipal=harn, Operations=["Decrypt"],
                    Constraints={"EncryptionContextSubset": {"app": "a", "env": "prod"}})
    kh.create_grant(KeyId=key, GranteePrincipal=harn, Operations=["Decrypt"],
                    Constraints={"EncryptionContextEquals": {"app": "a"}})


def test_03_kms_request_condition_keys(srv):
    """kms:EncryptionAlgorithm and kms:KeySpec/kms:KeyUsage are in the request context."""
    user, uarn = srv.iam_user("r7-kay", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:CreateKey"], "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}}},
        {"Effect": "Deny", "Action": "kms:CreateKey", "Resource": "*",
         "Condition": {"StringEquals": {"kms:KeySpec": "HMAC_256"}}}]})
    kadm = srv.any_client("kms")
    key = kadm.create_key()["KeyMetadata"]["KeyId"]
    k = srv.any_client("kms", user)
    code, _ = code_of(k.encrypt, KeyId=key, Plaintext=b"x")
    assert code == "AccessDeniedException"
    code, _ = code_of(k.encrypt, KeyId=key, Plaintext=b"x", EncryptionAlgorithm="SYMMETRIC_DEFAULT")
    assert code == "AccessDeniedException"
    code, _ = code_of(k.create_key, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    assert code == "AccessDeniedException"


# ---------------------------------------------------------------- 08: ForceOverwriteReplicaSecret

def test_08_force_overwrite_honours_denies_on_the_replica_secret(srv):
    eu = srv.any_client("secretsmanager", region="eu-west-1")
    victim = eu.create_secret(Name="r7-08/db", SecretString="R7-REAL-EU")
    _, mal_arn = srv.iam_user("r7-mal", None)
    eu.put_resource_policy(SecretId="r7-08/db", ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": {"AWS": mal_arn}, "Action": "secretsmanager:*", "Resource": "*"}]}))
    iam = srv.any_client("iam")
    iam.put_user_policy(UserName="r7-mal", PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Resource": "*", "Action": [
                "secretsmanager:CreateSecret", "secretsmanager:ReplicateSecretToRegions",
                "secretsmanager:DescribeSecret", "secretsmanager:DeleteSecret"]}]}))
    key = iam.create_access_key(UserName="r7-mal")["AccessKey"]
    mal = srv.any_client("secretsmanager", (key["AccessKeyId"], key["SecretAccessKey"]))
    mal.create_secret(Name="r7-08/db", SecretString="R7-ATTACKER")
    code, message = code_of(mal.replicate_secret_to_regions, SecretId="r7-08/db",
                            AddReplicaRegions=[{"Region": "eu-west-1"}], ForceOverwriteReplicaSecret=True)
    assert code == "AccessDeniedException", message
    assert "secretsmanager:DeleteSecret" in message and "explicit deny in a resource-based policy" in message
    assert eu.describe_secret(SecretId="r7-08/db")["ARN"] == victim["ARN"]
    assert eu.get_secret_value(SecretId="r7-08/db")["SecretString"] == "R7-REAL-EU"
    # An identity Deny on the replica region stops it too (no resource policy needed).
    iam.put_user_policy(UserName="r7-mal", PolicyName="deny-eu", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "secretsmanager:*",
                                                "Resource": "arn:aws:secretsmanager:eu-west-1:*:secret:*"}]}))
    eu.delete_resource_policy(SecretId="r7-08/db")
    code, message = code_of(mal.replicate_secret_to_regions, SecretId="r7-08/db",
                            AddReplicaRegions=[{"Region": "eu-west-1"}], ForceOverwriteReplicaSecret=True)
    assert code == "AccessDeniedException", message
    assert eu.get_secret_value(SecretId="r7-08/db")["SecretString"] == "R7-REAL-EU"
    # Without the Deny, a caller allowed DeleteSecret there may overwrite (as before).
    iam.delete_user_policy(UserName="r7-mal", PolicyName="deny-eu")
    mal.replicate_secret_to_regions(SecretId="r7-08/db", AddReplicaRegions=[{"Region": "eu-west-1"}],
                                    ForceOverwriteReplicaSecret=True)
    assert eu.get_secret_value(SecretId="r7-08/db")["SecretString"] == "R7-ATTACKER"


# ---------------------------------------------------------------- 09: trust policies bound to ids

def test_09_trust_policies_are_bound_to_unique_ids(srv):
    iam = srv.any_client("iam")
    pol = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}
    u1, uarn = srv.iam_user("r7-ursula", pol)
    uid = iam.get_user(UserName="r7-ursula")["User"]["UserId"]
    t1 = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": uarn}, "Action": "sts:AssumeRole"}]}
    r1 = iam.create_role(RoleName="r7-R1", AssumeRolePolicyDocument=json.dumps(t1))["Role"]
    iam.put_role_policy(RoleName="r7-R1", PolicyName="p", PolicyDocument=json.dumps(pol))
    t2 = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": r1["Arn"]}, "Action": "sts:AssumeRole"}]}
    r2 = iam.create_role(RoleName="r7-R2", AssumeRolePolicyDocument=json.dumps(t2))["Role"]
    # While the principals exist the document reads back with their ARNs.
    shown = iam.get_role(RoleName="r7-R2")["Role"]["AssumeRolePolicyDocument"]
    assert shown["Statement"][0]["Principal"] == {"AWS": r1["Arn"]}
    srv.any_client("sts", u1).assume_role(RoleArn=r1["Arn"], RoleSessionName="before")
    srv.delete_iam_user("r7-ursula")
    # Once the user is gone, the trust policy shows its unique id (as AWS does).
    shown = iam.get_role(RoleName="r7-R1")["Role"]["AssumeRolePolicyDocument"]
    assert shown["Statement"][0]["Principal"] == {"AWS": uid}
    u2, _ = srv.iam_user("r7-ursula", pol)
    code, _ = code_of(srv.any_client("sts", u2).assume_role, RoleArn=r1["Arn"], RoleSessionName="x1")
    assert code == "AccessDenied"
    # The same for a role re-created under the same name.
    r1_id = r1["RoleId"]
    iam.delete_role_policy(RoleName="r7-R1", PolicyName="p")
    iam.delete_role(RoleName="r7-R1")
    t1b = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/r7-ursula"}, "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="r7-R1", AssumeRolePolicyDocument=json.dumps(t1b))
    iam.put_role_policy(RoleName="r7-R1", PolicyName="p", PolicyDocument=json.dumps(pol))
    creds = srv.any_client("sts", u2).assume_role(RoleArn=r1["Arn"], RoleSessionName="x2")["Credentials"]
    code, _ = code_of(srv.session_client("sts", creds).assume_role, RoleArn=r2["Arn"], RoleSessionName="x3")
    assert code == "AccessDenied"
    shown = iam.get_role(RoleName="r7-R2")["Role"]["AssumeRolePolicyDocument"]
    assert shown["Statement"][0]["Principal"] == {"AWS": r1_id}
    # A trust policy naming a user that does not exist is refused, as IAM refuses it.
    ghost = f"arn:aws:iam::{ACCOUNT}:user/r7-nobody"
    bad = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT}:root", ghost]}, "Action": "sts:AssumeRole"}]}
    code, message = code_of(iam.create_role, RoleName="r7-ghost", AssumeRolePolicyDocument=json.dumps(bad))
    assert (code, message) == ("MalformedPolicyDocument", f'Invalid principal in policy: "AWS":"{ghost}"')
    # UpdateAssumeRolePolicy binds too: trusting the new R1 now lets it in.
    iam.update_assume_role_policy(RoleName="r7-R2", PolicyDocument=json.dumps(t2))
    srv.session_client("sts", creds).assume_role(RoleArn=r2["Arn"], RoleSessionName="x4")


# ---------------------------------------------------------------- 10: user paths

def test_10_a_deny_on_a_user_path_applies(srv):
    admin = srv.admin()
    admin.create_secret(Name="r7-10/payroll", SecretString="R7-PAYROLL")
    key, arn = srv.iam_user("r7-carl", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}, path="/contractors/")
    assert arn == f"arn:aws:iam::{ACCOUNT}:user/contractors/r7-carl"
    assert srv.any_client("sts", key).get_caller_identity()["Arn"] == arn
    carl = srv.any_client("secretsmanager", key)
    assert carl.get_secret_value(SecretId="r7-10/payroll")["SecretString"] == "R7-PAYROLL"
    admin.put_resource_policy(SecretId="r7-10/payroll", ResourcePolicy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "secretsmanager:*", "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/contractors/*"}}}]}))
    code, message = code_of(carl.get_secret_value, SecretId="r7-10/payroll")
    assert code == "AccessDeniedException"
    assert message.startswith(f"User: {arn} is not authorized")
    # A resource policy naming the user by its path-qualified ARN matches it.
    admin.put_resource_policy(SecretId="r7-10/payroll", ResourcePolicy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": {"AWS": arn}, "Action": "secretsmanager:*", "Resource": "*"}]}))
    code, _ = code_of(carl.get_secret_value, SecretId="r7-10/payroll")
    assert code == "AccessDeniedException"


# ---------------------------------------------------------------- 06: console sign-ins audited

def test_06_console_sign_ins_leave_a_trace(srv):
    key, arn = srv.iam_user("r7-victim", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}]})
    assert Console(srv.url).sign_in((key[0], "wrong-guess-secret")).status_code == 401
    assert Console(srv.url).sign_in(key).status_code == 303
    ct = srv.any_client("cloudtrail")
    deadline = time.monotonic() + 10
    while True:
        events = ct.lookup_events(LookupAttributes=[
            {"AttributeKey": "EventName", "AttributeValue": "ConsoleLogin"}])["Events"]
        mine = [json.loads(e["CloudTrailEvent"]) for e in events
                if json.loads(e["CloudTrailEvent"]).get("userIdentity", {}).get("arn") == arn]
        if len(mine) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    outcomes = sorted(e["responseElements"]["ConsoleLogin"] for e in mine)
    assert outcomes == ["Failure", "Success"], mine
    for e in mine:
        assert e["eventSource"] == "signin.amazonaws.com"
        assert "wrong-guess-secret" not in json.dumps(e) and key[1] not in json.dumps(e)
    failed = [e for e in mine if e["responseElements"]["ConsoleLogin"] == "Failure"][0]
    assert failed["errorMessage"] == "Failed authentication"
    log = srv.server.output()
    assert "wrong-guess-secret" not in log and key[1] not in log
    assert any("console sign-in" in line and key[0] in line for line in log.splitlines())
