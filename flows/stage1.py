"""Stage 1: image to text (captions, OCR), similar-example retrieval, prompts, LLM knowledge.

With ``stage1.distill.enabled`` a small local LLM is first fine-tuned on the teacher's answers for
the train split (stage ``distill``), and the llm stage asks it, named by the distill output's key.

With ``stage1.retrieval.embedder: fused`` the multimodal backbone is trained first (stage
``backbone``) and retrieval uses its fused features (PGIM's MSEA).

With ``stage1.knowledge.backend: file`` the knowledge is PGIM's released ChatGPT answers (joined
in stage 2) and retrieval, prompts and the LLM are skipped. With ``retrieved`` the stage
``retrieved`` gives each post the teacher's answers for its most similar train posts instead, and
no LLM runs. With ``stage1.prompt.similar_answers: k`` the same stage finds k such answers for
every post, and the prompts show them (a retrieval-augmented student).
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import flow

from engine.distillation import MODEL_DIR, distilled_identity
from engine.image_io import image_sources
from engine.llm_server import resolve_base_url
from engine.local_generate import answering_identity
from engine.prompting import template_sources
from mner.config import PipelineConfig
from mner.samples import Sample
from tasks.backbone import backbone_image_sources, train_backbone_stage
from tasks.caption import caption_shard, check_caption_file
from tasks.common import run_stage, stage_logger
from tasks.distill import distill_settings, distill_sources, distill_stage
from tasks.llm import llm_shard, shard_settings
from tasks.ocr import ocr_shard
from tasks.prompt import build_prompts
from tasks.report import publish_llm_usage
from tasks.retrieve import retrieve_examples
from tasks.retrieved import retrieved_knowledge
from tasks.sft import export_sft
from tasks.shards import map_shards

STAGES = ("caption", "ocr", "backbone", "retrieved", "retrieve", "prompts", "distill", "llm", "sft")


def as_source(value: object) -> str | None:
    """A config path as a ``sources`` entry (None stays None)."""
    return str(value) if value else None


@flow(name="mner-stage1", log_prints=True)
def stage1(config: PipelineConfig, data: dict[str, Any], refresh: list[str], until: str | None = None) -> dict[str, Any]:
    """Run the stage-1 stages on every sample; returns their outputs by stage name (None when skipped)."""
    cfg, ds, root = config.stage1, config.dataset, str(config.artifacts_root)
    out: dict[str, Any] = dict.fromkeys(STAGES)

    def done(stage: str) -> bool:
        return until == stage

    c = cfg.caption
    by_file = c.backend == "file"
    if by_file and ds.captions is None:
        stage_logger().info("caption: dataset %s has no caption file (dataset.captions): its posts have no captions", ds.name)
    elif c.backend != "none":
        out["caption"] = map_shards(
            caption_shard, data, cfg.runner.shard_size, "caption" in refresh,
            shard_params=_file_source(ds.captions) if by_file else _image_sources(config),
            backend=c.backend, model=c.model, batch_size=c.batch_size, max_new_tokens=c.max_new_tokens, dtype=c.dtype,
            artifacts_root=root)
        if by_file:
            check_caption_file(out["caption"], str(ds.captions), ds.min_aligned_share)
    if done("caption"):
        return out
    if cfg.ocr.backend != "none" and ds.images is not None:
        out["ocr"] = map_shards(ocr_shard, data, cfg.runner.shard_size, "ocr" in refresh,
                                shard_params=_image_sources(config), backend=cfg.ocr.backend,
                                min_score=cfg.ocr.min_score, artifacts_root=root)
    if done("ocr"):
        return out
    r = cfg.retrieval
    if until == "backbone" or (cfg.knowledge.backend == "llm" and r.embedder == "fused"):
        out["backbone"] = run_stage(train_backbone_stage, "backbone" in refresh,
                                    **backbone_params(config, data, out["caption"], out["ocr"]))
    if done("backbone") or cfg.knowledge.backend == "file":
        return out
    if cfg.knowledge.backend == "retrieved":
        out["retrieved"] = run_stage(retrieved_knowledge, "retrieved" in refresh, **retrieved_params(config, data, out))
        return out
    examples = {"examples": as_source(ds.examples), "examples_entities": as_source(ds.examples_entities)}
    clip_images = as_source(ds.images) if config.backbone.image_source == "clip" else None
    out["retrieve"] = run_stage(retrieve_examples, "retrieve" in refresh, data=data, captions=out["caption"],
                                ocr=out["ocr"], sources=examples, embedder=r.embedder, encoder=r.encoder,
                                top_n=r.top_n, seed=r.seed, backbone=out["backbone"], images=clip_images,
                                pooling=r.fused_pooling,
                                artifacts_root=root)
    if done("retrieve"):
        return out
    p = cfg.prompt
    if p.similar_answers:
        out["retrieved"] = run_stage(retrieved_knowledge, "retrieved" in refresh,
                                     **retrieved_params(config, data, out, p.similar_answers))
    out["prompts"] = run_stage(build_prompts, "prompts" in refresh, data=data, retrieval=out["retrieve"],
                               captions=out["caption"], ocr=out["ocr"],
                               sources={**template_sources(p.template_dir), **examples}, n_examples=p.n_examples,
                               max_prompt_tokens=p.max_prompt_tokens, tokenizer=p.tokenizer, artifacts_root=root,
                               **({"similar": out["retrieved"]} if p.similar_answers else {}))
    if done("prompts"):
        return out
    llm = cfg.llm
    endpoint, local_model = answering_identity(llm), as_source(llm.local_model)
    if cfg.distill.enabled:
        out["distill"] = run_stage(distill_stage, "distill" in refresh, **distill_params(config, data, out["prompts"]))
        endpoint = distilled_identity(out["distill"]["key"], llm.precision)
        local_model = f"{out['distill']['dir']}/{MODEL_DIR}"
        if llm.local_model:
            stage_logger().warning("stage1.llm.local_model=%s is not asked: with stage1.distill.enabled the llm stage "
                                   "asks the distilled model %s", llm.local_model, local_model)
    if done("distill"):
        return out
    with resolve_base_url(llm.model_dump()) as base_url:
        out["llm"] = map_shards(llm_shard, out["prompts"], llm.shard_size, "llm" in refresh, input_name="prompts",
                                max_missing=llm.max_missing, endpoint=endpoint, llm=shard_settings(llm),
                                runtime={"base_url": base_url, "local_model": local_model}, artifacts_root=root)
    publish_llm_usage(config.dataset.name, out["llm"])
    if done("llm") or not cfg.knowledge.sft_export:
        return out
    out["sft"] = run_stage(export_sft, "sft" in refresh, prompts=out["prompts"], knowledge=out["llm"],
                           splits=["train", "dev"], artifacts_root=root)
    return out


def backbone_params(config: PipelineConfig, data: dict[str, Any], captions: dict[str, Any] | None,
                    ocr: dict[str, Any] | None, **weights: float) -> dict[str, Any]:
    """Parameters of the ``backbone`` stage from the config; ``weights`` override loss weights (grid search)."""
    clip = config.backbone.image_source == "clip"
    if clip and config.dataset.images is None:
        raise ValueError("backbone.image_source=clip needs dataset.images")
    return dict(data=data, captions=captions, ocr=ocr,
                sources=backbone_image_sources(data, config.dataset.images) if clip else {},
                backbone={**config.backbone.model_dump(mode="json"), **weights},
                train=config.train.model_dump(mode="json"), artifacts_root=str(config.artifacts_root))


def retrieved_params(config: PipelineConfig, data: dict[str, Any], out: dict[str, Any], k: int | None = None) -> dict[str, Any]:
    """Parameters of the ``retrieved`` stage: the teacher's train answers by content, the neighbour settings as config
    (``k`` neighbours, default ``stage1.knowledge.retrieved.k``)."""
    r = config.stage1.knowledge.retrieved
    return dict(data=data, captions=out["caption"], ocr=out["ocr"],
                sources={"answers": as_source(r.answers or config.dataset.knowledge_train)}, k=k or r.k, embedder=r.embedder,
                encoder=r.encoder, min_score=r.min_score, seed=config.stage1.retrieval.seed,
                answer_form=config.stage1.knowledge.answer_form, min_aligned_share=config.dataset.min_aligned_share,
                artifacts_root=str(config.artifacts_root))


def distill_params(config: PipelineConfig, data: dict[str, Any], prompts: dict[str, Any]) -> dict[str, Any]:
    """Parameters of the ``distill`` stage: the teacher's answers and the base model by content, the settings as config."""
    return {"prompts": prompts, "data": data, "sources": distill_sources(config),
            "distill": distill_settings(config.stage1.distill), "answer_form": config.stage1.knowledge.answer_form,
            "artifacts_root": str(config.artifacts_root)}


def _file_source(path: object) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """``rows -> {"sources": {"captions": file}}``: every shard keys on the whole file's content."""
    return lambda rows: {"sources": {"captions": as_source(path)}}


def _image_sources(config: PipelineConfig) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """``rows -> {"sources": {sample id: image path}}`` for the image stages (the rows are the data's samples)."""
    images = config.dataset.images
    return lambda rows: {"sources": image_sources([Sample.from_row(r) for r in rows], images) if images is not None else {}}
