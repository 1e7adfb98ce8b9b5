"""Stage ``retrieve``: the top-N similar hand-written examples of every tweet (PGIM's MSEA step).

Embedders, the FAISS index and the search live in :mod:`engine.retrieval`; the stage writes the
index, the examples and one JSON-lines file of hits per split.
"""

from __future__ import annotations

import json
from typing import Any

import faiss

from engine.retrieval import (
    EmbedderOptions,
    build_index,
    example_items,
    load_examples,
    make_embedder,
    search,
    split_samples,
)
from mner.config import DEFAULT_FUSED_POOLING
from mner.samples import SPLITS, write_jsonl
from mner.store import StageRun
from tasks.common import stage_logger, stage_task

INDEX_FILE = "index.faiss"
EXAMPLES_FILE = "examples.json"


@stage_task("retrieve")
def retrieve_examples(run: StageRun, data: dict[str, Any], captions: dict[str, Any] | None,
                      ocr: dict[str, Any] | None, sources: dict[str, str], embedder: str, encoder: str,
                      top_n: int, seed: int, artifacts_root: str, backbone: dict[str, Any] | None = None,
                      images: str | None = None, pooling: str = DEFAULT_FUSED_POOLING) -> dict[str, Any]:
    """Top-N similar manual examples for every tweet of every split (never the tweet itself).

    The ``fused`` embedder needs ``backbone`` (the backbone stage's output; ``images`` for a CLIP one).

    Writes ``{split}.jsonl`` rows ``{"id", "examples": [{"image_id", "score"}]}``, the example
    index ``index.faiss`` and ``examples.json`` (image ids in index order, with the embedded text).
    """
    log = stage_logger()
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    if embedder == "fused" and backbone is None:
        raise ValueError("embedder 'fused' needs the backbone stage's output")
    model = make_embedder(embedder, EmbedderOptions(encoder=encoder, seed=seed, images=images, pooling=pooling,
                                                    backbone_dir=backbone["dir"] if backbone else None))
    manual = load_examples(sources)
    examples = example_items(manual, split_samples(data, "train", captions, ocr), sources["examples"])
    index = build_index(model.embed(examples))
    example_ids = [e.image_id or "" for e in examples]
    faiss.write_index(index, str(run.work_dir / INDEX_FILE))
    (run.work_dir / EXAMPLES_FILE).write_text(json.dumps(
        [{"image_id": e.image_id, "text": e.query_text} for e in examples], ensure_ascii=False, indent=1), encoding="utf-8")
    counts: dict[str, Any] = {}
    for split in SPLITS:
        queries = split_samples(data, split, captions, ocr)
        hits = search(index, model.embed(queries), [q.image_id for q in queries], example_ids, top_n)
        write_jsonl(run.work_dir / f"{split}.jsonl", [{"id": q.id, "examples": h} for q, h in zip(queries, hits)])
        counts[split] = {"queries": len(queries), "short": sum(1 for h in hits if len(h) < top_n)}
        log.info("retrieve %s: %d queries, top %d of %d examples (%s)", split, len(queries), top_n, len(examples), embedder)
    return {"examples": len(examples), "dim": int(index.d), "splits": counts}
