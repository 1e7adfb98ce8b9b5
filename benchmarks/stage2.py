"""Stage-2 benchmark: train and score one (dataset, variant) through the real stage functions.

    python benchmarks/stage2.py --config configs/twitter2015.yaml --variant text+knowledge \
        [--set train.epochs=6 ...] [--label NAME] [--dev-only]

Runs the same cached stages as the flow (without a Prefect server) and appends one JSON line to
benchmarks/results/stage2.jsonl: dev F1, test P/R/F1 and per-type F1, epochs, train seconds,
sentences/s, peak RSS, peak GPU memory of the training process (``torch.cuda.max_memory_allocated``,
null on the CPU), the command, commit, date and machine. ``--dev-only`` skips the test split (for
choosing settings); ``--results FILE`` appends the line to FILE instead (benchmarks/gpu_check.sh
keeps its run out of the stage-2 tables). Run one process per variant so that peak RSS belongs to
that variant.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import (STAGE2_RESULTS as RESULTS, append_rows, config_parser, joined_splits, log_stages_to_stderr,
                     own_and_child_peaks, parse_args, parse_overrides, peak_rss_mib, provenance)

from mner.config import load_config
from tasks.evaluate import evaluate_model
from tasks.train import train_model


def main() -> None:
    """Parse arguments, run the stages, append the result line."""
    parser = config_parser(__doc__)
    parser.add_argument("--variant", choices=["text", "text+knowledge"], required=True)
    parser.add_argument("--label", default="", help="name of this configuration in the results")
    parser.add_argument("--dev-only", action="store_true", help="do not score the test split")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append the result to")
    args = parse_args(parser)
    log_stages_to_stderr()
    overrides = parse_overrides(args.set)
    cfg = load_config(args.config, overrides)
    root, ds = str(cfg.artifacts_root), cfg.dataset
    started = time.time()
    joined = joined_splits(cfg, knowledge=True)
    model = train_model.fn(data=joined, variant=args.variant, model=cfg.model.model_dump(mode="json"),
                           train=cfg.train.model_dump(mode="json"), runtime={"dataset": ds.name}, artifacts_root=root)
    history = json.loads(Path(model["dir"], "history.json").read_text())
    row = {
        "dataset": ds.name, "variant": args.variant, "label": args.label, "dev_f1": history["best_dev_f1"],
        "best_epoch": history["best_epoch"], "epochs": history["epochs_run"], "train_seconds": history["train_seconds"],
        "train_sentences_per_second": history["sentences_per_second"], "history": history["history"],
        "trainable_parameters": history.get("trainable_parameters"), "total_parameters": history.get("total_parameters"),
        "peak_gpu_memory_mib": history.get("peak_gpu_memory_mib"),
        "overrides": overrides, "model_dir": model["dir"],
    }
    before_evaluation = own_and_child_peaks()["own"]
    if not args.dev_only:
        evaluation = evaluate_model.fn(data=joined, model=model, variant=args.variant, precision=cfg.train.precision,
                                       artifacts_root=root)
        scores = json.loads(Path(evaluation["dir"], "scores.json").read_text())
        test = scores["test"]
        row.update(test_precision=test["precision"], test_recall=test["recall"], test_f1=test["f1"],
                   test_per_type_f1={t: c["f1"] for t, c in test["per_type"].items()})
    row.update(
        peak_rss_mib=peak_rss_mib(),
        peak_rss_mib_split={**own_and_child_peaks(), "own_before_evaluation": before_evaluation},
        wall_seconds=round(time.time() - started, 1),
        **provenance(),
    )
    append_rows(args.results, [row])
    print(json.dumps({k: v for k, v in row.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
