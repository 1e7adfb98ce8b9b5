"""Stage ``train``: fit the [T] or [T;Z] tagger on the joined data and keep the best dev-F1 weights."""

from __future__ import annotations

from typing import Any

import mner.tags
import models.crf
import models.encoding
import models.tagger
import tasks.training
from mner.config import ModelConfig, TrainConfig
from mner.store import StageRun
from mner.tags import entity_types, label_list
from tasks.common import stage_logger, stage_task
from tasks.data import read_jsonl
from tasks.training import Example, train_tagger

VARIANTS = ("text", "text+knowledge")


def examples(path: str, limit: int | None = None) -> list[Example]:
    """Read a joined split file into training examples."""
    rows = read_jsonl(path)[:limit]
    return [Example(r["tokens"], r["tags"], r.get("knowledge", "")) for r in rows]


@stage_task("train", shaped_by=[tasks.training, models.tagger, models.crf, models.encoding, mner.tags])
def train_model(
    run: StageRun, data: dict[str, Any], variant: str, model: dict[str, Any], train: dict[str, Any], artifacts_root: str
) -> dict[str, Any]:
    """Train one variant (``text`` or ``text+knowledge``); resumes from a checkpoint after a crash."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    log = stage_logger()
    model_cfg, train_cfg = ModelConfig.model_validate(model), TrainConfig.model_validate(train)
    train_rows = examples(f"{data['dir']}/train.jsonl", train_cfg.max_train_sentences)
    dev_rows = examples(f"{data['dir']}/dev.jsonl")
    labels = label_list(entity_types([t for r in train_rows + dev_rows for t in r.tags]))
    result = train_tagger(
        train_rows, dev_rows, labels, model_cfg, train_cfg, run.work_dir, variant == "text+knowledge", log.info
    )
    run.timings["train_s"] = result.train_seconds
    return {"variant": variant, "result": result.__dict__}
