"""The loss-weight grid flow and MSEA retrieval with fused features, on the demo sample, against a real Prefect server.

The grid trains the real backbone (offline MiniLM, image text = BLIP-2 captions + RapidOCR text) at
two weight pairs and writes its table; the pipeline then retrieves examples with the ``fused``
embedder, reusing the grid's backbone for the same weights from the cache.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import artifacts_by_key, settled_task_states

pytestmark = pytest.mark.slow


def test_grid_flow_writes_its_table_and_fused_retrieval_reuses_the_backbone(prefect_harness, tmp_path: Path) -> None:
    from flows.backbone_grid import backbone_grid
    from flows.pipeline import pipeline
    from mner.samples import read_jsonl

    overrides = {"artifacts_root": str(tmp_path / "artifacts"), "backbone.s1_epochs": 1, "backbone.s2_epochs": 1,
                 "train.max_train_sentences": 16, "train.batch_size": 8}
    rows = backbone_grid(overrides=overrides, align_lambdas=[0.0, 0.1], infonce_lambdas=[0.1])
    assert [(r["align_lambda"], r["infonce_lambda"]) for r in rows] == [(0.0, 0.1), (0.1, 0.1)]
    assert sum(r["chosen_on_dev"] for r in rows) >= 1
    for row in rows:
        assert 0 <= row["dev_f1"] <= 100 and 0 <= row["test_f1"] <= 100 and row["train_seconds"] > 0

    grid_dirs = list((tmp_path / "artifacts" / "backbone-grid").glob("*/grid.csv"))
    assert len(grid_dirs) == 1
    with open(grid_dirs[0], newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2 and {"dataset", "align_lambda", "infonce_lambda", "dev_f1", "test_precision",
                                "test_recall", "test_f1"} <= set(table[0])
    artifact = artifacts_by_key(["twitter2015-sample-backbone-grid"])["twitter2015-sample-backbone-grid"]
    assert artifact.type == "table" and len(json.loads(artifact.data)) == 2

    fused = {**overrides, "stage1.knowledge.backend": "llm", "stage1.retrieval.embedder": "fused",
             "backbone.align_lambda": 0.1, "backbone.infonce_lambda": 0.1}
    state = pipeline(overrides=fused, until="retrieve", return_state=True)
    assert state.is_completed(), state
    states = settled_task_states(state.state_details.flow_run_id, expected=5)
    by_stage = {name.rsplit("-", 1)[0]: s for name, s in states.items()}  # task runs are named <stage>-<suffix>
    assert by_stage.get("backbone") == "Cached" and by_stage.get("retrieve") == "Completed", states
    out = state.result()
    for split in ("train", "dev", "test"):
        data_rows = read_jsonl(next((tmp_path / "artifacts" / "load").glob(f"*/{split}.jsonl")))
        hits = read_jsonl(Path(out["retrieve"]) / f"{split}.jsonl")
        assert len(hits) == len(data_rows)
        for row, hit in zip(data_rows, hits):
            assert hit["id"] == row["id"] and len(hit["examples"]) == 5
            assert row["image_id"] not in {e["image_id"] for e in hit["examples"]}
