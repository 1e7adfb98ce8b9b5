"""A few sentences of the demo sample per split, so that tests that run whole pipelines stay quick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import SAMPLE

SPLIT_FILES = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}
EXAMPLE_FILES = ("manual_examples.txt", "manual_examples_entities.txt")


def write_tiny_sample(directory: Path, per_split: int = 8, examples: int = 2) -> dict[str, Any]:
    """Write ``per_split`` posts of each demo split (train holds the first ``examples`` manual examples,
    which are written too) into ``directory``; return the ``dataset.*`` overrides that point at them."""
    directory.mkdir(parents=True, exist_ok=True)
    example_ids: set[str] = set()
    for name in EXAMPLE_FILES:
        lines = (SAMPLE / name).read_text(encoding="utf-8-sig").splitlines()[: 2 * examples]
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        example_ids = {lines[i].strip() for i in range(0, len(lines), 2)}
    overrides: dict[str, Any] = {}
    for split, name in SPLIT_FILES.items():
        blocks = [b for b in (SAMPLE / name).read_text(encoding="utf-8").split("\n\n") if b.strip()]
        chosen = [b for b in blocks if split == "train" and b.split("\n", 1)[0].removeprefix("IMGID:") in example_ids]
        chosen += [b for b in blocks if b not in chosen][: per_split - len(chosen)]
        (directory / name).write_text("\n\n".join(chosen) + "\n", encoding="utf-8")
        overrides[f"dataset.{split}"] = str(directory / name)
    overrides["dataset.examples"] = str(directory / EXAMPLE_FILES[0])
    overrides["dataset.examples_entities"] = str(directory / EXAMPLE_FILES[1])
    return overrides
