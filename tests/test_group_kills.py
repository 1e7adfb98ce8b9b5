"""A group kill of :mod:`mner.processes` reaches only our own children, even after a child's number is reused.

A child that ended without :func:`mner.processes.stop` stays registered; once its process and group are
gone, Linux may give its number to a new session leader (numbers wrap at ``pid_max``, 32768 on many
machines, and a test suite starts thousands of processes). ``tests.stale_registration`` registers
such a foreign group beside a real child: the last-resort kill and the watchdog must kill the child
and spare the foreign process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import process_tree
from tests.conftest import PROJECT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux's /proc")


def _start(mode: str) -> tuple[subprocess.Popen, dict[str, int], dict[int, int]]:
    parent = subprocess.Popen([sys.executable, "-m", "tests.stale_registration", mode], cwd=PROJECT,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    pids = json.loads(parent.stdout.readline() or "{}")  # type: ignore[union-attr]
    tree = process_tree.snapshot(parent.pid)
    assert pids and set(pids.values()) <= set(tree), pids
    return parent, pids, tree


def _assert_still_running(pid: int, tree: dict[int, int], for_s: float = 3.0) -> None:
    """``pid`` runs ``for_s`` seconds on (a SIGKILL sent to it lands well within that)."""
    assert process_tree.wait_gone({pid: tree[pid]}, for_s) == {pid: process_tree.command(pid)}


def test_kill_all_children_spares_a_group_whose_number_another_process_now_leads() -> None:
    parent, pids, tree = _start("kill-all")
    try:
        assert parent.stdout.readline().strip() == "killed"  # type: ignore[union-attr]
        assert process_tree.wait_gone({pids["child"]: tree[pids["child"]]}, 10) == {}
        _assert_still_running(pids["foreign"], tree)
    finally:
        parent.kill()
        parent.wait()
        process_tree.kill_left(tree)


def test_the_watchdog_spares_a_group_whose_number_another_process_now_leads() -> None:
    parent, pids, tree = _start("watchdog")
    try:
        parent.kill()
        parent.wait()
        assert process_tree.wait_gone({pids["watchdog"]: tree[pids["watchdog"]]}, 10) == {}  # it has done its kills
        assert process_tree.wait_gone({pids["child"]: tree[pids["child"]]}, 10) == {}
        _assert_still_running(pids["foreign"], tree)
    finally:
        parent.kill()
        process_tree.kill_left(tree)
