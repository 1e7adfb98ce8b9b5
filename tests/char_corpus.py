"""A small character-level Chinese NER corpus in the MSRA style: one character a line, no IMGID lines, no images.

Sentences come from templates with person, place and organisation slots; every character is a
token, Latin letters and digits included (``NBA``, ``2008``), and whitespace is never one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

NAMES = {
    "PER": ["张伟", "李娜", "王芳", "刘洋", "陈明", "赵敏", "周杰"],
    "LOC": ["北京", "上海", "广州", "深圳", "南京", "杭州", "武汉"],
    "ORG": ["清华大学", "中国银行", "新华社", "联合国", "腾讯公司", "NBA", "人民日报"],
}
TEMPLATES = [
    "{PER}在{LOC}的{ORG}工作。",
    "{PER}昨天访问了{LOC}。",
    "{ORG}的总部位于{LOC}。",
    "据{ORG}报道，{PER}于2008年到达{LOC}。",
    "{PER}和{PER}在{LOC}见面。",
    "{LOC}是一座美丽的城市。",
    "{PER}加入了{ORG}。",
]
SPLITS = {"train": 30, "dev": 8, "test": 8}


def char_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """One sentence as (character, IOB2 tag) pairs, from a random template and names."""
    template = rng.choice(TEMPLATES)
    pairs: list[tuple[str, str]] = []
    for index, piece in enumerate(template.replace("}", "{").split("{")):
        if index % 2:  # a slot
            name = rng.choice(NAMES[piece])
            pairs += [(char, f"{'B' if i == 0 else 'I'}-{piece}") for i, char in enumerate(name)]
        else:
            pairs += [(char, "O") for char in piece]
    return pairs


def write_char_corpus(folder: Path, seed: int = 7) -> dict[str, Path]:
    """``train.txt``, ``dev.txt`` and ``test.txt`` (character<TAB>tag lines, blank lines between sentences)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, count in SPLITS.items():
        blocks = ["".join(f"{char}\t{tag}\n" for char, tag in char_sentence(rng)) for _ in range(count)]
        files[split] = folder / f"{split}.txt"
        files[split].write_text("\n".join(blocks), encoding="utf-8")
    return files


def char_config(files: dict[str, Path], root: Path, epochs: int) -> dict[str, Any]:
    """A fully explicit text-only config for the corpus: no knowledge, captions, examples or images; no OCR."""
    return {
        "dataset": {"name": "msra-style", "train": str(files["train"]), "dev": str(files["dev"]),
                    "test": str(files["test"]), "knowledge_train": None, "knowledge_dev": None, "knowledge_test": None,
                    "captions": None, "images": None, "examples": None, "examples_entities": None},
        "stage1": {"caption": {"backend": "none"}, "ocr": {"backend": "none"}},
        "variants": ["text"],
        "train": {"epochs": epochs, "batch_size": 4, "lr_encoder": 5e-4, "lr_head": 1e-2, "patience": epochs},
        "model": {"max_length": 64},
        "artifacts_root": str(root),
    }
