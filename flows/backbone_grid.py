"""The ``mner-backbone-grid`` flow: train the multimodal backbone once per loss-weight pair, then tabulate.

load -> captions/OCR (the stage-1 subflow, up to OCR) -> one ``backbone`` stage per
(align_lambda, infonce_lambda), mapped over the flow's task runner -> ``backbone-grid`` (grid.csv)
-> table artifact ``<dataset>-backbone-grid``. Every point is a cached stage, so a wider grid
trains only the new points.
"""

from __future__ import annotations

from itertools import product
from typing import Any

from prefect import flow
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.stage1 import backbone_params, stage1
from mner.config import PipelineConfig, resolve_config
from tasks.backbone import summarise_grid, train_backbone_stage
from tasks.common import checked, run_stage, submit_stage
from tasks.data import load_splits
from tasks.report import publish_grid


# One training at a time by default (each already uses every core); on a machine with spare
# GPUs or cores, run with ``backbone_grid.with_options(task_runner=ThreadPoolTaskRunner(n))``.
@flow(name="mner-backbone-grid", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def backbone_grid(
    config: PipelineConfig | None = None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    align_lambdas: list[float] = (0.0, 0.1, 0.5),
    infonce_lambdas: list[float] = (0.0, 0.1, 0.5),
) -> list[dict[str, Any]]:
    """Train one backbone per weight pair and return the summary rows (also ``grid.csv`` and a table artifact)."""
    cfg = resolve_config(config, config_file, overrides)
    root, ds = str(cfg.artifacts_root), cfg.dataset
    data = run_stage(load_splits, sources={"train": str(ds.train), "dev": str(ds.dev), "test": str(ds.test)},
                     repair_bio=ds.repair_bio, artifacts_root=root)
    seen = stage1(cfg, data, [], until="ocr")
    grid = [{"align_lambda": float(a), "infonce_lambda": float(i)} for a, i in product(align_lambdas, infonce_lambdas)]
    params = [backbone_params(cfg, data, seen["caption"], seen["ocr"], **weights) for weights in grid]
    futures = [submit_stage(train_backbone_stage, **p) for p in params]
    wait(futures)
    runs = [{"weights": weights, "backbone": checked(train_backbone_stage, future.result(), p)}
            for weights, future, p in zip(grid, futures, params)]
    summary = run_stage(summarise_grid, dataset=ds.name, runs=runs, artifacts_root=root)
    return publish_grid(ds.name, summary)


if __name__ == "__main__":
    backbone_grid()
