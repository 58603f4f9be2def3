"""STS reads a request's form once (quality16): what each member reads as is unchanged.

STS's handlers used to scan the whole form for every member they read; they now read
them from one pass over it (`FormValues`). These pin what that pass must keep: a name
given twice reads as its first value, and members anywhere in a large form (after many
others) are found, with the lists' bounds still refusing one past them.
"""

from __future__ import annotations

import re

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import REGION
from iam_api_support import Server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("sts-form16"), extra=["--quota-scale", "100"])
    yield server
    server.server.stop()


def post(srv, pairs: list[tuple[str, str]]) -> requests.Response:
    """A signed STS POST of exactly these pairs, in this order (names may repeat)."""
    body = "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in pairs).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    req = AWSRequest(method="POST", url=srv.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(*srv.admin_key), "sts", REGION).add_auth(req)
    return requests.post(srv.url + "/", data=body, headers=dict(req.prepare().headers), timeout=60)


def federation(*pairs: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Action", "GetFederationToken"), ("Version", "2011-06-15"), *pairs]


def test_a_name_given_twice_reads_as_its_first_value(srv):
    answer = post(srv, federation(("Name", "first-name"), ("Name", "second-name"),
                                  ("DurationSeconds", "900"), ("DurationSeconds", "1")))
    assert answer.status_code == 200, answer.text
    arn = re.search(r"<Arn>([^<]*)</Arn>", answer.text).group(1)
    assert arn.endswith(":federated-user/first-name"), arn
    # The second DurationSeconds (below AWS's minimum of 900) was not read.
    assert "<Expiration>" in answer.text


def test_a_list_member_given_twice_reads_as_its_first_value(srv):
    answer = post(srv, federation(("Name", "tagged"), ("Tags.member.1.Key", "team"),
                                  ("Tags.member.1.Value", "blue"), ("Tags.member.1.Key", "other"),
                                  ("Tags.member.2.Key", "TEAM"), ("Tags.member.2.Value", "red")))
    # Read as `team` (not `other`) and `TEAM`: a duplicate, tag keys being case-insensitive.
    assert answer.status_code == 400, answer.text
    assert "Duplicate tag keys found." in answer.text


def test_members_after_many_others_are_found_and_their_bound_still_holds(srv):
    padding = [(f"Padding{i}", "x") for i in range(20_000)]
    arns = [(f"PolicyArns.member.{i}.arn", f"arn:aws:iam::aws:policy/p{i}") for i in range(1, 12)]
    answer = post(srv, federation(*padding, ("Name", "padded"), *arns))
    assert answer.status_code == 400, answer.text
    assert ("1 validation error detected: Value at 'policyArns' failed to satisfy constraint: "
            "Member must have length less than or equal to 10") in answer.text
    answer = post(srv, federation(*padding, ("Name", "padded")))
    assert answer.status_code == 200, answer.text
    assert ":federated-user/padded</Arn>" in answer.text
