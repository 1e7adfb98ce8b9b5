"""Where the transformers backend generates: a main thread, the flow's task-runner threads, or a process of its own.

    python benchmarks/generation_placement.py --model DISTILLED_MODEL_DIR [--config configs/twitter2017-distilled.yaml]
        [--prompts 128] [--shards 2] [--set KEY=VALUE ...]
    python benchmarks/generation_placement.py --model artifacts/distill/KEY/model --whole-dataset [--config ...]

The prompts are the first ``--prompts`` dev prompts of ``--config``'s prompts stage (zero-shot for
the distilled config), cut into ``--shards`` shards as the llm stage cuts them. Each placement
answers them through the stage's own :func:`engine.local_generate.complete_local` with an empty
answer cache, after an untimed warm-up on two prompts:

- ``main thread``: one generator in this process, shards one after another in the main thread;
- ``task-runner threads``: the same generator, the shards on a pool of ``--shards`` threads that
  have run torch before, as the flow's thread task runner runs them (the llm stage before this
  benchmark was added);
- ``generation process``: the same pool of threads asking :func:`engine.generation_process.generation_process`,
  as the llm stage does now.

Each row records prompts/s and tokens/s, and whether the answers equal the main thread's (greedy;
a placement changes no arithmetic, so they should). Rows go to benchmarks/results/generation_placement.jsonl.

``--whole-dataset`` instead times the flow's llm stage over every split of the config (refreshed, in
this process: ``stage1.llm.shard_size`` rows a shard on ``stage1.runner.max_workers`` threads), with
the store's answer cache: what ``mner run`` generates for a distilled model (``--model`` is the
``model`` folder of the config's own distill output), as one row with the minutes for the whole dataset.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable


import torch
from harness import RESULTS_DIR, ROOT, append_rows, parse_args, parse_overrides, provenance, run_until, typed_overrides

from engine.distillation import MODEL_DIR
from engine.generation_process import generation_process
from engine.llm_client import LLMSettings
from engine.local_generate import BatchGenerator, complete_local, load_generator, local_identity
from mner.config import load_config
from mner.samples import SPLITS, read_jsonl
from mner.server import prefect_defaults

RESULTS = RESULTS_DIR / "generation_placement.jsonl"


def answer_shards(generator: BatchGenerator, settings: LLMSettings, shards: list[list], cache: Path,
                  pool: ThreadPoolExecutor | None) -> tuple[float, list[str], int]:
    """Seconds to answer every shard (on ``pool``'s threads, else here), the answers in order, completion tokens.

    A shard is one batch, as in the distilled config (``shard_size`` = ``batch_size``).
    """
    def shard(prompts: list) -> tuple[list[str], int]:
        done, usage = complete_local(settings, cache, prompts, generator, len(prompts))
        return [c.content for c in done], usage["completion_tokens"]

    started = time.perf_counter()
    results = list(pool.map(shard, shards)) if pool else [shard(prompts) for prompts in shards]
    return time.perf_counter() - started, [a for answers, _ in results for a in answers], sum(t for _, t in results)


def whole_dataset(model: Path, args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    """Every split's prompts through the flow's llm stage (``refresh`` llm, ``until`` llm), in this process; the result row.

    ``model`` must be the distill output the config's own pipeline asks. Its generation process is
    started before the clock, as the flow's first shard would start it, so the seconds are the llm
    stage's (with the earlier stages replayed from the store).
    """
    llm = cfg.stage1.llm
    distill = run_until(args.config, "distill", typed_overrides(args.overrides))
    if (ROOT / model).resolve() != (Path(distill["dir"]) / MODEL_DIR).resolve():
        raise SystemExit(f"--model {model}: the pipeline of {args.config} asks {distill['dir']}/{MODEL_DIR}; "
                         "--whole-dataset times that one")
    prefect_defaults()
    from flows.pipeline import pipeline

    generation_process(ROOT / model, llm.precision)
    started = time.perf_counter()
    merged = pipeline(config_file=args.config, overrides=parse_overrides(args.overrides), refresh=["llm"], until="llm")["llm"]
    seconds = time.perf_counter() - started
    usages = [shard["usage"] for shard in json.loads((Path(merged) / "summary.json").read_text(encoding="utf-8"))["shards"]]
    generated = sum(u["requests"] for u in usages)
    return {"dataset": cfg.dataset.name, "placement": "generation process, whole dataset (llm stage shards)",
            "model": str(model), "prompts": sum(len(read_jsonl(Path(merged) / f"{split}.jsonl")) for split in SPLITS),
            "generated": generated, "cached": sum(u["cached"] for u in usages), "shards": len(usages),
            "batch": llm.batch_size, "max_tokens": llm.max_tokens, "precision": llm.precision,
            "torch_threads": torch.get_num_threads(), "seconds": round(seconds, 1), "minutes": round(seconds / 60, 1),
            "prompts_per_second": round(generated / seconds, 3),
            "tokens_per_second": round(sum(u["completion_tokens"] for u in usages) / seconds, 1),
            "same_as_main_thread": None, **provenance()}


def main() -> None:
    """Time each placement on the same prompts and model; append one row per placement."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a distilled model directory or a GGUF file")
    parser.add_argument("--config", default="configs/twitter2017-distilled.yaml")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--whole-dataset", action="store_true", help="every split through the llm stage's shards")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parse_args(parser)
    overrides = parse_overrides(args.overrides)
    cfg = load_config(args.config, overrides)
    prompts = run_until(args.config, "prompts", typed_overrides(args.overrides))
    if args.whole_dataset:
        row = whole_dataset(args.model, args, cfg)
        append_rows(RESULTS, [row])
        print(json.dumps(row), flush=True)
        return
    rows = read_jsonl(Path(prompts["dir"]) / "dev.jsonl")[: args.prompts]
    size = -(-len(rows) // args.shards)
    shards = [[r["messages"] for r in rows[i: i + size]] for i in range(0, len(rows), size)]
    llm = cfg.stage1.llm
    settings = LLMSettings.from_config(llm.model_copy(update={"batch_size": size, "shard_size": size}), "",
                                       local_identity(args.model, llm.precision))
    scratch = Path(tempfile.mkdtemp(prefix="mner-placement-"))
    in_process = load_generator(args.model, llm.precision)
    pool = ThreadPoolExecutor(args.shards, thread_name_prefix="task-runner")
    placements: list[tuple[str, Callable[[], BatchGenerator], ThreadPoolExecutor | None]] = [
        ("main thread", lambda: in_process, None),
        ("task-runner threads", lambda: in_process, pool),
        ("generation process", lambda: generation_process(args.model, llm.precision), pool)]
    reference: list[str] | None = None
    out = []
    for name, generator, runner in placements:
        if runner is not None:  # the runner's threads have run torch before, as earlier tasks of a flow have
            list(runner.map(lambda _: torch.ones(1 << 20).mul(2).sum(), range(4 * args.shards)))
        answer_shards(generator(), settings, [shards[0][:2]], scratch / f"warm-{len(out)}", runner)
        seconds, answers, tokens = answer_shards(generator(), settings, shards, scratch / f"run-{len(out)}", runner)
        reference = reference or answers
        row: dict[str, Any] = {
            "dataset": cfg.dataset.name, "placement": name, "model": str(args.model), "prompts": len(rows),
            "shards": len(shards), "batch": size, "max_tokens": llm.max_tokens, "precision": llm.precision,
            "torch_threads": torch.get_num_threads(), "seconds": round(seconds, 1),
            "prompts_per_second": round(len(rows) / seconds, 3), "tokens_per_second": round(tokens / seconds, 1),
            "same_as_main_thread": sum(a == b for a, b in zip(answers, reference)), **provenance()}
        out.append(row)
        append_rows(RESULTS, [row])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
