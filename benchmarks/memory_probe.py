"""Where the resident memory of [T;Z] training goes: RSS along one pass, under allocator settings.

    python benchmarks/memory_probe.py [--config configs/twitter2017.yaml] [--samples 1600]
                                      [--setting NAME ...] [--set model.KEY=VALUE ...] [--evaluate MODEL_DIR]

Each setting runs in a fresh child process (allocator variables only act from a process's start):
the training step of benchmarks/throughput.py (our tagger with the default model config, length
buckets, bf16 autocast where the CPU has it) over the first ``--samples`` train sentences with PGIM
knowledge, one pass. The child samples its RSS every 10 steps and reports the trace, the peak and
sentences/s; one row per setting is appended to benchmarks/results/memory.jsonl.
With ``--evaluate MODEL_DIR`` the child does what the ``evaluate`` stage does in the flow's process
instead: it loads that trained tagger and tags the config's dev and test splits with PGIM's knowledge;
its trace is the RSS after loading and after each split.
Settings (environment of the child):

- ``default``: glibc malloc as it comes;
- ``mmap-128k``: ``MALLOC_MMAP_THRESHOLD_=131072``: blocks of 128 KiB and more are mmapped and go
  back to the OS when freed (glibc otherwise raises this threshold as large blocks are freed, so later
  activations land in its heap, which fragments as batch shapes vary);
- ``arena-2``: ``MALLOC_ARENA_MAX=2``;
- ``onednn-cache-16``, ``-64``: ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` (oneDNN keeps up to 1024 kernels, one per shape);
- ``jemalloc``, ``tcmalloc``: that allocator preloaded (Debian's libjemalloc2, libtcmalloc-minimal4), alone or
  with the 16-kernel cache (``+``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from harness import RESULTS_DIR, ROOT, append_rows, parse_args, parse_overrides, provenance
from throughput import load_samples, our_step, train_step

from engine.runtime import memory_mib, pick_device, set_threads, use_bf16
from engine.taggers import load_tagger, predict
from mner.config import ModelConfig, load_config
from mner.formats import read_conll
from mner.pgim import read_knowledge
from mner.tags import entity_types, label_list

RESULTS = RESULTS_DIR / "memory.jsonl"
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "mmap-128k": {"MALLOC_MMAP_THRESHOLD_": "131072"},
    "arena-2": {"MALLOC_ARENA_MAX": "2"},
    "onednn-cache-16": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16"},
    "onednn-cache-64": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"},
    "jemalloc": {"LD_PRELOAD": "libjemalloc.so.2"},
    "tcmalloc": {"LD_PRELOAD": "libtcmalloc_minimal.so.4"},
    "onednn-cache-16+jemalloc": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LD_PRELOAD": "libjemalloc.so.2"},
    "onednn-cache-16+tcmalloc": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LD_PRELOAD": "libtcmalloc_minimal.so.4"},
}
TRACE_EVERY = 10


def one_pass(config: str, samples: int, overrides: dict) -> dict:
    """Train one pass over the first ``samples`` sentences in this process; RSS trace, peak and speed."""
    set_threads(0)
    device = pick_device("auto")
    data = load_samples(config, samples)
    labels = label_list(entity_types([t for _, tags, _ in data for t in tags]))
    model_cfg = ModelConfig(**{k.removeprefix("model."): v for k, v in overrides.items()})
    loss_of, optimizer, batches = our_step(data, labels, device, model_cfg)
    step = train_step(loss_of, optimizer)
    before = memory_mib()["rss_mib"]
    trace, started = [], time.perf_counter()
    for i, indices in enumerate(batches, 1):
        step(indices)
        if i % TRACE_EVERY == 0 or i == len(batches):
            trace.append([i, memory_mib()["rss_mib"]])
    seconds = time.perf_counter() - started
    return {"samples": len(data), "steps": len(batches), "rss_mib_before": before, "rss_trace": trace,
            "rss_mib_end": memory_mib()["rss_mib"], "peak_rss_mib": memory_mib()["peak_rss_mib"],
            "sentences_per_second": round(len(data) / seconds, 2), "threads": torch.get_num_threads()}


def evaluation_pass(config: str, model_dir: str) -> dict:
    """Load the tagger in ``model_dir`` and tag dev and test of ``config`` with PGIM's Z in this process; RSS trace and peak."""
    set_threads(0)
    device = pick_device("auto")
    cfg = load_config(config)
    before = memory_mib()["rss_mib"]
    tagger, encoder = load_tagger(model_dir, device)
    trace, sentences, started = [["loaded", memory_mib()["rss_mib"]]], 0, time.perf_counter()
    for split in ("dev", "test"):
        samples = read_conll(getattr(cfg.dataset, split), repair=cfg.dataset.repair_bio).sentences
        knowledge = read_knowledge(getattr(cfg.dataset, f"knowledge_{split}"), samples).knowledge
        encoded = [encoder.encode(s.tokens, None, z) for s, z in zip(samples, knowledge)]
        predict(tagger, encoded, device, use_bf16(cfg.train.precision, device))
        sentences += len(samples)
        trace.append([split, memory_mib()["rss_mib"]])
    seconds = time.perf_counter() - started
    return {"samples": sentences, "model_dir": model_dir, "rss_mib_before": before, "rss_trace": trace,
            "rss_mib_end": memory_mib()["rss_mib"], "peak_rss_mib": memory_mib()["peak_rss_mib"],
            "sentences_per_second": round(sentences / seconds, 2), "threads": torch.get_num_threads()}


def main() -> None:
    """Run each setting in a child process and append its row."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/twitter2017.yaml")
    parser.add_argument("--samples", type=int, default=1600)
    parser.add_argument("--setting", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE")
    parser.add_argument("--evaluate", metavar="MODEL_DIR", help="probe the evaluate stage with this trained tagger instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parse_args(parser)
    overrides = parse_overrides(args.set)
    if args.child:
        print(json.dumps(evaluation_pass(args.config, args.evaluate) if args.evaluate
                         else one_pass(args.config, args.samples, overrides)))
        return
    rows = []
    for name in args.setting:
        command = [sys.executable, __file__, "--child", "--config", args.config, "--samples", str(args.samples),
                   *[f"--set={item}" for item in args.set], *(["--evaluate", args.evaluate] if args.evaluate else [])]
        done = subprocess.run(command, cwd=ROOT, env={**os.environ, **SETTINGS[name]}, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"setting {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        row = {"setting": name, "pass": "evaluate" if args.evaluate else "train", "environment": SETTINGS[name],
               "config": args.config, "overrides": overrides,
               **result, **provenance()}
        print(json.dumps({k: row[k] for k in ("setting", "peak_rss_mib", "rss_mib_end", "sentences_per_second")}))
        rows.append(row)
    append_rows(RESULTS, rows)


if __name__ == "__main__":
    main()
