"""RESULTS.md's opening table: test F1 per dataset and knowledge source, ours (from the rows) beside published results,
and our lines of it as a figure (benchmarks/summary.png: each seed's test F1 and the mean ± sd).

Used by benchmarks/render_results.py. Our lines come from the rows alone: text-only and ChatGPT [T;Z]
from stage2.jsonl's ``seeds`` rows, retrieved knowledge from stage2.jsonl's rows with
``stage1.knowledge.backend: retrieved``, the distilled local LLM from knowledge_swap.jsonl's
``distilled, own train Z`` rows. Published lines are citations, not measurements.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from harness import head
from mner import plots
from render_seeds import (BF16_DISTILL, by_seed, distilled_base, knowledge_backend, pairing_label, per_seed, seed_of, spread,
                          step_minutes)

DATASETS = (("twitter2015", "Twitter-2015"), ("twitter2017", "Twitter-2017"))
SUMMARY_FIGURE = "summary.png"  # beside RESULTS.md
TEXT_LABEL = "seeds"  # the stage2.jsonl label of the text-only and ChatGPT [T;Z] taggers over seeds
# stage2.jsonl labels with a text-only baseline of their own, each run as one campaign on one kind of machine
CHATGPT = "ChatGPT [T;Z]: PGIM's released file"
LABELS = {TEXT_LABEL: "bf16 autocast", "fp32": "fp32 on a CPU without bf16"}
PGIM_TABLE_2 = "Li et al., *Prompting ChatGPT in MNER* (PGIM), Findings of EMNLP 2023, Table 2"
# (system, knowledge Z, encoder + tagger, Twitter-2015 test F1, Twitter-2017 test F1), as published in PGIM_TABLE_2
PUBLISHED = (
    ("BERT-base-CRF", "none (text only)", "BERT-base + CRF", 71.81, 83.44),
    ("HVPNeT", "none; the image as a visual prefix", "BERT-base with hierarchical visual prefixes + CRF", 75.32, 86.87),
    ("XLM-R-large-CRF", "none (text only)", "XLM-R-large + CRF", 77.04, 89.11),
    ("PGIM", "ChatGPT [T;Z]", "XLM-R-large + CRF", 79.33, 91.43),
)
Line = dict[str, Any]  # one of our lines: knowledge, its short name, rows by dataset (newest per seed), text-only rows paired


def settings(row: dict) -> dict:
    """The tagger's training settings of a row: its ``train.*`` and ``model.*`` overrides, less the seed, and less a
    ``train.precision: fp32`` (how the labels' text-only taggers trained, on CPUs without bf16; precision pairs
    through :func:`render_seeds.pairing_label`)."""
    overrides = row.get("overrides", row.get("training", {}).get("settings", {}))
    if "train_settings" in row:  # route_seeds.jsonl: the settings its taggers trained with
        overrides = {**row["train_settings"], **overrides}
    return {k: v for k, v in overrides.items() if k.startswith(("train.", "model.")) and k != "train.seed"
            and (k, v) != ("train.precision", "fp32")}


def answer_form(row: dict) -> str:
    """The ``stage1.knowledge.answer_form`` a row ran with (``full`` before the setting existed)."""
    return str(row.get("overrides", {}).get("stage1.knowledge.answer_form", "full"))


def form_note(form: str) -> str:
    """How a line names Z cut to its entity list."""
    return ", entity list only" if form == "entities" else ""


def short_name(knowledge: str, form: str, label: str) -> str:
    """A line's name in the summary figure: its knowledge in a few words, the answer form, the stage2 label."""
    return f"{knowledge}{', entity list' if form == 'entities' else ''} ({label})"


def distilled_lines(swaps: list[dict], bases: dict[str, str]) -> dict[str, dict[str, list[dict]]]:
    """Per base, per dataset, the rows of the distilled model with most seeds (then the newest) trained on its own Z."""
    models: dict[tuple[str, str, str], dict[int, dict]] = defaultdict(dict)
    for r in swaps:
        if r["source"] == "distilled, own train Z":
            base = distilled_base(r, bases) or "SmolLM2-135M-Instruct"  # a row that names no base ran the default one
            models[(family(base), r["dataset"], r["model"])][seed_of(r)] = r
    chosen: dict[str, dict[str, list[dict]]] = defaultdict(dict)
    for (name, dataset, _), rows in sorted(models.items(), key=lambda item: (len(item[1]), max(r["date"] for r in
                                                                                                   item[1].values()))):
        chosen[name][dataset] = list(rows.values())  # sorted by seeds, then date: the last one wins
    return chosen


def family(base: str) -> str:
    """A distilled model's base as the table names it."""
    return "Gemma 3 270M" if "gemma" in base.lower() else "SmolLM2-135M" if "smollm" in base.lower() else base


def route_lines(routes: list[dict], text: dict[str, dict[str, list[dict]]]) -> list[Line]:
    """route_seeds.jsonl: one line per (stage2 label it trained and pairs with, route, base, answer form), the newest row
    per dataset and seed."""
    groups: dict[tuple[str, str, str, str], dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in routes:
        base = family(str(r.get("overrides", {}).get("stage1.distill.base_model") or r.get("base_model") or ""))
        groups[(pairing_label(r), r["route"], base, r["answer_form"])][r["dataset"]][seed_of(r)] = r
    lines = []
    for (label, route, base, form), by_dataset in sorted(groups.items()):
        if label not in text:  # taggers of another precision than the label's text-only ones: nothing to pair with
            continue
        name = (f"distilled {base}, own train Z" if "distilled" in route else
                CHATGPT if route == "file" else f"{route} (`stage1.knowledge.backend: {route}`)")
        short = f"distilled {base}" if "distilled" in route else "ChatGPT file" if route == "file" else route
        lines.append({"knowledge": f"{name}{form_note(form)} (`{label}`)", "text": text.get(label, {}),
                      "short": short_name(short, form, label),
                      "rows": {d: list(rows.values()) for d, rows in by_dataset.items()}})
    return lines


def our_lines(stage2: list[dict], swaps: list[dict], bases: dict[str, str], routes: list[dict] | None = None) -> list[Line]:
    """Our lines of the table, each with its rows per dataset: per stage2 label, text-only, then [T;Z] per knowledge
    backend and answer form (gains against that label's text-only rows); the distilled routes of knowledge_swap.jsonl
    (label ``seeds``) and of route_seeds.jsonl (by their ``--train-label``)."""
    scored = [r for r in stage2 if "test_f1" in r and r.get("label") in LABELS]

    def rows_of(keep: Any) -> dict[str, list[dict]]:
        return {d: list(by_seed([r for r in scored if r["dataset"] == d and keep(r)]).values()) for d, _ in DATASETS}

    text = {label: rows_of(lambda r, label=label: r["label"] == label and r["variant"] == "text") for label in LABELS}
    lines: list[Line] = []
    for label, campaign in LABELS.items():
        kinds = sorted({(knowledge_backend(r), answer_form(r)) for r in scored if r["label"] == label
                        and r["variant"] == "text+knowledge"}, key=lambda kind: (kind[0] != "file", kind))
        lines.append({"knowledge": f"none (text only) (`{label}`)", "rows": text[label], "text": {}, "campaign": campaign,
                      "short": short_name("text-only", "full", label)})
        for backend, form in kinds:
            name = CHATGPT if backend == "file" else f"{backend} (`stage1.knowledge.backend: {backend}`)"
            lines.append({"knowledge": f"{name}{form_note(form)} (`{label}`)", "text": text[label], "campaign": campaign,
                          "short": short_name("ChatGPT file" if backend == "file" else backend, form, label),
                          "rows": rows_of(lambda r, label=label, backend=backend, form=form: r["label"] == label and
                                          r["variant"] == "text+knowledge" and knowledge_backend(r) == backend
                                          and answer_form(r) == form)})
        if label == TEXT_LABEL:
            lines += [{"knowledge": f"distilled {name}, own train Z (`{label}`)", "rows": rows, "text": text[label],
                       "short": short_name(f"distilled {name}", "full", label)}
                      for name, rows in sorted(distilled_lines(swaps, bases).items(), reverse=True)]
    return lines + route_lines(routes or [], text)


def f1_cell(rows: list[dict]) -> str:
    """``mean ± sd`` of the rows' test F1, with the number of seeds; ``-`` without rows."""
    return f"**{spread([r['test_f1'] for r in rows])}** ({len(rows)} seed{'s' * (len(rows) != 1)})" if rows else "-"


def gain_cell(rows: list[dict], text: list[dict]) -> str:
    """Test F1 minus the text-only tagger of the same seed and training settings, over the seeds both have."""
    baseline = {seed_of(t): t for t in text}
    gains = [r["test_f1"] - baseline[seed_of(r)]["test_f1"] for r in rows
             if seed_of(r) in baseline and settings(baseline[seed_of(r)]) == settings(r)]
    return f"{spread(gains, signed=True)} ({len(gains)} paired)" if gains else "-"


def encoder(rows: list[dict]) -> str:
    """The encoder and head of the rows' taggers: their ``model.*`` settings, else the model config's defaults."""
    from mner.config import ModelConfig

    names = {(settings(r).get("model.encoder", ModelConfig().encoder), settings(r).get("model.head", "linear")) for r in rows}
    return "; ".join(f"{name.removeprefix('offline:')} + {'BiLSTM-attention + ' if head != 'linear' else ''}CRF"
                     for name, head in sorted(names))


def hardware(rows: list[dict]) -> str:
    """Cores and GPU of the machines the rows ran on (``machine``: CPU, cores, memory, GPU, torch)."""
    return "; ".join(sorted({f"{parts[1].replace('cores', 'CPU cores')}, {parts[3]}"
                             for parts in (r["machine"].split(", ") for r in rows)}))


def summary_points(stage2: list[dict], swaps: list[dict], bases: dict[str, str], routes: list[dict] | None = None
                   ) -> dict[str, dict[str, list[float]]]:
    """Per dataset, each of our table's lines (by its short name) with its seeds' test F1 in points: the same rows the
    table averages. Empty when no line has a row."""
    lines = [line for line in our_lines(stage2, swaps, bases, routes) if any(line["rows"].values())]
    if not lines:
        return {}
    return {name: {line["short"]: [100 * r["test_f1"] for r in line["rows"].get(dataset, [])] for line in lines}
            for dataset, name in DATASETS}


def summary_figure(stage2: list[dict], swaps: list[dict], bases: dict[str, str], routes: list[dict] | None = None
                   ) -> bytes | None:
    """:func:`summary_points` as a PNG (each seed a dot, the mean ± sd a bar, a panel per dataset); None without points."""
    points = summary_points(stage2, swaps, bases, routes)
    return plots.f1_by_route(points) if points else None


def summary_section(stage2: list[dict], swaps: list[dict], bases: dict[str, str], routes: list[dict] | None = None
                    ) -> list[str]:
    """The summary table: our lines from the rows, then the published ones, cited; below it the figure of our lines
    (:func:`summary_figure`, written beside RESULTS.md by render_results.py) when there is one."""
    md = ["## Summary: test F1 by dataset and knowledge source", "",
          "Strict entity-level F1 on each test split. Ours: mean ± standard deviation over training seeds (n−1), and the "
          "difference to the text-only tagger of the same seed and training settings, averaged over the seeds both have "
          f"(text-only and ChatGPT [T;Z]: stage2.jsonl's `{TEXT_LABEL}` rows; a distilled model: the one of that base with "
          "the most seeds). The sections below hold every run with its command. Published: test F1 as reported, a "
          "citation, not a measurement.", "",
          *head("| system | knowledge Z | encoder + tagger | hardware | " + " | ".join(f"{name} | vs text-only" for _, name in DATASETS)
                + " |")]
    ours = False
    for line in our_lines(stage2, swaps, bases, routes):
        by_dataset = {d: line["rows"].get(d, []) for d, _ in DATASETS}
        rows = [r for dataset_rows in by_dataset.values() for r in dataset_rows]
        if rows:
            ours = True
            cells = [f"{f1_cell(by_dataset[d])} | {gain_cell(by_dataset[d], line['text'].get(d, [])) if line['text'] else ''}"
                     for d, _ in DATASETS]
            md.append(f"| mner (ours) | {line['knowledge']} | {encoder(rows)} | {hardware(rows)} | {' | '.join(cells)} |")
    md += [f"| {system} [1] | {knowledge} | {tagger} | as published | {t15:.2f} | | {t17:.2f} | |"
           for system, knowledge, tagger, t15, t17 in PUBLISHED]
    md += ["", f"[1] {PGIM_TABLE_2}.", ""]
    if ours:
        md += [f"![Our lines of the table: test F1 of each seed (dots) and the mean ± sd, per dataset]({SUMMARY_FIGURE})", ""]
    return md


def route_table(dataset: str, label: str, stage2: list[dict], routes: list[dict]) -> list[str]:
    """Issue 27's table for one dataset and stage2 label: text-only (d), ChatGPT (a), distilled (b) and retrieved (c)
    knowledge, test F1 over seeds, the gain over text-only paired by seed, that gain as a share of ChatGPT's (same
    answer form, same seeds), the gold test entities verbatim in Z, and the minutes of each step of the route."""
    text = by_seed([r for r in stage2 if r.get("label") == label and r["dataset"] == dataset and r["variant"] == "text"
                    and "test_f1" in r])
    groups: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for r in routes:
        if r["dataset"] == dataset and pairing_label(r) == label:
            groups[(r["route"], r["answer_form"])][r["seed"]] = r
    if not text or not groups:
        return []

    def gains(rows: dict[int, dict], seeds: set[int]) -> list[float]:
        return [rows[s]["test_f1"] - text[s]["test_f1"] for s in sorted(seeds) if s in rows and s in text]

    md = [f"### {dict(DATASETS)[dataset]}, label `{label}`", "",
          *head("| knowledge Z | answer form | seeds | test F1 | per-seed test F1 | vs text-only (paired) | share of ChatGPT's gain "
                "(same seeds) | gold entities verbatim in Z (test; train / dev / test where measured) | distil min | "
                "Z min (every split; train / dev / test where measured) | tagger min (mean) |"),
          f"| (d) none (text only) | - | {', '.join(map(str, text))} | **{spread([r['test_f1'] for r in text.values()])}** | "
          f"{per_seed(text.values())} | | | - | - | - | "
          f"{statistics.fmean(r['wall_seconds'] for r in text.values()) / 60:.1f} |"]
    order = {"file": "(a) ChatGPT: PGIM's released file", "llm (distilled)": "(b) distilled local LLM",
             "retrieved": "(c) retrieved: nearest train posts' ChatGPT answers, no LLM"}
    for (route, form), rows in sorted(groups.items(), key=lambda item: (list(order).index(item[0][0])
                                                                      if item[0][0] in order else 9, item[0][1])):
        own = gains(rows, set(rows))
        chatgpt = groups.get(("file", form), {})
        common = set(rows) & set(chatgpt) & set(text)
        share = (f"{100 * statistics.fmean(gains(rows, common)) / statistics.fmean(gains(chatgpt, common)):.0f}% "
                 f"({len(common)} seeds)" if route != "file" and common and statistics.fmean(gains(chatgpt, common))
                 else "")
        steps = [r["steps"] for r in rows.values()]
        route_steps = [r["steps"] for r in routes if (r["dataset"], r["route"], r["answer_form"]) == (dataset, route, form)]
        md.append(f"| {order.get(route, route)} | {form} | {', '.join(map(str, rows))} | "
                  f"**{spread([r['test_f1'] for r in rows.values()])}** | "
                  f"{per_seed(rows.values())} | "
                  f"{f'{spread(own, signed=True)} ({len(own)})' if own else '-'} | {share} | "
                  f"{verbatim_cell(next(iter(rows.values())))} | {step_minutes(route_steps, 'distill')} | "
                  f"{z_minutes_cell(route_steps)} | {statistics.fmean(s['train']['seconds'] for s in steps) / 60:.1f} |")
    return md + [""]


def verbatim_cell(row: dict) -> str:
    """The gold entities found verbatim in a route's Z: the test split's, then every split's where the row has them."""
    cell = f"{100 * row['test_verbatim_share']:.1f}%"
    splits = row.get("z_verbatim_share")
    return f"{cell} ({' / '.join(f'{100 * splits[s]:.1f}%' for s in ('train', 'dev', 'test'))})" if splits else cell


def z_minutes_cell(steps: list[dict]) -> str:
    """The minutes of the run that computed Z, and each split's where that run measured them."""
    computed = max((s for s in steps if "knowledge" in s), key=lambda s: s["knowledge"]["seconds"], default=None)
    splits = (computed or {}).get("knowledge", {}).get("split_minutes")
    total = step_minutes(steps, "knowledge")
    return f"{total} ({' / '.join(str(splits.get(s, '-')) for s in ('train', 'dev', 'test'))})" if splits else total


def route_tables(stage2: list[dict], routes: list[dict]) -> list[str]:
    """One :func:`route_table` per dataset and stage2 label that routes trained with."""
    tables = [line for label in sorted({pairing_label(r) for r in routes}) for dataset, _ in DATASETS
              for line in route_table(dataset, label, stage2, routes)]
    if not tables:
        return []
    return ["## Knowledge routes per dataset: ChatGPT, distilled, retrieved, text-only (issue 27)", "",
            "Each [T;Z] line is `benchmarks/route_seeds.py` (the whole route, `mner run` as a user runs it), paired by "
            "seed with the text-only taggers (`benchmarks/stage2.py`) of the stage2 label it trained with, on 2-core "
            "CPUs without a GPU (each row's machine is in its results file). Minutes are wall-clock: the distill stage, "
            "Z for every split, and one tagger (training and scoring); a step found in the store costs seconds, so each "
            "column shows the run that computed it, whichever taggers it trained. A line holds only taggers trained in "
            "fp32, as the labels' text-only taggers were; taggers trained in bf16 (`train.precision: auto` on a CPU "
            "with bf16) are in the per-seed table below under a label of their own. " + BF16_DISTILL + " The "
            "share of ChatGPT's gain compares mean gains over the seeds both lines and text-only have, in the same "
            "answer form.", ""] + tables
