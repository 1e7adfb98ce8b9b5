"""Stage ``backbone``: train the multimodal NER backbone on the train split, score dev and test.

The image branch reads the caption and OCR text of each post (``image_source: text``) or its
image file through CLIP (``image_source: clip``, image paths in ``sources``). Training runs in a
child process like the tagger's (``engine.train_worker``); the trained backbone's pooled fused
features are what the ``fused`` retrieval embedder uses.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.backbone_training import load_backbone, post_row, predict_posts
from engine.image_io import image_sources
from engine.launcher import run_training_job
from engine.retrieval import split_samples
from engine.runtime import prepare_runtime
from mner import formats
from mner.config import BackboneConfig, TrainConfig
from mner.metrics import evaluate
from mner.samples import SPLITS, Sample, read_samples, write_jsonl
from mner.store import StageRun
from mner.tags import entity_types, label_list
from tasks.common import stage_logger, stage_task


def split_posts(data: dict[str, Any], split: str, captions: dict[str, Any] | None, ocr: dict[str, Any] | None,
                image_paths: dict[str, str]) -> list[Sample]:
    """The samples of one split as the backbone reads them: with caption, OCR text and image file."""
    return [replace(s, image_path=image_paths.get(s.id)) for s in split_samples(data, split, captions, ocr)]


def backbone_image_sources(data: dict[str, Any], images: str | Path) -> dict[str, str]:
    """``{sample id: image file}`` over all splits: the stage's ``sources`` for a CLIP backbone."""
    return image_sources([s for split in SPLITS for s in read_samples(f"{data['dir']}/{split}.jsonl")], images)


@stage_task("backbone")
def train_backbone_stage(
    run: StageRun, data: dict[str, Any], captions: dict[str, Any] | None, ocr: dict[str, Any] | None,
    sources: dict[str, str], backbone: dict[str, Any], train: dict[str, Any], artifacts_root: str,
) -> dict[str, Any]:
    """Train the backbone (two phases) and write ``scores.json`` (dev and test P/R/F1) and predictions.

    ``sources`` maps sample ids to image files (used with ``image_source: clip``; may be empty).
    """
    log = stage_logger()
    cfg, train_cfg = BackboneConfig.model_validate(backbone), TrainConfig.model_validate(train)
    paths = dict(sources) if cfg.image_source == "clip" else {}
    splits = {split: split_posts(data, split, captions, ocr, paths) for split in SPLITS}
    for split, posts in splits.items():
        write_jsonl(run.work_dir / f"{split}.posts.jsonl", [post_row(p) for p in posts])
    train_posts = splits["train"][: train_cfg.max_train_sentences]
    labels = label_list(entity_types([t for p in train_posts + splits["dev"] for t in p.tags or []]))
    job = {"kind": "backbone", "train_file": str(run.work_dir / "train.posts.jsonl"),
           "dev_file": str(run.work_dir / "dev.posts.jsonl"), "labels": labels, "backbone": backbone,
           "train": train, "processes": 1}
    result = run_training_job(job, run.work_dir, log.info)
    run.timings["train_s"] = result["train_seconds"]

    _, device, bf16 = prepare_runtime(train_cfg)
    model, encoder = load_backbone(run.work_dir, device)
    scores: dict[str, Any] = {}
    for split in ("dev", "test"):
        posts = splits[split]
        predicted = predict_posts(model, encoder, [encoder.encode(p.without_tags()) for p in posts], device, bf16)
        scores[split] = evaluate([p.tags for p in posts], predicted)
        formats.write_conll(run.work_dir / f"{split}.pred.txt",
                            [replace(p, tags=tags) for p, tags in zip(posts, predicted)])
        log.info("backbone %s: P=%.4f R=%.4f F1=%.4f", split, scores[split]["precision"], scores[split]["recall"],
                 scores[split]["f1"])
    (run.work_dir / "scores.json").write_text(json.dumps(scores, indent=2), encoding="utf-8")
    return {"dev_f1": scores["dev"]["f1"], "test_f1": scores["test"]["f1"], "best_epoch": result["best_epoch"],
            "train_seconds": result["train_seconds"]}


GRID_COLUMNS = ("dataset", "align_lambda", "infonce_lambda", "dev_precision", "dev_recall", "dev_f1",
                "test_precision", "test_recall", "test_f1", "best_epoch", "train_seconds")


@stage_task("backbone-grid")
def summarise_grid(run: StageRun, dataset: str, runs: list[dict[str, Any]], artifacts_root: str) -> dict[str, Any]:
    """One row per grid point (``runs``: ``{"weights": {...}, "backbone": output}``) in ``grid.csv`` and ``grid.json``.

    Scores are in percent; the best dev F1 is marked so the choice is made on dev, not test.
    """
    import pandas as pd

    rows = []
    for point in runs:
        scores = json.loads((Path(point["backbone"]["dir"]) / "scores.json").read_text(encoding="utf-8"))
        history = json.loads((Path(point["backbone"]["dir"]) / "history.json").read_text(encoding="utf-8"))
        rows.append({"dataset": dataset, **point["weights"],
                     **{f"{split}_{m}": round(100 * scores[split][m], 2)
                        for split in ("dev", "test") for m in ("precision", "recall", "f1")},
                     "best_epoch": history["best_epoch"], "train_seconds": history["train_seconds"]})
    table = pd.DataFrame(rows, columns=list(GRID_COLUMNS))
    table["chosen_on_dev"] = table["dev_f1"] == table["dev_f1"].max()
    table.to_csv(run.work_dir / "grid.csv", index=False)
    (run.work_dir / "grid.json").write_text(table.to_json(orient="records", indent=1), encoding="utf-8")
    return {"points": len(rows)}
