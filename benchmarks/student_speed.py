"""A distilled student's generation, before and after the cheaper decoding, on the same prompts in one run.

    python benchmarks/student_speed.py --config configs/twitter2017-distilled.yaml
        [--distilled-model artifacts/distill/KEY/model] [--split dev] [--prompts 0] [--batch 16] [--int8]

The prompts are the config's own (its prompts stage, ``--split``, the first ``--prompts`` or all);
the model is the config's distilled model (its distill stage runs first, cached when done), or
``--distilled-model``. One process loads it once and answers every prompt in each mode, in this order:

- ``generate``: ``model.generate``, greedy, the whole output head, up to ``stage1.llm.max_tokens`` new
  tokens: the llm stage's decoding before engine/answer_decoding.py;
- ``rows leave``: :func:`engine.answer_decoding.greedy_answers` with the whole head and the same cap:
  finished rows leave the batch;
- ``answer vocabulary``: the generator the llm stage and ``mner tag`` use now (rows leave, the head
  over the train answers' tokens plus the batch's prompt tokens, the longest train answer as the cap);
- ``answer vocabulary + int8`` (``--int8``): the same with the decoder body's linear layers in dynamic
  int8, weights quantised per output channel (``torch.ao.quantization.quantize_dynamic``).

Each row: prompts per second (batches of ``--batch``, longest prompts first, after one warm-up
batch), mean answer tokens, the share of answers equal to ``generate``'s word for word, and the
quality of the answers against the split's gold entities: the share found verbatim and the
precision of the names they list, with ChatGPT's (PGIM's file, same answer form) beside them.
Rows go to benchmarks/results/student_speed.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import torch
from harness import (RESULTS_DIR, answer_precision, append_rows, gold_entities, parse_args, parse_overrides, portable,
                     provenance, run_until, typed_overrides, verbatim_share)

from engine.answer_decoding import greedy_answers, read_answer_vocabulary
from engine.distillation import MODEL_DIR
from engine.local_generate import Generated, LocalGenerator, load_causal_lm
from engine.runtime import set_threads
from mner import formats, pgim
from mner.config import resolve_config
from mner.samples import read_jsonl

RESULTS = RESULTS_DIR / "student_speed.jsonl"
Batch = Callable[[list[list[int]]], list[Generated]]


def reference_batch(generator: LocalGenerator, max_tokens: int) -> Batch:
    """``model.generate`` greedy over the whole head: the decoding the llm stage had before the cheaper one."""
    tokenizer, model = generator.tokenizer, generator.model
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id

    def answer(ids: list[list[int]]) -> list[Generated]:
        width = max(map(len, ids))
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_tokens, pad_token_id=pad,
                                 eos_token_id=eos, use_cache=True, do_sample=False, temperature=None, top_p=None, top_k=None)
        return [generator._answer(x, row, eos) for x, row in zip(ids, out[:, width:].tolist())]
    return answer


def rows_leave_batch(generator: LocalGenerator, max_tokens: int) -> Batch:
    """:func:`engine.answer_decoding.greedy_answers` over the whole head, up to ``max_tokens``."""
    tokenizer = generator.tokenizer
    return lambda ids: [generator._answer(x, row, tokenizer.eos_token_id) for x, row in zip(ids, greedy_answers(
        generator.model, ids, max_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id))]


def timed(batch: Batch, encoded: list[list[int]], size: int) -> tuple[list[Generated], float]:
    """Every prompt's answer by ``batch`` (longest prompts first, ``size`` at a time, in input order) and prompts/s."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    batch([encoded[i] for i in order[:size]])  # warm-up: first-call allocations and kernel choices
    found: dict[int, Generated] = {}
    started = time.perf_counter()
    for start in range(0, len(order), size):
        chunk = order[start: start + size]
        found.update(zip(chunk, batch([encoded[i] for i in chunk])))
    return [found[i] for i in range(len(encoded))], round(len(encoded) / (time.perf_counter() - started), 3)


def main() -> None:
    """Answer the split's prompts in each mode; append and print a row per mode."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/twitter2017-distilled.yaml")
    parser.add_argument("--distilled-model", help="a distill output's model/ folder (default: the config's distill stage)")
    parser.add_argument("--split", choices=["dev", "test"], default="dev")
    parser.add_argument("--prompts", type=int, default=0, help="the first N prompts of the split (0: all)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--int8", action="store_true", help="also decode with the decoder body in dynamic int8")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)")
    args = parse_args(parser)
    overrides = typed_overrides(args.set)
    cfg = resolve_config(None, args.config, parse_overrides(args.set))
    form, max_tokens = cfg.stage1.knowledge.answer_form, cfg.stage1.llm.max_tokens
    model_dir = Path(args.distilled_model) if args.distilled_model else \
        Path(run_until(args.config, "distill", overrides)["dir"]) / MODEL_DIR
    rows = read_jsonl(Path(run_until(args.config, "prompts", overrides)["dir"]) / f"{args.split}.jsonl")
    tweets = formats.read_conll(getattr(cfg.dataset, args.split), repair=True).sentences
    chatgpt = pgim.read_knowledge(getattr(cfg.dataset, f"knowledge_{args.split}"), tweets).knowledge
    count = args.prompts or len(rows)
    if [r["id"] for r in rows[:count]] != [s.id for s in tweets[:count]]:
        raise SystemExit(f"the prompts of {args.config} are not those of {getattr(cfg.dataset, args.split)}")
    entities = [gold_entities(s.tokens, s.tags or []) for s in tweets[:count]]
    chatgpt = [pgim.answer_in_form(z, form) for z in chatgpt[:count]]
    threads = set_threads(0)
    model, tokenizer = load_causal_lm(model_dir)
    vocabulary = read_answer_vocabulary(model_dir)
    if vocabulary is None:
        raise SystemExit(f"{model_dir}: no answer vocabulary; distil it with this code (engine/distillation.py writes one)")
    generator = LocalGenerator(model.eval(), tokenizer, torch.device("cpu"), vocabulary)
    encoded = [generator.encode(r["messages"]) for r in rows[:count]]
    modes: list[tuple[str, Batch]] = [
        ("generate", reference_batch(generator, max_tokens)), ("rows leave", rows_leave_batch(generator, max_tokens)),
        ("answer vocabulary", lambda ids: generator._batch(ids, max_tokens, 0.0, 1.0, None))]
    reference: list[str] = []
    for name, batch in modes + ([("answer vocabulary + int8", None)] if args.int8 else []):  # type: ignore[list-item]
        if batch is None:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            generator.model.model = quantize_dynamic(generator.model.model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                                     dtype=torch.qint8)
            batch = modes[-1][1]
        answers, rate = timed(batch, encoded, args.batch)
        texts = [" ".join(a.text.split()) for a in answers]
        reference = reference or texts
        row: dict[str, Any] = {
            "dataset": cfg.dataset.name, "mode": name, "split": args.split, "prompts": count, "batch": args.batch,
            "max_tokens": max_tokens, "max_answer_tokens": vocabulary.max_answer_tokens,
            "answer_vocabulary": len(vocabulary.token_ids), "threads": threads, "prompts_per_second": rate,
            "mean_answer_tokens": round(sum(a.completion_tokens for a in answers) / count, 1),
            "cut_at_cap": sum(a.finish_reason == "length" for a in answers),
            "equal_to_generate": round(sum(a == b for a, b in zip(texts, reference)) / count, 4),
            "verbatim_share": verbatim_share(entities, texts), "answer_precision": answer_precision(entities, texts),
            "chatgpt_verbatim_share": verbatim_share(entities, chatgpt),
            "chatgpt_answer_precision": answer_precision(entities, chatgpt), "answer_form": form,
            "model": portable(str(model_dir)), "overrides": parse_overrides(args.set),
            "first_differences": [[a, b] for a, b in zip(reference, texts) if a != b][:3], **provenance()}
        append_rows(RESULTS, [row])
        print(json.dumps({k: v for k, v in row.items() if k not in ("first_differences", "command")}), flush=True)


if __name__ == "__main__":
    main()
