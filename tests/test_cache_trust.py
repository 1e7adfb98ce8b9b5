"""The cache against one Prefect home shared by several artifact stores, and against stale Prefect records.

A run returns and reads only outputs of its own store: a record made for store B is never replayed
for store A (the store's id is in the Prefect key), and a replayed record whose files differ from
what the store holds is computed again instead of being returned.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from mner.store import ArtifactStore, sha256_file
from tests.conftest import SAMPLE, artifacts_by_key, settled_task_states, task_run_states
from tests.tiny_sample import write_tiny_sample

pytestmark = pytest.mark.slow
SMALL = {"train.epochs": 1, "model.max_length": 96, "stage1.ocr.backend": "none"}  # OCR has tests of its own


def _report_paths() -> list[Path]:
    """The files the newest report artifact links to."""
    report = artifacts_by_key(["twitter2015-sample-report"])["twitter2015-sample-report"].data
    return [Path(unquote(urlparse(uri).path)) for uri in re.findall(r"\((file://[^)]+)\)", report)]


def test_a_run_never_replays_another_stores_outputs(prefect_harness, tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    a, b = tmp_path / "A", tmp_path / "B"
    tiny = write_tiny_sample(tmp_path / "data")

    def run(root: Path):
        state = pipeline(overrides={**SMALL, **tiny, "artifacts_root": str(root)}, return_state=True)
        assert state.is_completed(), state
        return state

    first = run(a)
    run(b)  # same data and config, same Prefect home: B's records are now the newest
    expected = len(task_run_states(first.state_details.flow_run_id))  # all recorded by now
    assert all(p.is_relative_to(b) for p in _report_paths())
    shutil.rmtree(b)

    again = run(a)
    states = settled_task_states(again.state_details.flow_run_id, expected=expected)
    stage_states = {n: s for n, s in states.items() if not n.startswith(("report", "dataset-stats"))}
    assert stage_states and set(stage_states.values()) == {"Cached"}, states  # A's own records, not B's
    paths = _report_paths()
    assert len(paths) >= 7 and all(p.is_relative_to(a) and p.exists() for p in paths), paths  # data to scores, no OCR
    assert again.result() == first.result()


def test_a_replayed_record_with_other_files_is_not_returned(prefect_harness, tmp_path: Path) -> None:
    """A Prefect record whose files differ from the store's (another run republished the output) is checked, not trusted."""
    from prefect import flow

    from tasks.common import run_stage
    from tasks.data import load_splits

    root = tmp_path / "artifacts"
    sources = {"train": str(SAMPLE / "train.txt"), "dev": str(SAMPLE / "valid.txt"), "test": str(SAMPLE / "test.txt")}

    @flow
    def load_only() -> dict:
        return run_stage(load_splits, sources=sources, repair_bio=True, artifacts_root=str(root))

    first = load_only()
    directory = Path(first["dir"])
    stats = directory / "stats.json"  # republished by another run: new content, manifest to match
    stats.write_text(json.dumps({"republished": True}))
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"]["stats.json"] = sha256_file(stats)
    (directory / "manifest.json").write_text(json.dumps(manifest))

    state = load_only(return_state=True)
    second = state.result()
    assert second["files"] == manifest["files"] != first["files"]
    assert ArtifactStore(root).holds(second)
    # Prefect did replay the first run's record (a Cached task run), and it was checked and run again, not returned
    states = settled_task_states(state.state_details.flow_run_id, expected=2, by_id=True)
    assert sorted(states.values()) == ["Cached", "Completed"], states
