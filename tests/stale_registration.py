"""Fault injector: a parent whose registry of child groups holds a number that a foreign process now leads.

``python -m tests.stale_registration MODE``: starts a child with :func:`mner.processes.spawn`, and a
foreign process in a session of its own (not ours to kill), then registers the foreign group as a
child that started at another time, as a child that ended without :func:`mner.processes.stop` looks
once its number is reused. Prints one JSON line ``{"child", "foreign", "watchdog"}`` (PIDs). In MODE
``kill-all`` it then calls :func:`mner.processes.kill_all_children` and prints ``killed``; in both modes
it then waits to be killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from mner import processes

SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]
STALE_START_TIME = "1"  # a tick after boot: no process of this run started then


def main(mode: str) -> None:
    """Run the scenario of the module docstring."""
    child = processes.spawn(SLEEP)
    foreign = subprocess.Popen(SLEEP, start_new_session=True)
    with processes._lock:
        processes._children[foreign.pid] = (foreign, STALE_START_TIME)
        assert processes._watchdog is not None
        processes._tell_watchdog(processes._watchdog, processes._registration(foreign.pid))
        watchdog = processes._watchdog.pid
    print(json.dumps({"child": child.pid, "foreign": foreign.pid, "watchdog": watchdog}), flush=True)
    if mode == "kill-all":
        processes.kill_all_children()
        print("killed", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1])
