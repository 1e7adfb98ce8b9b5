"""Stage ``report``: publish scores as Prefect artifacts (per-type table, text-only vs [T;Z] markdown with figures)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from engine.answers import usage_table_rows
from mner import plots


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def per_type_rows(scores_by_variant: dict[str, dict[str, Any]], split: str = "test") -> list[dict[str, Any]]:
    """One row per (variant, entity type) plus a micro row, P/R/F1 in percent."""
    rows = []
    for variant, scores in scores_by_variant.items():
        split_scores = scores[split]
        for entity_type, counts in sorted(split_scores["per_type"].items()):
            rows.append({"variant": variant, "type": entity_type, "precision": round(100 * counts["precision"], 2),
                         "recall": round(100 * counts["recall"], 2), "f1": round(100 * counts["f1"], 2),
                         "support": counts["support"]})
        rows.append({"variant": variant, "type": "micro", "precision": round(100 * split_scores["precision"], 2),
                     "recall": round(100 * split_scores["recall"], 2), "f1": round(100 * split_scores["f1"], 2),
                     "support": sum(c["support"] for c in split_scores["per_type"].values())})
    return rows


def without_knowledge(knowledge: dict[str, Any]) -> dict[str, int]:
    """Samples per split that the knowledge join left without Z (from its ``alignment.json``)."""
    alignment = json.loads(Path(knowledge["dir"], "alignment.json").read_text(encoding="utf-8"))
    return {split: len(report.get("without_knowledge", [])) for split, report in alignment.items()}


def comparison_markdown(
    dataset: str, scores_by_variant: dict[str, dict[str, Any]], dirs: dict[str, str], config: dict[str, Any] | None = None,
    missing_knowledge: dict[str, int] | None = None, histories: dict[str, list[dict[str, Any]]] | None = None,
) -> str:
    """Markdown report: dev/test F1 of each variant, the gain of [T;Z] over text-only, samples without Z, figures of
    dev F1 and training loss by epoch (from ``histories``, each variant's history.json ``history``) and of test F1
    per entity type, file links, config."""
    lines = [f"# mner on {dataset}", "", "| variant | dev F1 | test P | test R | test F1 |", "|---|---|---|---|---|"]
    for variant, scores in scores_by_variant.items():
        test = scores["test"]
        lines.append(f"| {variant} | {100 * scores['dev']['f1']:.2f} | {100 * test['precision']:.2f} | "
                     f"{100 * test['recall']:.2f} | {100 * test['f1']:.2f} |")
    if {"text", "text+knowledge"} <= set(scores_by_variant):
        gain = 100 * (scores_by_variant["text+knowledge"]["test"]["f1"] - scores_by_variant["text"]["test"]["f1"])
        lines += ["", f"[T;Z] minus text-only, test F1: **{gain:+.2f}**"]
    if missing_knowledge is not None:
        counts = ", ".join(f"{split} {count}" for split, count in missing_knowledge.items())
        lines += ["", f"Samples without knowledge Z: {counts} (listed in the knowledge stage's `alignment.json`)"]
    if histories:
        lines += ["", "## Dev F1 and training loss by epoch", "",
                  plots.markdown_image("dev F1 and training loss by epoch", plots.learning_curves(histories))]
    lines += ["", "## Test F1 by entity type", "",
              plots.markdown_image("test F1 by entity type", plots.per_type_f1(scores_by_variant))]
    lines += ["", "Files in the artifact store:"]
    lines += [f"- {name}: [`{path}`]({Path(path).resolve().as_uri()})" for name, path in dirs.items()]
    if config is not None:
        lines += ["", "Config:", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def dataset_stats_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per split: sentences, tokens, entities, entities per type, repaired tags."""
    types = sorted({t for split in stats.values() for t in split["entities_per_type"]})
    return [{"split": split, "sentences": s["sentences"], "tokens": s["tokens"], "entities": s["entities"],
             **{t: s["entities_per_type"].get(t, 0) for t in types}, "repaired_tags": s.get("repaired_tags", 0)}
            for split, s in stats.items()]


@task(name="dataset-stats")
def publish_dataset_stats(dataset: str, data: dict[str, Any]) -> None:
    """Table artifact ``<dataset>-dataset-stats`` from the load stage's statistics."""
    stats = json.loads(Path(data["dir"], "stats.json").read_text(encoding="utf-8"))
    create_table_artifact(dataset_stats_rows(stats), key=_key(f"{dataset}-dataset-stats"),
                          description=f"Sentences, tokens and entities per split of {dataset}")


@task(name="report")
def publish_report(
    dataset: str, evaluations: dict[str, dict[str, Any]], dirs: dict[str, str], config: dict[str, Any] | None = None,
    knowledge: dict[str, Any] | None = None, models: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Create the table and markdown artifacts (keys ``<dataset>-per-type-f1`` and ``<dataset>-report``).

    ``knowledge`` (the join's output) adds the count of samples without Z per split; ``models`` (the
    train stage's output per variant) the learning curves from each model's ``history.json``.
    """
    scores = {v: json.loads(Path(e["dir"], "scores.json").read_text()) for v, e in evaluations.items()}
    create_table_artifact(per_type_rows(scores), key=_key(f"{dataset}-per-type-f1"),
                          description=f"Test per-type P/R/F1 on {dataset}")
    missing = without_knowledge(knowledge) if knowledge is not None else None
    histories = {v: json.loads(Path(m["dir"], "history.json").read_text(encoding="utf-8"))["history"]
                 for v, m in (models or {}).items()}
    markdown = comparison_markdown(dataset, scores, dirs, config, missing, histories)
    create_markdown_artifact(markdown, key=_key(f"{dataset}-report"), description=f"text-only vs [T;Z] on {dataset}")
    return {v: {"dev_f1": s["dev"]["f1"], "test_f1": s["test"]["f1"], "test_precision": s["test"]["precision"],
                "test_recall": s["test"]["recall"], "model": dirs.get(f"model ({v})"), "scores": dirs.get(f"scores ({v})")}
            for v, s in scores.items()}


@task(name="llm-usage")
def publish_llm_usage(dataset: str, llm_output: dict[str, Any]) -> list[dict[str, Any]]:
    """Table artifact ``<dataset>-llm-usage``: requests, retries, cached answers, tokens, estimated cost per shard.

    The figures are those of the run that computed each shard (a replayed shard made no new requests).
    """
    summary = json.loads(Path(llm_output["dir"], "summary.json").read_text(encoding="utf-8"))
    rows = usage_table_rows(summary["shards"])
    create_table_artifact(rows, key=_key(f"{dataset}-llm-usage"), description=f"LLM usage and estimated cost on {dataset}")
    return rows


@task(name="backbone-grid-table")
def publish_grid(dataset: str, grid_output: dict[str, Any]) -> list[dict[str, Any]]:
    """Table artifact ``<dataset>-backbone-grid``: loss weights and dev/test P/R/F1 of every grid point."""
    rows = json.loads(Path(grid_output["dir"], "grid.json").read_text(encoding="utf-8"))
    create_table_artifact(rows, key=_key(f"{dataset}-backbone-grid"),
                          description=f"Backbone loss-weight grid on {dataset} (choose on dev F1)")
    return rows
