"""Child processes that never outlive the process that started them, even one killed with SIGKILL.

Every child started here is watched by a reaper: one small process per parent that holds a pipe from it.
The pipe's end comes when the parent's life does, however that ends, and the reaper then ends every child
still running (SIGTERM, then SIGKILL after a grace period). Children are tracked by pidfd, so a reused pid is
never hit, and a child that exits is forgotten at once. Servers start in sessions of their own, so a Ctrl-C
in the terminal reaches only the orchestrator, which stops them in order; a foreground step (`run`) stays in
the terminal's process group, so Ctrl-C reaches it as it would any command. Linux only (pidfd, /proc).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import threading
import time

GRACE_SECONDS = 3.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_lock = threading.Lock()
_reaper: subprocess.Popen | None = None
_inherited: list[subprocess.Popen] = []
_watched: list[bytes] = []  # every `pid start_time` line this process has sent its reaper


def start_session(argv: list[str], **popen_options) -> subprocess.Popen:
    """`subprocess.Popen(argv, start_new_session=True, ...)`, reaped when this process ends."""
    return _start(argv, new_session=True, **popen_options)


def run(argv: list[str], **run_options) -> subprocess.CompletedProcess:
    """`subprocess.run` for a step that must not go on after this process is killed (terraform apply).
    Its options are Popen's plus `input` (not `check`, `timeout` or `capture_output`)."""
    input_text = run_options.pop("input", None)
    process = _start(argv, new_session=False, stdin=subprocess.PIPE if input_text else None, **run_options)
    with process:
        try:
            stdout, stderr = process.communicate(input_text)
        except BaseException:
            process.kill()
            raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def end_with_parent(signum: int = signal.SIGTERM) -> None:
    """Have the kernel send this process `signum` when the process that started it ends, however it ends
    (Linux's PR_SET_PDEATHSIG): `make deploy` killed with SIGKILL then stops the deploy, whose reaper
    stops the rest. Run it straight from make (not through `uv run`, which would stay behind as the parent)."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it ended before the request was in place
        os.kill(os.getpid(), signum)


def _start(argv: list[str], *, new_session: bool, **popen_options) -> subprocess.Popen:
    process = subprocess.Popen(argv, start_new_session=new_session, **popen_options)
    try:
        watch(process.pid)
    except BaseException:
        process.kill()  # unwatched, it could outlive us: not started at all, then
        process.wait()
        raise
    return process


def watch(pid: int) -> None:
    """Have the reaper end `pid` when this process ends, unless it has ended by then."""
    start_time = _start_time(pid)
    if start_time is None:
        return  # already gone
    line = f"{pid} {start_time}\n".encode()
    with _lock:
        _watched.append(line)
        try:
            _send(line)
        except BrokenPipeError:  # the reaper died (killed on its own): another one takes over everything
            _stop_reaper()
            _send(line)


def _send(line: bytes) -> None:
    global _reaper
    if _reaper is None or _reaper.poll() is not None:
        _reaper = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)],  # needs nothing on sys.path
            stdin=subprocess.PIPE,
            start_new_session=True,  # neither a Ctrl-C nor the parent's group kill may end it first
        )
        line = b"".join(_watched)  # a new reaper learns of every child so far (it skips the ones gone)
    assert _reaper.stdin is not None
    _reaper.stdin.write(line)
    _reaper.stdin.flush()


def _stop_reaper() -> None:
    global _reaper
    if _reaper is not None:
        _reaper.kill()
        _reaper.wait()
        if _reaper.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                _reaper.stdin.close()


def _forget_reaper_after_fork() -> None:
    """A forked child does not keep its parent's reaper waiting: it closes its copy of the pipe, and
    starts a reaper of its own if it starts children."""
    global _reaper, _lock
    if _reaper is not None:
        if _reaper.stdin is not None:
            _reaper.stdin.close()  # nothing is buffered: every write is flushed under the lock
        _inherited.append(_reaper)  # not ours to wait for; kept so that collecting it does nothing
    _reaper, _lock = None, threading.Lock()
    _watched.clear()


os.register_at_fork(after_in_child=_forget_reaper_after_fork)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): with the pid, one process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _reap() -> None:
    """The reaper: reads `pid start_time` lines until EOF, forgetting each child as it exits; then ends
    every watched process still alive."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    events = selectors.DefaultSelector()  # epoll: no limit on how many children
    events.register(0, selectors.EVENT_READ)
    watched: set[int] = set()
    pending = b""
    while True:
        ready = [key.fd for key, _ in events.select()]
        for pidfd in (fd for fd in ready if fd != 0):  # exited
            events.unregister(pidfd)
            os.close(pidfd)
            watched.discard(pidfd)
        if 0 not in ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            opened = _open(line)
            if opened is not None:
                events.register(opened, selectors.EVENT_READ)
                watched.add(opened)
    # Their descendants too (terraform's provider plugins): once a parent is killed they are orphans no
    # signal reaches, so they are taken while the parents still hold them. They get no SIGTERM of their own
    # (a parent ending gracefully still needs them, as terraform its provider to write the state), only the
    # SIGKILL after the grace if they outlive it.
    below = _descendants(watched)
    for pidfd in watched:
        _signal(pidfd, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    events.unregister(0)
    while watched and (left := deadline - time.monotonic()) > 0:
        for key, _ in events.select(left):
            events.unregister(key.fd)
            watched.discard(key.fd)
    for pidfd in [*watched, *below]:
        _signal(pidfd, signal.SIGKILL)
    for pidfd in below:
        os.close(pidfd)


def _descendants(pidfds: set[int]) -> list[int]:
    """pidfds of every live descendant of the processes behind `pidfds` (from /proc)."""
    roots: set[int] = set()
    for pidfd in pidfds:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/self/fdinfo/{pidfd}") as info:
            roots.update(int(line.split()[1]) for line in info if line.startswith("Pid:"))
    parents: dict[int, int] = {}
    started: dict[int, str] = {}  # from the same read: a pid reused since is not taken for it
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            with contextlib.suppress(OSError, IndexError), open(f"/proc/{stat}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
                parents[int(stat)], started[int(stat)] = int(fields[1]), fields[19]
    found: set[int] = set()
    frontier = roots
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found - roots
        found |= frontier
    opened = []
    for pid in found:
        descendant = _open(f"{pid} {started[pid]}".encode())
        if descendant is not None:
            opened.append(descendant)
    return opened


def _open(line: bytes) -> int | None:
    """A pidfd for `pid start_time`, if that very process is still there."""
    pid, start_time = line.split()
    try:
        pidfd = os.pidfd_open(int(pid))
    except ProcessLookupError:
        return None  # gone already
    except OSError as error:
        print(f"localcloud reaper: cannot watch pid {int(pid)}: {error}", file=sys.stderr, flush=True)
        return None
    if _start_time(int(pid)) != start_time.decode():
        os.close(pidfd)  # the pid was reused: not ours
        return None
    return pidfd


def _signal(pidfd: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # ended already
        signal.pidfd_send_signal(pidfd, signum)


if __name__ == "__main__":
    _reap()
