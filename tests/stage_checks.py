"""Evidence that a stage output was reused rather than computed again.

Every publication writes a fresh ``run_id`` into the output's manifest (:meth:`mner.store.StageRun.publish`),
so an unchanged run id means the stored output was returned as it was, and a new one means the
stage's compute function ran again (even when, at temperature 0 or with a fixed seed, it wrote the
same bytes under the same key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run_id(output: dict[str, Any]) -> str:
    """The run id in the manifest of a stage output (a dict with ``dir``, as stage tasks return)."""
    return json.loads((Path(output["dir"]) / "manifest.json").read_text(encoding="utf-8"))["run_id"]


def published_run_ids(root: str | Path) -> dict[str, str]:
    """``{"<stage>/<key>": run id}`` of every published output in the artifact store at ``root``."""
    root = Path(root)
    return {f"{m.parent.parent.name}/{m.parent.name}": json.loads(m.read_text(encoding="utf-8"))["run_id"]
            for m in root.glob("*/*/manifest.json")
            if not m.parent.name.endswith(".partial") and ".replaced-" not in m.parent.name}
