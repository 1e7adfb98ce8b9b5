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
          "Rows before the `split` field answered test tweets in full form with full fine-tuning. `precision`: the share "
          "of the names an entity-list answer gives that are a gold entity of its tweet (ChatGPT's beside it); `similar "
          "answers k`: the prompts also show the teacher's answers for the k most similar train posts "
          "(`stage1.prompt.similar_answers`, the retrieval-augmented student), `-` for the plain zero-shot prompt.", "",
          *head("| dataset | base | method | answer form | similar answers k | pairs | epochs | trainable params | epoch s | "
                "tokens/s | held-out loss | peak RSS MiB | split (tweets) | verbatim | ChatGPT verbatim | precision | "
                "ChatGPT precision | mean words | prompts/s | commit | date |")]
    md += [f"| {r['dataset']} | {r['base']} | {r.get('method', 'full')} | {r.get('answer_form', 'full')} | "
           f"{r.get('overrides', {}).get('stage1.prompt.similar_answers', '-')} | {r['pairs']} | "
           f"{r['epochs']} | {r['trainable_parameters']:,} | {r['epoch_seconds']} | {r['tokens_per_second']} | "
           f"{r['heldout_loss']} | {r['peak_rss_mib']} | {r.get('split', 'test')} ({r.get('tweets', r.get('test_tweets'))}) | "
           f"**{100 * r['verbatim_share']:.1f}%** | {100 * r['chatgpt_verbatim_share']:.1f}% | {share(r.get('answer_precision'))} | "
           f"{share(r.get('chatgpt_answer_precision'))} | {r['mean_words']} | "
           f"{r['prompts_per_second']} | {r['commit']} | {r['date']} |" for r in runs]
    md += ["", "First answers of the last two rows:", ""]
    md += [f"- *{r['base']}, {r.get('method', 'full')}* ({r['pairs']} pairs): {answer or '(empty)'}"
           for r in runs[-2:] for answer in r["first_answers"][:2]]
    return md + closing(runs)


def share(value: float | None) -> str:
    """A fraction as a percentage with one decimal, ``-`` where a row lacks it."""
    return "-" if value is None else f"{100 * value:.1f}%"


def student_section(runs: list[dict]) -> list[str]:
    """A distilled student's generation before and after the cheaper decoding (benchmarks/student_speed.py)."""
    if not runs:
        return []
    md = ["## A cheaper student: the distilled model's generation, before and after (same prompts, one process)", "",
          "Each row answers the same prompts of the config's own prompts stage (zero-shot, the split's first `prompts`), "
          "in batches of `batch`, longest first, greedy, after one warm-up batch. `generate`: `model.generate` over the "
          "whole 262,144-token head up to `stage1.llm.max_tokens`, the llm stage's decoding before "
          "`engine/answer_decoding.py`; `rows leave`: finished rows leave the batch, whole head; `answer vocabulary`: what "
          "the llm stage and `mner tag` run now (rows leave, the shared prompt prefix read once, the head over the "
          "train answers' tokens and the forms of the train and batch posts' words, the longest train answer as the "
          "cap); `+ int8`: with the decoder body's linear layers in dynamic int8. `equal`: answers word for word the "
          "same as `generate`'s; `speed-up`: against the `generate` row that opens the same run; `verbatim` and "
          "`precision` against the split's gold entities, ChatGPT's (PGIM's file, same answer form) beside them. A run "
          "is a `generate` row and the rows after it with the same command, commit and model.", "",
          *head("| dataset | model | mode | split (prompts) | batch | prompts/s | speed-up | equal to generate | "
                "verbatim | ChatGPT verbatim | precision | ChatGPT precision | answer tokens (mean) | cut at cap | "
                "vocabulary (cap) | machine | commit | date |")]
    base: dict | None = None
    for r in runs:
        if r["mode"] == "generate":
            base = r
        elif base is not None and any(base[key] != r[key] for key in ("command", "commit", "model")):
            base = None
        speedup = f"{r['prompts_per_second'] / base['prompts_per_second']:.2f}x" if base else "-"
        md.append(f"| {r['dataset']} | `{r['model']}` | {r['mode']} | {r['split']} ({r['prompts']}) | {r['batch']} | "
                  f"**{r['prompts_per_second']}** | {speedup} | {share(r['equal_to_generate'])} | "
                  f"{share(r['verbatim_share'])} | {share(r['chatgpt_verbatim_share'])} | {share(r['answer_precision'])} | "
                  f"{share(r['chatgpt_answer_precision'])} | {r['mean_answer_tokens']} | {r['cut_at_cap']} | "
                  f"{r['answer_vocabulary']:,} ({r['max_answer_tokens']}) | {cpu(r)} | {r['commit']} | {r['date']} |")
    differing = [d for r in runs[-3:] for d in r.get("first_differences", [])][:3]
    if differing:
        md += ["", "Answers that differ from `generate`'s (last run; `generate` first):", ""]
        md += [f"- {before} / {after}" for before, after in differing]
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
