"""Concurrent clients: label invariants and name uniqueness hold under parallel writes."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from conftest import make_client, msg_exists, start_durable_server


@pytest.fixture(params=["memory", "sqlite"])
def backend_url(request, tmp_path):
    """The shared in-memory server, or a SQLite-backed one where writers contend for the database."""
    if request.param == "memory":
        yield request.getfixturevalue("url")
        return
    srv = start_durable_server(tmp_path / "data")
    yield srv.url
    srv.stop()


def test_parallel_puts_leave_exactly_one_current_and_one_previous(backend_url, name):
    url = backend_url
    sm = make_client(url)
    first = sm.create_secret(Name=name, SecretString="v0")["VersionId"]

    def put(i):
        # One client per thread: boto3 clients are thread-safe, but separate ones also mean
        # separate connections, which is what parallel callers look like.
        return make_client(url).put_secret_value(SecretId=name, SecretString=f"v{i}")["VersionId"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        made = set(pool.map(put, range(1, 25)))
    assert len(made) == 24
    desc = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    holders = {label: [v for v, s in desc.items() if label in s] for label in ("AWSCURRENT", "AWSPREVIOUS")}
    assert len(holders["AWSCURRENT"]) == 1, desc
    assert len(holders["AWSPREVIOUS"]) == 1, desc
    assert holders["AWSCURRENT"][0] in made
    assert set(desc) == {holders["AWSCURRENT"][0], holders["AWSPREVIOUS"][0]}
    everything = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True, MaxResults=100)["Versions"]
    assert {v["VersionId"] for v in everything} == made | {first}
    current = sm.get_secret_value(SecretId=name)
    assert current["VersionId"] == holders["AWSCURRENT"][0]


def test_parallel_creates_of_one_name_let_exactly_one_win(backend_url, name):
    url = backend_url

    def create(i):
        try:
            return make_client(url).create_secret(Name=name, SecretString=f"v{i}")["ARN"]
        except ClientError as e:
            return e.response["Error"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create, range(12)))
    wins = [r for r in results if isinstance(r, str)]
    losses = [r for r in results if not isinstance(r, str)]
    assert len(wins) == 1, results
    assert all(err["Code"] == "ResourceExistsException" for err in losses), losses
    assert all(err["Message"] == msg_exists(name) for err in losses), losses
    assert make_client(url).describe_secret(SecretId=name)["ARN"] == wins[0]
