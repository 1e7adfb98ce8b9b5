"""``mner run`` as a user runs it, in processes of its own: the newcomer's order, and two runs at once on one store.

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
from pathlib import Path

import pytest

from mner.store import ArtifactStore
from tests.conftest import PROJECT
from tests.tiny_sample import write_tiny_sample

pytestmark = pytest.mark.slow
SMALL = {"train.epochs": 1, "model.max_length": 96, "stage1.ocr.backend": "none"}  # OCR has tests of its own
STAGE_LINE = re.compile(r"Task run '([a-z-]+)-[0-9a-f]{3}' - Finished in state (\w+)")
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


def test_two_runs_at_once_on_one_store_both_succeed(tmp_path: Path) -> None:
    home, store = tmp_path / "prefect", tmp_path / "artifacts"
    env = _user_env(home, store)  # a fresh home: both runs' temporary servers create and migrate one database
    args = [*_run_args(_small(tmp_path / "data")), "--json"]
    runs = [subprocess.Popen(args, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=1800) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, out[-2000:] + err[-4000:]
    results = [_scores(out) for out, _ in outputs]
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
