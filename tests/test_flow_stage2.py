"""The mner-pipeline flow (stage 1 from files, stage 2) on the demo sample against a real (temporary) Prefect server.

One epoch of training per variant; then the artifacts, the manifests, and the second call,
whose every stage task must come back Cached; then a corrupted output is recomputed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import artifacts_by_key, settled_task_states

pytestmark = pytest.mark.slow


def test_pipeline_flow_trains_reports_and_caches(prefect_harness, tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    def stage2(overrides, return_state):
        return pipeline(overrides=overrides, return_state=return_state)

    overrides = {"train.epochs": 1, "train.max_train_sentences": 32, "model.max_length": 128, "artifacts_root": str(tmp_path / "artifacts")}
    state = stage2(overrides=overrides, return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    assert set(summary) == {"text", "text+knowledge"}
    first = settled_task_states(state.state_details.flow_run_id, expected=20)
    assert sorted(first.values()).count("Completed") == len(first)

    root = tmp_path / "artifacts"
    for stage in ("load", "caption", "caption-shard", "ocr", "ocr-shard", "knowledge", "train", "evaluate"):
        dirs = [d for d in (root / stage).iterdir() if not d.name.endswith(".partial")]
        assert dirs, stage
        for directory in dirs:
            manifest = json.loads((directory / "manifest.json").read_text())
            assert manifest["stage"] == stage and manifest["code_version"] and manifest["files"]
            for name in manifest["files"]:
                assert (directory / name).is_file()
    joined_dir = next((root / "knowledge").iterdir())
    alignment = json.loads((joined_dir / "alignment.json").read_text())
    for split in ("train", "dev", "test"):  # Z really joined: every sample has PGIM's text but those listed as without
        rows = [json.loads(line) for line in (joined_dir / f"{split}.jsonl").read_text().splitlines()]
        empty = [r["id"] for r in rows if not r["knowledge"].strip()]
        assert empty == alignment[split]["without_knowledge"] and len(empty) <= 1, (split, empty)
        assert sum(len(r["knowledge"].split()) for r in rows) > 20 * len(rows)
    train_dir = next(d for d in (root / "train").iterdir())
    assert {"model.pt", "tagger.json", "history.json"} <= set(json.loads((train_dir / "manifest.json").read_text())["files"])
    scores = json.loads(next((root / "evaluate").iterdir()).joinpath("scores.json").read_text())
    assert 0.0 <= scores["test"]["f1"] <= 1.0 and "per_type" in scores["test"]

    keys = ["twitter2015-sample-per-type-f1", "twitter2015-sample-report", "twitter2015-sample-dataset-stats"]
    artifacts = artifacts_by_key(keys)
    assert set(artifacts) == set(keys)
    assert "[T;Z] minus text-only" in artifacts["twitter2015-sample-report"].data

    _predict_with_the_demo_model(root, summary)

    second = stage2(overrides=overrides, return_state=True)
    states = settled_task_states(second.state_details.flow_run_id, expected=20)
    stage_states = {name: s for name, s in states.items() if not name.startswith(("report", "dataset-stats"))}
    assert len(stage_states) == 18 and set(stage_states.values()) == {"Cached"}, states
    assert second.result() == summary

    # a deleted output file is noticed and that stage (and only what depends on it) recomputed
    evaluate_dir = next((root / "evaluate").iterdir())
    (evaluate_dir / "scores.json").unlink()
    third = stage2(overrides=overrides, return_state=True)
    states = settled_task_states(third.state_details.flow_run_id, expected=20)
    recomputed = [name for name, s in states.items() if s == "Completed" and not name.startswith(("report", "dataset-stats"))]
    assert len(recomputed) == 1 and recomputed[0].startswith("evaluate"), states
    assert third.result() == summary

    # one stage's config changed: every OCR shard recomputes, nothing upstream, and nothing else (with PGIM's
    # knowledge files nothing downstream reads OCR); the merge replays only if the shards' files came out
    # byte-identical (the demo images' text is read with scores above 0.9), which content keys allow
    fourth = stage2(overrides={**overrides, "stage1.ocr.min_score": 0.9}, return_state=True)
    states = settled_task_states(fourth.state_details.flow_run_id, expected=20)
    recomputed = {name.rsplit("-", 1)[0] for name, s in states.items() if s == "Completed"} - {"report", "dataset-stats"}
    ocr_shards = [s for name, s in states.items() if name.startswith("ocr-shard")]
    assert ocr_shards and set(ocr_shards) == {"Completed"} and recomputed <= {"ocr-shard", "ocr"}, states


def _predict_with_the_demo_model(root: Path, summary: dict) -> None:
    """``mner predict`` with a model the flow trained on the demo sample, named by dataset and variant, and a demo
    image (real OCR); ``latest`` is the variant trained last."""
    from typer.testing import CliRunner

    from cli.main import app
    from mner.trained import resolve_model
    from tests.conftest import SAMPLE

    assert resolve_model("latest", root) == Path(summary["text+knowledge"]["model"])
    assert resolve_model("twitter2015-sample/text", root) == Path(summary["text"]["model"])
    text = "Pope Francis meets Barack Obama in Washington on Monday"
    result = CliRunner().invoke(app, ["predict", "--run", "twitter2015-sample/text", "--artifacts-root", str(root),
                                      "--text", text, "--image", str(SAMPLE / "images" / "1351124.jpg")])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert set(answer) >= {"tokens", "tags", "entities", "knowledge", "caption", "ocr", "errors"}
    assert answer["tokens"] == text.split() and len(answer["tags"]) == len(answer["tokens"])
    assert "Pope Francis" in answer["ocr"]
    for entity in answer["entities"]:
        assert entity["text"] == " ".join(answer["tokens"][entity["start"] : entity["end"]])
        assert answer["tags"][entity["start"]] == "B-" + entity["type"]
