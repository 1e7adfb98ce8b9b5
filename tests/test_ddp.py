"""Training under DDP: two gloo processes (torchrun) each train one step on their own batch, and end with
identical weights that differ from the pretrained ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow


def _joined_rows(path: Path, limit: int) -> list[dict]:
    from mner.formats import read_conll

    return [{"id": str(i), "tokens": s.tokens, "tags": s.tags, "knowledge": ""}
            for i, s in enumerate(read_conll(path, repair=True).sentences[:limit])]


def test_two_gloo_ranks_train_one_step_and_agree(tmp_path: Path) -> None:
    from engine.launcher import launch_command, run_training_job
    from mner.config import ModelConfig, TrainConfig
    from mner.samples import write_jsonl

    write_jsonl(tmp_path / "train.jsonl", _joined_rows(SAMPLE / "train.txt", 4))
    write_jsonl(tmp_path / "dev.jsonl", _joined_rows(SAMPLE / "valid.txt", 4))
    train = TrainConfig(epochs=1, batch_size=2, num_threads=1, device="cpu", precision="fp32", processes=2)
    job = {"train_file": str(tmp_path / "train.jsonl"), "dev_file": str(tmp_path / "dev.jsonl"),
           "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-OTHER"],
           "model": ModelConfig(max_length=64).model_dump(mode="json"), "train": train.model_dump(mode="json"),
           "use_knowledge": False, "processes": 2}
    assert "torch.distributed.run" in launch_command("job.json", 2)
    work = tmp_path / "model"
    work.mkdir()
    lines: list[str] = []
    result = run_training_job(job, work, lines.append)

    digests = result["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], digests
    # the ranks split the epoch: 4 sentences in batches of 2, one batch each, none shared
    per_rank = [sorted(i for batch in batches for i in batch) for batches in result["rank_batches"]]
    assert len(per_rank) == 2 and all(len(seen) == 2 for seen in per_rank), result["rank_batches"]
    assert sorted(per_rank[0] + per_rank[1]) == [0, 1, 2, 3], per_rank
    # the step changed the weights: the saved model is what the ranks ended with, and its encoder is no longer
    # the pretrained one (whose weights come from disk, whatever the seed)
    from engine.runtime import weights_digest
    from engine.taggers import build_tagger, load_tagger

    trained, _ = load_tagger(work)
    assert weights_digest(trained) == digests[0]
    pretrained, _ = build_tagger(ModelConfig(max_length=64), job["labels"])
    before, after = pretrained.encoder.state_dict(), trained.encoder.state_dict()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(changed) > len(before) // 2, f"{len(changed)} of {len(before)} encoder tensors changed"
    assert result["epochs_run"] == 1 and len(result["history"]) == 1
    assert any("rank=0/2" in line for line in lines)
    assert any("backend=gloo world=2" in line for line in lines)
    assert {"model.pt", "tagger.json", "history.json"} <= {p.name for p in work.iterdir()}
    assert json.loads((work / "history.json").read_text())["rank_weight_digests"] == digests
