"""A node killed (SIGKILL) in the middle of a rotation: after a restart the secret is
consistent (exactly one AWSCURRENT, no value lost) and the rotation is resumed where it
stopped and completes."""

from __future__ import annotations

import threading
import time

from conftest import ACCESS_KEY, REGION, SECRET_KEY, make_client, start_server
from lambda_runner import Runner, TemplateRotation

FUNCTION = "arn:aws:lambda:us-east-1:000000000000:function:rotator"


def serve(data_dir, runner):
    return start_server([
        "serve", "--dev", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
        "--lambda-endpoint", runner.url, "--sweep-interval", "1",
    ])


def test_a_rotation_cut_short_by_sigkill_is_resumed_after_restart(tmp_path):
    runner = Runner()
    server = serve(tmp_path, runner)
    try:
        rotator = TemplateRotation(server.url, REGION, ACCESS_KEY, SECRET_KEY)
        runner.functions["rotator"] = rotator
        rotator.gates["setSecret"] = threading.Event()
        rotator.entered["setSecret"] = threading.Event()
        sm = make_client(server.url)
        created = sm.create_secret(Name="killed/mid-rotation", SecretString="initial")
        pending = sm.rotate_secret(SecretId="killed/mid-rotation", RotationLambdaARN=FUNCTION)["VersionId"]
        assert rotator.entered["setSecret"].wait(30)
        # createSecret has stored the new value in the AWSPENDING version.
        new_value = sm.get_secret_value(SecretId="killed/mid-rotation", VersionStage="AWSPENDING")["SecretString"]
        server.kill()

        server = serve(tmp_path, runner)
        rotator.client_args["endpoint_url"] = server.url
        rotator.gates.clear()
        sm = make_client(server.url)
        stages = sm.describe_secret(SecretId="killed/mid-rotation")["VersionIdsToStages"]
        assert [v for v, s in stages.items() if "AWSCURRENT" in s] == [created["VersionId"]]
        assert sm.get_secret_value(SecretId="killed/mid-rotation")["SecretString"] == "initial"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stages = sm.describe_secret(SecretId="killed/mid-rotation")["VersionIdsToStages"]
            if "AWSCURRENT" in stages.get(pending, []):
                break
            time.sleep(0.1)
        assert "AWSCURRENT" in stages[pending], stages
        assert [v for v, s in stages.items() if "AWSCURRENT" in s] == [pending]
        assert stages[created["VersionId"]] == ["AWSPREVIOUS"]
        assert sm.get_secret_value(SecretId="killed/mid-rotation")["SecretString"] == new_value
        # Resumed after the step that was done: createSecret was not run again for it.
        steps = [e["Step"] for e in runner.events() if e["ClientRequestToken"] == pending]
        assert steps.count("createSecret") == 1 and steps[-1] == "finishSecret"
    finally:
        server.stop()
        runner.stop()
