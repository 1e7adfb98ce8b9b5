"""RESULTS.md section on the memory of [T;Z] training (issue 15), used by benchmarks/render_results.py.

``memory_section`` shows benchmarks/memory_probe.py's rows (RSS along one pass under each allocator and
oneDNN cache setting) and, for the full-data stage-2 runs whose history records it, the training
process's peak RSS epoch by epoch.
"""

from __future__ import annotations

import json
import math


def _trace_points(trace: list[list[float]]) -> str:
    """RSS at a quarter, half, three quarters and the end of the pass (MiB)."""
    picks = [trace[max(0, math.ceil(len(trace) * q) - 1)][1] for q in (0.25, 0.5, 0.75, 1.0)]
    return " / ".join(f"{v:.0f}" for v in picks)


def _probe_table(probe: list[dict]) -> list[str]:
    """One line per probe row, in the order they were run."""
    md = ["| setting | environment | samples | RSS before MiB | RSS at 1/4, 1/2, 3/4, end of the pass MiB | peak RSS MiB | "
          "sent/s | commit | date |", "|---|---|---|---|---|---|---|---|---|"]
    for r in probe:
        env = ", ".join(f"`{k}={v}`" for k, v in r["environment"].items()) or "-"
        md.append(f"| {r['setting']} | {env} | {r['samples']} | {r['rss_mib_before']:.0f} | {_trace_points(r['rss_trace'])} | "
                  f"**{r['peak_rss_mib']:.0f}** | {r['sentences_per_second']} | {r['commit']} | {r['date']} |")
    return md


def _split(run: dict) -> str:
    """Where a benchmark's peak was, for rows that recorded it: its own process (before evaluation) and the worker."""
    split = run.get("peak_rss_mib_split")
    return "" if not split else (f" (own {split['own']:.0f}, {split['own_before_evaluation']:.0f} before evaluation; "
                                 f"worker {split['children']:.0f})")


def _epoch_table(runs: list[dict]) -> list[str]:
    """Full-data runs with per-epoch memory: the training process's peak after each epoch's loop and dev scoring."""
    md = ["| dataset | variant | settings (the rest default) | training process peak RSS per epoch, after train / after dev "
          "(MiB) | RSS after the last dev scoring MiB | benchmark peak RSS MiB | commit |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        epochs = "; ".join(f"{h['peak_rss_mib_after_train']:.0f} / {h['peak_rss_mib_after_dev']:.0f}" for h in r["history"])
        md.append(f"| {r['dataset']} | {r['variant']} | `{json.dumps(r['overrides'])}` | {epochs} | "
                  f"{r['history'][-1]['rss_mib_after_dev']:.0f} | {r['peak_rss_mib']:.0f}{_split(r)} | {r['commit']} |")
    return md


def _command_list(rows: list[dict]) -> list[str]:
    """A "Commands:" list of the probe rows' distinct commands (their commits are in the table)."""
    return ["Commands:", ""] + [f"- `{c}`" for c in dict.fromkeys(r["command"] for r in rows)] + [""]


def _evaluation_part(rows: list[dict]) -> list[str]:
    """The evaluate stage's memory (``memory_probe.py --evaluate``): a trained tagger tagging dev and test in one process."""
    md = ["`python benchmarks/memory_probe.py --evaluate MODEL_DIR`: what the `evaluate` stage does in the flow's own process "
          "(load a trained [T;Z] tagger, tag dev and test with PGIM's knowledge, batches of 32, bf16 autocast), each "
          "setting in a fresh process.", "",
          "| setting | environment | sentences | RSS before MiB | after loading / dev / test MiB | peak RSS MiB | sent/s "
          "| commit | date |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        env = ", ".join(f"`{k}={v}`" for k, v in r["environment"].items()) or "-"
        md.append(f"| {r['setting']} | {env} | {r['samples']} | {r['rss_mib_before']:.0f} | "
                  f"{' / '.join(f'{v:.0f}' for _, v in r['rss_trace'])} | **{r['peak_rss_mib']:.0f}** | "
                  f"{r['sentences_per_second']} | {r['commit']} | {r['date']} |")
    return md + [""] + _command_list(rows)


def memory_section(probe: list[dict], stage2: list[dict]) -> list[str]:
    """The memory section, or nothing when neither source has rows."""
    runs = [r for r in stage2 if r.get("history") and "peak_rss_mib_after_dev" in r["history"][0]
            and r.get("peak_rss_mib_split", {}).get("children") != 0]  # 0: the model came from the store, no worker ran
    if not probe and not runs:
        return []
    md = ["## Memory of [T;Z] training: allocator and oneDNN kernel cache (issue 15)", ""]
    evaluation = [r for r in probe if r.get("pass") == "evaluate"]
    probe = [r for r in probe if r.get("pass", "train") == "train"]
    if probe:
        first = probe[-1]
        md += [f"`python benchmarks/memory_probe.py`: one pass of the training step over the first {first['samples']} "
               f"train sentences of `{first['config']}` with PGIM's knowledge (default model settings, batch 16, length "
               "buckets, bf16 autocast), each setting in a fresh process; RSS sampled every 10 steps, between steps.", ""]
        md += _probe_table(probe)
        md += ["", f"Machine: {first['machine']}.", ""] + _command_list(probe)
    if evaluation:
        md += _evaluation_part(evaluation)
    if runs:
        md += ["Full-data runs, epoch by epoch (the training worker's own peak, `history` of each stage2.jsonl row; the "
               "benchmark's peak is the larger of its own process and its children):", ""]
        md += _epoch_table(runs) + [""]
    return md
