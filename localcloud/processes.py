"""Child processes that never outlive the process that started them, even one killed with SIGKILL.

The local cloud starts its servers in sessions of their own, so a Ctrl-C in the terminal reaches only the
orchestrator, which then stops them in order. A SIGKILL gives it no such chance, so every child started
here is also watched by a reaper: one small process per parent that holds a pipe from it. The pipe's end
comes when the parent's life does, however that ends, and the reaper then ends every child still running
(SIGTERM, then SIGKILL after a grace period). Children are tracked by pidfd, so a reused pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time

GRACE_SECONDS = 3.0

_lock = threading.Lock()
_reaper: subprocess.Popen | None = None


def start_session(argv: list[str], **popen_options) -> subprocess.Popen:
    """`subprocess.Popen(argv, start_new_session=True, ...)`, reaped when this process ends."""
    process = subprocess.Popen(argv, start_new_session=True, **popen_options)
    watch(process.pid)
    return process


def run(argv: list[str], **run_options) -> subprocess.CompletedProcess:
    """`subprocess.run` for a step that must not go on after this process is killed (terraform apply)."""
    input_text = run_options.pop("input", None)
    with start_session(argv, **run_options, stdin=subprocess.PIPE if input_text else None) as process:
        try:
            stdout, stderr = process.communicate(input_text)
        except BaseException:
            process.kill()
            raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def watch(pid: int) -> None:
    """Have the reaper end `pid` when this process ends, unless it has ended by then."""
    global _reaper
    start_time = _start_time(pid)
    if start_time is None:
        return  # already gone
    with _lock:
        if _reaper is None or _reaper.poll() is not None:
            _reaper = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__)],  # needs nothing on sys.path
                stdin=subprocess.PIPE,
                start_new_session=True,  # neither a Ctrl-C nor the parent's group kill may end it first
            )
        assert _reaper.stdin is not None
        _reaper.stdin.write(f"{pid} {start_time}\n".encode())
        _reaper.stdin.flush()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): with the pid, one process."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 (read at once)
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _reap() -> None:
    """The reaper: reads `pid start_time` lines until EOF, then ends every watched process still alive."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    watched: list[int] = []
    for line in sys.stdin.buffer:
        pid, start_time = line.split()
        try:
            pidfd = os.pidfd_open(int(pid))
        except OSError:
            continue
        if _start_time(int(pid)) == start_time.decode():
            watched.append(pidfd)
        else:
            os.close(pidfd)
    for pidfd in watched:
        _signal(pidfd, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    alive = list(watched)
    while alive and time.monotonic() < deadline:
        exited, _, _ = select.select(alive, [], [], max(0.0, deadline - time.monotonic()))
        alive = [pidfd for pidfd in alive if pidfd not in exited]
    for pidfd in alive:
        _signal(pidfd, signal.SIGKILL)


def _signal(pidfd: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # ended already
        signal.pidfd_send_signal(pidfd, signum)


if __name__ == "__main__":
    _reap()
