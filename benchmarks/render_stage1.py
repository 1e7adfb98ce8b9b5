"""RESULTS.md sections of stage 1's local knowledge: LLM throughput, distillation cost and the distilled bases.
Used by benchmarks/render_results.py, which reads the rows."""

from __future__ import annotations

import json

from harness import closing, cpu, head


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
          *head("| dataset | base | loss | method | settings | pairs | trainable params | bf16 | batch | epochs | epoch s | "
                "tokens/s | train loss | held-out loss | peak RSS MiB | allocator, oneDNN cache | full epoch (est.) min | machine | "
                "commit | date |")]
    md += [f"| {r['dataset']} | {r.get('base', 'smollm2')} | {r.get('loss', 'full (before answer-chunks)')} | {r['method']} | "
           f"{json.dumps(r['overrides']) if r.get('overrides') else '-'}{'; ' + r['note'] if r.get('note') else ''} | {r['pairs']} | {r['trainable_parameters']:,} | "
           f"{r['bf16']} | {r['batch_size']} | {r.get('epochs', 1)} | {r['epoch_seconds']} | {r['tokens_per_second']} | "
           f"{r['train_loss']} | {r['heldout_loss']} | **{r['peak_rss_mib']}** | {r.get('allocator', 'libc')}, "
           f"{r.get('onednn_cache', 'default')} | {r['full_epoch_minutes_estimate']} | {cpu(r)} | {r['commit']} | {r['date']} |"
           for r in runs]
    return md + closing(runs)


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
          *head("| dataset | base | method | answer form | pairs | epochs | trainable params | epoch s | tokens/s | held-out loss | "
                "peak RSS MiB | split (tweets) | verbatim | ChatGPT verbatim | mean words | prompts/s | commit | date |")]
    md += [f"| {r['dataset']} | {r['base']} | {r.get('method', 'full')} | {r.get('answer_form', 'full')} | {r['pairs']} | "
           f"{r['epochs']} | {r['trainable_parameters']:,} | {r['epoch_seconds']} | {r['tokens_per_second']} | "
           f"{r['heldout_loss']} | {r['peak_rss_mib']} | {r.get('split', 'test')} ({r.get('tweets', r.get('test_tweets'))}) | "
           f"**{100 * r['verbatim_share']:.1f}%** | {100 * r['chatgpt_verbatim_share']:.1f}% | {r['mean_words']} | "
           f"{r['prompts_per_second']} | {r['commit']} | {r['date']} |" for r in runs]
    md += ["", "First answers of the last two rows:", ""]
    md += [f"- *{r['base']}, {r.get('method', 'full')}* ({r['pairs']} pairs): {answer or '(empty)'}"
           for r in runs[-2:] for answer in r["first_answers"][:2]]
    return md + closing(runs)


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
          *head("| mode | model | prompt (mean tokens) | concurrency | processes x threads | prompts | max_tokens | seconds "
                "| samples/s | ratio vs sequential | = sequential | = first batch | date |")]
    for r in llm:
        tokens = f" ({r['prompt_tokens_mean']})" if r.get("prompt_tokens_mean") else ""
        same = r.get("same_as_sequential")
        md.append(f"| {r['mode']}{' ' + r['precision'] if 'precision' in r else ''} | {r.get('model', '-')} | "
                  f"{r.get('prompt', '-')}{tokens} | {r['concurrency']} | {r['processes']}x{r['threads_per_process']} | "
                  f"{r['prompts']} | {r['max_tokens']} | {r['seconds']} | {r['samples_per_second']} | "
                  f"{r['ratio_vs_sequential'] if r['ratio_vs_sequential'] is not None else '-'} | "
                  f"{'-' if same is None else same} | {r.get('same_as_first_batch', '-')} | {r['date']} |")
    return md + closing(llm)
