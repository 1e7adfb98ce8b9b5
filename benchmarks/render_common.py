"""Helpers shared by the RESULTS.md renderers (benchmarks/render_*.py)."""

from __future__ import annotations


def commands(results: list[dict]) -> list[str]:
    """A "Commands:" list: each distinct command once, with its commit and date."""
    seen = dict.fromkeys(f"- `{r['command']}` (commit {r['commit']}, {r['date']})" for r in results)
    return ["Commands:", ""] + list(seen) + [""]
