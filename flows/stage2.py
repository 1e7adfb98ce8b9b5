"""The stage-2 flow: load -> join knowledge -> train -> evaluate -> report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from mner.config import load_config
from tasks.common import run_stage
from tasks.data import join_knowledge, load_splits
from tasks.evaluate import evaluate_model
from tasks.report import publish_report
from tasks.train import train_model


def _path(value: Path | None) -> str | None:
    return str(value) if value else None


@flow(name="mner-stage2", log_prints=True)
def stage2(config_path: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and score text-only and [T;Z] taggers on one dataset; every stage is cached."""
    cfg = load_config(config_path, overrides)
    root, ds = str(cfg.artifacts_root), cfg.dataset
    data = run_stage(load_splits, sources={"train": str(ds.train), "dev": str(ds.dev), "test": str(ds.test)},
                     repair_bio=ds.repair_bio, artifacts_root=root)
    joined = run_stage(join_knowledge, data=data, artifacts_root=root, sources={
        "knowledge_train": _path(ds.knowledge_train), "knowledge_dev": _path(ds.knowledge_dev),
        "knowledge_test": _path(ds.knowledge_test), "captions": _path(ds.captions)})
    evaluations, dirs = {}, {"data": joined["dir"]}
    for variant in cfg.variants:
        model = run_stage(train_model, data=joined, variant=variant, model=cfg.model.model_dump(mode="json"),
                          train=cfg.train.model_dump(mode="json"), artifacts_root=root)
        evaluations[variant] = run_stage(evaluate_model, data=joined, model=model, variant=variant,
                                         precision=cfg.train.precision, artifacts_root=root)
        dirs[f"model ({variant})"], dirs[f"scores ({variant})"] = model["dir"], evaluations[variant]["dir"]
    return publish_report(ds.name, evaluations, dirs)


if __name__ == "__main__":
    stage2()
