"""Process trees read from Linux's /proc: snapshot every descendant of some processes, then check they are gone.

A tree maps PID -> start time (field 22 of ``/proc/PID/stat``), so a PID reused by a new process does
not count as the old one still running; a zombie counts as gone. Checking a tree taken *before* a stop
is what shows that a stop reached every descendant: the PID of a child the test has already reaped
names no process at all. :func:`watching` samples trees while they work, so that processes that came
and should have gone (a flow run's children) are checked too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator


def stat(pid: int) -> tuple[int, str, int] | None:
    """(parent PID, state, start time) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0], int(fields[19])


def snapshot(*roots: int) -> dict[int, int]:
    """Every running process descended from ``roots`` (the roots included): PID -> start time."""
    stats = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := stat(int(p.name)))}
    tree = {root: stats[root][2] for root in roots if root in stats}
    grown = True
    while grown:
        children = {pid: s[2] for pid, s in stats.items() if s[0] in tree and pid not in tree}
        tree.update(children)
        grown = bool(children)
    return tree


@contextlib.contextmanager
def watching(seen: dict[int, int], *roots: int, every_s: float = 0.5) -> Iterator[dict[int, int]]:
    """Add every process of the trees of ``roots`` to ``seen`` (PID -> start time) every ``every_s`` while in the block."""
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.update(snapshot(*roots))
            stop.wait(every_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
        seen.update(snapshot(*roots))


def alive(tree: dict[int, int]) -> list[int]:
    """The PIDs of ``tree`` still running (the same process: same start time; zombies count as gone)."""
    return [pid for pid, start in tree.items() if (s := stat(pid)) and s[2] == start and s[1] != "Z"]


def command(pid: int) -> str:
    """The command line of ``pid`` ('' when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def wait_gone(tree: dict[int, int], within_s: float) -> dict[int, str]:
    """Wait up to ``within_s`` for every process of ``tree`` to end; returns those still running, PID -> command."""
    deadline = time.monotonic() + within_s
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {pid: command(pid) for pid in alive(tree)}


def kill_left(tree: dict[int, int]) -> None:
    """SIGKILL what is left of ``tree`` (cleanup after a failed check, so a test leaves nothing behind)."""
    for pid in alive(tree):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
