"""RESULTS.md sections of stage 1 and local knowledge: retrieval quality, LLM throughput, F1 by knowledge source,
distillation cost and the knowledge side by side. Used by benchmarks/render_results.py, which reads the rows."""

from __future__ import annotations

import json

from harness import commands


def fused_gains(retrieval: list[dict]) -> list[str]:
    """Issue 5's target: fused minus text (both on tweet + caption) at top-k, per dataset and split."""
    newest = {(r["dataset"], r["split"], r["embedder"], r["query"]): r for r in retrieval}
    lines = []
    for (dataset, split, embedder, query), r in newest.items():
        text = newest.get((dataset, split, "text", "tweet+caption"))
        if embedder.startswith("fused") and text:
            lines.append(f"- {dataset} {split}: {embedder} minus text at top-{r['k']}: **{r['score'] - text['score']:+.3f}**")
    return lines


def stage1_sections(retrieval_rows: list[dict], llm: list[dict], sources: list[dict]) -> list[str]:
    """Retrieval quality, LLM throughput, and stage-2 F1 by knowledge source, from their benchmarks' rows."""
    md: list[str] = []
    # the newest row of each (dataset, split, embedder, query); older ones stay in retrieval.jsonl
    retrieval = list({(r["dataset"], r["split"], r["embedder"], r["query"]): r for r in retrieval_rows}.values())
    if retrieval:
        md += ["## Stage 1 retrieval quality (MSEA): share of top-k examples sharing an entity type with the query", "",
               "Queries without gold entities are skipped; examples are PGIM's hand-written ones (all from train).", "",
               "`fused` is MSEA proper: H of the multimodal backbone of the section below, pooled over the words",
               "(`mean`: all words alike; `entity`: weighted by the tagger's entity belief; chosen on dev).", "",
               "| dataset | split | embedder | query | k | score | queries | examples | date |",
               "|---|---|---|---|---|---|---|---|---|"]
        md += [f"| {r['dataset']} | {r['split']} | {r['embedder']} | {r['query']} | {r['k']} | **{r['score']:.3f}** | "
               f"{r['n_queries']} | {r['n_examples']} | {r['date']} |" for r in retrieval]
        md += [""] + fused_gains(retrieval) + ["", f"Machine: {retrieval[-1]['machine']}.", ""] + commands(retrieval)
    md += llm_section(llm)
    if sources:
        md += ["## Stage 2 F1 by knowledge source (Twitter-2015 subset, same budget)", "",
               "| subset (train/dev/test tweets) | variant | knowledge | dev F1 | test P | test R | test F1 | date |",
               "|---|---|---|---|---|---|---|---|"]
        md += [f"| {r['subset']['train']}/{r['subset']['dev']}/{r['subset']['test']} | {r['variant']} | "
               f"{r['knowledge'] or '-'} | {100 * r['dev_f1']:.2f} | {100 * r['test_precision']:.2f} | "
               f"{100 * r['test_recall']:.2f} | **{100 * r['test_f1']:.2f}** | {r['date']} |" for r in sources]
        md += ["", f"Machine: {sources[-1]['machine']}.", ""] + commands(sources)
    return md


def cpu(row: dict) -> str:
    """The short name of a row's machine: its CPU model."""
    return row["machine"].split(", ")[0]


def distill_section(runs: list[dict]) -> list[str]:
    """The distill stage's cost per base, loss and method (benchmarks/distill_speed.py), with the full-split estimate."""
    if not runs:
        return []
    md = ["## Distillation cost: the `distill` stage per base, loss and method (zero-shot prompts, PGIM's ChatGPT answers)",
          "",
          "`full epoch (est.)` scales the measured epoch to every train sentence at the same seconds per pair. "
          "Epoch seconds, tokens/s and the losses are the last epoch's. `loss`: `answer-chunks` applies the LM head at "
          "answer positions only, in chunks (`engine/answer_loss.py`, the default since issue 27); `full` is the model's own "
          "loss over every position; rows without the field ran before the setting existed, with the model's own loss, "
          "under distill keys that the new code no longer matches (the key covers the code). Rows of one run, same "
          "pairs, compare directly; timings compare within one machine only (`bf16` false: a CPU without bf16, fp32).", "",
          "| dataset | base | loss | method | settings | pairs | trainable params | bf16 | batch | epochs | epoch s | "
          "tokens/s | train loss | held-out loss | peak RSS MiB | allocator, oneDNN cache | full epoch (est.) min | machine | "
          "commit | date |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['dataset']} | {r.get('base', 'smollm2')} | {r.get('loss', 'full (before answer-chunks)')} | {r['method']} | "
           f"{json.dumps(r['overrides']) if r.get('overrides') else '-'}{'; ' + r['note'] if r.get('note') else ''} | {r['pairs']} | {r['trainable_parameters']:,} | "
           f"{r['bf16']} | {r['batch_size']} | {r.get('epochs', 1)} | {r['epoch_seconds']} | {r['tokens_per_second']} | "
           f"{r['train_loss']} | {r['heldout_loss']} | **{r['peak_rss_mib']}** | {r.get('allocator', 'libc')}, "
           f"{r.get('onednn_cache', 'default')} | {r['full_epoch_minutes_estimate']} | {cpu(r)} | {r['commit']} | {r['date']} |"
           for r in runs]
    machines = list(dict.fromkeys(r["machine"] for r in runs))
    return md + ["", f"Machines: {'; '.join(machines)}.", ""] + commands(runs)


def bases_section(runs: list[dict]) -> list[str]:
    """Distilled bases and methods on the same pairs, judged by their answers' gold entities (benchmarks/distill_bases.py)."""
    if not runs:
        return []
    md = ["## Distilled base and method: judged by the gold entities their answers name (same train pairs)", "",
          "Each (base, method) is fine-tuned on the same first train pairs of PGIM's ChatGPT answers (zero-shot prompts; "
          "lr 2e-5 for whole-model methods, batch 8); Gemma 3 270M is the pretrained GGUF with `prompts/gemma_turns.jinja`. "
          "Then each answers the zero-shot prompts of the first tweets of a split (greedy). `verbatim` is the share of "
          "their gold entities found word for word in the answers (ChatGPT's on the same tweets, in the same answer form, "
          "beside it); held-out losses are per token of each base's own tokenizer and do not compare across bases. "
          "Rows before the `split` field answered test tweets in full form with full fine-tuning.", "",
          "| dataset | base | method | answer form | pairs | epochs | trainable params | epoch s | tokens/s | held-out loss | "
          "peak RSS MiB | split (tweets) | verbatim | ChatGPT verbatim | mean words | prompts/s | commit | date |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['dataset']} | {r['base']} | {r.get('method', 'full')} | {r.get('answer_form', 'full')} | {r['pairs']} | "
           f"{r['epochs']} | {r['trainable_parameters']:,} | {r['epoch_seconds']} | {r['tokens_per_second']} | "
           f"{r['heldout_loss']} | {r['peak_rss_mib']} | {r.get('split', 'test')} ({r.get('tweets', r.get('test_tweets'))}) | "
           f"**{100 * r['verbatim_share']:.1f}%** | {100 * r['chatgpt_verbatim_share']:.1f}% | {r['mean_words']} | "
           f"{r['prompts_per_second']} | {r['commit']} | {r['date']} |" for r in runs]
    md += ["", "First answers of the last two rows:", ""]
    md += [f"- *{r['base']}, {r.get('method', 'full')}* ({r['pairs']} pairs): {answer or '(empty)'}"
           for r in runs[-2:] for answer in r["first_answers"][:2]]
    machines = list(dict.fromkeys(r["machine"] for r in runs))
    return md + ["", f"Machines: {'; '.join(machines)}.", ""] + commands(runs)


def reading_section(runs: list[dict]) -> list[str]:
    """Issue 14: knowledge Z from ChatGPT, the base and the distilled model, side by side (benchmarks/knowledge_reading.py)."""
    if not runs:
        return []
    r = runs[-1]  # older runs stay in knowledge_reading.jsonl
    d = r["distilled"]
    md = ["## Reading the knowledge: ChatGPT vs the base and the distilled SmolLM2 (test tweets)", "",
          f"The first {r['tweets']} test tweets of {r['dataset']} ({r['gold_entities']} gold entities), zero-shot prompts, "
          f"greedy, at most {r['max_tokens']} new tokens. The distilled model learnt from {d['pairs']} train pairs, "
          f"{d['epochs']} epoch(s), {d['method']} (held-out loss {d['heldout_loss']}): a cost probe, not a full "
          "distillation.", "",
          "| source | gold entities verbatim in Z | mean words | prompts/s |", "|---|---|---|---|"]
    md += [f"| {name} | {100 * share:.1f}% | {r['mean_words'][name]} | {r['prompts_per_second'].get(name, '-')} |"
           for name, share in r["verbatim_share"].items()]
    for example in r["examples"]:
        md += ["", f"**{example['tweet']}** (gold: {', '.join(example['entities']) or 'none'})", ""]
        md += [f"- *{name}*: {example[name] or '(empty)'}" for name in r["verbatim_share"]]
    return md + ["", f"Machine: {r['machine']}.", ""] + commands([r])


def llm_section(llm: list[dict]) -> list[str]:
    """LLM throughput (benchmarks/llm_throughput.py): llama.cpp server modes beside transformers batched generation."""
    if not llm:
        return []
    md = ["## Stage 1 knowledge throughput: llama.cpp server (Q4_1) vs transformers batched", "",
          "`transformers batched` is `stage1.llm.backend: transformers` (the same GGUF, dequantised, or the distilled",
          "model's directory; concurrency = `batch_size`, bf16 = bf16 weights); `= sequential`: answers identical to",
          "the sequential server's of the same run (same model and prompts only), `= first batch`: to the first batch",
          "size's (same precision); ratios are against the sequential server of the same run. Rows without a model or",
          "prompt name predate those fields: SmolLM2-135M-Instruct with the short knowledge prompt.", "",
          "| mode | model | prompt (mean tokens) | concurrency | processes x threads | prompts | max_tokens | seconds "
          "| samples/s | ratio vs sequential | = sequential | = first batch | date |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in llm:
        tokens = f" ({r['prompt_tokens_mean']})" if r.get("prompt_tokens_mean") else ""
        same = r.get("same_as_sequential")
        md.append(f"| {r['mode']}{' ' + r['precision'] if 'precision' in r else ''} | {r.get('model', '-')} | "
                  f"{r.get('prompt', '-')}{tokens} | {r['concurrency']} | {r['processes']}x{r['threads_per_process']} | "
                  f"{r['prompts']} | {r['max_tokens']} | {r['seconds']} | {r['samples_per_second']} | "
                  f"{r['ratio_vs_sequential'] if r['ratio_vs_sequential'] is not None else '-'} | "
                  f"{'-' if same is None else same} | {r.get('same_as_first_batch', '-')} | {r['date']} |")
    machines = list(dict.fromkeys(r["machine"] for r in llm))
    return md + ["", f"Machines: {'; '.join(machines)}.", ""] + commands(llm)


def minutes(row: dict) -> str:
    """`` (N min)`` for a row that records minutes, else nothing."""
    return f" ({row['minutes']} min)" if "minutes" in row else ""


def placement_section(runs: list[dict]) -> list[str]:
    """Issue 14: where the transformers backend generates (benchmarks/generation_placement.py)."""
    if not runs:
        return []
    md = ["## Where local generation runs: main thread, the flow's task-runner threads, or a process of its own", "",
          "The same model answers the same dev prompts (zero-shot, greedy, one batch per shard, empty answer cache) in "
          "each placement, through the llm stage's `complete_local`. `task-runner threads` is how the llm stage "
          "generated before `engine/generation_process.py`; `generation process` is how it generates now. "
          "`same` counts answers equal to the main thread's. A `whole dataset` row is every split through the llm "
          "stage's shard function in the flow's layout (`--whole-dataset`); its seconds are the dataset's.", "",
          "| model | prompts (shards x batch) | placement | seconds | prompts/s | tokens/s | same | commit | date |",
          "|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['model'].split('artifacts/')[-1]} | {r['prompts']} ({r['shards']} x {r['batch']}) | {r['placement']} | "
           f"{r['seconds']}{minutes(r)} | "
           f"**{r['prompts_per_second']}** | {r['tokens_per_second']} | "
           f"{'-' if r['same_as_main_thread'] is None else r['same_as_main_thread']} | {r['commit']} | {r['date']} |"
           for r in runs]
    return md + ["", f"Machine: {runs[-1]['machine']}.", ""] + commands(runs)
