"""LLM knowledge throughput of SmolLM2-135M: the local llama.cpp server (sequential, concurrent, slots)
side by side with in-process batched generation through transformers (the ``transformers`` backend).

    python benchmarks/llm_throughput.py [--prompts 32] [--max-tokens 48] [--slots 2 4] [--batch 16 32] [--precision auto fp32]
        [--pipeline [--base-config configs/twitter2017.yaml] [--distilled-config configs/twitter2017-distilled.yaml]
                    [--distilled-model artifacts/distill/KEY/model]]

The prompts are real Twitter-2015 train tweets (``../shared/data``) in a short knowledge prompt; with
``--pipeline`` they are the first ``--prompts`` test prompts of the pipeline's own prompts stage
instead: PGIM's 5-shot prompt of ``--base-config`` (text retrieval, no OCR) for the base model, and the
zero-shot prompt of ``--distilled-config`` for its distilled model (its distill stage runs first,
cached when done; ``--distilled-model`` names another distill output's model instead), so that the distilled route is measured beside today's sequential llama.cpp path.
Runs, each with an empty answer cache after one warm-up request:

- sequential: one server process, concurrency 1;
- concurrent, one process: N requests at a time to that same process (llama_cpp.server runs
  them one at a time behind its lock, so this shows what concurrency alone buys);
- slots: N server processes behind one port (``local_llama_server(n_parallel=N)``), N requests at
  a time;
- warm rerun: the sequential run again over its filled cache (no requests);
- transformers batched: the same prompts generated in this process, ``--batch`` prompts per
  ``generate`` (sorted by length, left padding, KV cache, bf16 weights where the CPU has native bf16
  with ``--precision auto``), through the stage's own :func:`engine.local_generate.complete_local`; the
  model's load time is reported apart, and each row says how many answers equal the sequential
  server's and the first batch size's;
- with ``--pipeline``, transformers batched with the distilled model on its zero-shot prompts.

Every row names its prompt and model, and the prompts' mean length in tokens where the pipeline counted it.

Each run appends a JSON row to benchmarks/results/llm_throughput.jsonl; a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


import torch
from harness import RESULTS_DIR, ROOT, append_rows, distilled_label, parse_args, provenance, run_until

from engine.llm_client import LLMSettings, complete_all
from engine.llm_server import local_llama_server
from engine.local_generate import complete_local, load_generator, local_identity
from mner.config import LlmConfig, load_config
from mner.formats import read_conll
from mner.samples import read_jsonl

RESULTS = RESULTS_DIR / "llm_throughput.jsonl"
DATA = ROOT.parent / "shared" / "data" / "twitter2015" / "train.txt"
FEW_SHOT = {"stage1.knowledge.backend": "llm", "stage1.ocr.backend": "none"}
SHORT_PROMPT = "short knowledge prompt, Twitter-2015 train"
BASE_MODEL = "SmolLM2-135M-Instruct"


def load_prompts(path: Path, n: int) -> list[list[dict[str, str]]]:
    """Knowledge prompts for the first ``n`` tweets of a CoNLL split."""
    if not path.is_file():
        raise SystemExit(f"{path}: benchmark data not found (expected the shared Twitter-2015 data)")
    tweets = [" ".join(s.tokens) for s in read_conll(path, repair=True).sentences[:n]]
    return [[
        {"role": "system", "content": "You are a helpful assistant who explains named entities in tweets."},
        {"role": "user", "content": f"Text: {tweet}\nBriefly explain the people, places and organisations in the text."},
    ] for tweet in tweets]


def pipeline_prompts(config: str, overrides: dict[str, Any], n: int) -> tuple[list[list[dict[str, str]]], float, str]:
    """The first ``n`` test prompts of ``config``'s prompts stage, their mean length in tokens, and what they are."""
    prompt = load_config(config, overrides).stage1.prompt
    rows = read_jsonl(Path(run_until(config, "prompts", overrides)["dir"]) / "test.jsonl")[:n]
    mean_tokens = round(sum(r["prompt_tokens"] for r in rows) / len(rows), 1)
    return [r["messages"] for r in rows], mean_tokens, f"{prompt.n_examples}-shot {prompt.template_dir.name}, Twitter-2017 test"


def client_settings(url: str, **llm: Any) -> LLMSettings:
    """Client settings for the local server at ``url``: the config's defaults with the ``llm`` fields changed."""
    return LLMSettings.from_config(LlmConfig(model="smollm2", **llm), url, None)


def timed_run(url: str, prompts: list, concurrency: int, max_tokens: int, cache_dir: Path) -> tuple[float, dict]:
    """Seconds to answer all prompts (after one untimed warm-up request) and the usage counters."""
    settings = client_settings(url, max_tokens=max_tokens, concurrency=concurrency, timeout_s=300)
    warm = [{"role": "user", "content": f"Say hello ({time.time()})."}]
    complete_all(client_settings(url, max_tokens=4), cache_dir / "warmup", [warm])
    started = time.perf_counter()
    results, usage = complete_all(settings, cache_dir / "answers", prompts)
    seconds = time.perf_counter() - started
    failed = [r.error for r in results if r.error]
    if failed:
        raise SystemExit(f"{len(failed)} prompts failed, e.g. {failed[0]}")
    return seconds, usage


def answers_of(cache_dir: Path, settings: LLMSettings, prompts: list) -> list[str | None]:
    """The cached answers to ``prompts`` under ``settings`` (None where none is cached)."""
    from engine.answer_cache import AnswerCache
    from engine.llm_client import cache_key

    cache = AnswerCache(cache_dir)
    return [(cache.get(cache_key(settings, m)) or {}).get("content") for m in prompts]


def transformers_runs(prompts: list, batches: list[int], max_tokens: int, precision: str, scratch: Path,
                      model: Path | None = None) -> list[tuple[int, float, dict, list[str | None]]]:
    """(batch size, seconds, usage, answers) per batch size of ``model`` (default SmolLM2's GGUF), each after an
    untimed warm-up on two prompts."""
    generator = load_generator(model, precision)
    runs = []
    for batch in batches:
        settings = client_settings(local_identity(model, precision), max_tokens=max_tokens, backend="transformers",
                                   precision=precision, batch_size=batch, shard_size=batch)
        complete_local(settings, scratch / f"tf-warm{batch}", prompts[:2], generator, batch)
        started = time.perf_counter()
        _, usage = complete_local(settings, scratch / f"tf{batch}", prompts, generator, batch)
        runs.append((batch, time.perf_counter() - started, usage, answers_of(scratch / f"tf{batch}", settings, prompts)))
    return runs


def same(a: list[str | None], b: list[str | None]) -> int:
    """How many answers are identical."""
    return sum(x is not None and x == y for x, y in zip(a, b))


def main() -> None:
    """Run the configurations, append result rows, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--slots", type=int, nargs="*", default=[2, 4], help="none: no concurrent or slot runs")
    parser.add_argument("--batch", type=int, nargs="*", default=[16, 32], help="transformers batch sizes (none: skip)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], nargs="+", default=["auto"],
                        help="transformers precisions (auto: bf16 where the CPU has it)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=None, help="threads per server process (default: the server's)")
    parser.add_argument("--pipeline", action="store_true",
                        help="the pipeline's test prompts: 5-shot for the base model, zero-shot for the distilled one")
    parser.add_argument("--base-config", default="configs/twitter2017.yaml")
    parser.add_argument("--distilled-config", default="configs/twitter2017-distilled.yaml")
    parser.add_argument("--distilled-model", type=Path, help="a distill output's model/ folder instead of the config's own")
    args = parse_args(parser)
    distilled = None
    if args.pipeline:
        prompts, prompt_tokens, prompt_name = pipeline_prompts(args.base_config, FEW_SHOT, args.prompts)
        model_dir = args.distilled_model or Path(run_until(args.distilled_config, "distill", {})["dir"]) / "model"
        distilled = (*pipeline_prompts(args.distilled_config, {}, args.prompts), model_dir, distilled_label(model_dir))
    else:
        prompts, prompt_tokens, prompt_name = load_prompts(args.data, args.prompts), None, SHORT_PROMPT
    n_ctx = 2048 if args.pipeline else 1024
    scratch = Path(tempfile.mkdtemp(prefix="mner-llm-bench-"))
    common = {"prompts": len(prompts), "max_tokens": args.max_tokens, "cpus": os.cpu_count(), **provenance()}
    rows = []

    def record(mode: str, n: int, processes: int, seconds: float, usage: dict, base: float | None,
               threads: int | None = None, prompt: tuple[str, float | None, str] | None = None, **extra: Any) -> None:
        threads = threads or args.threads or max(1, len(os.sched_getaffinity(0)) // 2 // processes)
        name, tokens, model = prompt or (prompt_name, prompt_tokens, BASE_MODEL)
        row = {"mode": mode, "concurrency": n, "processes": processes, "threads_per_process": threads,
               "model": model, "prompt": name, "prompt_tokens_mean": tokens, **extra,
               "seconds": round(seconds, 2),
               "samples_per_second": round(len(prompts) / seconds, 3),
               "ratio_vs_sequential": round(base / seconds, 2) if base else 1.0,
               "requests": usage["requests"], "cached": usage["cached"],
               "completion_tokens": usage["completion_tokens"], **common}
        rows.append(row)
        print(json.dumps(row), flush=True)

    with local_llama_server(n_parallel=1, n_ctx=n_ctx, n_threads=args.threads, log_dir=scratch / "logs") as url:
        base, usage = timed_run(url, prompts, 1, args.max_tokens, scratch / "seq")
        record("sequential", 1, 1, base, usage, None)
        for n in args.slots:
            seconds, usage = timed_run(url, prompts, n, args.max_tokens, scratch / f"conc{n}")
            record("concurrent, one process", n, 1, seconds, usage, base)
        started = time.perf_counter()
        _, usage = complete_all(client_settings(url, max_tokens=args.max_tokens),
                                scratch / "seq" / "answers", prompts)
        record("warm rerun (all cached)", 1, 1, time.perf_counter() - started, usage, base)
        sequential = answers_of(scratch / "seq" / "answers", client_settings(url, max_tokens=args.max_tokens), prompts)
    for n in args.slots:
        with local_llama_server(n_parallel=n, n_ctx=n_ctx, n_threads=args.threads, log_dir=scratch / "logs") as url:
            seconds, usage = timed_run(url, prompts, n, args.max_tokens, scratch / f"slots{n}")
            record("slots (N processes)", n, n, seconds, usage, base)

    models = [(None, prompts, (prompt_name, prompt_tokens, BASE_MODEL))]
    if distilled:
        models.append((distilled[3], distilled[0], (distilled[2], distilled[1], distilled[4])))
    for precision in args.precision if args.batch else []:
        for model, model_prompts, about in models:
            started = time.perf_counter()
            generator = load_generator(model, precision)
            loaded = round(time.perf_counter() - started, 1)
            runs = transformers_runs(model_prompts, args.batch, args.max_tokens, precision,
                                     scratch / precision / ("distilled" if model else "base"), model)
            for batch, seconds, usage, answers in runs:
                record("transformers batched", batch, 1, seconds, usage, base, threads=torch.get_num_threads(), prompt=about,
                       precision="bf16" if generator.bf16 else "fp32", load_seconds=loaded,
                       same_as_sequential=None if model else same(answers, sequential),
                       same_as_first_batch=same(answers, runs[0][3]))
    append_rows(RESULTS, rows)
    print("\n| mode | model | prompt | concurrency or batch | processes x threads | seconds | samples/s | ratio vs sequential "
          "| requests | completion tokens | answers = sequential |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} {r.get('precision', '')} | {r['model']} | {r['prompt']} | {r['concurrency']} "
              f"| {r['processes']} x {r['threads_per_process']} | {r['seconds']} | {r['samples_per_second']} "
              f"| {r['ratio_vs_sequential']} | {r['requests']} | {r['completion_tokens']} | {r.get('same_as_sequential', '')} |")


if __name__ == "__main__":
    main()
