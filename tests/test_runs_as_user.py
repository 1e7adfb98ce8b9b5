"""``mner run`` as a user runs it, in processes of its own: the newcomer's order, and two runs at once on one store.

The two runs are made to overlap for certain: ``tests.hold_in_stage`` holds the first run to begin
computing ``load`` inside it (holding the key's lock) until the other run has logged that it waits.

The "user" here has a Prefect home and an artifact store of their own in temporary folders (never the
real ones); the runs are small (one epoch on 8 posts per split).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mner.store import ArtifactStore
from tests.conftest import PROJECT
from tests.tiny_sample import write_tiny_sample

pytestmark = pytest.mark.slow
SMALL = {"train.epochs": 1, "model.max_length": 96, "stage1.ocr.backend": "none"}  # OCR has tests of its own
STAGE_LINE = re.compile(r"Task run '([a-z-]+)-[0-9a-f]{3}' - Finished in state (\w+)")
WAITING = re.compile(r"load [0-9a-f]{20}: waiting for the run that holds \S+load/[0-9a-f]{20}\.lock")  # tasks.common
INNER_TEST = '''
import json
import os
from pathlib import Path


def test_the_suite_runs_the_pipeline_in_its_own_home_and_store(prefect_harness, tmp_path):
    from flows.pipeline import pipeline

    Path(os.environ["MNER_INNER_REPORT"]).write_text(os.environ["PREFECT_HOME"] + "\\n" + os.environ["MNER_ARTIFACTS_ROOT"])
    overrides = {**json.loads(os.environ["MNER_INNER_OVERRIDES"]), "artifacts_root": str(tmp_path / "artifacts")}
    assert pipeline(overrides=overrides, until="knowledge", return_state=True).is_completed()
'''


def _user_env(home: Path, store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MNER_"))}
    return {**env, "PREFECT_HOME": str(home), "MNER_ARTIFACTS_ROOT": str(store), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _small(data: Path) -> dict[str, object]:
    """One epoch on a few posts of the demo sample, written under ``data``."""
    return {**SMALL, **write_tiny_sample(data)}


def _run_args(overrides: dict[str, object]) -> list[str]:
    mner = str(Path(sys.executable).with_name("mner"))
    return [mner, "run", *[arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]]


def _mner_run(env: dict[str, str], overrides: dict[str, object]) -> subprocess.CompletedProcess:
    return subprocess.run(_run_args(overrides), cwd=PROJECT, env=env, capture_output=True, text=True, timeout=1200)


def _scores(stdout: str) -> dict:
    """The scores ``mner run`` prints: its whole stdout is one JSON object (logs go to stderr)."""
    return json.loads(stdout)


def _stage_states(output: str) -> dict[str, set[str]]:
    """Final states of the stage tasks a run logged, by stage."""
    states: dict[str, set[str]] = {}
    for stage, state in STAGE_LINE.findall(output):
        if stage not in ("report", "dataset-stats"):
            states.setdefault(stage, set()).add(state)
    return states


def test_demo_then_tests_then_demo_again(tmp_path: Path) -> None:
    """The newcomer's order: demo, the test suite (its temp dirs then deleted), demo again, which replays from the cache."""
    home, store = tmp_path / "user-prefect", tmp_path / "user-artifacts"
    env = _user_env(home, store)
    small = _small(tmp_path / "data")
    first = _mner_run(env, small)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    table = first.stdout.splitlines()  # the scores as a table: a header, then one line per variant with its model
    assert table[0].startswith("variant") and [line.split()[0] for line in table[1:]] == ["text", "text+knowledge"]
    assert all(Path(line.split()[-1]).is_relative_to(store / "train") for line in table[1:]), table
    assert "Completed" in _stage_states(first.stdout + first.stderr)["train"]

    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "test_inner.py").write_text(INNER_TEST)
    report = tmp_path / "inner-env.txt"
    basetemp = tmp_path / "suite-temp"
    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", str(inner / "test_inner.py"),
                            f"--basetemp={basetemp}", "-p", "no:cacheprovider"],
                           cwd=PROJECT, env={**env, "MNER_INNER_REPORT": str(report),
                                             "MNER_INNER_OVERRIDES": json.dumps(small)}, capture_output=True, text=True,
                           timeout=1200)
    assert suite.returncode == 0, suite.stdout[-3000:] + suite.stderr[-3000:]
    suite_home, suite_store = report.read_text().splitlines()
    assert suite_home != str(home) and suite_store != str(store)  # the make-exported home and store are not the suite's
    shutil.rmtree(basetemp)

    again = _mner_run(env, small)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    states = _stage_states(again.stdout + again.stderr)
    assert states and all(found == {"Cached"} for found in states.values()), states


def _tail(paths: list[Path]) -> str:
    return "\n".join(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:] for path in paths)


def test_two_runs_at_once_on_one_store_both_succeed(tmp_path: Path) -> None:
    """Two runs start at once; the first inside ``load`` is held there, and the other must wait for its lock."""
    home, store, hold = tmp_path / "prefect", tmp_path / "artifacts", tmp_path / "hold"
    hold.mkdir()
    env = _user_env(home, store)  # a fresh home: both runs' temporary servers create and migrate one database
    args = [sys.executable, "-m", "tests.hold_in_stage", "load", str(hold), *_run_args(_small(tmp_path / "data"))[1:],
            "--json"]
    outs, errs = [tmp_path / f"run-{i}.out" for i in range(2)], [tmp_path / f"run-{i}.err" for i in range(2)]
    runs = []
    for out, err in zip(outs, errs):
        with open(out, "w") as stdout, open(err, "w") as stderr:
            runs.append(subprocess.Popen(args, cwd=PROJECT, env=env, stdout=stdout, stderr=stderr))
    try:
        deadline = time.monotonic() + 900
        while not (held := list(hold.glob("held-*"))):  # the first run to begin computing load stays inside it
            assert all(run.poll() is None for run in runs) and time.monotonic() < deadline, _tail(errs)
            time.sleep(0.2)
        other = next(i for i, run in enumerate(runs) if held[0].name != f"held-{run.pid}")
        while not WAITING.search(errs[other].read_text(errors="replace")):  # the other run reaches load and waits
            assert len(list(hold.glob("held-*"))) == 1, "both runs were inside load at once\n" + _tail(errs)
            assert runs[other].poll() is None, "the other run ended without waiting for load\n" + _tail(errs)
            assert time.monotonic() < deadline, "the other run did not wait for load within 900 s\n" + _tail(errs)
            time.sleep(0.2)
    except BaseException:
        for run in runs:
            run.kill()  # its children die with it (mner.processes)
        raise
    finally:
        (hold / "release").touch()
    for run in runs:
        try:
            run.wait(1800)
        except subprocess.TimeoutExpired:
            run.kill()
    for run in runs:
        assert run.returncode == 0, _tail(errs)
    assert len(list(hold.glob("held-*"))) == 1  # the waiting run found load published: it never began computing it
    results = [_scores(out.read_text()) for out in outs]
    assert results[0] == results[1]

    store_view = ArtifactStore(store)
    entries = store_view.entries()
    by_stage: dict[str, list[str]] = {}
    for entry in entries:
        by_stage.setdefault(entry["stage"], []).append(entry["key"])
    assert by_stage["load"] and len(by_stage["load"]) == 1 and len(by_stage["knowledge"]) == 1
    assert len(by_stage["train"]) == 2 and len(by_stage["evaluate"]) == 2  # one per variant, not one per run
    for entry in entries:
        assert store_view.load(entry["stage"], entry["key"]) is not None, entry  # every output verifies
    assert not list(store.glob("*/*.partial")) and not list(store.glob("*/*.replaced-*"))
