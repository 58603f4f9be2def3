"""The `--dev` memory store keeps its audit trail under a lock of its own (branch devlock12):
a read's event is appended without the secrets' lock, a write's event with its change. These
hold it to the guarantees end to end, under concurrent readers and writers: every call has
exactly one event, and a read that saw a version is chained after the event of the write
that made it (no reader sees a change before its event is in the trail)."""

import json
import threading

import boto3

from conftest import ACCESS_KEY, REGION, SECRET_KEY, make_client, token

WRITES = 25
READERS = 3
READS_EACH = 40


def all_events(url: str) -> list[dict]:
    """Every event of the trail, oldest first (LookupEvents gives them newest first)."""
    trail = boto3.client("cloudtrail", endpoint_url=url, region_name=REGION,
                         aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    events, kwargs = [], {"MaxResults": 50}
    while True:
        page = trail.lookup_events(**kwargs)
        events.extend(json.loads(e["CloudTrailEvent"]) for e in page["Events"])
        if "NextToken" not in page:
            break
        kwargs["NextToken"] = page["NextToken"]
    return list(reversed(events))


def test_reads_are_chained_after_the_write_whose_version_they_saw(fresh_server):
    url = fresh_server.url
    sm = make_client(url)
    name = "devlock/chain-order"
    first = token()
    sm.create_secret(Name=name, SecretString="v0", ClientRequestToken=first)
    puts: list[tuple[str, str]] = []  # (request id, version id)
    reads: list[tuple[str, str]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def writer():
        client = make_client(url)
        try:
            for i in range(WRITES):
                version = token()
                out = client.put_secret_value(SecretId=name, SecretString=f"v{i + 1}",
                                              ClientRequestToken=version)
                with lock:
                    puts.append((out["ResponseMetadata"]["RequestId"], version))
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            failures.append(e)

    def reader():
        client = make_client(url)
        try:
            for _ in range(READS_EACH):
                out = client.get_secret_value(SecretId=name)
                with lock:
                    reads.append((out["ResponseMetadata"]["RequestId"], out["VersionId"]))
        except BaseException as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures

    events = all_events(url)
    by_request: dict[str, list[int]] = {}
    for position, event in enumerate(events):
        by_request.setdefault(event.get("requestID"), []).append(position)
    # Every call has exactly one event.
    for request_id, _ in puts + reads:
        assert len(by_request.get(request_id, [])) == 1, request_id
    assert len(events) == 1 + len(puts) + len(reads)
    # The event of the write that made each version, by its position in the chain.
    made_at = {version: by_request[request_id][0] for request_id, version in puts}
    made_at[first] = next(i for i, e in enumerate(events) if e["eventName"] == "CreateSecret")
    for request_id, version in reads:
        assert made_at[version] < by_request[request_id][0], (
            f"the read {request_id} of {version} is chained before the write that made it"
        )
