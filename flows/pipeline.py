"""The ``mner-pipeline`` flow: load -> stage 1 (subflow) -> join knowledge -> train -> evaluate -> report.

Stage 1 is captions and OCR, then (with the ``llm`` knowledge backend) retrieval, prompts, the
optional distillation of a local LLM, the LLM and the SFT export; with the ``retrieved`` backend,
the teacher's answers for the most similar train posts; with the ``file`` backend, PGIM's released
knowledge is joined instead.

Every stage is a cached task keyed by its inputs' content, its config and its code version, so a
new run replays unchanged stages as Cached. ``refresh`` names stages to recompute regardless of the
cache (with everything downstream of them); ``until`` stops after the named stage, which is how the
per-stage deployments rerun one stage.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stage1 import as_source, stage1
from mner.config import PipelineConfig, resolve_config
from mner.store import check_writable_root
from tasks.common import run_stage
from tasks.data import join_knowledge, load_splits
from tasks.evaluate import evaluate_model
from tasks.report import publish_dataset_stats, publish_report
from tasks.runners import build_task_runner
from tasks.train import train_model

# stage -> the stages whose outputs it reads
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "load": (),
    "caption": ("load",),
    "ocr": ("load",),
    "backbone": ("load", "caption", "ocr"),
    "retrieved": ("load", "caption", "ocr"),
    "retrieve": ("load", "caption", "ocr", "backbone"),
    "prompts": ("load", "retrieve", "caption", "ocr"),
    "distill": ("load", "prompts"),
    "llm": ("prompts", "distill"),
    "sft": ("prompts", "llm"),
    "knowledge": ("load", "caption", "llm", "retrieved"),
    "train": ("knowledge",),
    "evaluate": ("train", "knowledge"),
}
STAGES = tuple(STAGE_INPUTS)
STAGE1_STAGES = ("caption", "ocr", "backbone", "retrieved", "retrieve", "prompts", "distill", "llm", "sft")


def downstream_of(stages: list[str]) -> set[str]:
    """``stages`` and every stage that reads, directly or not, from one of them."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"refresh names unknown stages {unknown}; stages are {list(STAGES)}")
    closed = set(stages)
    changed = True
    while changed:
        grown = closed | {s for s, inputs in STAGE_INPUTS.items() if closed & set(inputs)}
        changed, closed = grown != closed, grown
    return closed


@flow(name="mner-pipeline", log_prints=True)
def pipeline(
    config: PipelineConfig | None = None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    refresh: list[str] | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline on one dataset and report text-only vs [T;Z] scores.

    ``config`` (or ``config_file``, with dotted ``overrides``) is validated before any work; an
    invalid one fails the run with the field named.
    """
    cfg = resolve_config(config, config_file, overrides)
    check_writable_root(cfg.artifacts_root)
    if until is not None and until not in STAGES:
        raise ValueError(f"until={until!r} is not a stage; stages are {list(STAGES)}")
    recompute = downstream_of(list(refresh or []))
    root, ds = str(cfg.artifacts_root), cfg.dataset

    data = run_stage(load_splits, "load" in recompute, sources={"train": str(ds.train), "dev": str(ds.dev),
                     "test": str(ds.test)}, repair_bio=ds.repair_bio, artifacts_root=root)
    publish_dataset_stats(ds.name, data)
    if until == "load":
        return {"load": data["dir"]}

    first = stage1.with_options(task_runner=build_task_runner(cfg.stage1.runner))(
        cfg, data, sorted(recompute), until)
    if until in STAGE1_STAGES:
        return {until: first[until]["dir"] if first[until] else None}

    backend = cfg.stage1.knowledge.backend
    by_file = backend == "file"
    joined = run_stage(join_knowledge, "knowledge" in recompute, data=data, artifacts_root=root,
                       captions=first["caption"], stage1_knowledge=None if by_file else first[backend],
                       knowledge_source=backend, answer_form=cfg.stage1.knowledge.answer_form,
                       min_aligned_share=ds.min_aligned_share, sources={
                           "knowledge_train": as_source(ds.knowledge_train) if by_file else None,
                           "knowledge_dev": as_source(ds.knowledge_dev) if by_file else None,
                           "knowledge_test": as_source(ds.knowledge_test) if by_file else None,
                           "captions": None if first["caption"] else as_source(ds.captions)})
    if until == "knowledge":
        return {"knowledge": joined["dir"]}

    evaluations, dirs = {}, {"data": data["dir"], "joined data": joined["dir"]}
    for stage in STAGE1_STAGES:
        if first[stage]:
            dirs[stage] = first[stage]["dir"]
    models = {}
    for variant in cfg.variants:
        models[variant] = run_stage(train_model, "train" in recompute, data=joined, variant=variant,
                                    model=cfg.model.model_dump(mode="json"), train=cfg.train.model_dump(mode="json"),
                                    tokenization=ds.tokenization, runtime={"dataset": ds.name}, artifacts_root=root)
        dirs[f"model ({variant})"] = models[variant]["dir"]
    if until == "train":
        return {f"train ({v})": m["dir"] for v, m in models.items()}
    for variant, model in models.items():
        evaluations[variant] = run_stage(evaluate_model, "evaluate" in recompute, data=joined, model=model,
                                         variant=variant, precision=cfg.train.precision, artifacts_root=root)
        dirs[f"scores ({variant})"] = evaluations[variant]["dir"]
    return publish_report(ds.name, evaluations, dirs, cfg.model_dump(mode="json"), joined, models)


if __name__ == "__main__":
    pipeline()
