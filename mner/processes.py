"""Child processes that die with their parent, and a stop request the whole run can see.

No Prefect import. Every long-lived child of ours (llama.cpp servers, the temporary Prefect
server, training workers) is started with :func:`spawn`:

- in a session (process group) of its own, so a terminal's Ctrl-C reaches only our process, which
  then stops the children itself, in order, and a group kill also takes the child's own children;
- with the parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set by a small exec
  wrapper rather than a ``preexec_fn``, which is unsafe in a threaded parent), so a ``kill -9`` or an
  out-of-memory kill of our process kills the child at once. Linux sends it when the *thread* that
  started the child ends, so start a child from a thread that outlives it (every caller here holds
  it in a ``with`` block or waits for it in the same thread);
- registered with a watchdog process that SIGKILLs every registered group when our process is
  gone (its pipe from us reaches end-of-file, or its parent PID changes). That covers grandchildren
  (a torchrun's ranks) and systems without the parent-death signal.

:func:`request_stop` marks the process as stopping (Ctrl-C handlers call it); long loops such as
the LLM client check :func:`stop_requested` between requests and give up.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Sequence


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks after boot, from /proc), or None where it is gone or there is no
    /proc. A PID number is reused once its process and group are gone: a different start time is another process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


# Runs in the child: set the parent-death signal, give up if the parent is already gone, exec.
_EXEC_WITH_PARENT_DEATH = """
import os, sys
parent, command = int(sys.argv[1]), sys.argv[2:]
if sys.platform.startswith("linux"):
    import ctypes, signal
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != parent:
    os._exit(137)
os.execvp(command[0], command)
"""

# The watchdog: reads "+PGID START"/"-PGID" lines from its parent; when the parent is gone (its pipe read to the end,
# so that lines written just before a kill count, or its parent PID changed), SIGKILLs the groups whose leader is
# still the process registered (or gone, leaving members of its group).
_WATCHDOG = inspect.getsource(_start_time) + """
import os, select, signal, sys
parent, groups, pending = int(sys.argv[1]), {}, b""
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    ready, _, _ = select.select([0], [], [], 0.2)
    if ready:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\\n")
        for line in lines:
            group, _, started = line[1:].decode().partition(" ")
            if line[:1] == b"+":
                groups[int(group)] = started or None
            else:
                groups.pop(int(group), None)
    elif os.getppid() != parent:
        break
for group, started in groups.items():
    now = _start_time(group)
    if started and now and now != started:
        continue
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""

_lock = threading.Lock()
_watchdog: subprocess.Popen | None = None
_children: dict[int, tuple[subprocess.Popen, str | None]] = {}  # by PID: the process and its start time
_stop_requested = threading.Event()


def spawn(command: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
    """Start ``command`` as a child that dies with this process (see the module docstring).

    ``popen_kwargs`` go to :class:`subprocess.Popen` (``stdout``, ``env``, ``cwd``, ``text`` ...);
    ``start_new_session`` is always on. The returned process runs ``command`` itself (the wrapper
    execs it), so its PID is the command's PID and its process group ID.
    """
    popen_kwargs["start_new_session"] = True
    wrapped = [sys.executable, "-c", _EXEC_WITH_PARENT_DEATH, str(os.getpid()), *command]
    with _lock:
        watchdog = _ensure_watchdog()
        process = subprocess.Popen(wrapped, **popen_kwargs)
        _children[process.pid] = (process, _start_time(process.pid))
        _tell_watchdog(watchdog, _registration(process.pid))
    return process


def stop(process: subprocess.Popen, grace_s: float = 5.0) -> int:
    """Stop ``process`` and its process group: SIGTERM, then SIGKILL after ``grace_s``; returns its exit code."""
    started = _children.get(process.pid, (process, None))[1]
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM, started)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(process.pid, signal.SIGKILL, started)  # what is left of the group (the child's own children)
    code = process.wait()
    with _lock:
        _children.pop(process.pid, None)
        if _watchdog is not None:
            _tell_watchdog(_watchdog, f"-{process.pid}")
    return code


def kill_all_children() -> None:
    """SIGKILL every child started with :func:`spawn` that is still registered, with its group (last resort)."""
    with _lock:
        children = list(_children.items())
    for pid, (_process, started) in children:
        _signal_group(pid, signal.SIGKILL, started)


def request_stop() -> None:
    """Mark this process as stopping: loops that check :func:`stop_requested` give up."""
    _stop_requested.set()


def stop_requested() -> bool:
    """Whether :func:`request_stop` was called (e.g. by a Ctrl-C handler)."""
    return _stop_requested.is_set()


class Interrupted(Exception):
    """Raised in the main thread by the handler :func:`stop_on_interrupt` installs (Ctrl-C, SIGTERM).

    An ``Exception``, not a ``BaseException``: Prefect ends a flow run that raises it as Failed
    (a ``KeyboardInterrupt`` would leave it Crashed), after the ``with`` blocks on the way up have
    stopped their servers.
    """


def stop_on_interrupt(deadline_s: float = 8.0) -> None:
    """On the first SIGINT or SIGTERM: :func:`request_stop`, raise :class:`Interrupted` in the main thread,
    and if the process is still alive ``deadline_s`` later, SIGKILL every child group and exit with 130.

    A second signal exits at once the same way. Does nothing outside the main thread (signal
    handlers live there).
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def force_exit() -> None:
        kill_all_children()
        with _lock:
            if _watchdog is not None and _watchdog.stdin is not None:
                _watchdog.stdin.close()  # end-of-file: the watchdog kills what is left and exits
        os._exit(130)

    def handle(signum: int, _frame: Any) -> None:
        if stop_requested():
            force_exit()
        request_stop()
        timer = threading.Timer(deadline_s, force_exit)
        timer.daemon = True
        timer.start()
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _signal_group(pgid: int, signum: int, started: str | None = None) -> None:
    """Signal process group ``pgid``, unless its number now leads another process than the one that ``started`` then
    (a child that ended without :func:`stop`, whose number was reused). A leader gone leaves its group's members."""
    now = _start_time(pgid)
    if started and now and now != started:
        return
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _ensure_watchdog() -> subprocess.Popen:
    """The watchdog of this process, started on first use (and again if it died or we forked)."""
    global _watchdog
    if _watchdog is None or _watchdog.poll() is not None or _watchdog_owner != os.getpid():
        _start_watchdog()
    assert _watchdog is not None
    return _watchdog


_watchdog_owner = -1


def _start_watchdog() -> None:
    global _watchdog, _watchdog_owner
    _watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid())], stdin=subprocess.PIPE,
                                 start_new_session=True)
    _watchdog_owner = os.getpid()
    for pid in _children:
        _tell_watchdog(_watchdog, _registration(pid))


def _registration(pid: int) -> str:
    """The watchdog's line that registers child ``pid``'s group with the child's start time."""
    return f"+{pid} {_children[pid][1] or ''}"


def _tell_watchdog(watchdog: subprocess.Popen, line: str) -> None:
    try:
        watchdog.stdin.write(f"{line}\n".encode())  # type: ignore[union-attr]
        watchdog.stdin.flush()  # type: ignore[union-attr]
    except (BrokenPipeError, ValueError, OSError):
        pass
