"""Stages ``tag-shard`` and ``tag``: tag a shard of raw posts with a trained model, then merge the shards in order.

A shard's key covers the content of its posts (their bytes' sha256), where they sit (the file's
name in the input and the first line), the model (its files), the knowledge route (name, answering
model, the stage-1 settings that shape Z, a knowledge file's content), the tokenization and the
images folder; the path of the input and this run's server URL are ``runtime`` and stay out, so
the same posts elsewhere replay from the store. A killed run, run again, tags only the shards that
were not published. A shard with posts whose LLM answer failed is published incomplete, so the next
run asks again for exactly those (the answer cache keeps the rest).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from engine.knowledge_routes import KnowledgeRoute
from engine.tagging import tag_posts
from mner.config import PipelineConfig
from mner.formats import conll_text
from mner.posts import ShardSpec, read_shard
from mner.samples import Sample, write_jsonl
from mner.store import StageRun
from tasks.common import read_prefect_secret, stage_logger, stage_task

TAGGED, REJECTED, CONLL, SUMMARY = "tagged.jsonl", "rejected.jsonl", "tagged.conll", "summary.json"
TOP_ENTITIES = 20


@stage_task("tag-shard")
def tag_shard(run: StageRun, content: str, name: str, format: str, first_line: int, posts: int, model: dict[str, Any],
              route: dict[str, Any], style: str, images: str | None, artifacts_root: str,
              sources: dict[str, str] | None = None, runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """Tag the ``posts`` posts of ``runtime["file"]`` bytes ``[start, stop)``; write ``tagged.jsonl`` and ``rejected.jsonl``.

    ``content`` is their sha256, checked as they are read (a file changed since the scan fails the
    shard). ``route`` is the knowledge route as JSON (``name``, ``endpoint``, ``stage1`` settings for
    the LLM routes, ``retrieved`` settings, ``answer_form``); ``sources["knowledge_file"]`` a file of Z by id, or the
    retrieved route's ``retrieved_train``, ``retrieved_answers`` and ``retrieved_captions``; ``runtime`` holds ``file``,
    ``start``, ``stop`` and, for the LLM routes, ``base_url``, ``local_model`` and ``backbone_dir``.
    """
    run_time = runtime or {}
    spec = ShardSpec(run_time["file"], format, run_time["start"], run_time["stop"], first_line, posts, content)
    knowledge = knowledge_route(route, sources or {}, run_time, artifacts_root)
    read = list(_named(read_shard(spec, images), Path(spec.file), name))
    if len(read) != posts:
        raise ValueError(f"{spec.file}: {len(read)} posts from line {first_line} where the scan found {posts}; "
                         "did the file change during the run? Run again")
    tagged, rejected, summary = tag_posts(read, model["dir"], knowledge, style)
    write_jsonl(run.work_dir / TAGGED, tagged)
    write_jsonl(run.work_dir / REJECTED, rejected)
    stage_logger().info("tag %s:%d: %d posts, %d tagged, %d rejected in %.1f s", name, first_line, summary["posts"],
                        summary["tagged"], summary["rejected"], summary["seconds"])
    return {"summary": summary, "incomplete": {"retryable": summary["retryable"]} if summary["retryable"] else None}


def knowledge_route(route: dict[str, Any], sources: dict[str, str | None], runtime: dict[str, Any],
                    artifacts_root: str) -> KnowledgeRoute:
    """The knowledge route a shard asks, from the route as JSON (``flows.tag.route_settings``), the files it reads
    (``flows.tag.route_sources``) and where it runs this time (``base_url``, ``local_model``, ``backbone_dir``)."""
    # the config's dataset (its train posts and examples make the LLM's prompts); the variants it trains are not Z's
    config = PipelineConfig.model_validate({"stage1": route["stage1"], "dataset": route.get("dataset"),
                                            "variants": ["text"]}) if route.get("stage1") else None
    retrieved = {**route["retrieved"], **{k: sources.get(f"retrieved_{k}") for k in ("train", "answers", "captions")}} \
        if route.get("retrieved") else None
    return KnowledgeRoute(route["name"], config, sources.get("knowledge_file"), route.get("endpoint"),
                          runtime.get("base_url") or "", runtime.get("local_model"), artifacts_root,
                          runtime.get("backbone_dir"), read_prefect_secret, route.get("answer_form", "full"), retrieved)


def _named(posts: Iterator[Any], path: Path, name: str) -> Iterator[Any]:
    """The posts with ``where`` as ``<name in the input>:<line>`` instead of the path this run read them from."""
    for post in posts:
        post.where = f"{name}:{post.where.rpartition(':')[2]}"
        if post.id.startswith(f"{path.name}:"):
            post.id = f"{name}:{post.id.rpartition(':')[2]}"
        yield post


def _copy_lines(source: Path, target: Any, keep_knowledge: bool = True) -> None:
    with open(source, encoding="utf-8") as handle:
        for line in handle:
            if keep_knowledge:
                target.write(line)
            else:
                row = json.loads(line)
                row.pop("knowledge", None)
                target.write(json.dumps(row, ensure_ascii=False) + "\n")


@stage_task("tag")
def merge_tagged(run: StageRun, shards: list[dict[str, Any]], with_knowledge: bool, conll: bool,
                 artifacts_root: str) -> dict[str, Any]:
    """Concatenate the shards in order into ``tagged.jsonl`` (Z kept with ``with_knowledge``), ``rejected.jsonl``,
    ``tagged.conll`` (with ``conll``) and ``summary.json``: counts, entities by type, the most frequent entities,
    rejected posts by file and reason, and the first ten tagged posts."""
    types: Counter[str] = Counter()
    entities: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    posts_by_file: Counter[str] = Counter()
    counts = {"posts": 0, "tagged": 0, "rejected": 0}
    first: list[dict[str, Any]] = []
    with open(run.work_dir / TAGGED, "w", encoding="utf-8") as tagged, \
            open(run.work_dir / REJECTED, "w", encoding="utf-8") as rejected:
        for shard in shards:
            folder = Path(shard["output"]["dir"])
            summary = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["summary"]
            for key in counts:
                counts[key] += summary[key]
            types.update(summary["types"])
            entities.update(summary["entities"])
            reasons.update(summary["reasons"])
            by_file[shard["name"]] += summary["rejected"]
            posts_by_file[shard["name"]] += summary["posts"]
            _copy_lines(folder / TAGGED, tagged, with_knowledge)
            _copy_lines(folder / REJECTED, rejected)
            if len(first) < 10:
                with open(folder / TAGGED, encoding="utf-8") as handle:
                    first += [json.loads(line) for _, line in zip(range(10 - len(first)), handle)]
    if conll:
        with open(run.work_dir / TAGGED, encoding="utf-8") as source, open(run.work_dir / CONLL, "w", encoding="utf-8") as out:
            for line in source:
                row = json.loads(line)
                out.write(conll_text([Sample(row["id"], row["tokens"], row["tags"], row["id"])], with_image_ids=True))
    top = [{"text": key.split("\t")[0], "type": key.split("\t")[1], "count": n} for key, n in entities.most_common(TOP_ENTITIES)]
    summary = {**counts, "types": dict(types.most_common()), "top_entities": top, "reasons": dict(reasons),
               "rejected_by_file": {name: {"rejected": n, "posts": posts_by_file[name]} for name, n in by_file.items() if n},
               "first_posts": first}
    (run.work_dir / SUMMARY).write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return {"posts": counts["posts"], "tagged": counts["tagged"], "rejected": counts["rejected"]}


def copy_outputs(merged: dict[str, Any], folder: str | Path) -> dict[str, str]:
    """Copy the merged files into ``folder`` (created); their new paths by name."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    copied = {}
    for name in (TAGGED, REJECTED, CONLL):
        source = Path(merged["dir"]) / name
        if source.is_file():
            shutil.copyfile(source, target / name)
            copied[name] = str(target / name)
    return copied
