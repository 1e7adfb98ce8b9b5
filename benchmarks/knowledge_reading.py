"""Read the knowledge Z side by side: PGIM's ChatGPT answers, the base local model and the distilled one.

    python benchmarks/knowledge_reading.py [--config configs/twitter2017.yaml] [--test 64] [--max-tokens 128]
        [--batch 32] [--show 5]

On the first ``--test`` tweets of the test split it takes the zero-shot prompts of the newest
``prompts`` output in the store (built by a ``distill`` run, e.g. benchmarks/distill_speed.py) and
asks, through the llm stage's own generator (:func:`engine.local_generate.complete_local`, greedy):

- ``base``: SmolLM2-135M-Instruct's GGUF, zero-shot;
- ``distilled``: the newest ``distill`` output's ``model/`` (the row says how many pairs and epochs
  it learnt from).

ChatGPT's answers are PGIM's released file for the split. For each source it reports the share of
gold test entities whose words appear verbatim (case-insensitive, on word boundaries) in Z, the
mean answer length in words, and ``--show`` tweets with all three answers. Rows go to
benchmarks/results/knowledge_reading.jsonl, which RESULTS.md renders.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from harness import RESULTS_DIR, append_rows, gold_entities, parse_args, provenance, verbatim_share

from engine.llm_client import LLMSettings
from engine.local_generate import complete_local, load_generator, local_identity
from mner import formats, pgim
from mner.config import LlmConfig, resolve_config
from mner.samples import read_jsonl
from mner.store import ArtifactStore
from mner.trained import latest_distilled

RESULTS = RESULTS_DIR / "knowledge_reading.jsonl"


def zero_shot_test_prompts(store: ArtifactStore, test: list, test_file: object) -> list[dict]:
    """The newest prompts output's test rows for ``test`` (its first tweets); they must be the zero-shot ones."""
    prompts_dir = Path(max(store.entries("prompts"), key=lambda e: e["created"])["dir"])
    rows = read_jsonl(prompts_dir / "test.jsonl")[: len(test)]
    if [r["id"] for r in rows] != [s.id for s in test] or any(r.get("example_ids") for r in rows):
        raise SystemExit(f"{prompts_dir}: not the zero-shot prompts of {test_file}; run benchmarks/distill_speed.py first")
    return rows


def generate(model: str | None, prompts: list[list[dict]], args: argparse.Namespace) -> tuple[list[str], float]:
    """Greedy answers of ``model`` (None = SmolLM2's GGUF) to ``prompts``, and prompts per second."""
    llm = LlmConfig(backend="transformers", precision=args.precision, max_tokens=args.max_tokens,
                    batch_size=args.batch, shard_size=max(args.batch, 16), temperature=0.0)
    generator = load_generator(model, args.precision)
    settings = LLMSettings.from_config(llm, "", local_identity(model, args.precision))
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        done, _ = complete_local(settings, cache, prompts, generator, args.batch)
        seconds = time.perf_counter() - started
    return [" ".join((c.content or "").split()) for c in done], round(len(prompts) / seconds, 3)


def main() -> None:
    """Generate, score and append the rows; print the side-by-side tweets."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/twitter2017.yaml")
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--show", type=int, default=5)
    args = parse_args(parser)
    cfg = resolve_config(None, args.config, None)
    store = ArtifactStore(cfg.artifacts_root)
    test = formats.read_conll(cfg.dataset.test, repair=True).sentences
    chatgpt = pgim.read_knowledge(cfg.dataset.knowledge_test, test).knowledge[: args.test]
    test = test[: args.test]
    rows = zero_shot_test_prompts(store, test, cfg.dataset.test)
    distilled, key = latest_distilled(cfg.artifacts_root)
    distill_manifest = json.loads((distilled.parent / "manifest.json").read_text(encoding="utf-8"))
    distill_result = distill_manifest["result"]
    prompts = [r["messages"] for r in rows]
    base, base_rate = generate(None, prompts, args)
    student, student_rate = generate(str(distilled), prompts, args)
    entities = [gold_entities(s.tokens, s.tags or []) for s in test]
    sources = {"chatgpt (PGIM file)": chatgpt, "base SmolLM2 zero-shot": base, "distilled SmolLM2": student}
    shares = {name: verbatim_share(entities, answers) for name, answers in sources.items()}
    words = {name: round(sum(len(a.split()) for a in answers) / max(len(answers), 1), 1) for name, answers in sources.items()}
    shown = [{"tweet": " ".join(s.tokens), "entities": entities[i], **{name: answers[i] for name, answers in sources.items()}}
             for i, s in enumerate(test[: args.show])]
    row = {"dataset": cfg.dataset.name, "tweets": len(test), "gold_entities": sum(map(len, entities)),
           "verbatim_share": shares, "mean_words": words, "max_tokens": args.max_tokens,
           "prompts_per_second": {"base SmolLM2 zero-shot": base_rate, "distilled SmolLM2": student_rate},
           "distilled": {"key": key, "method": distill_manifest.get("config", {}).get("distill", {}).get("method"),
                         "pairs": distill_result["train_pairs"], "epochs": distill_result["epochs"],
                         "heldout_loss": distill_result["history"][-1]["heldout_loss"]},
           "examples": shown, **provenance()}
    append_rows(RESULTS, [row])
    print(json.dumps({k: row[k] for k in ("verbatim_share", "mean_words", "prompts_per_second", "distilled")}, indent=2))


if __name__ == "__main__":
    main()
