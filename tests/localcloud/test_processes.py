"""Children of the local cloud end with the process that started them, even when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from localcloud import processes

pytestmark = pytest.mark.timeout(60)


def running(pid: int) -> bool:
    try:
        return ") Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = processes.GRACE_SECONDS + 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.05)
    return False


def start_holder(script: str) -> tuple[subprocess.Popen, list[int]]:
    """A Python process running `script`, which prints the pids it started, one per line, then `ready`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    assert holder.stdout is not None
    pids: list[int] = []
    for line in holder.stdout:
        if line.strip() == "ready":
            return holder, pids
        pids.append(int(line))
    raise AssertionError(f"the holder exited with {holder.wait()} before it was ready")


def test_a_redis_server_ends_with_its_sigkilled_parent():
    holder, [redis_pid] = start_holder(
        """
        import time
        from localcloud.cache import RedisServer
        server = RedisServer().start()
        print(server.process.pid)
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    assert running(redis_pid)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert wait_gone(redis_pid), "redis-server outlived the process that started it"


def test_a_sigkill_ends_the_whole_chain_below(tmp_path):
    # parent -> child python (its own session) -> redis-server: each level has its own reaper.
    child_script = tmp_path / "child.py"
    child_script.write_text(
        "import time\n"
        "from localcloud.cache import RedisServer\n"
        "print(RedisServer().start().process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    holder, [child_pid, redis_pid] = start_holder(
        f"""
        import subprocess, sys, time
        from localcloud import processes
        child = processes.start_session([sys.executable, {str(child_script)!r}], stdout=subprocess.PIPE, text=True)
        print(child.pid)
        print(child.stdout.readline().strip())
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    assert running(child_pid) and running(redis_pid)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert wait_gone(child_pid), "the child outlived its SIGKILLed parent"
    assert wait_gone(redis_pid), "the grandchild outlived the chain above it"


def test_run_returns_what_the_command_printed_and_its_exit_code():
    result = processes.run(
        ["sh", "-c", "echo out; echo err >&2; exit 3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
