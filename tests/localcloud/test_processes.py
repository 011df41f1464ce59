"""Children of the local cloud end with the process that started them, even when it is SIGKILLed."""

from __future__ import annotations

import contextlib
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


def redis_child(tmp_path, prelude: str = "") -> Path:
    """A child script that runs `prelude`, starts a redis-server, prints its pid and waits."""
    script = tmp_path / "child.py"
    script.write_text(
        f"import time\n{prelude}from localcloud.cache import RedisServer\n"
        "print(RedisServer().start().process.pid, flush=True)\ntime.sleep(120)\n"
    )
    return script


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
    child_script = redis_child(tmp_path)
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


def test_children_that_exited_are_forgotten_so_a_long_life_of_them_still_reaps_the_last():
    # More children than select() could ever watch (1,024 descriptors), all gone before the last starts;
    # the last one ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    holder, [stubborn_pid] = start_holder(
        """
        import time
        from localcloud import processes
        for _ in range(4):  # each batch lives long enough for the reaper to open its pidfds
            batch = [processes.start_session(["sleep", "0.5"]) for _ in range(275)]
            for child in batch:
                child.wait()
        print(processes.start_session(["sh", "-c", "trap '' TERM; exec sleep 120"]).pid)
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert wait_gone(stubborn_pid), "the last child outlived its parent"


def test_a_forked_child_does_not_keep_the_reaper_waiting():
    holder, [sleeper_pid, forked_pid] = start_holder(
        """
        import os, time
        from localcloud import processes
        print(processes.start_session(["sleep", "120"]).pid)
        forked = os.fork()
        if forked == 0:
            time.sleep(120)
            os._exit(0)
        print(forked)
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert running(forked_pid)  # alive, with its copy of everything the holder had open
        assert wait_gone(sleeper_pid), "the holder's child waited for its fork to end"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(forked_pid, signal.SIGKILL)


def test_a_reaper_that_died_is_replaced_and_the_new_one_knows_every_child():
    holder, [earlier_pid, later_pid] = start_holder(
        """
        import time
        from localcloud import processes
        print(processes.start_session(["sleep", "120"]).pid)
        processes._reaper.kill()  # the reaper dies on its own: the next child gets a new one
        processes._reaper.wait()
        print(processes.start_session(["sleep", "120"]).pid)
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert wait_gone(later_pid), "a child watched after the reaper died outlived its parent"
    assert wait_gone(earlier_pid), "a child the dead reaper watched outlived its parent"


def test_a_foreground_step_stays_in_the_terminals_process_group():
    result = processes.run(["sh", "-c", "ps -o pgid= -p $$"], stdout=subprocess.PIPE, text=True)
    assert int(result.stdout) == os.getpgid(0)  # so a Ctrl-C in the terminal reaches it


def test_a_process_that_ends_with_its_parent_takes_its_children_along(tmp_path):
    # The holder plays `make`: the deploy-like child asked to end with it, and started a redis-server.
    child_script = redis_child(tmp_path, "from localcloud import processes\nprocesses.end_with_parent()\n")
    holder, [child_pid, redis_pid] = start_holder(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, {str(child_script)!r}], stdout=subprocess.PIPE, text=True)
        print(child.pid)
        print(child.stdout.readline().strip())
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert wait_gone(child_pid), "the child outlived the parent it asked to end with"
    assert wait_gone(redis_pid), "its redis-server outlived it"
