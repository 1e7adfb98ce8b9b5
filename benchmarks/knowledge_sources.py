"""Twitter-2015 stage-2 F1 with SmolLM2 knowledge vs text-only vs PGIM's ChatGPT knowledge, same budget.

    python benchmarks/knowledge_sources.py [--train 300 --dev 100 --test 300] [--set train.epochs=3 ...]

The local LLM answers about 0.5-1 prompt per second on 2 cores, so the full splits (8,257 tweets)
do not fit a session: this runs on a subset, stated in every result row: the first N tweets of
each split, plus the train tweets that are PGIM's hand-written examples (retrieval needs them).
It runs the real ``mner-pipeline`` flow (stage 1 with the local llama.cpp server for SmolLM2; PGIM's
files for ChatGPT) and appends rows to benchmarks/results/knowledge_sources.jsonl.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import yaml

from harness import RESULTS_DIR, ROOT, append_rows, parse_args, provenance, write_pgim_knowledge

from mner import formats, pgim
from mner.server import prefect_defaults

DATA = ROOT.parent / "shared" / "data" / "twitter2015"
OUT = ROOT / "benchmarks" / "out" / "knowledge_sources"
RESULTS = RESULTS_DIR / "knowledge_sources.jsonl"


def write_subset(sizes: dict[str, int]) -> dict[str, str]:
    """CoNLL subsets (with IMGID lines) and the matching PGIM knowledge blocks; returns dataset config fields."""
    OUT.mkdir(parents=True, exist_ok=True)
    examples = {e.image_id for e in pgim.read_manual_examples(DATA / "pgim/manual_examples.txt",
                                                                DATA / "pgim/manual_examples_entities.txt")}
    fields: dict[str, str] = {}
    for split, name in (("train", "train"), ("dev", "valid"), ("test", "test")):
        sentences = formats.read_conll(DATA / f"{name}.txt", repair=True).sentences
        keep = [i for i, s in enumerate(sentences) if i < sizes[split] or (split == "train" and s.image_id in examples)]
        formats.write_conll(OUT / f"{name}.txt", [sentences[i] for i in keep])
        blocks = pgim.read_knowledge(DATA / f"pgim/knowledge_{name}.txt", sentences).knowledge
        write_pgim_knowledge(OUT / f"knowledge_{name}.txt", [sentences[i] for i in keep], [blocks[i] for i in keep])
        fields[split] = str(OUT / f"{name}.txt")
        fields[f"knowledge_{split}"] = str(OUT / f"knowledge_{name}.txt")
        fields[f"{split}_size"] = len(keep)
    return fields


def main() -> None:
    """Build the subset, run the pipeline with each knowledge source, append the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--dev", type=int, default=100)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parse_args(parser)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent: this benchmark needs ../shared/data")
    prefect_defaults(tempfile.mkdtemp(prefix="mner-bench-prefect-"))
    from flows.pipeline import pipeline

    fields = write_subset({"train": args.train, "dev": args.dev, "test": args.test})
    sizes = {s: fields.pop(f"{s}_size") for s in ("train", "dev", "test")}
    base = {"dataset.name": "twitter2015-subset", **{f"dataset.{k}": v for k, v in fields.items()},
            "dataset.captions": str(DATA / "pgim/blip2_captions.txt"), "dataset.images": None,
            "dataset.examples": str(DATA / "pgim/manual_examples.txt"),
            "dataset.examples_entities": str(DATA / "pgim/manual_examples_entities.txt"),
            "artifacts_root": str(ROOT / "artifacts"), "train.epochs": 3,
            **{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}}
    runs = [("chatgpt (PGIM files)", {"stage1.knowledge.backend": "file", "variants": ["text", "text+knowledge"]}),
            ("smollm2-135m (local llama.cpp)", {"stage1.knowledge.backend": "llm", "variants": ["text+knowledge"]})]
    for source, overrides in runs:
        started = time.time()
        scores = pipeline(overrides={**base, **overrides})
        for variant, s in scores.items():
            row = {"dataset": "twitter2015", "subset": sizes, "knowledge": source if variant != "text" else None,
                   "variant": variant, "dev_f1": s["dev_f1"], "test_precision": s["test_precision"],
                   "test_recall": s["test_recall"], "test_f1": s["test_f1"], "flow_seconds": round(time.time() - started, 1),
                   "overrides": {**{k: v for k, v in base.items() if not k.startswith("dataset.")}, **overrides},
                   **provenance()}
            append_rows(RESULTS, [row])
            print(json.dumps(row))


if __name__ == "__main__":
    main()
