"""Where a [T;Z] training step spends its time: torch.profiler over a bounded slice of training.

    python benchmarks/profile_training.py [--config configs/twitter2015.yaml] [--samples 96] [--top 15]
                                          [--set model.KEY=VALUE ...]

Runs the training step of benchmarks/throughput.py (our tagger, buckets, bf16 autocast where the CPU
has it) over the first ``--samples`` train sentences with PGIM knowledge: two warm-up steps, then one
profiled pass. Prints the top operators by self CPU time and appends them to
benchmarks/results/profile.jsonl with the pass's sentences/s, the model FLOPs of the pass
(``torch.utils.flop_counter.FlopCounterMode`` over forward and backward of the same batches), the
CPU's measured bf16 matmul rate on the same threads (2048-square, and the encoder's widest
linear layer on 16 x 200 sub-tokens), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from harness import RESULTS_DIR, ROOT, append_rows, parse_args, parse_overrides, provenance
from throughput import load_samples, our_step, train_step

from engine.runtime import memory_mib, pick_device, set_threads
from mner.config import ModelConfig
from mner.tags import entity_types, label_list

RESULTS = RESULTS_DIR / "profile.jsonl"


def bf16_matmul_gflops(m: int, k: int, n: int, seconds: float = 3.0) -> float:
    """Measured bf16 rate (GFLOP/s) of this process's threads on ``[m, k] @ [k, n]`` matmuls."""
    a = torch.randn(m, k, dtype=torch.bfloat16)
    b = torch.randn(k, n, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    return 2 * m * k * n * runs / (time.perf_counter() - started) / 1e9


def main() -> None:
    """Profile one pass, count its FLOPs, measure the peak, append a result line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "twitter2015.yaml"))
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE", help="model setting (YAML value)")
    args = parse_args(parser)
    overrides = {k.removeprefix("model."): v for k, v in parse_overrides(args.set).items()}
    threads = set_threads(0)
    device = pick_device("auto")
    torch.manual_seed(0)
    samples = load_samples(args.config, args.samples)
    labels = label_list(entity_types([t for s in samples for t in s[1]]))
    loss_of, optimizer, batches = our_step(samples, labels, device, ModelConfig(**overrides))
    step = train_step(loss_of, optimizer)
    for indices in batches[:2]:
        step(indices)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for indices in batches:
            step(indices)
        seconds = time.perf_counter() - started
    rss = memory_mib()["peak_rss_mib"]
    averages = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in averages)
    ranked = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
    top = [{"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1),
            "share": round(e.self_cpu_time_total / total_us, 4), "calls": e.count} for e in ranked]
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.top))

    counter = FlopCounterMode(display=False)
    with counter:
        for indices in batches:
            loss_of(indices).backward()
    optimizer.zero_grad()
    flops = counter.get_total_flops()
    peak = bf16_matmul_gflops(2048, 2048, 2048)
    # the encoder's widest linear layer on a batch of 16 sentences of 200 sub-tokens
    model_shaped = bf16_matmul_gflops(16 * 200, 384, 1536)
    achieved = flops / seconds / 1e9
    row = {"samples": len(samples), "model_overrides": overrides, "batches": len(batches), "threads": threads,
           "seconds": round(seconds, 2),
           "sentences_per_second": round(len(samples) / seconds, 2),
           "gflop_per_sentence": round(flops / len(samples) / 1e9, 2), "achieved_gflops": round(achieved, 1),
           "bf16_peak_gflops": round(peak, 1), "share_of_peak": round(achieved / peak, 3),
           "bf16_model_shape_gflops": round(model_shaped, 1), "share_of_model_shape": round(achieved / model_shaped, 3),
           "peak_rss_mib": rss, "top_ops": top, **provenance()}
    append_rows(RESULTS, [row])
    print(json.dumps({k: v for k, v in row.items() if k != "top_ops"}, indent=2))


if __name__ == "__main__":
    main()
