"""Tiny trained models and posts for the ``mner tag`` tests: the demo sample's posts as raw text, JSONL and CoNLL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mner.formats import read_conll
from mner.post_tokens import rebuild_post, tokenize_post
from tests.conftest import SAMPLE
from tests.tiny_sample import write_tiny_sample

TINY_TRAINING = {"train.epochs": 1, "model.max_length": 64, "stage1.ocr.backend": "none"}


def tiny_training(folder: Path, root: Path) -> dict[str, Any]:
    """Overrides that train 1-epoch taggers on a few demo posts into the store ``root``."""
    return {"artifacts_root": str(root), **TINY_TRAINING, **write_tiny_sample(folder)}


def sample_posts(count: int) -> list[dict[str, Any]]:
    """``count`` posts made from the demo sample's test split (repeated with new ids when it runs out): id, image id,
    the text a user would have written, and its tokens as ``mner tag`` splits them."""
    sentences = read_conll(SAMPLE / "test.txt", repair=True).sentences
    posts = []
    for index in range(count):
        sentence = sentences[index % len(sentences)]
        text = rebuild_post(sentence.tokens)[0]
        posts.append({"id": f"p{index}", "image": sentence.image_id, "text": text,
                      "tokens": [t.text for t in tokenize_post(text, "twitter2015")]})
    return posts


def write_posts(folder: Path, posts: list[dict[str, Any]]) -> dict[str, Path]:
    """The same posts as ``posts.jsonl`` (text, id), ``posts.txt`` (a post a line) and ``posts.conll`` (IMGID lines,
    tokens with an O tag) and ``untagged.conll`` (tokens alone, no IMGID lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in ("posts.jsonl", "posts.txt", "posts.conll", "untagged.conll")}
    files["posts.jsonl"].write_text("".join(json.dumps({"id": p["id"], "text": p["text"]}) + "\n" for p in posts),
                                    encoding="utf-8")
    files["posts.txt"].write_text("".join(p["text"] + "\n" for p in posts), encoding="utf-8")
    files["posts.conll"].write_text("".join(f"IMGID:{p['id']}\n" + "".join(f"{t}\tO\n" for t in p["tokens"]) + "\n"
                                            for p in posts), encoding="utf-8")
    files["untagged.conll"].write_text("".join("".join(f"{t}\n" for t in p["tokens"]) + "\n" for p in posts), encoding="utf-8")
    return files


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of a file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
