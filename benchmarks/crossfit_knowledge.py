"""The distilled route with cross-fitted train Z: the tagger never trains on Z the LLM learnt word for word.

    python benchmarks/crossfit_knowledge.py [--config configs/twitter2017-distilled.yaml] [--folds 2]
        [--seeds 42 1 2] [--label seeds]

The pipeline's distilled route trains the [T;Z] tagger on the distilled model's own train Z. That
model learnt those very answers, so its train Z is closer to ChatGPT's than its test Z will be, and
the tagger learns to trust Z more than test-time Z deserves. Cross-fitting removes the gap:

1. the train prompts are cut into ``--folds`` contiguous blocks (the prompts output's row order);
2. for each block, the config's distill stage runs (``mner run --until distill``) on the teacher's
   answers of the *other* blocks only (``stage1.distill.answers``: a JSONL of them; the block's own
   samples are reported as rejected for having no answer, so ``max_rejected_share`` is raised to
   the block's share plus the teacher's own gaps);
3. that fold model writes the block's train Z as the llm stage would (:func:`harness.local_answers`);
4. dev and test Z are the pipeline's own (``mner run --until llm``: the config's full distilled model);
5. the three splits' Z go into knowledge files in PGIM's format (benchmarks/out/crossfit/), and
   ``mner run`` with ``stage1.knowledge.backend: file`` on them trains and scores a [T;Z] tagger per
   seed, with the training settings of the stage2 label's first Twitter [T;Z] row (as
   knowledge_swap.py's own-train runs).

Every model is a cached stage in the config's store, and every answer is in its per-sample answer
cache, so a rerun recomputes only what is missing.
One row per seed goes to benchmarks/results/knowledge_swap.jsonl (source ``distilled, cross-fitted
train Z``); it also has the share of gold *train* entities verbatim in the train Z of each source
(ChatGPT, the distilled model's own, cross-fitted), which measures the train/test gap.

The fold models are ``distill`` outputs of the store like any other, and ``mner predict --llm``
asks the store's newest one: after this script, name the full model for prediction with
``--set stage1.llm.local_model=<its distill dir>/model``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (ROOT, RESULTS_DIR, STAGE2_RESULTS as STAGE2, append_rows, gold_entities, local_answers, log_stages_to_stderr,
                     mner_run, parse_args, parse_overrides, provenance, read_rows, run_until, stage_manifest, typed_overrides,
                     verbatim_share, write_pgim_knowledge)

from engine.distillation import MODEL_DIR, distilled_identity, teacher_answers
from engine.runtime import set_threads
from mner.config import PipelineConfig, load_config
from mner.samples import SPLITS, read_jsonl, read_samples, write_jsonl

RESULTS = RESULTS_DIR / "knowledge_swap.jsonl"
SOURCE = "distilled, cross-fitted train Z"
KNOWLEDGE_FILES = ROOT / "benchmarks" / "out" / "crossfit"


def fold_ranges(count: int, folds: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of ``folds`` contiguous blocks covering ``count`` rows, sizes differing by at most one."""
    if not 2 <= folds <= count:
        raise ValueError(f"--folds {folds}: need 2 to {count} folds for {count} train prompts")
    bounds = [round(i * count / folds) for i in range(folds + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def fold_models(args: Any, cfg: PipelineConfig, prompts: dict[str, Any], data: dict[str, Any], scratch: Path
                ) -> list[tuple[tuple[int, int], dict[str, Any]]]:
    """Per train block: its ``[start, stop)`` and the distill output trained without that block's answers."""
    train_prompts = read_jsonl(Path(prompts["dir"]) / "train.jsonl")
    train = read_samples(Path(data["dir"]) / "train.jsonl")
    teacher_file = cfg.stage1.distill.answers or cfg.dataset.knowledge_train
    answers, _ = teacher_answers(teacher_file, train)
    teacher_gaps = 1 - len(answers) / len(train)
    models = []
    for index, (start, stop) in enumerate(fold_ranges(len(train_prompts), args.folds)):
        held = {row["id"] for row in train_prompts[start:stop]}
        path = scratch / f"answers-without-block-{index + 1}-of-{args.folds}.jsonl"
        write_jsonl(path, [{"id": s.id, "knowledge": answers[s.id][0]} for s in train if s.id in answers and s.id not in held])
        share = round(min(1.0, len(held) / len(train) + teacher_gaps + 0.01), 4)
        overrides = {**args.overrides, "stage1.distill.answers": str(path), "stage1.distill.max_rejected_share": str(share)}
        models.append(((start, stop), run_until(args.config, "distill", overrides)))
    return models


def crossfit_train_z(cfg: PipelineConfig, prompts: dict[str, Any], folds: list[tuple[tuple[int, int], dict[str, Any]]]
                     ) -> dict[str, str]:
    """``{id: Z}`` of the train split, each block answered by the fold model that never saw its answers."""
    source = Path(prompts["dir"]) / "train.jsonl"
    rows, answers = read_jsonl(source), {}
    for (start, stop), model in folds:
        endpoint = distilled_identity(model["key"], cfg.stage1.llm.precision)
        answers.update(local_answers(cfg, rows[start:stop], source, endpoint, str(Path(model["dir"]) / MODEL_DIR))[0])
    return answers


def about_distill(output: dict[str, Any]) -> dict[str, Any]:
    """Pairs, epochs and final held-out loss of a distill output, from its manifest."""
    result = stage_manifest(output)["result"]
    return {"key": output["key"], "pairs": result["train_pairs"], "epochs": result["epochs"],
            "heldout_loss": result["history"][-1]["heldout_loss"], "train_seconds": result["train_seconds"]}


def training_settings(label: str, dataset: str) -> dict[str, Any]:
    """The overrides (less the seed) of the first [T;Z] stage2.jsonl row with ``label`` on ``dataset``; none for ``''``."""
    if not label:
        return {}
    rows = [r for r in read_rows(STAGE2)
            if r.get("label") == label and r["dataset"] == dataset and r["variant"] == "text+knowledge"]
    if not rows:
        raise SystemExit(f"{STAGE2}: no [T;Z] row with label {label!r} on {dataset} to take training settings from")
    return {k: v for k, v in rows[0]["overrides"].items() if k != "train.seed"}


def main() -> None:
    """Distil per fold, answer each block, write the knowledge files, train and score per seed; one row per seed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/twitter2017-distilled.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of --config (YAML value)")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append the rows to")
    parser.add_argument("--label", default="seeds", help="stage2.jsonl label whose first [T;Z] row gives the training "
                                                         "settings; '' keeps the config's")
    args = parse_args(parser)
    log_stages_to_stderr()
    set_threads(0)
    args.overrides = typed_overrides(args.set)
    cfg = load_config(args.config, parse_overrides(args.set))
    if not cfg.stage1.distill.enabled:
        raise SystemExit(f"{args.config}: stage1.distill.enabled is false; cross-fitting needs the distilled route")
    settings = training_settings(args.label, cfg.dataset.name)
    started = time.perf_counter()
    data, prompts = run_until(args.config, "load", args.overrides), run_until(args.config, "prompts", args.overrides)
    full, own = run_until(args.config, "distill", args.overrides), run_until(args.config, "llm", args.overrides)
    with tempfile.TemporaryDirectory(prefix="mner-crossfit-") as scratch:
        folds = fold_models(args, cfg, prompts, data, Path(scratch))
    samples = {split: read_samples(Path(data["dir"]) / f"{split}.jsonl") for split in SPLITS}
    own_z = {split: {r["id"]: r.get("knowledge") or "" for r in read_jsonl(Path(own["dir"]) / f"{split}.jsonl")}
             for split in SPLITS}
    used = {**own_z, "train": crossfit_train_z(cfg, prompts, folds)}  # dev and test Z: the pipeline's own
    files = {f"dataset.knowledge_{split}": str(KNOWLEDGE_FILES / cfg.dataset.name / f"knowledge_{split}.txt") for split in SPLITS}
    for split in SPLITS:
        write_pgim_knowledge(Path(files[f"dataset.knowledge_{split}"]), samples[split],
                             [used[split].get(s.id, "") for s in samples[split]])
    chatgpt, _ = teacher_answers(cfg.dataset.knowledge_train, samples["train"])
    train_z = {"chatgpt": {i: a for i, (a, _) in chatgpt.items()}, "own": own_z["train"], "crossfit": used["train"]}
    train_entities = [gold_entities(s.tokens, s.tags or []) for s in samples["train"]]
    shares = {name: verbatim_share(train_entities, [z.get(s.id, "") for s in samples["train"]]) for name, z in train_z.items()}
    test_share = verbatim_share([gold_entities(s.tokens, s.tags or []) for s in samples["test"]],
                                [used["test"].get(s.id, "") for s in samples["test"]])
    prepared = round(time.perf_counter() - started, 1)
    full_about = about_distill(full)
    by_file = {**args.overrides, **files, "stage1.knowledge.backend": "file", "stage1.distill.enabled": "false",
               "variants": "[text+knowledge]"}
    for seed in args.seeds:
        result = mner_run(args.config, {**by_file, **settings, "train.seed": seed})["text+knowledge"]
        history = json.loads((Path(result["model"]) / "history.json").read_text(encoding="utf-8"))
        row = {"dataset": cfg.dataset.name, "source": SOURCE,
               "model": distilled_identity(full["key"], cfg.stage1.llm.precision),
               **{k: full_about[k] for k in ("pairs", "epochs", "heldout_loss")},
               "folds": [{"train_rows": [start, stop], **about_distill(m)} for (start, stop), m in folds],
               "train_verbatim_share": shares, "test_verbatim_share": test_share,
               "tagger": {"label": "pipeline", "seed": seed, "model_dir": result["model"], "commit": None, "date": None,
                          "test_f1": result["test_f1"], "dev_f1": history["best_dev_f1"]},
               "training": {"settings": settings, "best_epoch": history["best_epoch"], "train_seconds": history["train_seconds"]},
               "preparation_seconds": prepared, "dev_f1": history["best_dev_f1"],
               "test_precision": result["test_precision"], "test_recall": result["test_recall"],
               "test_f1": result["test_f1"], **provenance()}
        append_rows(args.results, [row])
        shown = {k: row[k] for k in ("source", "dev_f1", "test_f1", "train_verbatim_share")}
        print(json.dumps(shown | {"seed": seed}), flush=True)


if __name__ == "__main__":
    main()
