"""Stage ``evaluate``: tag dev and test with the trained model and score them (strict entity F1)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from engine.runtime import pick_device, set_threads, use_bf16
from engine.taggers import load_tagger, predict
from mner import formats
from mner.metrics import evaluate
from mner.samples import read_samples
from mner.store import StageRun
from tasks.common import stage_logger, stage_task


@stage_task("evaluate")
def evaluate_model(
    run: StageRun, data: dict[str, Any], model: dict[str, Any], variant: str, precision: str, artifacts_root: str
) -> dict[str, Any]:
    """Write ``{split}.pred.txt`` (CoNLL with predicted tags) and ``scores.json`` for dev and test."""
    log = stage_logger()
    set_threads(0)
    device = pick_device("auto")
    bf16 = use_bf16(precision, device)
    tagger, encoder = load_tagger(model["dir"], device)
    scores: dict[str, Any] = {}
    for split in ("dev", "test"):
        samples = read_samples(f"{data['dir']}/{split}.jsonl")
        knowledge = variant == "text+knowledge"
        encoded = [encoder.encode(s.tokens, None, s.knowledge if knowledge else None) for s in samples]
        predicted = predict(tagger, encoded, device, bf16)
        gold = [s.tags for s in samples]
        scores[split] = evaluate(gold, predicted)
        formats.write_conll(run.work_dir / f"{split}.pred.txt", [replace(s, tags=p) for s, p in zip(samples, predicted)])
        log.info("%s %s: P=%.4f R=%.4f F1=%.4f", variant, split, scores[split]["precision"],
                 scores[split]["recall"], scores[split]["f1"])
    (run.work_dir / "scores.json").write_text(json.dumps(scores, indent=2), encoding="utf-8")
    return {"variant": variant, "test_f1": scores["test"]["f1"], "dev_f1": scores["dev"]["f1"]}
