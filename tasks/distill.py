"""Stage ``distill``: fine-tune a small local LLM on the teacher's answers for the train split's zero-shot prompts.

Pairs are made here (:mod:`engine.distillation`); training runs in a process of its own
(``engine.train_worker``, job kind ``distill``), whose checkpoint stays in this stage's work
directory when it dies, so running the stage again resumes it. The output's ``model/`` is a model
directory that the llm stage's transformers backend loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.distillation import (CHAT_TEMPLATE, CHECKPOINT, base_model_path, build_pairs, mark_heldout, model_sources,
                                  teacher_answers)
from engine.launcher import run_training_job
from engine.llm_server import default_model_path
from engine.packaged_models import packaged_chat_template, resolve_model_ref
from mner.config import DistillConfig, PipelineConfig
from mner.samples import read_jsonl, read_samples, write_jsonl
from mner.store import StageRun
from tasks.common import key_parts, stage_logger, stage_task

NOT_STAGE_SETTINGS = frozenset({"enabled", "base_model", "answers", "chat_template"})  # files: by content, as sources


def distill_settings(distill: DistillConfig) -> dict[str, Any]:
    """The ``distill`` argument of :func:`distill_stage`: the section as JSON, less what ``sources`` says by content."""
    return distill.model_dump(mode="json", exclude=set(NOT_STAGE_SETTINGS))


def distill_chat_template(distill: DistillConfig) -> Path | None:
    """The chat template the base model learns with: ``chat_template`` when set, else the one its package comes with
    (:func:`engine.packaged_models.packaged_chat_template`); None = the tokenizer's own."""
    return distill.chat_template or packaged_chat_template(distill.base_model)


def distill_sources(config: PipelineConfig) -> dict[str, str | None]:
    """The ``sources`` argument of :func:`distill_stage`: the teacher's answers, the base model's files, a chat template
    (:func:`distill_chat_template`)."""
    d = config.stage1.distill
    answers = d.answers or config.dataset.knowledge_train
    chat_template = distill_chat_template(d)
    template = {CHAT_TEMPLATE: str(chat_template)} if chat_template else {}
    base = resolve_model_ref(d.base_model, config.artifacts_root, default_model_path())
    return {"answers": str(answers) if answers else None, **model_sources(base), **template}


def distilled_by(config: PipelineConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """What a ``distill`` output of ``config`` records: its settings (stage config entries), and its sources' content
    hashes by input name.

    ``mner predict --llm`` asks only a distilled model whose manifest matches both, never another
    config's (another base, teacher, fold of the answers, or number of epochs) that the store holds.
    """
    sources, _ = key_parts({"sources": distill_sources(config)})
    return {"distill": distill_settings(config.stage1.distill), "answer_form": config.stage1.knowledge.answer_form}, sources


@stage_task("distill")
def distill_stage(run: StageRun, prompts: dict[str, Any], data: dict[str, Any], sources: dict[str, str],
                  distill: dict[str, Any], artifacts_root: str, answer_form: str = "full") -> dict[str, Any]:
    """Write ``pairs.jsonl`` and ``rejected.jsonl``, train, and leave the distilled model in ``model/``.

    ``sources`` holds ``answers`` (the teacher's file) and the base model
    (:func:`engine.distillation.model_sources`); the answers are taught in ``answer_form``
    (``stage1.knowledge.answer_form``). More rejected pairs than
    ``max_rejected_share`` of the train split fail the stage, naming the first ones.
    """
    log = stage_logger()
    cfg = DistillConfig.model_validate(distill)
    if not sources.get("answers"):
        raise ValueError("distill: no teacher answers; set stage1.distill.answers or dataset.knowledge_train")
    train = read_samples(Path(data["dir"]) / "train.jsonl")
    prompts_path = Path(prompts["dir"]) / "train.jsonl"
    answers, rejected = teacher_answers(sources["answers"], train, answer_form)
    pairs, without = build_pairs(read_jsonl(prompts_path), prompts_path, answers, sources["answers"])
    rejected += without
    write_jsonl(run.work_dir / "rejected.jsonl", rejected)
    for bad in rejected[:20]:
        log.warning("distill: %s: %s%s", bad["where"], bad["reason"], f" ({bad['id']})" if bad["id"] else "")
    share = len(rejected) / max(len(train), 1)
    if share > cfg.max_rejected_share:
        raise ValueError(f"distill: {len(rejected)} rejected pairs for {len(train)} train samples ({share:.1%}), more than "
                         f"stage1.distill.max_rejected_share={cfg.max_rejected_share}; see {run.work_dir / 'rejected.jsonl'}. "
                         "Check that the answers belong to this split, or raise the share")
    pairs = mark_heldout(pairs[: cfg.max_pairs], cfg.heldout_fraction, cfg.seed)
    write_jsonl(run.work_dir / "pairs.jsonl", pairs)
    log.info("distill: %d pairs (%d held out), %d rejected; %s", len(pairs), sum(p["heldout"] for p in pairs),
             len(rejected), "resuming from its checkpoint" if (run.work_dir / CHECKPOINT).exists() else "training")
    job = {"kind": "distill", "pairs_file": str(run.work_dir / "pairs.jsonl"), "base_model": str(base_model_path(sources)),
           "chat_template": sources.get(CHAT_TEMPLATE), "distill": distill, "processes": 1}
    result = run_training_job(job, run.work_dir, log.info)
    run.timings["train_s"] = result["train_seconds"]
    return {"pairs": len(pairs), "rejected": len(rejected), "rejected_share": round(share, 4), "result": result}
