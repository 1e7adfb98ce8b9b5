"""RESULTS.md's opening table: test F1 per dataset and knowledge source, ours (from the rows) beside published results.

Used by benchmarks/render_results.py. Our lines come from the rows alone: text-only and ChatGPT [T;Z]
from stage2.jsonl's ``seeds`` rows, retrieved knowledge from stage2.jsonl's rows with
``stage1.knowledge.backend: retrieved``, the distilled local LLM from knowledge_swap.jsonl's
``distilled, own train Z`` rows. Published lines are citations, not measurements.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from render_seeds import by_seed, distilled_base, knowledge_backend, spread

DATASETS = (("twitter2015", "Twitter-2015"), ("twitter2017", "Twitter-2017"))
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
Line = dict[str, Any]  # one of our lines: knowledge, rows by dataset (newest per seed), text-only rows paired with them


def settings(row: dict) -> dict:
    """The tagger's training settings of a row: its ``train.*`` and ``model.*`` overrides, less the seed."""
    overrides = row.get("overrides", row.get("training", {}).get("settings", {}))
    if "train_settings" in row:  # route_seeds.jsonl: the settings its taggers trained with
        overrides = {**row["train_settings"], **overrides}
    return {k: v for k, v in overrides.items() if k.startswith(("train.", "model.")) and k != "train.seed"}


def seed_of(row: dict) -> int:
    """The tagger's training seed of a stage2, knowledge_swap or route_seeds row."""
    if "tagger" in row:
        return row["tagger"]["seed"]
    return row["seed"] if "seed" in row else row["overrides"].get("train.seed", 42)


def answer_form(row: dict) -> str:
    """The ``stage1.knowledge.answer_form`` a row ran with (``full`` before the setting existed)."""
    return str(row.get("overrides", {}).get("stage1.knowledge.answer_form", "full"))


def form_note(form: str) -> str:
    """How a line names Z cut to its entity list."""
    return ", entity list only" if form == "entities" else ""


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
        groups[(r["train_label"], r["route"], base, r["answer_form"])][r["dataset"]][seed_of(r)] = r
    lines = []
    for (label, route, base, form), by_dataset in sorted(groups.items()):
        name = (f"distilled {base}, own train Z" if "distilled" in route else
                CHATGPT if route == "file" else f"{route} (`stage1.knowledge.backend: {route}`)")
        lines.append({"knowledge": f"{name}{form_note(form)} (`{label}`)", "text": text.get(label, {}),
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
        lines.append({"knowledge": f"none (text only) (`{label}`)", "rows": text[label], "text": {}, "campaign": campaign})
        for backend, form in kinds:
            name = CHATGPT if backend == "file" else f"{backend} (`stage1.knowledge.backend: {backend}`)"
            lines.append({"knowledge": f"{name}{form_note(form)} (`{label}`)", "text": text[label], "campaign": campaign,
                          "rows": rows_of(lambda r, label=label, backend=backend, form=form: r["label"] == label and
                                          r["variant"] == "text+knowledge" and knowledge_backend(r) == backend
                                          and answer_form(r) == form)})
        if label == TEXT_LABEL:
            lines += [{"knowledge": f"distilled {name}, own train Z (`{label}`)", "rows": rows, "text": text[label]}
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


def summary_section(stage2: list[dict], swaps: list[dict], bases: dict[str, str], routes: list[dict] | None = None
                    ) -> list[str]:
    """The summary table: our lines from the rows, then the published ones, cited."""
    md = ["## Summary: test F1 by dataset and knowledge source", "",
          "Strict entity-level F1 on each test split. Ours: mean ± standard deviation over training seeds (n−1), and the "
          "difference to the text-only tagger of the same seed and training settings, averaged over the seeds both have "
          f"(text-only and ChatGPT [T;Z]: stage2.jsonl's `{TEXT_LABEL}` rows; a distilled model: the one of that base with "
          "the most seeds). The sections below hold every run with its command. Published: test F1 as reported, a "
          "citation, not a measurement.", "",
          "| system | knowledge Z | encoder + tagger | hardware | " + " | ".join(f"{name} | vs text-only" for _, name in DATASETS)
          + " |", "|---|---|---|---|" + "---|---|" * len(DATASETS)]
    for line in our_lines(stage2, swaps, bases, routes):
        by_dataset = {d: line["rows"].get(d, []) for d, _ in DATASETS}
        rows = [r for dataset_rows in by_dataset.values() for r in dataset_rows]
        if rows:
            cells = [f"{f1_cell(by_dataset[d])} | {gain_cell(by_dataset[d], line['text'].get(d, [])) if line['text'] else ''}"
                     for d, _ in DATASETS]
            md.append(f"| mner (ours) | {line['knowledge']} | {encoder(rows)} | {hardware(rows)} | {' | '.join(cells)} |")
    md += [f"| {system} [1] | {knowledge} | {tagger} | as published | {t15:.2f} | | {t17:.2f} | |"
           for system, knowledge, tagger, t15, t17 in PUBLISHED]
    return md + ["", f"[1] {PGIM_TABLE_2}.", ""]
