"""The distilled route with cross-fitted train Z: the tagger never trains on Z the LLM learnt word for word.

    python benchmarks/crossfit_knowledge.py [--config configs/twitter2017-distilled.yaml] [--folds 2]
        [--seeds 42 1 2] [--label seeds]

The pipeline's distilled route trains the [T;Z] tagger on the distilled model's own train Z. That
model learnt those very answers, so its train Z is closer to ChatGPT's than its test Z will be, and
the tagger learns to trust Z more than test-time Z deserves. Cross-fitting removes the gap:

1. the train prompts are cut into ``--folds`` contiguous blocks (the prompts output's row order);
2. for each block, the config's distill stage runs (``mner run --until distill``) on the teacher's
   answers of the *other* blocks only (``stage1.distill.answers``: a JSONL of them; the block's own
   samples are reported as rejected for having no answer, so ``max_rejected_share`` is raised to
   the block's share plus the teacher's own gaps);
3. that fold model writes the block's train Z through the llm stage's shard function;
4. dev and test Z come from the config's full distilled model, as in the pipeline;
5. the llm stage's own merge joins the shards into one llm output, and the real ``knowledge``,
   ``train`` and ``evaluate`` stages train and score a [T;Z] tagger per seed, with the training
   settings of the stage2 label's first Twitter [T;Z] row (as knowledge_swap.py's own-train runs).

Everything is a cached stage in the config's store, so a rerun recomputes only what is missing.
One row per seed goes to benchmarks/results/knowledge_swap.jsonl (source ``distilled, cross-fitted
train Z``); it also has the share of gold *train* entities verbatim in the train Z of each source
(ChatGPT, the distilled model's own, cross-fitted), which measures the train/test gap.

The fold models are ``distill`` outputs of the store like any other, and ``mner predict --llm``
asks the store's newest one: after this script, name the full model for prediction with
``--set stage1.llm.local_model=<its distill dir>/model``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (RESULTS_DIR, STAGE2_RESULTS as STAGE2, append_rows, gold_entities, log_stages_to_stderr, parse_args,
                     parse_overrides, provenance, read_rows, run_until, verbatim_share)

from engine.distillation import MODEL_DIR, distilled_identity, teacher_answers
from engine.generation_process import generation_process
from engine.runtime import set_threads
from mner.config import PipelineConfig, load_config
from mner.samples import read_jsonl, read_samples, write_jsonl
from tasks.data import join_knowledge
from tasks.evaluate import evaluate_model
from tasks.llm import llm_shard, shard_settings
from tasks.shards import merge_task
from tasks.train import train_model

RESULTS = RESULTS_DIR / "knowledge_swap.jsonl"
SOURCE = "distilled, cross-fitted train Z"


def fold_ranges(count: int, folds: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of ``folds`` contiguous blocks covering ``count`` rows, sizes differing by at most one."""
    if not 2 <= folds <= count:
        raise ValueError(f"--folds {folds}: need 2 to {count} folds for {count} train prompts")
    bounds = [round(i * count / folds) for i in range(folds + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def shard(prompts: dict[str, Any], split: str, start: int, stop: int, cfg: PipelineConfig,
          distill: dict[str, Any]) -> dict[str, Any]:
    """Rows ``[start:stop)`` of ``split`` answered by the distilled model of ``distill``, as a merge input."""
    model = str(Path(distill["dir"]) / MODEL_DIR)
    generation_process(model, cfg.stage1.llm.precision)  # started here: the shard's time is generation alone
    output = llm_shard.fn(prompts=prompts, split=split, start=start, stop=stop,
                          endpoint=distilled_identity(distill["key"], cfg.stage1.llm.precision),
                          llm=shard_settings(cfg.stage1.llm), artifacts_root=str(cfg.artifacts_root),
                          runtime={"local_model": model})
    return {"split": split, "start": start, "stop": stop, "output": output}


def fold_models(args: Any, cfg: PipelineConfig, prompts: dict[str, Any], data: dict[str, Any], scratch: Path
                ) -> list[tuple[tuple[int, int], dict[str, Any]]]:
    """Per train block: its ``[start, stop)`` and the distill output trained without that block's answers."""
    train_prompts = read_jsonl(Path(prompts["dir"]) / "train.jsonl")
    train = read_samples(Path(data["dir"]) / "train.jsonl")
    teacher_file = cfg.stage1.distill.answers or cfg.dataset.knowledge_train
    answers, _ = teacher_answers(teacher_file, train)
    teacher_gaps = 1 - len(answers) / len(train)
    models = []
    for index, (start, stop) in enumerate(fold_ranges(len(train_prompts), args.folds)):
        held = {row["id"] for row in train_prompts[start:stop]}
        path = scratch / f"answers-without-block-{index + 1}-of-{args.folds}.jsonl"
        write_jsonl(path, [{"id": s.id, "knowledge": answers[s.id][0]} for s in train if s.id in answers and s.id not in held])
        share = round(min(1.0, len(held) / len(train) + teacher_gaps + 0.01), 4)
        overrides = {**args.overrides, "stage1.distill.answers": str(path), "stage1.distill.max_rejected_share": str(share)}
        models.append(((start, stop), run_until(args.config, "distill", overrides)))
    return models


def about_distill(output: dict[str, Any]) -> dict[str, Any]:
    """Pairs, epochs and final held-out loss of a distill output, from its manifest."""
    result = json.loads((Path(output["dir"]) / "manifest.json").read_text(encoding="utf-8"))["result"]
    return {"key": output["key"], "pairs": result["train_pairs"], "epochs": result["epochs"],
            "heldout_loss": result["history"][-1]["heldout_loss"], "train_seconds": result["train_seconds"]}


def train_verbatim(data: dict[str, Any], knowledge_by_source: dict[str, dict[str, str]]) -> dict[str, float]:
    """Share of gold train entities verbatim in each source's train Z (``{source: {id: Z}}``)."""
    train = read_samples(Path(data["dir"]) / "train.jsonl")
    entities = [gold_entities(s.tokens, s.tags or []) for s in train]
    return {source: verbatim_share(entities, [z.get(s.id, "") for s in train]) for source, z in knowledge_by_source.items()}


def training_settings(label: str, dataset: str) -> dict[str, Any]:
    """The overrides (less the seed) of the first [T;Z] stage2.jsonl row with ``label`` on ``dataset``; none for ``''``."""
    if not label:
        return {}
    rows = [r for r in read_rows(STAGE2)
            if r.get("label") == label and r["dataset"] == dataset and r["variant"] == "text+knowledge"]
    if not rows:
        raise SystemExit(f"{STAGE2}: no [T;Z] row with label {label!r} on {dataset} to take training settings from")
    return {k: v for k, v in rows[0]["overrides"].items() if k != "train.seed"}


def main() -> None:
    """Distil per fold, generate, merge, join, train and score per seed; append one row per seed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/twitter2017-distilled.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of --config (YAML value)")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append the rows to")
    parser.add_argument("--label", default="seeds", help="stage2.jsonl label whose first [T;Z] row gives the training "
                                                         "settings; '' keeps the config's")
    args = parse_args(parser)
    log_stages_to_stderr()
    set_threads(0)
    args.overrides = dict(item.split("=", 1) for item in args.set)
    cfg = load_config(args.config, parse_overrides(args.set))
    if not cfg.stage1.distill.enabled:
        raise SystemExit(f"{args.config}: stage1.distill.enabled is false; cross-fitting needs the distilled route")
    settings = training_settings(args.label, cfg.dataset.name)
    root = str(cfg.artifacts_root)
    started = time.perf_counter()
    data, prompts = run_until(args.config, "load", args.overrides), run_until(args.config, "prompts", args.overrides)
    captions, full = run_until(args.config, "caption", args.overrides), run_until(args.config, "distill", args.overrides)
    with tempfile.TemporaryDirectory(prefix="mner-crossfit-") as scratch:
        folds = fold_models(args, cfg, prompts, data, Path(scratch))
        shards = [shard(prompts, "train", start, stop, cfg, model) for (start, stop), model in folds]
    shards += [shard(prompts, split, 0, len(read_jsonl(Path(prompts["dir"]) / f"{split}.jsonl")), cfg, full)
               for split in ("dev", "test")]
    merged = merge_task("llm").fn(shards=shards, artifacts_root=root)
    joined = join_knowledge.fn(data=data, artifacts_root=root, captions=captions, llm_knowledge=merged,
                               sources={"knowledge_train": None, "knowledge_dev": None, "knowledge_test": None, "captions": None})
    own = run_until(args.config, "llm", args.overrides)
    z = {name: {r["id"]: r.get("knowledge") or "" for r in read_jsonl(Path(out["dir"]) / "train.jsonl")}
         for name, out in (("own", own), ("crossfit", merged))}
    chatgpt, _ = teacher_answers(cfg.dataset.knowledge_train, read_samples(Path(data["dir"]) / "train.jsonl"))
    shares = train_verbatim(data, {"chatgpt": {i: a for i, (a, _) in chatgpt.items()}, **z})
    test = read_samples(Path(joined["dir"]) / "test.jsonl")
    test_share = verbatim_share([gold_entities(s.tokens, s.tags or []) for s in test], [s.knowledge or "" for s in test])
    prepared = round(time.perf_counter() - started, 1)
    full_about = about_distill(full)
    for seed in args.seeds:
        run_cfg = load_config(args.config, {**parse_overrides(args.set), **settings, "train.seed": seed})
        model = train_model.fn(data=joined, variant="text+knowledge", model=run_cfg.model.model_dump(mode="json"),
                               train=run_cfg.train.model_dump(mode="json"), runtime={"dataset": cfg.dataset.name},
                               artifacts_root=root)
        scores = json.loads((Path(evaluate_model.fn(data=joined, model=model, variant="text+knowledge",
                                                    precision=run_cfg.train.precision, artifacts_root=root)["dir"])
                             / "scores.json").read_text(encoding="utf-8"))
        history = json.loads((Path(model["dir"]) / "history.json").read_text(encoding="utf-8"))
        row = {"dataset": cfg.dataset.name, "source": SOURCE,
               "model": distilled_identity(full["key"], cfg.stage1.llm.precision),
               **{k: full_about[k] for k in ("pairs", "epochs", "heldout_loss")},
               "folds": [{"train_rows": [start, stop], **about_distill(m)} for (start, stop), m in folds],
               "train_verbatim_share": shares, "test_verbatim_share": test_share,
               "tagger": {"label": "pipeline", "seed": seed, "model_dir": model["dir"], "commit": None, "date": None,
                          "test_f1": scores["test"]["f1"], "dev_f1": history["best_dev_f1"]},
               "training": {"settings": settings, "best_epoch": history["best_epoch"], "train_seconds": history["train_seconds"]},
               "preparation_seconds": prepared, "dev_f1": history["best_dev_f1"],
               "test_precision": scores["test"]["precision"], "test_recall": scores["test"]["recall"],
               "test_f1": scores["test"]["f1"], **provenance()}
        append_rows(args.results, [row])
        shown = {k: row[k] for k in ("source", "dev_f1", "test_f1", "train_verbatim_share")}
        print(json.dumps(shown | {"seed": seed}), flush=True)


if __name__ == "__main__":
    main()
