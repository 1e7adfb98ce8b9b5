"""A knowledge route through the whole pipeline, per seed: what it scores and what it costs on this machine.

    python benchmarks/route_seeds.py --config configs/twitter2017-distilled.yaml --seeds 42 1 2 [--label NAME]
        [--train-label seeds] [--set KEY=VALUE ...]

The route is the config's ``stage1.knowledge.backend`` (``llm`` with the distill stage, ``retrieved``,
or ``file``). Each step is one child ``mner run -c CONFIG``, timed by the clock: up to ``distill``
(when enabled), up to the knowledge stage (``llm`` or ``retrieved``: Z for every split), then once
per seed the whole pipeline with only the [T;Z] variant and the tagger settings of the
benchmarks/results/stage2.jsonl rows labelled ``--train-label`` (so that the route pairs by seed with
the text-only rows of that label, run on the same kind of machine). Each row records the precision its taggers
trained in (``precision: auto`` is bf16 on a CPU with bf16): the tables pair a row with its label's text-only rows
only where that is fp32, as those were (``--set train.precision=fp32`` on such a CPU). A step found in the store takes seconds; the row says which
steps were computed. Each seed appends one row to benchmarks/results/route_seeds.jsonl: dev and test
scores, the share of gold entities found verbatim in the Z of each split, the distill result, and the
minutes of each step; for a route that generates Z, also the minutes of each split's Z, from its first
shard's start to its last shard's end (the llm stage's shards run split by split).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import (STAGE2_RESULTS, RESULTS_DIR, append_rows, gold_entities, mner_run, parse_args, parse_overrides,
                     provenance, read_rows, typed_overrides, verbatim_share)

from engine.runtime import pick_device, use_bf16
from mner.config import load_config
from mner.samples import SPLITS, read_jsonl
from mner.store import ArtifactStore, sha256_json

RESULTS = RESULTS_DIR / "route_seeds.jsonl"


def timed_run(config: str, overrides: dict[str, str], until: str | None = None) -> tuple[dict[str, Any], float]:
    """``mner run -c config`` (up to ``until``) in a child process: what it prints as JSON, and its wall seconds."""
    started = time.perf_counter()
    printed = mner_run(config, overrides, until)
    return printed, round(time.perf_counter() - started, 1)


def manifest(directory: str) -> dict[str, Any]:
    """The manifest of a stage output directory."""
    return json.loads((Path(directory) / "manifest.json").read_text(encoding="utf-8"))


def z_verbatim(knowledge_dir: str) -> dict[str, float]:
    """Per split, the share of gold entities found verbatim in the Z that a knowledge output joined to its posts."""
    rows = {split: read_jsonl(Path(knowledge_dir) / f"{split}.jsonl") for split in SPLITS}
    return {split: verbatim_share([gold_entities(r["tokens"], r["tags"]) for r in found],
                                  [r.get("knowledge") or "" for r in found]) for split, found in rows.items()}


def split_minutes(merged_dir: str) -> dict[str, float]:
    """Per split, the wall minutes from the first start to the last end of the shards that a merged output (the llm
    stage's) joined, read from the shards' manifests in its store."""
    merged = manifest(merged_dir)
    store = ArtifactStore(Path(merged_dir).parents[1])
    shards = {sha256_json(e["manifest"].get("files", {})): e["manifest"] for e in store.entries(f"{merged['stage']}-shard")}
    spans: dict[str, list[float]] = {}
    for shard in merged["config"]["shards"]:
        found = shards.get(shard["output"]["output"])
        if found is None:
            raise SystemExit(f"{merged_dir}: a shard of split {shard['split']} is not in {store.root}")
        end = datetime.strptime(found["created"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        spans.setdefault(shard["split"], []).extend([end - found["timings"]["total_s"], end])
    return {split: round((max(times) - min(times)) / 60, 1) for split, times in spans.items()}


def tagger_settings(label: str, dataset: str) -> dict[str, Any]:
    """The tagger's training overrides (``train.*``, ``model.*``, less the seed) of the first stage2 row labelled
    ``label`` on ``dataset``: the settings of the text-only rows the route is paired with."""
    for row in read_rows(STAGE2_RESULTS):
        if row.get("label") == label and row.get("dataset") == dataset:
            return {k: v for k, v in row["overrides"].items() if k.startswith(("train.", "model.")) and k != "train.seed"}
    raise SystemExit(f"{STAGE2_RESULTS}: no row labelled {label!r} on {dataset}: run benchmarks/stage2.py with "
                     f"--label {label} first")


def main() -> None:
    """Run the route's steps, then one tagger per seed; append a row per seed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--label", default="", help="name of this configuration in the results")
    parser.add_argument("--train-label", default="seeds", help="stage2.jsonl label whose tagger settings the route trains with")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)")
    args = parse_args(parser)
    typed = typed_overrides(args.set)
    cfg = load_config(args.config, parse_overrides(args.set))
    backend = cfg.stage1.knowledge.backend
    steps: dict[str, Any] = {}
    if backend == "llm" and cfg.stage1.distill.enabled:
        out, seconds = timed_run(args.config, typed, "distill")
        distill = manifest(out["distill"])
        steps["distill"] = {"seconds": seconds, "created": distill["created"], "result": distill["result"]}
    if backend != "file":
        out, seconds = timed_run(args.config, typed, backend)
        steps["knowledge"] = {"stage": backend, "seconds": seconds, "created": manifest(out[backend])["created"],
                              **({"split_minutes": split_minutes(out[backend])} if backend == "llm" else {})}
    out, _ = timed_run(args.config, typed, "knowledge")
    verbatim = z_verbatim(out["knowledge"])
    share = verbatim["test"]
    settings = tagger_settings(args.train_label, cfg.dataset.name)
    train = load_config(args.config, {**parse_overrides(args.set), **settings}).train
    tagger_precision = "bf16" if use_bf16(train.precision, pick_device(train.device)) else "fp32"
    for seed in args.seeds:
        run = {**typed, **{k: str(v) for k, v in settings.items()}, "train.seed": str(seed), "variants": "[text+knowledge]"}
        result, seconds = timed_run(args.config, run)
        scores = result["text+knowledge"]
        history = json.loads((Path(scores["model"]) / "history.json").read_text(encoding="utf-8"))
        row = {"dataset": cfg.dataset.name, "route": backend + (" (distilled)" if cfg.stage1.distill.enabled else ""),
               "label": args.label, "train_label": args.train_label, "seed": seed, "config": args.config,
               "answer_form": cfg.stage1.knowledge.answer_form,
               "base_model": cfg.stage1.distill.base_model if cfg.stage1.distill.enabled else None,
               "overrides": parse_overrides(args.set),
               "train_settings": settings, "tagger_precision": tagger_precision, "dev_f1": scores["dev_f1"], "test_precision": scores["test_precision"],
               "test_recall": scores["test_recall"], "test_f1": scores["test_f1"], "test_verbatim_share": share,
               "z_verbatim_share": verbatim,
               "steps": {**steps, "train": {"seconds": seconds, "train_seconds": history["train_seconds"],
                                            "best_epoch": history["best_epoch"]}},
               "model_dir": scores["model"], **provenance()}
        append_rows(RESULTS, [row])
        print(json.dumps({k: row[k] for k in ("dataset", "route", "seed", "dev_f1", "test_f1", "test_verbatim_share")}),
              flush=True)


if __name__ == "__main__":
    main()
