"""Render benchmarks/RESULTS.md, and the summary's figure beside it, from the JSON lines the benchmark scripts append.

    python benchmarks/render_results.py

Every table comes from benchmarks/results/*.jsonl, written by the benchmark scripts; nothing in them is
typed in by hand except the published reference scores, which are quoted with their source. The
notes are prose (benchmarks/reading_notes.md), written after the runs from these rows. Last come the
rows of retired scripts, as benchmarks/render_archive.py's generic tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import ROOT, absolute_paths, closing, head
from render_archive import archived_part
from render_newcomer import newcomer_section
from render_seeds import routes_section, seeds_sections, swap_section, z_budget_section
from render_summary import SUMMARY_FIGURE, route_tables, summary_figure, summary_section
from render_stage1 import bases_section, distill_section, llm_section, student_section
from render_tag import tag_section

RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "benchmarks" / "RESULTS.md"
README = ROOT / "README.md"  # its Results section holds the summary table, less the hardware column


READING = ROOT / "benchmarks" / "reading_notes.md"  # prose about the figures, kept beside them
SEED_LABELS = ("seeds", "fp32", "seeds-fast", "lr1e-4-test")  # stage2 labels of several seeds per configuration, on today's code


def read_results(folder: Path) -> dict[str, list[dict]]:
    """Every results file of ``folder`` by name, its rows oldest first.

    Raises ``ValueError`` naming the file, the line and the path when a row holds an absolute path:
    RESULTS.md shows commands to rerun on other machines, relative to the project root.
    """
    results = {}
    for path in sorted(folder.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        results[path.name] = [json.loads(line) for line in lines if line.strip()]
        for number, line in enumerate(lines, 1):
            for field, found in absolute_paths(json.loads(line)) if line.strip() else []:
                raise ValueError(f"{path}, line {number}: {field} holds the absolute path {found}; name it relative to "
                                 "the project root, or a model file by its package (benchmarks/harness.py's portable() "
                                 "makes a checkout's paths relative)")
    return results


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals."""
    return "-" if value is None else f"{100 * value:.2f}"


def scores(row: dict) -> str:
    """A row's cells of dev F1, test precision, test recall and test F1 (bold), in points."""
    return f"{pct(row['dev_f1'])} | {pct(row['test_precision'])} | {pct(row['test_recall'])} | **{pct(row['test_f1'])}**"


def per_type(row: dict) -> str:
    """A row's test F1 per entity type, in points, types in order."""
    return ", ".join(f"{t} {pct(f)}" for t, f in sorted(row["test_per_type_f1"].items()))


def stage2_table(results: list[dict]) -> list[str]:
    """The main table: one row per (dataset, variant) scored on test."""
    lines = head("| dataset | variant | dev F1 | test P | test R | test F1 | per-type test F1 | epochs (best) | train s | "
                 "train sent/s | peak RSS MiB | commit | date |")
    for r in results:
        lines.append(f"| {r['dataset']} | {r['variant']} | {scores(r)} | {per_type(r)} | {r['epochs']} ({r['best_epoch']}) | "
                     f"{r['train_seconds']:.0f} | {r['train_sentences_per_second']:.1f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['commit']} | "
                     f"{r['date']} |")
    return lines


def memory_section(stage2: list[dict]) -> list[str]:
    """Issue 15: the training worker's peak RSS epoch by epoch, for the stage2.jsonl rows whose history records it."""
    runs = [r for r in stage2 if r.get("history") and "peak_rss_mib_after_dev" in r["history"][0]
            and r.get("peak_rss_mib_split", {}).get("children") != 0]  # 0: the model came from the store, no worker ran
    if not runs:
        return []
    md = ["## Memory of [T;Z] training, epoch by epoch (issue 15)", "",
          "Full-data runs (the training worker's own peak, `history` of each stage2.jsonl row; the benchmark's peak is "
          "the larger of its own process and its children). The allocator and kernel-cache probes that chose the "
          "worker's defaults are archived at the end (`memory_probe.py`).", "",
          *head("| dataset | variant | settings (the rest default) | training process peak RSS per epoch, after train / after dev "
                "(MiB) | RSS after the last dev scoring MiB | benchmark peak RSS MiB | commit |")]
    for r in runs:
        epochs = "; ".join(f"{h['peak_rss_mib_after_train']:.0f} / {h['peak_rss_mib_after_dev']:.0f}" for h in r["history"])
        split = r.get("peak_rss_mib_split")  # rows that recorded it: the benchmark's own process and the worker apart
        split = "" if not split else (f" (own {split['own']:.0f}, {split['own_before_evaluation']:.0f} before evaluation; "
                                      f"worker {split['children']:.0f})")
        md.append(f"| {r['dataset']} | {r['variant']} | `{json.dumps(r['overrides'])}` | {epochs} | "
                  f"{r['history'][-1]['rss_mib_after_dev']:.0f} | {r['peak_rss_mib']:.0f}{split} | {r['commit']} |")
    return md + [""]


def backbone_section(stage2: list[dict], backbones: list[dict]) -> list[str]:
    """Issue 5: the backbone (image as text) against the newest text-only tagger of the same dataset and budget."""
    if not backbones:
        return []
    md = ["## Multimodal backbone (image as text: PGIM's BLIP-2 captions) vs the text-only tagger", "",
          "Same encoder (offline all-MiniLM-L6-v2), seed and 4-epoch budget: text-only 4 epochs; backbone 1 S1 epoch",
          "(encoders frozen) + 3 S2 epochs; align_lambda 0.1, infonce_lambda 0.1 (the defaults; the loss-weight grid",
          "follows). Each text-only row is the newest `main` one of its dataset.", "",
          *head("| dataset | model | dev F1 | test P | test R | test F1 | per-type test F1 | epochs (best) | train s | parameters "
                "| commit | date |")]
    newest = {b["dataset"]: b for b in backbones if b.get("label") == "main"}  # older rows stay in backbone.jsonl
    for b in newest.values():
        text = [r for r in stage2 if r["dataset"] == b["dataset"] and r["variant"] == "text" and r.get("label") == "main"
                and "test_f1" in r]
        for r in ([text[-1]] if text else []) + [b]:
            params = f"{r['total_parameters']:,}" if r.get("total_parameters") else "-"
            md.append(f"| {r['dataset']} | {r['variant']} | {scores(r)} | {per_type(r)} | {r['epochs']} ({r['best_epoch']}) | "
                      f"{r['train_seconds']:.0f} | {params} | {r['commit']} | {r['date']} |")
        if text:
            gain = 100 * (b["test_f1"] - text[-1]["test_f1"])
            md.append(f"| {b['dataset']} | backbone minus text-only | | | | **{gain:+.2f}** | | | | | | |")
    md += closing(list(newest.values()))
    return md


def grid_section(grid: list[dict]) -> list[str]:
    """Issue 5: the loss-weight grid of the backbone (newest run per dataset), chosen on dev F1."""
    if not grid:
        return []
    last_run = {r["dataset"]: (r["date"], r["command"]) for r in grid}  # one run writes a line per point
    runs = [r for r in grid if last_run[r["dataset"]] == (r["date"], r["command"])]
    md = ["## Backbone loss-weight grid (flow `mner-backbone-grid`, choose on dev F1)", "",
          *head("| dataset | align_lambda | infonce_lambda | dev F1 | test P | test R | test F1 | chosen on dev | train s | commit "
                "| date |")]
    md += [f"| {r['dataset']} | {r['align_lambda']} | {r['infonce_lambda']} | {r['dev_f1']:.2f} | {r['test_precision']:.2f} | "
           f"{r['test_recall']:.2f} | **{r['test_f1']:.2f}** | {'yes' if r['chosen_on_dev'] else ''} | "
           f"{r['train_seconds']:.0f} | {r['commit']} | {r['date']} |" for r in runs]
    return md + closing(runs)


def variants_section(stage2: list[dict]) -> list[str]:
    """Issue 5: tagger variants (full fine-tuning, LoRA, BiLSTM + attention head) at one budget."""
    newest = {r["label"]: r for r in stage2 if str(r.get("label", "")).startswith("variant-") and "test_f1" in r}
    variants = list(newest.values())  # older rows stay in stage2.jsonl
    if not variants:
        return []
    md = ["## Tagger variants on [T;Z] Twitter-2015 (same budget)", "",
          "Budget that fits 2 CPU cores: the first 1000 training tweets, 3 epochs, 128 sub-tokens of [T;Z] (Z cut to",
          "fit); full dev and test splits. LoRA: rank 8, alpha 16, on query/key/value of every layer, lr 1e-3.", "",
          *head("| variant | dev F1 | test P | test R | test F1 | trainable / total parameters | train s | train sent/s | commit "
                "| date |")]
    for r in variants:
        md.append(f"| {r['label'].removeprefix('variant-')} | {scores(r)} | {r['trainable_parameters']:,} / "
                  f"{r['total_parameters']:,} | {r['train_seconds']:.0f} | {r['train_sentences_per_second']:.1f} | "
                  f"{r['commit']} | {r['date']} |")
    md += closing(variants)
    return md


def gains(results: list[dict]) -> list[str]:
    """[T;Z] minus text-only, test F1, per dataset: each [T;Z] row against the text-only row of the same day.

    Rows of different days ran on different machines (bf16 autocast on one, fp32 on the other), so they
    are not paired.
    """
    out = []
    for dataset in sorted({r["dataset"] for r in results}):
        for day in sorted({r["date"][:10] for r in results if r["dataset"] == dataset}):
            by_variant = {r["variant"]: r for r in results if r["dataset"] == dataset and r["date"].startswith(day)}
            if {"text", "text+knowledge"} <= set(by_variant):
                gain = by_variant["text+knowledge"]["test_f1"] - by_variant["text"]["test_f1"]
                out.append(f"- {dataset} ({day}): [T;Z] minus text-only = **{100 * gain:+.2f}** test F1")
    return out


def dev_table(results: list[dict]) -> list[str]:
    """Settings probes and ablations: dev F1 only (the test split is not touched)."""
    lines = head("| label | dataset | variant | overrides | dev F1 per epoch | best dev F1 | train sent/s | commit |")
    for r in results:
        per_epoch = " / ".join(pct(h["dev_f1"]) for h in r["history"])
        lines.append(f"| {r['label']} | {r['dataset']} | {r['variant']} | `{json.dumps(r['overrides'])}` | {per_epoch} | "
                     f"{pct(r['dev_f1'])} | {r['train_sentences_per_second']:.1f} | {r['commit']} |")
    return lines


def gpu_section(checks: list[dict]) -> list[str]:
    """Issue 15: the newest run of benchmarks/gpu_check.sh (CUDA tests, a bf16 [T;Z] run, NCCL DDP), or "not run yet"."""
    md = ["## GPU check (`bash benchmarks/gpu_check.sh`)", ""]
    if not checks:
        return md + ["Not run yet: no GPU machine has run `bash benchmarks/gpu_check.sh`, so the CUDA paths (bf16",
                     "autocast with SDPA, BLIP-2 and CLIP on the GPU, NCCL DDP) are untested here. The script appends",
                     "its result to `benchmarks/results/gpu_check.jsonl`, which this section shows.", ""]
    r = checks[-1]  # older runs stay in gpu_check.jsonl
    tests, training, ddp = r["tests"], r["training"], r["ddp"]
    md += [f"Newest of {len(checks)} run(s): **{'passed' if r['ok'] else 'FAILED'}** in {r['wall_seconds']:.0f} s on "
           f"{', '.join(r['gpus']) or 'no GPU'} (commit {r['commit']}, {r['date']}).", ""]
    if "error" in tests:
        md += [f"- Tests (`pytest -m gpu tests/test_gpu.py`): {tests['error']}."]
    else:
        md += [f"- Tests (`pytest -m gpu tests/test_gpu.py`): {tests['passed']} passed, {tests['failed']} failed, "
               f"{tests['errors']} errors, {tests['skipped']} skipped."]
        md += [f"  - {c['outcome']}: `{c['name']}`" + (f" ({c['message']})" if c["message"] else "") for c in tests["cases"]]
    if "error" in training:
        md += [f"- Training: {training['error']}."]
    else:
        md += [f"- Training, {training['dataset']} {training['variant']}, bf16 autocast + SDPA on CUDA, "
               f"{training['epochs']} epochs: **{training['train_sentences_per_second']:.1f} sentences/s**, peak GPU "
               f"memory **{training['peak_gpu_memory_mib']} MiB** (`torch.cuda.max_memory_allocated`), train "
               f"{training['train_seconds']:.0f} s, dev F1 {pct(training['dev_f1'])}, test F1 {pct(training.get('test_f1'))}.",
               f"  Its command: `{training['command']}`."]
    md += [f"- DDP, two processes over NCCL: {ddp['outcome']}" + (f" ({ddp['reason']})" if ddp["reason"] else "") + ".",
           "", f"Machine: {r['machine']}.", "", f"Command: `{r['command']}`.", ""]
    return md


def summary_rows(results: dict[str, list[dict]]) -> tuple[list[dict], list[dict], dict[str, str], list[dict]]:
    """What the summary table and its figure are computed from: stage2, knowledge-swap and route rows, distilled bases."""
    bases = {r["key"]: r["base"] for r in results.get("distill_bases.jsonl", [])}
    return (results.get("stage2.jsonl", []), results.get("knowledge_swap.jsonl", []), bases,
            results.get("route_seeds.jsonl", []))


def render(results: dict[str, list[dict]]) -> str:
    """RESULTS.md from the rows of each results file (:func:`read_results`)."""
    def rows(name: str) -> list[dict]:
        return results.get(name, [])

    stage2 = rows("stage2.jsonl")
    scored = [r for r in stage2 if "test_f1" in r and not str(r.get("label", "")).startswith("variant-")
              and r.get("label") not in SEED_LABELS]
    dev_only = [r for r in stage2 if "test_f1" not in r]
    md = ["# Benchmark results", "",
          "Generated by `python benchmarks/render_results.py` from `benchmarks/results/*.jsonl`. Each line below",
          "names its command (run from the project root), commit and date in the JSON files; the machine is given",
          "once per section. `benchmarks/README.md` says which script feeds which section.", ""]
    summary = summary_rows(results)
    bases = summary[2]
    md += summary_section(*summary)
    md += [line for label in SEED_LABELS for line in seeds_sections(stage2, label)]
    md += route_tables(stage2, rows("route_seeds.jsonl")) + routes_section(rows("route_seeds.jsonl"))
    md += z_budget_section(rows("z_budget.jsonl")) + swap_section(rows("knowledge_swap.jsonl"), stage2, bases)
    if scored:
        md += ["## Earlier single-seed runs: text-only vs [T;Z] (PGIM's ChatGPT knowledge), offline all-MiniLM-L6-v2 + CRF", "",
               "These rows predate the current training code (child process, shared checkpoints, fused AdamW; see",
               "each row's commit) and have one seed each; the section above replaces them.", "",
               f"Machine: {scored[-1]['machine']}. Same seed, budget and settings for both variants.", ""]
        md += stage2_table(scored) + [""] + gains(scored) + [""]
        md += ["Commands:", ""] + [f"- `{r['command']}` ({r['date']})" for r in scored] + [""]
    if dev_only:
        md += ["## Settings probes and ablations (dev split only)", "", f"Machine: {dev_only[-1]['machine']}.", ""]
        md += dev_table(dev_only) + [""] + ["Commands:", ""] + [f"- `{r['command']}` ({r['date']})" for r in dev_only] + [""]
    md += memory_section(stage2)
    md += llm_section(rows("llm_throughput.jsonl"))
    md += distill_section(rows("distill.jsonl")) + bases_section(rows("distill_bases.jsonl"))
    md += student_section(rows("student_speed.jsonl"))
    md += tag_section(rows("tag_throughput.jsonl"), rows("llm_throughput.jsonl"))
    md += backbone_section(stage2, rows("backbone.jsonl")) + grid_section(rows("backbone_grid.jsonl"))
    md += variants_section(stage2)
    md += gpu_section(rows("gpu_check.jsonl"))
    md += newcomer_section(rows("newcomer.jsonl"))
    md += READING.read_text(encoding="utf-8").splitlines() + [""]
    md += archived_part(results)
    return "\n".join(md)


def headline_table(page: str) -> list[str]:
    """The summary table of a rendered RESULTS page without its hardware column: the README's headline table."""
    summary = page.split("\n## Summary", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in summary.splitlines()
            if line.startswith("|")]
    drop = rows[0].index("hardware")
    kept = [row[:drop] + row[drop + 1:] for row in rows]
    return ["|" + "|".join(row) + "|" if all(set(cell) <= set("-:") for cell in row) else "| " + " | ".join(row) + " |"
            for row in kept]


def replace_headline_table(readme: str, table: list[str]) -> str:
    """``readme`` with the first table of its Results section replaced by ``table``."""
    lines = readme.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and "## Results" in "\n".join(lines[:i])
                 and lines.index("## Results") < i)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[:start] + table + lines[end:])


def main() -> None:
    """Write RESULTS.md, the README's headline table and, when the summary has lines of ours, its figure beside it."""
    results = read_results(RESULTS)
    page = render(results)
    OUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUT}")
    readme = README.read_text(encoding="utf-8")
    updated = replace_headline_table(readme, headline_table(page))
    if updated != readme:
        README.write_text(updated, encoding="utf-8")
        print(f"wrote {README} (its headline table)")
    figure = summary_figure(*summary_rows(results))
    if figure is not None:
        OUT.with_name(SUMMARY_FIGURE).write_bytes(figure)
        print(f"wrote {OUT.with_name(SUMMARY_FIGURE)}")


if __name__ == "__main__":
    main()
