"""The ``mner-tag`` flow: tag files of raw posts with a trained model, in cached shards, with knowledge Z by route.

Input is a file or a folder of JSONL, plain-text or CoNLL posts (:mod:`mner.posts`), streamed in
one pass that only cuts it into shards. The model is named as ``mner predict --run`` names it; its
manifest says which knowledge route it was trained with, which is the default
(:mod:`mner.model_routes`). Shards run on the pipeline's task runner (``stage1.runner``), each a
cached stage; the ``tag`` stage merges them in order. The run publishes a table and a markdown
artifact, copies the files to ``output`` when asked, and fails, naming the files, when more than
``max_rejected_share`` of the posts were rejected.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from engine.distillation import MODEL_DIR, distilled_identity
from engine.llm_server import resolve_base_url
from engine.local_generate import answering_identity
from mner.config import PipelineConfig, resolve_config
from mner.model_routes import TrainedRoute, choose_route, model_output, model_tokenization, trained_route
from mner.post_tokens import STYLES
from mner.posts import FORMATS, SHARD_SIZE, detect_format, input_files, scan_shards
from mner.store import ArtifactStore, check_writable_root
from mner.trained import latest_distilled, resolve_model
from tasks.common import checked, run_stage, stage_key, stage_logger, submit_stage
from tasks.distill import distilled_by
from tasks.runners import build_task_runner
from tasks.tag import copy_outputs, merge_tagged, tag_shard
from tasks.tag_report import publish_tag_report

NOT_IN_ROUTE_KEY = {"base_url", "local_model", "n_parallel", "n_ctx", "max_missing"}  # where it runs, not what it says


class TooManyRejected(RuntimeError):
    """More posts were rejected than ``max_rejected_share`` allows."""


def route_settings(name: str, trained: TrainedRoute, cfg: PipelineConfig, root: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The knowledge route as the shards' key sees it (name, answering model, settings that shape Z, the answer form the
    model's Z was cut to) and its runtime."""
    form = {"answer_form": trained.answer_form} if trained.answer_form != "full" else {}
    if name == "retrieved":
        r = cfg.stage1.knowledge.retrieved
        settings = trained.retrieved or {"k": r.k, "embedder": r.embedder, "encoder": r.encoder, "min_score": r.min_score,
                                         "seed": cfg.stage1.retrieval.seed}
        return {"name": name, "retrieved": settings, **form}, {}
    if name not in ("llm", "distilled"):
        return {"name": name, **form}, {}
    data = cfg.model_dump(mode="json", include={"dataset", "stage1"})
    data["stage1"].pop("runner")
    llm = data["stage1"]["llm"]
    if cfg.stage1.retrieval.embedder == "fused" and cfg.stage1.prompt.n_examples:
        raise ValueError("mner tag does not load a backbone for the fused embedder; "
                         "set stage1.retrieval.embedder=text (or stage1.prompt.n_examples=0)")
    runtime: dict[str, Any] = {"local_model": llm["local_model"]}
    endpoint = answering_identity(cfg.stage1.llm)
    if name == "distilled":
        llm.update(backend="transformers", base_url=None)
        if cfg.stage1.llm.local_model:  # named by the config: asked as it is, like mner predict --llm
            local = cfg.stage1.llm.model_copy(update={"backend": "transformers", "base_url": None})
            runtime["local_model"] = str(cfg.stage1.llm.local_model)
            endpoint = answering_identity(local)
            return {"name": name, "endpoint": endpoint, "stage1": _keyed(data), "dataset": data["dataset"]}, runtime
        if trained.distill_key:
            key, folder = trained.distill_key, ArtifactStore(root).find("distill", trained.distill_key) / MODEL_DIR
        else:
            folder, key = latest_distilled(root, *distilled_by(cfg))
        runtime["local_model"], endpoint = str(folder), distilled_identity(key, cfg.stage1.llm.precision)
    return {"name": name, "endpoint": endpoint, "stage1": _keyed(data), "dataset": data["dataset"], **form}, runtime


def route_sources(name: str, cfg: PipelineConfig, knowledge_file: str | None) -> dict[str, str | None]:
    """The files a route reads, by content in the shards' key: a file of Z, or the train split, the teacher's train
    answers and the captions that the retrieved route indexes (as the LLM routes do for prompts that show the
    teacher's answers for similar train posts)."""
    if name == "file":
        return {"knowledge_file": knowledge_file}
    if name == "retrieved" or (name in ("llm", "distilled") and cfg.stage1.prompt.similar_answers):
        ds = cfg.dataset
        captions = ds.captions if cfg.stage1.caption.backend == "file" else None
        answers = cfg.stage1.knowledge.retrieved.answers or ds.knowledge_train
        return {"retrieved_train": str(ds.train), "retrieved_answers": str(answers) if answers else None,
                "retrieved_captions": str(captions) if captions else None}
    return {}


def _keyed(data: dict[str, Any]) -> dict[str, Any]:
    """The stage-1 settings less where the LLM runs (its identity is the route's ``endpoint``)."""
    for field in NOT_IN_ROUTE_KEY:
        data["stage1"]["llm"].pop(field, None)
    return data["stage1"]


@flow(name="mner-tag-shards", log_prints=True)
def tag_shards(files: list[str], formats: list[str], names: list[str], shard_size: int, params: dict[str, Any],
               runtime: dict[str, Any], refresh: bool = False) -> dict[str, Any]:
    """Cut every file into shards as it is read and tag them on this flow's task runner; outputs in input order."""
    log, store = stage_logger(), ArtifactStore(params["artifacts_root"])
    submitted, computed = [], 0
    for path, fmt, name in zip(files, formats, names):
        for spec in scan_shards(path, fmt, shard_size):
            call = {**params, "content": spec.sha256, "name": name, "format": fmt, "first_line": spec.first_line,
                    "posts": spec.posts, "runtime": {**runtime, "file": path, "start": spec.start, "stop": spec.stop}}
            computed += refresh or store.load("tag-shard", stage_key(tag_shard, call)) is None
            submitted.append((submit_stage(tag_shard, refresh, **call), name, call))
    log.info("tag: %d shards, %d to tag, %d from the store", len(submitted), computed, len(submitted) - computed)
    progress = create_progress_artifact(0.0, key="tag-progress", description="mner tag: shards finished")
    order = {id(future): index for index, (future, _, _) in enumerate(submitted)}
    outputs: list[dict[str, Any] | None] = [None] * len(submitted)
    for done, future in enumerate(as_completed([future for future, _, _ in submitted]), 1):
        index = order[id(future)]
        _, name, call = submitted[index]
        outputs[index] = {"name": name, "output": checked(tag_shard, future.result(), call)}
        update_progress_artifact(progress, round(100 * done / len(submitted), 1))
    return {"shards": outputs, "computed": computed, "cached": len(submitted) - computed}


@flow(name="mner-tag", log_prints=True)
def tag(input: str, model: str = "latest", knowledge: str | None = None, knowledge_file: str | None = None,
        images: str | None = None, input_format: str = "auto", output: str | None = None, conll: bool = False,
        with_knowledge: bool = False, max_rejected_share: float = 0.05, shard_size: int = SHARD_SIZE,
        tokenizer_style: str | None = None, config_file: str | None = None, overrides: dict[str, Any] | None = None,
        refresh: bool = False) -> dict[str, Any]:
    """Tag the posts of ``input`` (a file or folder) with ``model``; knowledge by the model's route unless ``knowledge``
    names another (none, file, llm, distilled, retrieved). ``config_file``/``overrides`` give the store, the task runner
    (``stage1.runner``), the LLM settings and, for the retrieved route, the dataset whose train posts it searches.
    Raw text is split by the tokenization the model recorded, unless ``tokenizer_style`` names another.
    Returns counts, speed and where the files are."""
    started = time.perf_counter()
    cfg = resolve_config(None, config_file, overrides)
    root = str(cfg.artifacts_root)
    check_writable_root(root)
    if input_format not in ("auto", *FORMATS):
        raise ValueError(f"input_format={input_format!r}; expected auto or one of {FORMATS}")
    if tokenizer_style not in (None, *STYLES):
        raise ValueError(f"tokenizer_style={tokenizer_style!r}; expected one of {STYLES}")
    if not 0.0 <= max_rejected_share <= 1.0:
        raise ValueError(f"max_rejected_share={max_rejected_share} must lie between 0 and 1")
    model_dir = resolve_model(model, root)
    trained = trained_route(model_dir, root)
    paths = input_files(input)
    formats = [detect_format(p) if input_format == "auto" else input_format for p in paths]
    named = f"{model} ({trained.dataset or '?'}/{trained.variant}, {model_dir})"
    route_name = choose_route(trained, knowledge, knowledge_file, all(f == "jsonl" for f in formats), named)
    route, runtime = route_settings(route_name, trained, cfg, root)
    style = tokenizer_style or model_tokenization(model_dir)
    stage_logger().info("tag: %d file(s), model %s, knowledge route %s, tokenization %s", len(paths), named, route_name, style)
    params = {"model": model_output(model_dir), "route": route, "style": style, "images": images,
              "sources": route_sources(route_name, cfg, knowledge_file), "artifacts_root": root}
    base = Path(input) if Path(input).is_dir() else Path(input).parent
    names = [str(p.relative_to(base)) for p in paths]
    serving = resolve_base_url({**cfg.stage1.llm.model_dump(), "n_parallel": cfg.stage1.llm.n_parallel}) \
        if route_name == "llm" else contextlib.nullcontext("")
    with serving as base_url:
        shards = tag_shards.with_options(task_runner=build_task_runner(cfg.stage1.runner))(
            [str(p) for p in paths], formats, names, shard_size, params, {**runtime, "base_url": base_url}, refresh)
    merged = run_stage(merge_tagged, refresh, shards=shards["shards"], with_knowledge=with_knowledge, conll=conll,
                       artifacts_root=root)
    seconds = time.perf_counter() - started
    counts = {"computed": shards["computed"], "cached": shards["cached"]}
    publish_tag_report(merged, seconds, counts)
    result = {"output": merged["dir"], "files": copy_outputs(merged, output) if output else {}, "route": route_name,
              "tokenization": style, "seconds": round(seconds, 2), "shards": counts, **_counts(merged)}
    result["posts_per_second"] = round(result["posts"] / seconds, 1) if seconds else None
    _check_rejected(result, max_rejected_share)
    return result


def _counts(merged: dict[str, Any]) -> dict[str, Any]:
    import json

    summary = json.loads((Path(merged["dir"]) / "summary.json").read_text(encoding="utf-8"))
    return {key: summary[key] for key in ("posts", "tagged", "rejected", "rejected_by_file")}


def _check_rejected(result: dict[str, Any], share: float) -> None:
    """Fail naming the files, the share and where the reasons are, when more than ``share`` of the posts were rejected."""
    rejected, posts = result["rejected"], result["posts"]
    if posts and rejected / posts > share:
        files = sorted(result["rejected_by_file"].items(), key=lambda item: -item[1]["rejected"])
        named = ", ".join(f"{name} ({c['rejected']} of {c['posts']})" for name, c in files[:10])
        where = result["files"].get("rejected.jsonl") or str(Path(result["output"]) / "rejected.jsonl")
        raise TooManyRejected(f"{rejected} of {posts} posts rejected ({rejected / posts:.1%}), more than "
                              f"max_rejected_share={share}: {named}; each is listed with file:line and the reason in "
                              f"{where}. Fix those posts, or raise max_rejected_share to tag the rest")
