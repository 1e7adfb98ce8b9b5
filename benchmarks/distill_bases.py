"""Distill bases and methods on the same train pairs, judged by the answers they give on dev (or test) tweets.

    python benchmarks/distill_bases.py [--config configs/twitter2017-distilled.yaml] [--pairs 1024] [--tweets 200]
                                       [--split test] [--bases smollm2 gemma3-270m] [--methods full] [--epochs 1]
                                       [--set KEY=VALUE ...]

Each (base, method) is distilled through the pipeline (``mner run --until distill``, as
``benchmarks/distill_speed.py`` does: zero-shot prompts, lr 2e-5 for whole-model methods, batch 8) on
the first ``--pairs`` train pairs with PGIM's ChatGPT answers, with the config's own settings and
``--set`` (e.g. ``stage1.knowledge.answer_form=entities``). The bases are packaged GGUFs
(:data:`distill_speed.BASES`; Gemma 3 270M gets ``prompts/gemma_turns.jinja``). Each distilled model
then answers the config's zero-shot prompts of the first ``--tweets`` tweets of ``--split`` (greedy,
``--max-tokens``, batches of 32), and the row records the distillation's cost and held-out loss,
generation speed, and the share of the split's gold entities found verbatim in the answers, beside
ChatGPT's share in the same answer form: the measure that compares bases (whose held-out losses are
per token of their own tokenizers) and chooses a method on dev. With entity-list answers the row also
gives their precision: the share of the names an answer lists that are a gold entity of its tweet
(ChatGPT's beside it), which tells a student that names more of the right entities from one that
names more of everything (e.g. with ``--set stage1.prompt.similar_answers=K``, whose prompts show the
teacher's answers for similar train posts). Rows go to benchmarks/results/distill_bases.jsonl.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from distill_speed import BASES, base_overrides, distill_overrides
from harness import (RESULTS_DIR, answer_precision, append_rows, gold_entities, parse_args, parse_overrides, provenance,
                     run_until, stage_manifest, typed_overrides, verbatim_share, worker_memory_settings)

from engine.distillation import MODEL_DIR
from engine.llm_client import LLMSettings
from engine.local_generate import complete_local, load_generator, local_identity
from mner import formats, pgim
from mner.config import LlmConfig, resolve_config
from mner.samples import read_jsonl

RESULTS = RESULTS_DIR / "distill_bases.jsonl"


def generate_answers(model: str, prompts: list[list[dict]], args: argparse.Namespace) -> tuple[list[str], float]:
    """Greedy answers of the distilled ``model`` to ``prompts`` through the llm stage's generator, and prompts per second."""
    llm = LlmConfig(backend="transformers", precision=args.precision, max_tokens=args.max_tokens,
                    batch_size=args.batch, shard_size=max(args.batch, 16), temperature=0.0)
    generator = load_generator(model, args.precision)
    settings = LLMSettings.from_config(llm, "", local_identity(model, args.precision))
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        done, _ = complete_local(settings, cache, prompts, generator, args.batch)
        seconds = time.perf_counter() - started
    return [" ".join((c.content or "").split()) for c in done], round(len(prompts) / seconds, 3)


def main() -> None:
    """Distil each (base, method), let each answer the split's prompts, append and print the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/twitter2017-distilled.yaml")
    parser.add_argument("--pairs", type=int, default=1024, help="the first N train pairs, the same for every model")
    parser.add_argument("--tweets", "--test", type=int, default=200, help="answer the first N tweets of --split")
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--bases", nargs="+", choices=sorted(BASES), default=["smollm2", "gemma3-270m"])
    parser.add_argument("--methods", nargs="+", choices=["lora", "full", "full-frozen-embeddings"], default=["full"])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)")
    args = parse_args(parser)
    cfg = resolve_config(None, args.config, parse_overrides(args.set))
    form = cfg.stage1.knowledge.answer_form
    tweets = formats.read_conll(getattr(cfg.dataset, args.split), repair=True).sentences
    knowledge_file = getattr(cfg.dataset, f"knowledge_{args.split}")
    chatgpt = [pgim.answer_in_form(z, form) for z in pgim.read_knowledge(knowledge_file, tweets).knowledge[: args.tweets]]
    tweets = tweets[: args.tweets]
    entities = [gold_entities(s.tokens, s.tags or []) for s in tweets]
    prompt_rows = read_jsonl(Path(run_until(args.config, "prompts", typed_overrides(args.set))["dir"]) / f"{args.split}.jsonl")
    prompts = [r["messages"] for r in prompt_rows[: args.tweets]]
    if [r["id"] for r in prompt_rows[: args.tweets]] != [s.id for s in tweets]:
        raise SystemExit(f"the prompts of {args.config} are not those of {getattr(cfg.dataset, args.split)}")
    for name in args.bases:
        for method in args.methods:
            overrides = {**distill_overrides(method, args.pairs, args.epochs, 8), **base_overrides(name),
                         **typed_overrides(args.set)}
            output = run_until(args.config, "distill", overrides)
            result = stage_manifest(output)["result"]
            last = result["history"][-1]
            answers, rate = generate_answers(str(Path(output["dir"]) / MODEL_DIR), prompts, args)
            row = {"dataset": cfg.dataset.name, "base": name, "method": method, "answer_form": form, "key": output["key"],
                   "pairs": result["train_pairs"], "heldout_pairs": result["heldout_pairs"], "epochs": result["epochs"],
                   "trainable_parameters": result["trainable_parameters"], "bf16": result["bf16"],
                   "epoch_seconds": last["epoch_seconds"], "tokens_per_second": last["tokens_per_second"],
                   "heldout_loss": last["heldout_loss"], "peak_rss_mib": result["peak_rss_mib"], "split": args.split,
                   "tweets": len(tweets), "gold_entities": sum(map(len, entities)),
                   "verbatim_share": verbatim_share(entities, answers),
                   "chatgpt_verbatim_share": verbatim_share(entities, chatgpt),
                   "answer_precision": answer_precision(entities, answers),
                   "chatgpt_answer_precision": answer_precision(entities, chatgpt), "overrides": parse_overrides(args.set),
                   "mean_words": round(sum(len(a.split()) for a in answers) / max(len(answers), 1), 1),
                   "prompts_per_second": rate, "max_tokens": args.max_tokens, "first_answers": answers[:3],
                   **worker_memory_settings(), **provenance()}
            append_rows(RESULTS, [row])
            print(json.dumps({k: v for k, v in row.items() if k != "first_answers"}), flush=True)


if __name__ == "__main__":
    main()
