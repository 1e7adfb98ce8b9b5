"""A few sentences of the demo sample per split, so that tests that run whole pipelines stay quick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import SAMPLE

SPLIT_FILES = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}
EXAMPLE_FILES = ("manual_examples.txt", "manual_examples_entities.txt")


def _blocks(path: Path) -> list[str]:
    """The blank-line separated blocks of a CoNLL or PGIM knowledge file (one per post, in order)."""
    return [b for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]


def write_tiny_sample(directory: Path, per_split: int = 8, examples: int = 2) -> dict[str, Any]:
    """Write ``per_split`` posts of each demo split (train holds the first ``examples`` manual examples,
    which are written too) and their PGIM knowledge into ``directory``, in the sample's order (so the sample's own
    knowledge files align with them too); return the ``dataset.*`` overrides of this dataset (named as the sample,
    with the sample's captions and images)."""
    directory.mkdir(parents=True, exist_ok=True)
    example_ids: set[str] = set()
    for name in EXAMPLE_FILES:
        lines = (SAMPLE / name).read_text(encoding="utf-8-sig").splitlines()[: 2 * examples]
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        example_ids = {lines[i].strip() for i in range(0, len(lines), 2)}
    overrides: dict[str, Any] = {"dataset.name": "twitter2015-sample"}
    for split, name in SPLIT_FILES.items():
        blocks = _blocks(SAMPLE / name)
        knowledge = _blocks(SAMPLE / f"knowledge_{name}")  # a block per post of the split, in its order
        assert len(knowledge) == len(blocks), f"knowledge_{name} no longer holds a block per post of {name}"
        chosen = [i for i, b in enumerate(blocks) if split == "train" and b.split("\n", 1)[0].removeprefix("IMGID:") in example_ids]
        chosen = sorted(chosen + [i for i in range(len(blocks)) if i not in chosen][: per_split - len(chosen)])
        (directory / name).write_text("\n\n".join(blocks[i] for i in chosen) + "\n", encoding="utf-8")
        (directory / f"knowledge_{name}").write_text("\n\n".join(knowledge[i] for i in chosen) + "\n", encoding="utf-8")
        overrides[f"dataset.{split}"] = str(directory / name)
        overrides[f"dataset.knowledge_{split}"] = str(directory / f"knowledge_{name}")
    overrides["dataset.examples"] = str(directory / EXAMPLE_FILES[0])
    overrides["dataset.examples_entities"] = str(directory / EXAMPLE_FILES[1])
    overrides["dataset.captions"] = str(SAMPLE / "blip2_captions.txt")
    overrides["dataset.images"] = str(SAMPLE / "images")
    return overrides
