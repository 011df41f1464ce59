"""`make deploy` for real: build, apply classwire-local to the emulator, serve, answer, stop on Ctrl-C.

Slow (Terraform waits out the provider's ElastiCache poll), so one test covers the whole path.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from classwire_client import ClasswireClient
from classwire_infra.paths import ROOT
from localcloud import free_port
from localcloud.deploy import READY_LINE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def descendants(pid: int) -> set[tuple[int, int]]:
    """Live (non-zombie) processes below `pid`, from /proc, as (pid, start time): on a busy machine a pid is
    reused within seconds (pid_max is often 32,768), and a stranger with a dead process's pid is not it."""
    parents: dict[int, int] = {}
    started: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
            started[int(stat.parent.name)] = int(fields[19])  # starttime, field 22 of stat(5)
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {(child, started[child]) for child in found}


def alive(processes: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of `processes` still running: the same pid with the same start time, not a zombie."""
    running = set()
    for pid, start in processes:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[19]) == start:
            running.add((pid, start))
    return running


def _commands(processes: set[tuple[int, int]]) -> list[str]:
    commands = []
    for pid, _ in processes:
        try:
            commands.append(
                f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            )
        except OSError:
            commands.append(f"{pid}: gone")
    return commands


def wait_for_ready(process: subprocess.Popen, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("deploy exited before it was up:\n" + "".join(lines[-40:]))
        lines.append(line)
        if line.startswith(READY_LINE):
            return lines
    raise AssertionError("deploy was not up in time:\n" + "".join(lines[-40:]))


def test_make_deploy_serves_the_applied_stack_and_stops_cleanly_on_ctrl_c():
    port, web_port = free_port(), free_port()
    env = {**os.environ, "CLASSWIRE_LOCAL_PORT": str(port), "CLASSWIRE_LOCAL_WEB_PORT": str(web_port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "localcloud.deploy"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = wait_for_ready(process, timeout=1000)
        synthesized = json.loads((ROOT / "cdktf.out/stacks/classwire-local/cdk.tf.json").read_text())
        created = sum(len(block) for block in synthesized["resource"].values())
        assert any(f"Apply complete! Resources: {created} added" in line for line in output)
        started = descendants(process.pid)
        assert started, "the system runs in child processes (redis-server, emulator, Lambda workers)"

        with urllib.request.urlopen(
            f"http://127.0.0.1:{web_port}/local/token?user=tina&classroom=demo&role=teacher"
        ) as r:
            grant = json.load(r)
        assert grant["url"] == f"ws://127.0.0.1:{port}/local"
        page = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/").read().decode()
        assert "<script" in page

        async def exchange() -> dict:
            client = ClasswireClient(url=grant["url"], token=grant["token"], classroom="demo", user_id="tina")
            await client.start()
            try:
                ack = await client.send("chat", {"text": "hello from the deployed stack"})
                assert ack is not None
                return ack
            finally:
                await client.close()

        ack = asyncio.run(asyncio.wait_for(exchange(), 60))
        assert (ack["event"], ack["from"], ack["classroom"]) == ("chat", "tina", "demo")

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        time.sleep(0.5)
        assert alive(started) == set()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_sigkilled_make_deploy_leaves_nothing_running():
    # Killed mid-apply: redis-server, the emulator, terraform and its provider are all running then.
    port, web_port = free_port(), free_port()
    outer = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env = {**outer, "CLASSWIRE_LOCAL_PORT": str(port), "CLASSWIRE_LOCAL_WEB_PORT": str(web_port)}
    make = subprocess.Popen(
        ["make", "--no-print-directory", "deploy"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a session of its own, as a terminal would give it
    )
    try:
        assert make.stdout is not None
        lines = []
        for line in make.stdout:
            lines.append(line)
            if "terraform apply" in line:
                break
        else:
            raise AssertionError("make deploy ended before its apply:\n" + "".join(lines[-40:]))
        time.sleep(3)  # into the apply
        started = descendants(make.pid)
        assert len(started) >= 3, started  # the deploy, redis-server, the emulator, terraform, ...
        make.send_signal(signal.SIGKILL)
        make.wait()
        deadline = time.monotonic() + 30
        while alive(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = alive(started)
        assert left == set(), f"left running after make deploy was SIGKILLed: {_commands(left)}"
    finally:
        if make.poll() is None:
            make.kill()
            make.wait()
