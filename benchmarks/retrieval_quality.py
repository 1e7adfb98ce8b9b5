"""Retrieval-quality benchmark: do the retrieved examples share an entity type with the query?

    python benchmarks/retrieval_quality.py [--datasets twitter2015 twitter2017] [--k 5] [--split test]
        [--embedders random text fused] [--backbone-label main] [--pooling mean entity]

For every query tweet of the split with at least one gold entity, the score is the share of its
top-k retrieved manual examples whose gold entities include one of the query's entity types
(averaged over queries). Embedders: ``random`` (seeded) and ``text`` (offline MiniLM) on tweet +
BLIP-2 caption, plus ``text`` on the tweet alone, and ``fused`` (MSEA: pooled fused features of the
multimodal backbone trained by ``benchmarks/backbone.py``; the newest row of
benchmarks/results/backbone.jsonl with the given label names its directory, which must still be in the
artifact store) on tweet + caption. Retrieval runs through the stage's own
functions (engine.retrieval: items, embedders, FAISS index, search). Needs ../shared/data.
Appends one JSON line per (dataset, embedder, query) to benchmarks/results/retrieval.jsonl and
prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from harness import RESULTS_DIR, ROOT, append_rows, parse_args, provenance, read_rows

from engine.retrieval import EmbedderOptions, example_items, make_embedder, retrieve
from mner import formats, pgim
from mner.samples import Sample
from mner.tags import iob2_spans

RESULTS = RESULTS_DIR / "retrieval.jsonl"
DATA = ROOT.parent / "shared" / "data"
SPLIT_FILES = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}
RUNS = (("random", "tweet+caption"), ("text", "tweet+caption"), ("text", "tweet"), ("fused", "tweet+caption"))
BACKBONES = RESULTS_DIR / "backbone.jsonl"


def backbone_dir(dataset: str, label: str) -> str:
    """The model directory of the newest backbone.jsonl row for ``dataset`` and ``label`` still in the store."""
    rows = [r for r in read_rows(BACKBONES)
            if r["dataset"] == dataset and r["label"] == label and (ROOT / r["model_dir"]).is_dir()]
    if not rows:
        sys.exit(f"no backbone for {dataset} (label {label!r}) in {BACKBONES}: run benchmarks/backbone.py first")
    return str(ROOT / rows[-1]["model_dir"])


def read_items(folder: Path, split: str, captions: dict[str, str]) -> tuple[list[Sample], list[set[str]]]:
    """Tweets of one split as retrieval items (with captions) and each tweet's gold entity types."""
    path = folder / SPLIT_FILES[split]
    conll = formats.read_conll(path, repair=True)
    items = [replace(s, caption=captions.get(s.image_id or "", "")) for s in conll.sentences]
    types = [{span.type for span in iob2_spans(s.tags)} for s in conll.sentences]
    return items, types


def type_overlap(hits: list[list[dict]], query_types: list[set[str]], example_types: dict[str, set[str]],
                 k: int) -> tuple[float, int]:
    """Mean share of the top-k hits sharing an entity type with the query, over queries with entities."""
    shares = [sum(1 for h in hit[:k] if example_types[h["image_id"]] & types) / k
              for hit, types in zip(hits, query_types) if types]
    return sum(shares) / max(len(shares), 1), len(shares)


def run_dataset(name: str, split: str, k: int, seed: int, embedders: list[str], label: str,
                poolings: list[str]) -> list[dict]:
    """All benchmark runs on one dataset; one result row each."""
    folder = DATA / name
    captions = pgim.read_captions(folder / "pgim" / "blip2_captions.txt")
    examples_path = folder / "pgim" / "manual_examples.txt"
    manual = pgim.read_manual_examples(examples_path, folder / "pgim" / "manual_examples_entities.txt")
    example_types = {e.image_id: {t for _, t in e.entities} for e in manual}
    train, _ = read_items(folder, "train", captions)
    examples = example_items(manual, train, examples_path)
    queries, query_types = read_items(folder, split, captions)
    rows = []
    runs = [(e, q, p) for e, q in RUNS if e in embedders for p in (poolings if e == "fused" else [None])]
    for embedder_name, query, pooling in runs:
        strip = (lambda items: [replace(i, caption="") for i in items]) if query == "tweet" else list
        started = time.time()
        model_dir = backbone_dir(name, label) if embedder_name == "fused" else None
        options = EmbedderOptions(seed=seed, backbone_dir=model_dir, pooling=pooling or EmbedderOptions.pooling)
        embedder = make_embedder(embedder_name, options)
        _, hits = retrieve(strip(queries), strip(examples), embedder, k)
        score, n_queries = type_overlap(hits, query_types, example_types, k)
        rows.append({"dataset": name, "split": split, "embedder": embedder_name + (f" ({pooling})" if pooling else ""),
                     "query": query, "k": k,
                     "score": round(score, 4), "n_queries": n_queries, "n_examples": len(examples),
                     "seed": seed, "seconds": round(time.time() - started, 1), "backbone_dir": model_dir})
        print(f"{name} {embedder_name} ({query}): {score:.4f} over {n_queries} queries", file=sys.stderr)
    return rows


def main() -> None:
    """Parse arguments, run every dataset, append results and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["twitter2015", "twitter2017"])
    parser.add_argument("--split", default="test", choices=sorted(SPLIT_FILES))
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--embedders", nargs="+", default=["random", "text", "fused"], choices=["random", "text", "fused"])
    parser.add_argument("--backbone-label", default="main", help="label of the backbone.jsonl row to use for fused")
    parser.add_argument("--pooling", nargs="+", default=[EmbedderOptions.pooling], choices=["mean", "entity"],
                        help="fused: how H is pooled")
    args = parse_args(parser)
    if not DATA.is_dir():
        sys.exit(f"benchmark data not found at {DATA} (see the project README)")
    meta = provenance()
    rows = [{**row, **meta} for name in args.datasets
            for row in run_dataset(name, args.split, args.k, args.seed, args.embedders, args.backbone_label, args.pooling)]
    append_rows(RESULTS, rows)
    print("| dataset | embedder | query | k | type-overlap@k | queries |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['dataset']} | {row['embedder']} | {row['query']} | {row['k']} | {row['score']:.3f} | {row['n_queries']} |")


if __name__ == "__main__":
    main()
