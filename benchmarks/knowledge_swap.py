"""Local knowledge at test time: [T;Z] taggers trained on ChatGPT's Z, scored with Z from a local model instead.

    python benchmarks/knowledge_swap.py [--config configs/twitter2017-distilled.yaml] [--label seeds]
        [--source chatgpt distilled base] [--own-train-seeds 42 1 2]

The taggers are the [T;Z] models of the benchmarks/results/stage2.jsonl rows with ``--label`` on the
config's dataset (one per seed, trained and model-selected on PGIM's ChatGPT Z). For each
``--source`` this script gets Z for the dev and test splits, tags both with every tagger, Z replaced,
and appends one row per (source, tagger) to benchmarks/results/knowledge_swap.jsonl as soon as it is scored:

- ``chatgpt``: PGIM's released files, as the taggers were trained; it must reproduce the stage2 row's
  test F1, which checks this harness against the pipeline's own evaluation;
- ``distilled``: the model of ``--config``'s distill stage (``mner run -c CONFIG --until distill`` runs
  first; cached when done), asked with that config's prompts;
- ``base``: SmolLM2-135M-Instruct's GGUF, zero-shot with PGIM's head (``--base-config``'s dataset,
  ``prompts/pgim_v1``).

With ``--own-train-seeds`` it also runs ``mner run -c CONFIG`` itself, once per seed, with the taggers'
training settings (those of the label's first row; its model need not be on disk): the distilled
model's Z on every split and a [T;Z] tagger trained on its own train Z, which is what the pipeline
does by default (source ``distilled, own train Z``). A bare ``--source`` runs only that.

Local answers come from the engine's answer loop, as the llm stage gets them (:func:`harness.local_answers`),
greedy, with the config's ``stage1.llm`` settings. They go into the store's per-sample answer cache, so a later
``mner run`` of the same config reuses them. Each row also has the share of gold entities that
appear verbatim in Z and the generation rate of the answers that were not cached.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from harness import (RESULTS_DIR, ROOT, STAGE2_RESULTS as STAGE2, append_rows, gold_entities, local_answers, log_stages_to_stderr,
                     mner_run, parse_args, parse_overrides, provenance, read_rows, run_until, typed_overrides, verbatim_share)

from engine.distillation import distilled_identity
from engine.llm_server import default_model_path
from engine.local_generate import answering_identity
from engine.runtime import pick_device, set_threads, use_bf16
from engine.taggers import load_tagger, predict
from mner import formats, pgim
from mner.config import PipelineConfig, load_config
from mner.metrics import evaluate
from mner.samples import Sample, read_jsonl

RESULTS = RESULTS_DIR / "knowledge_swap.jsonl"
SPLITS = ("dev", "test")
BASE_ZERO_SHOT = {"stage1.knowledge.backend": "llm", "stage1.llm.backend": "transformers", "stage1.prompt.n_examples": 0,
                  "stage1.retrieval.embedder": "random", "stage1.ocr.backend": "none"}


def split_answers(cfg: PipelineConfig, prompts: dict[str, Any], split: str, endpoint: str,
                  model: str | None) -> tuple[dict[str, str], dict[str, Any]]:
    """``{id: Z}`` of one split, answered as the llm stage answers (:func:`harness.local_answers`), and what it cost."""
    source = Path(prompts["dir"]) / f"{split}.jsonl"
    rows = read_jsonl(source)
    answers, summary = local_answers(cfg, rows, source, endpoint, model)
    usage, seconds = summary["usage"], summary["seconds"]
    generated = usage["requests"]
    return (answers,
            {"prompts": len(rows), "generated": generated, "cached": usage["cached"], "seconds": round(seconds, 1),
             "prompts_per_second": round(generated / seconds, 3) if generated and seconds else None,
             "completion_tokens": usage["completion_tokens"]})


def source_knowledge(source: str, cfg: PipelineConfig, args: Any, splits: dict[str, list[Sample]]
                     ) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Z per split (in sample order) from ``source``, and what produced it."""
    ds = cfg.dataset
    if source == "chatgpt":
        return ({split: pgim.read_knowledge(getattr(ds, f"knowledge_{split}"), samples).knowledge
                 for split, samples in splits.items()}, {"model": "PGIM's ChatGPT files"})
    if source == "distilled":
        prompts = run_until(args.config, "prompts", args.overrides)
        distill = run_until(args.config, "distill", args.overrides)
        endpoint, model = distilled_identity(distill["key"], cfg.stage1.llm.precision), str(Path(distill["dir"]) / "model")
        result = json.loads((Path(distill["dir"]) / "manifest.json").read_text(encoding="utf-8"))["result"]
        about = {"model": endpoint, "base_model": Path(cfg.stage1.distill.base_model or default_model_path()).name,
                 "pairs": result["train_pairs"], "epochs": result["epochs"],
                 "heldout_loss": result["history"][-1]["heldout_loss"],
                 "prompts_template": str(cfg.stage1.prompt.template_dir.name)}
    else:
        base_cfg = load_config(args.base_config, {**BASE_ZERO_SHOT, "stage1.llm.max_tokens": cfg.stage1.llm.max_tokens,
                                                  "stage1.llm.batch_size": cfg.stage1.llm.batch_size,
                                                  "stage1.llm.shard_size": cfg.stage1.llm.shard_size})
        prompts = run_until(args.base_config, "prompts", BASE_ZERO_SHOT)
        cfg, endpoint, model = base_cfg, answering_identity(base_cfg.stage1.llm), None
        about = {"model": endpoint, "prompts_template": str(base_cfg.stage1.prompt.template_dir.name)}
    knowledge, generation = {}, {}
    for split, samples in splits.items():
        answers, generation[split] = split_answers(cfg, prompts, split, endpoint, model)
        missing = [s.id for s in samples if s.id not in answers]
        if missing:
            raise SystemExit(f"{prompts['dir']}/{split}.jsonl has no prompt for {len(missing)} {split} samples "
                             f"(first ids {missing[:5]}): not the prompts of {getattr(cfg.dataset, split)}")
        knowledge[split] = [answers[s.id] for s in samples]
    return knowledge, {**about, "generation": generation}


def own_train_row(args: Any, cfg: PipelineConfig, tagger: dict[str, Any], seed: int, about: dict[str, Any],
                  share: float) -> dict[str, Any]:
    """The distilled route as ``mner run -c CONFIG`` runs it: Z on every split from the distilled model, [T;Z] trained on it."""
    settings = {k: v for k, v in tagger["overrides"].items() if k != "train.seed"}
    started = time.perf_counter()
    run = {**args.overrides, **settings, "train.seed": seed, "variants": "[text+knowledge]"}
    result = mner_run(args.config, run)["text+knowledge"]
    history = json.loads((Path(result["model"]) / "history.json").read_text(encoding="utf-8"))
    return {"dataset": cfg.dataset.name, "source": "distilled, own train Z",
            **{k: about[k] for k in ("model", "base_model", "pairs", "epochs", "heldout_loss")},
            "tagger": {"label": "pipeline", "seed": seed, "model_dir": result["model"], "commit": None, "date": None,
                       "test_f1": result["test_f1"], "dev_f1": result["dev_f1"]},
            "training": {"settings": settings, "best_epoch": history["best_epoch"], "train_seconds": history["train_seconds"]},
            "pipeline_seconds": round(time.perf_counter() - started, 1), "generation": about.get("generation", {}),
            "dev_f1": result["dev_f1"],
            "test_precision": result["test_precision"], "test_recall": result["test_recall"], "test_f1": result["test_f1"],
            "test_verbatim_share": share, **provenance()}


def score(model_dir: str, precision: str, splits: dict[str, list[Sample]], knowledge: dict[str, list[str]]
          ) -> dict[str, dict[str, Any]]:
    """Strict entity scores per split of the tagger in ``model_dir``, with ``knowledge`` as the samples' Z."""
    device = pick_device("auto")
    tagger, encoder = load_tagger(model_dir, device)
    scores = {}
    for split, samples in splits.items():
        encoded = [encoder.encode(s.tokens, None, z) for s, z in zip(samples, knowledge[split])]
        scores[split] = evaluate([s.tags for s in samples], predict(tagger, encoded, device, use_bf16(precision, device)))
    return scores


def main() -> None:
    """Pick the taggers, get each source's Z, score, append and print the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/twitter2017-distilled.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override of --config (YAML value), also passed to its mner runs; e.g. the distill settings "
                             "of a model that benchmarks/distill_speed.py trained")
    parser.add_argument("--base-config", default="configs/twitter2017.yaml", help="dataset config of the base model's prompts")
    parser.add_argument("--label", default="seeds", help="stage2.jsonl label of the [T;Z] taggers to score")
    parser.add_argument("--show", type=int, default=5, help="test tweets whose Z each row keeps, for reading")
    parser.add_argument("--own-train-seeds", type=int, nargs="*", default=[],
                        help="also run the whole pipeline of --config with these seeds: Z from the distilled model on every "
                             "split, the tagger trained on its own train Z, with the taggers' training settings")
    parser.add_argument("--source", nargs="*", choices=["chatgpt", "distilled", "base"], default=["chatgpt", "distilled", "base"],
                        help="sources whose Z the label's taggers are scored with (their models must be on disk); "
                             "none (a bare --source) with --own-train-seeds runs only the pipeline, which takes its "
                             "training settings from the label's first row")
    args = parse_args(parser)
    log_stages_to_stderr()
    set_threads(0)
    args.overrides = typed_overrides(args.set)
    cfg = load_config(args.config, parse_overrides(args.set))
    labelled = [r for r in read_rows(STAGE2) if r.get("label") == args.label and r["dataset"] == cfg.dataset.name
                and r["variant"] == "text+knowledge" and "test_f1" in r]
    taggers = [r for r in labelled if (ROOT / r["model_dir"]).is_dir()]  # relative to the project root
    if not labelled or (args.source and not taggers):
        raise SystemExit(f"{STAGE2}: no [T;Z] row with label {args.label!r} on {cfg.dataset.name}"
                         + (" whose model is on disk" if labelled else ""))
    splits = {split: formats.read_conll(getattr(cfg.dataset, split), repair=cfg.dataset.repair_bio).sentences for split in SPLITS}
    entities = [gold_entities(s.tokens, s.tags or []) for s in splits["test"]]
    rows, shares, abouts = [], {}, {}
    for source in args.source + (["distilled"] if args.own_train_seeds and "distilled" not in args.source else []):
        knowledge, about = source_knowledge(source, cfg, args, splits)
        share = shares[source] = verbatim_share(entities, knowledge["test"])
        abouts[source] = about
        if source not in args.source:
            continue
        shown = [{"id": t.id, "tweet": " ".join(t.tokens), "entities": entities[i], "z": knowledge["test"][i]}
                 for i, t in enumerate(splits["test"][: args.show])]
        for tagger in taggers:
            scores = score(str(ROOT / tagger["model_dir"]), cfg.train.precision, splits, knowledge)
            dev, test = scores["dev"], scores["test"]
            rows.append({"dataset": cfg.dataset.name, "source": source, **about, "test_verbatim_share": share, "examples": shown,
                         "tagger": {k: tagger[k] for k in ("label", "commit", "date", "model_dir", "test_f1", "dev_f1")}
                         | {"seed": tagger["overrides"].get("train.seed", 42)},
                         "dev_f1": dev["f1"], "test_precision": test["precision"], "test_recall": test["recall"],
                         "test_f1": test["f1"], "test_per_type_f1": {t: c["f1"] for t, c in test["per_type"].items()},
                         **provenance()})
            append_rows(RESULTS, rows[-1:])
            print(json.dumps({k: rows[-1][k] for k in ("source", "dev_f1", "test_f1", "test_verbatim_share")}
                             | {"seed": rows[-1]["tagger"]["seed"], "trained_test_f1": tagger["test_f1"]}), flush=True)
    for seed in args.own_train_seeds:
        rows.append(own_train_row(args, cfg, labelled[0], seed, abouts["distilled"], shares["distilled"]))
        append_rows(RESULTS, rows[-1:])
        print(json.dumps({k: rows[-1][k] for k in ("source", "dev_f1", "test_f1")} | {"seed": seed}), flush=True)


if __name__ == "__main__":
    main()
