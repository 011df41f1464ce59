"""The JS client against the same hostile server and schedules as the Python one
(tests/clients/hostile_server.py), played by tests/clients/js_hostile_driver.mjs in one node process."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.clients.hostile_server import check_guarantee, compile_script, schedules

NODE = shutil.which("node")
DRIVER = Path(__file__).with_name("js_hostile_driver.mjs")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.fixture(scope="module")
def js_client():
    """Plays a script in the driver; one node process for every example."""
    assert NODE is not None  # else pytestmark skips
    with tempfile.TemporaryFile("w+") as errors:
        driver = subprocess.Popen(
            [NODE, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        assert driver.stdin is not None and driver.stdout is not None
        stdin, stdout = driver.stdin, driver.stdout

        def play(script: dict) -> dict:
            stdin.write(json.dumps(script) + "\n")
            stdin.flush()
            line = stdout.readline()
            if not line:
                errors.seek(0)
                raise RuntimeError(f"the JS driver stopped: {errors.read()[-4000:]}")
            return json.loads(line)

        try:
            yield play
        finally:
            stdin.close()
            driver.wait(timeout=30)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schedules())
def test_the_js_client_keeps_the_guarantee_against_a_hostile_server(js_client, schedule):
    script = compile_script(schedule)
    outcome = js_client(script)
    assert "error" not in outcome, outcome.get("error")
    check_guarantee(script, outcome)
