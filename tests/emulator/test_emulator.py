"""The emulator's own contract: loopback only, ready when started, gone when stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from localcloud.emulator import ACCOUNT_ID, AwsEmulator


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_child_process_serves_on_loopback_and_stops_with_the_block(tmp_path):
    with AwsEmulator(log_path=tmp_path / "moto.log") as aws:
        assert aws.endpoint == f"http://127.0.0.1:{aws.port}"
        assert aws.client("sts").get_caller_identity()["Account"] == ACCOUNT_ID
        process = aws.process
        assert process is not None
        listening = [
            line for line in Path("/proc/net/tcp").read_text().splitlines() if f":{aws.port:04X} " in line
        ]
        # Local address 0100007F is 127.0.0.1: nothing else on this machine can reach it.
        assert listening and all(line.split()[1].startswith("0100007F:") for line in listening)

    assert process.poll() is not None
    assert not port_open(aws.port)


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # exited, waiting for a reaper


def test_a_killed_owner_leaves_no_server_listening(tmp_path):
    """A test run that dies without stopping its emulator (SIGKILL, a crash) takes the server down with it."""
    owner_code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from localcloud.emulator import AwsEmulator

        aws = AwsEmulator(log_path=Path({str(tmp_path / "moto.log")!r})).start()
        print(aws.port, aws.process.pid, flush=True)
        time.sleep(120)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    server_pid = None
    try:
        assert owner.stdout is not None
        port, server_pid = map(int, owner.stdout.readline().split())
        assert port_open(port)

        owner.send_signal(signal.SIGKILL)  # no atexit, no __exit__: only the server's own watch is left
        owner.wait(timeout=10)

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (process_gone(server_pid) and not port_open(port)):
            time.sleep(0.2)
        assert process_gone(server_pid), "the server outlived the process that started it"
        assert not port_open(port)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if server_pid is not None and not process_gone(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def test_in_process_server_applies_the_shim(tmp_path):
    with AwsEmulator(in_process=True, log_path=tmp_path / "moto.log") as aws:
        elasticache = aws.client("elasticache")
        elasticache.create_cache_parameter_group(
            CacheParameterGroupName="classwire", CacheParameterGroupFamily="redis7", Description="classwire"
        )
        assert elasticache.describe_cache_parameter_groups()["CacheParameterGroups"][0][
            "CacheParameterGroupName"
        ] == ("classwire")
    assert not port_open(aws.port)


def test_reset_forgets_every_resource(emulator):
    sns = emulator.client("sns")
    sns.create_topic(Name="classwire-alarms")

    emulator.reset()

    assert sns.list_topics()["Topics"] == []


def test_a_server_that_cannot_start_is_reported(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with (
            pytest.raises(RuntimeError, match="moto server exited"),
            AwsEmulator(port=taken.getsockname()[1], log_path=tmp_path / "moto.log"),
        ):
            pass
