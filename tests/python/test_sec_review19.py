"""Regression tests for review 19: an adversarial review of the eighteenth session's changes
(SQLite writes handed to the writer whole, the writer's known versions, IAM tag keys and
session tags, condition key folding, authorization on an operation's own members at every
depth). Findings are `test_NN_*` (each seen failing before its fix), what held
`test_held_*`. Each test drives the real binary through boto3.
"""

from __future__ import annotations

import random
import re
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import make_client, start_server

# ------------------- held: the SQLite writer's known versions move labels as the file says

LABELS = ["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS", "mine", "theirs"]


def outcome(call):
    """What a call answered, comparable across servers: its error, or the version id and
    stages of a put (the rest of an answer names the server's own ARN)."""
    try:
        answer = call()
    except ClientError as e:
        # A message may name the secret's ARN, whose suffix each server draws itself.
        message = re.sub(r"arn:aws:secretsmanager:\S*", "ARN", e.response["Error"]["Message"])
        return ("error", e.response["Error"]["Code"], message)
    return ("ok", answer.get("VersionId"), sorted(answer.get("VersionStages") or []))


def versions(client, name: str):
    """Every version of `name` and its labels, as ListSecretVersionIds lists them."""
    try:
        listed = client.list_secret_version_ids(SecretId=name, IncludeDeprecated=True,
                                                MaxResults=100)
    except ClientError as e:
        return ("error", e.response["Error"]["Code"])
    return sorted((v["VersionId"], sorted(v.get("VersionStages", []))) for v in listed["Versions"])


def random_operation(rng: random.Random, name: str, tokens: list[str], values: dict[str, str]):
    """One call on the secret `name`, as (description, call on a client): puts with and
    without stages (new tokens, replays of old ones with their value or another), label
    moves to any version (deprecated ones included), UpdateSecret with a value, deletion
    and restore, forced deletion and creation again, reads."""
    kind = rng.choices(["put", "replay", "stage", "update", "read", "delete", "recreate",
                        "burst"], weights=[30, 8, 20, 8, 6, 3, 2, 1])[0]
    if kind in ("put", "update", "burst"):
        token = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        value = f"value-{rng.getrandbits(32)}"
        tokens.append(token)
        values[token] = value
        if kind == "update":
            return kind, lambda c: c.update_secret(SecretId=name, SecretString=value,
                                                   ClientRequestToken=token)
        if kind == "burst":
            # Past the hundred-version quota: the oldest unlabelled versions are pruned.
            def burst(c, first=token, seed=rng.getrandbits(32)):
                burst_rng = random.Random(seed)
                last = None
                for n in range(105):
                    t = first if n == 0 else str(uuid.UUID(int=burst_rng.getrandbits(128),
                                                           version=4))
                    last = c.put_secret_value(SecretId=name, SecretString=f"b{n}",
                                              ClientRequestToken=t)
                return last
            return kind, burst
        stages = rng.choice([None, ["AWSCURRENT"], ["AWSPENDING"], ["mine"],
                             ["mine", "AWSCURRENT"], ["theirs", "AWSPENDING"]])
        extra = {} if stages is None else {"VersionStages": stages}
        return kind, lambda c: c.put_secret_value(SecretId=name, SecretString=value,
                                                  ClientRequestToken=token, **extra)
    if kind == "replay" and tokens:
        token = rng.choice(tokens)
        value = values[token] if rng.random() < 0.6 else "another value"
        return kind, lambda c: c.put_secret_value(SecretId=name, SecretString=value,
                                                  ClientRequestToken=token)
    if kind == "stage" and tokens:
        label = rng.choice(LABELS)
        to = rng.choice(tokens)
        frm = rng.choice(tokens + [None, None])
        args = {"SecretId": name, "VersionStage": label}
        if rng.random() < 0.85:
            args["MoveToVersionId"] = to
        if frm is not None:
            args["RemoveFromVersionId"] = frm
        return kind, lambda c: c.update_secret_version_stage(**args)
    if kind == "delete":
        def delete_and_maybe_restore(c, restore=rng.random() < 0.7):
            c.delete_secret(SecretId=name, RecoveryWindowInDays=7)
            return c.restore_secret(SecretId=name) if restore else {}
        return kind, delete_and_maybe_restore
    if kind == "recreate":
        token = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        tokens.clear()
        tokens.append(token)
        values[token] = "again"

        def recreate(c):
            c.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
            return c.create_secret(Name=name, SecretString="again", ClientRequestToken=token)
        return kind, recreate
    stage = rng.choice(LABELS)
    return "read", lambda c: c.get_secret_value(SecretId=name, VersionStage=stage)


def test_held_the_sqlite_writers_known_versions_agree_with_the_memory_store(tmp_path):
    """The SQLite writer answers a put's labelled versions from what it knows of them since
    its last commit (writer18); the memory store reads them from its maps. The same random
    calls (puts with and without stages, replays, label moves onto deprecated versions,
    UpdateSecret, deletion and restore, forced deletion and creation again, pruning past
    the quota, reads) on two secrets answer alike and leave the same versions and labels
    on both, call after call."""
    memory = start_server(["serve", "--dev", "--listen", "127.0.0.1:0", "--quotas", "off"])
    sqlite = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "data"),
                           "--listen", "127.0.0.1:0", "--quotas", "off"])
    try:
        clients = [make_client(memory.url), make_client(sqlite.url)]
        rng = random.Random(19)
        names = ["known-a", "known-b"]
        tokens = {n: [] for n in names}
        values: dict[str, str] = {}
        for n in names:
            token = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            tokens[n].append(token)
            values[token] = "first"
            for c in clients:
                c.create_secret(Name=n, SecretString="first", ClientRequestToken=token)
        kinds = set()
        for step in range(400):
            name = rng.choice(names)
            kind, call = random_operation(rng, name, tokens[name], values)
            kinds.add(kind)
            answers = [outcome(lambda: call(c)) for c in clients]
            assert answers[0] == answers[1], (step, kind, answers)
            listed = [versions(c, name) for c in clients]
            assert listed[0] == listed[1], (step, kind)
        assert kinds >= {"put", "replay", "stage", "update", "delete", "recreate", "burst"}
    finally:
        memory.stop()
        sqlite.stop()


# ------------------- held: the submitted path refuses as the memory store's inline path does

AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/secretsmanager/"
        "aws4_request, SignedHeaders=host, Signature=" + "0" * 64)


def raw(url: str, operation: str, body: bytes):
    """A `--dev` call sent as given (boto3 would fill a token in, or refuse the request):
    its status, error type and message, the secret's ARN left out."""
    import requests
    answer = requests.post(url.rstrip("/") + "/", data=body, timeout=30, headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"secretsmanager.{operation}", "Authorization": AUTH})
    try:
        error = answer.json()
    except ValueError:
        error = {"raw": answer.text}
    message = error.get("message") or error.get("Message") or ""
    message = re.sub(r"arn:aws:secretsmanager:\S*", "ARN", message)
    return answer.status_code, error.get("__type"), message


TOKEN_0 = "00000000-0000-4000-8000-000000000000"
TOKEN_1 = "00000000-0000-4000-8000-000000000001"

# Each refusal the three submitted operations can make before or in their write.
REFUSALS = [
    ("CreateSecret", b'{"Name":"bad name!","SecretString":"v","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("CreateSecret", b'{"Name":"fresh","SecretString":"v"}'),
    ("CreateSecret", b'{"Name":"fresh","SecretString":"v","SecretBinary":"AA==","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("CreateSecret", b'{"Name":"fresh","SecretString":"v","ClientRequestToken":"%s","Tags":[{"Key":"","Value":"x"}]}' % TOKEN_1.encode()),
    ("CreateSecret", b'{"Name":"fresh","SecretString":"v","ClientRequestToken":"%s","KmsKeyId":"alias/aws/nothing here"}' % TOKEN_1.encode()),
    ("CreateSecret", b'{"Name":"held","SecretString":"other","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("CreateSecret", b'{"Name":"gone","SecretString":"v","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("CreateSecret", b'{"Name":5}'),
    ("CreateSecret", b'{"Name":"fresh",'),
    ("UpdateSecret", b'{"SecretId":"held","SecretString":"v"}'),
    ("UpdateSecret", b'{"SecretId":"nobody","SecretString":"v","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("UpdateSecret", b'{"SecretId":"held","SecretString":"v","SecretBinary":"AA==","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("UpdateSecret", b'{"SecretId":"gone","Description":"d"}'),
    ("UpdateSecret", b'{"SecretId":"held","SecretString":"other","ClientRequestToken":"%s"}' % TOKEN_0.encode()),
    ("UpdateSecret", b'{"SecretId":""}'),
    ("PutSecretValue", b'{"SecretId":"held","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("PutSecretValue", b'{"SecretId":"held","SecretString":"v"}'),
    ("PutSecretValue", b'{"SecretId":"nobody","SecretString":"v","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("PutSecretValue", b'{"SecretId":"held","SecretString":"other","ClientRequestToken":"%s"}' % TOKEN_0.encode()),
    ("PutSecretValue", b'{"SecretId":"gone","SecretString":"v","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("PutSecretValue", b'{"SecretId":"held","SecretString":"v","SecretBinary":"AA==","ClientRequestToken":"%s"}' % TOKEN_1.encode()),
    ("PutSecretValue", b'{"SecretId":"held","SecretString":"v","ClientRequestToken":"%s","VersionStages":[]}' % TOKEN_1.encode()),
    ("PutSecretValue", b'{"SecretId":"held","SecretString":"v","ClientRequestToken":"short"}'),
    ("PutSecretValue", b'[]'),
]


def test_held_the_submitted_writes_refuse_as_the_inline_path_does(tmp_path):
    """PutSecretValue, UpdateSecret and CreateSecret on SQLite take the submitted path
    (`pipeline::stage`, `OwnedCall::admit`, the write on the writer thread); on the memory
    store they run inline through `dispatch`. Every refusal (validation, the handler's own
    checks before the write, those in the write: not found, scheduled for deletion, a
    token in use, a name taken) answers the same status, error type and message."""
    memory = start_server(["serve", "--dev", "--listen", "127.0.0.1:0"])
    sqlite = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "data"),
                           "--listen", "127.0.0.1:0"])
    try:
        for server in (memory, sqlite):
            c = make_client(server.url)
            c.create_secret(Name="held", SecretString="v0", ClientRequestToken=TOKEN_0)
            c.create_secret(Name="gone", SecretString="v0")
            c.delete_secret(SecretId="gone", RecoveryWindowInDays=7)
        for operation, body in REFUSALS:
            answers = [raw(s.url, operation, body) for s in (memory, sqlite)]
            assert answers[0] == answers[1], (operation, body, answers)
            assert answers[0][0] == 400, (operation, body, answers)
    finally:
        memory.stop()
        sqlite.stop()



def test_held_concurrent_puts_and_label_moves_leave_each_label_on_one_version(tmp_path):
    """Concurrent PutSecretValue calls (with and without stages) and label moves on four
    secrets, in the writer's shared batches: every put answered is a version afterwards,
    and each label is on exactly one version (AWSCURRENT always, AWSPREVIOUS once a put
    moved it), as the writer's known versions must keep them whatever the batches held."""
    import threading
    server = start_server(["serve", "--dev", "--data-dir", str(tmp_path / "data"),
                           "--listen", "127.0.0.1:0", "--quotas", "off"])
    try:
        names = ["busy-a", "busy-b", "busy-c", "busy-d"]
        setup = make_client(server.url)
        for n in names:
            setup.create_secret(Name=n, SecretString="v0")
        made: dict[str, list[str]] = {n: [] for n in names}
        errors: list[object] = []
        theirs: dict[str, str] = {}
        lock = threading.Lock()

        def work(seed: int) -> None:
            rng = random.Random(seed)
            client = make_client(server.url)
            for _ in range(25):
                name = rng.choice(names)
                token = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                stages = rng.choice([None, None, ["mine"], ["mine", "AWSCURRENT"]])
                extra = {} if stages is None else {"VersionStages": stages}
                try:
                    client.put_secret_value(SecretId=name, SecretString=token,
                                            ClientRequestToken=token, **extra)
                    with lock:
                        made[name].append(token)
                    if rng.random() < 0.3:
                        # No listing here: a reader's cached list of versions would answer
                        # the writer's next lookup instead of what it knows of them.
                        with lock:
                            target = rng.choice(made[name])
                            holder = theirs.get(name)
                        args = {"RemoveFromVersionId": holder} if holder else {}
                        try:
                            client.update_secret_version_stage(
                                SecretId=name, VersionStage="theirs",
                                MoveToVersionId=target, **args)
                            with lock:
                                theirs[name] = target
                        except ClientError as e:
                            # Another call moved it meanwhile: the holder named is stale.
                            if e.response["Error"]["Code"] != "InvalidParameterException":
                                raise
                except Exception as e:  # noqa: BLE001 (reported below)
                    with lock:
                        errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for n in names:
            listed = setup.list_secret_version_ids(SecretId=n, IncludeDeprecated=True,
                                                   MaxResults=100)["Versions"]
            ids = {v["VersionId"] for v in listed}
            assert set(made[n]) <= ids, n
            assert len(ids) == len(made[n]) + 1, n
            holders = {}
            for v in listed:
                for label in v.get("VersionStages", []):
                    holders.setdefault(label, []).append(v["VersionId"])
            assert all(len(h) == 1 for h in holders.values()), (n, holders)
            assert "AWSCURRENT" in holders, n
            # The value under AWSCURRENT is the version's own.
            current = setup.get_secret_value(SecretId=n)
            assert current["VersionId"] == holders["AWSCURRENT"][0]
    finally:
        server.stop()
