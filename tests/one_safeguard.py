"""Fault injector: a parent that starts children with ``mner.processes.spawn`` with one of its safeguards off.

``python -m tests.one_safeguard MODE``, MODE one of ``both``, ``parent-death`` (the watchdog is
switched off) or ``watchdog`` (the parent-death signal is switched off). The parent starts two
children with :func:`mner.processes.spawn`: one that sleeps, and one that starts a grandchild in its
own process group and then sleeps (as torchrun does with its ranks). It prints one JSON line
``{"child": PID, "starter": PID, "grandchild": PID}`` once all three run, then waits to be killed.

A safeguard is switched off by replacing the script it runs with one that does nothing of the kind:
the exec wrapper without ``prctl(PR_SET_PDEATHSIG)``, or a watchdog that reads its pipe to the end
and kills nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from mner import processes

EXEC_WITHOUT_PARENT_DEATH = """
import os, sys
os.execvp(sys.argv[2], sys.argv[2:])
"""
WATCHDOG_THAT_KILLS_NOTHING = """
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.stdin.buffer.read()
"""
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]
# prints its grandchild's PID, then sleeps; the grandchild stays in this child's process group
STARTER = [sys.executable, "-c", "import subprocess, sys, time\n"
           "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
           "print(grandchild.pid, flush=True)\n"
           "time.sleep(600)"]


def switch_off(mode: str) -> None:
    """Leave only the safeguard ``mode`` names (``both`` leaves both)."""
    for name in ("_EXEC_WITH_PARENT_DEATH", "_WATCHDOG"):
        assert isinstance(getattr(processes, name, None), str), f"mner.processes has no script {name} to replace"
    if mode == "watchdog":
        processes._EXEC_WITH_PARENT_DEATH = EXEC_WITHOUT_PARENT_DEATH
    elif mode == "parent-death":
        processes._WATCHDOG = WATCHDOG_THAT_KILLS_NOTHING
    elif mode != "both":
        raise SystemExit(f"unknown mode {mode!r}: both, parent-death or watchdog")


if __name__ == "__main__":
    switch_off(sys.argv[1])
    child = processes.spawn(SLEEP)
    starter = processes.spawn(STARTER, stdout=subprocess.PIPE, text=True)
    grandchild = int(starter.stdout.readline())  # type: ignore[union-attr]
    print(json.dumps({"child": child.pid, "starter": starter.pid, "grandchild": grandchild}), flush=True)
    time.sleep(600)
