"""Stage ``train``: fit the [T] or [T;Z] tagger on the joined data and keep the best dev-F1 weights.

Training runs in a process of its own (``engine.train_worker``), under ``torch.distributed.run``
when ``train.processes`` asks for several: one per GPU on CUDA, gloo processes on the CPU.
"""

from __future__ import annotations

from typing import Any

from engine.launcher import run_training_job, training_processes
from mner.config import TrainConfig
from mner.post_tokens import AUTO, training_style
from mner.samples import read_samples
from mner.store import StageRun
from mner.tags import entity_types, label_list
from tasks.common import stage_logger, stage_task

VARIANTS = ("text", "text+knowledge")


@stage_task("train")
def train_model(
    run: StageRun, data: dict[str, Any], variant: str, model: dict[str, Any], train: dict[str, Any], artifacts_root: str,
    tokenization: str = AUTO, runtime: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one variant (``text`` or ``text+knowledge``); resumes from a checkpoint after a crash.

    ``runtime["dataset"]``, the dataset's name, is recorded in the manifest (next to ``variant``)
    for ``mner predict --run DATASET/VARIANT``; a name does not shape the weights, so the stage key
    leaves it out, and an output reused under another name keeps the name it was trained under.
    The manifest's ``tokenization`` is how the train split's text was split (``dataset.tokenization``;
    ``auto`` reads it off the split and the name), which ``mner tag`` and ``mner predict`` split raw text by.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    log = stage_logger()
    train_cfg = TrainConfig.model_validate(train)
    whole_split = read_samples(f"{data['dir']}/train.jsonl")
    dataset = (runtime or {}).get("dataset")
    tokenization = training_style((token for sample in whole_split for token in sample.tokens), dataset, tokenization)
    log.info("train %s: raw text is split by the %s convention", variant, tokenization)
    train_samples = whole_split[: train_cfg.max_train_sentences]
    dev_samples = read_samples(f"{data['dir']}/dev.jsonl")
    labels = label_list(entity_types([t for s in train_samples + dev_samples for t in s.tags or []]))
    job = {"train_file": f"{data['dir']}/train.jsonl", "dev_file": f"{data['dir']}/dev.jsonl", "labels": labels,
           "model": model, "train": train, "use_knowledge": variant == "text+knowledge",
           "processes": training_processes(train_cfg)}
    result = run_training_job(job, run.work_dir, log.info)
    run.timings["train_s"] = result["train_seconds"]
    return {"variant": variant, "dataset": dataset, "tokenization": tokenization, "result": result}
