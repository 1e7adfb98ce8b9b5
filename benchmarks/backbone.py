"""Backbone benchmark: train the multimodal backbone (image as text: PGIM's BLIP-2 captions) and score it.

    python benchmarks/backbone.py --config configs/twitter2015.yaml [--set backbone.s2_epochs=3 ...] [--label NAME]

Runs the pipeline's ``backbone`` stage (``mner run --until backbone``: training in its child process,
then dev and test scoring) and appends one JSON line to benchmarks/results/backbone.jsonl: dev/test
P/R/F1, per-type test F1, the epoch history with each loss part, train seconds, parameters, peak RSS
of the run, the model directory (which the retrieval benchmark's ``fused`` embedder reads), the
command, commit, date and machine. Compare with ``benchmarks/stage2.py --variant text`` at the same
encoder and epoch budget.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import (RESULTS_DIR, append_rows, config_parser, parse_args, parse_overrides, peak_rss_mib, provenance, run_until,
                     typed_overrides)

from mner.config import load_config

RESULTS = RESULTS_DIR / "backbone.jsonl"


def main() -> None:
    """Parse arguments, run the pipeline up to ``backbone``, append the result line."""
    parser = config_parser(__doc__)
    parser.add_argument("--label", default="", help="name of this configuration in the results")
    args = parse_args(parser)
    overrides = parse_overrides(args.set)
    cfg = load_config(args.config, overrides)
    started = time.time()
    out = run_until(args.config, "backbone", typed_overrides(args.set))
    history = json.loads(Path(out["dir"], "history.json").read_text())
    scores = json.loads(Path(out["dir"], "scores.json").read_text())
    row = {
        "dataset": cfg.dataset.name, "variant": f"backbone ({cfg.backbone.image_source})", "label": args.label,
        **{f"{split}_{m}": scores[split][m] for split in ("dev", "test") for m in ("precision", "recall", "f1")},
        "test_per_type_f1": {t: c["f1"] for t, c in scores["test"]["per_type"].items()},
        "best_epoch": history["best_epoch"], "epochs": history["epochs_run"], "train_seconds": history["train_seconds"],
        "train_sentences_per_second": history["sentences_per_second"], "history": history["history"],
        "trainable_parameters": history["trainable_parameters"], "total_parameters": history["total_parameters"],
        "overrides": overrides, "model_dir": out["dir"],
        "peak_rss_mib": peak_rss_mib(),
        "wall_seconds": round(time.time() - started, 1), **provenance(),
    }
    append_rows(RESULTS, [row])
    print(json.dumps({k: v for k, v in row.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
