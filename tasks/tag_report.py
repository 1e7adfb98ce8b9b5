"""The tag run in the Prefect UI: a table of entity counts, frequent entities and speed; in markdown, a figure of the
entities by type and ten tagged posts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from engine.tagging import marked_post
from mner import plots

SUMMARY_KEY = "mner-tag-summary"
POSTS_KEY = "mner-tag-posts"


def summary_rows(summary: dict[str, Any], seconds: float, shards: dict[str, int]) -> list[dict[str, Any]]:
    """Table rows ``{"what", "name", "value"}``: posts, posts per second, shards, entities by type, frequent entities."""
    rate = round(summary["posts"] / seconds, 1) if seconds > 0 else None
    rows = [{"what": "posts", "name": name, "value": summary[name]} for name in ("posts", "tagged", "rejected")]
    rows += [{"what": "posts per second", "name": "this run", "value": rate},
             {"what": "shards", "name": "tagged this run", "value": shards["computed"]},
             {"what": "shards", "name": "from the store", "value": shards["cached"]}]
    rows += [{"what": "entities by type", "name": kind, "value": n} for kind, n in summary["types"].items()]
    rows += [{"what": "most frequent entities", "name": f"{e['text']} ({e['type']})", "value": e["count"]}
             for e in summary["top_entities"]]
    rows += [{"what": "rejected", "name": reason, "value": n} for reason, n in summary["reasons"].items()]
    return rows


def posts_markdown(summary: dict[str, Any], output_dir: str) -> str:
    """Markdown: a figure of the entities by type, the first ten tagged posts with their entities in bold and typed,
    and where the files are."""
    entities = sum(summary["types"].values())
    lines = [f"# mner tag: {entities} entities in {summary['tagged']} posts", ""]
    lines += [plots.markdown_image("entities by type", plots.entities_by_type(summary["types"])) if entities
              else "No entity found."]
    lines += ["", "## Ten tagged posts", "", "| id | post |", "|---|---|"]
    lines += [f"| {row['id']} | {marked_post(row)} |" for row in summary["first_posts"]]
    lines += ["", f"{summary['tagged']} posts tagged, {summary['rejected']} rejected; all of them in "
                  f"[`{output_dir}`]({Path(output_dir).resolve().as_uri()}) (`tagged.jsonl`, `rejected.jsonl`)."]
    return "\n".join(lines) + "\n"


@task(name="tag-report")
def publish_tag_report(merged: dict[str, Any], seconds: float, shards: dict[str, int]) -> list[dict[str, Any]]:
    """Create the table artifact ``mner-tag-summary`` and the markdown artifact ``mner-tag-posts``; return the rows."""
    summary = json.loads((Path(merged["dir"]) / "summary.json").read_text(encoding="utf-8"))
    rows = summary_rows(summary, seconds, shards)
    create_table_artifact(rows, key=SUMMARY_KEY, description="mner tag: posts, speed, entities by type, frequent entities")
    create_markdown_artifact(posts_markdown(summary, merged["dir"]), key=POSTS_KEY,
                             description="mner tag: entities by type, ten tagged posts with their entities marked")
    return rows
