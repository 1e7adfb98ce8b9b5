"""Stage-2 benchmark: train and score one (dataset, variant) through the ``mner-pipeline`` flow.

    python benchmarks/stage2.py --config configs/twitter2015.yaml --variant text+knowledge \
        [--set train.epochs=6 ...] [--label NAME] [--dev-only] [--results FILE]

Runs the flow in this process (Prefect's local ephemeral server, the config's artifact store) with
``variants: [VARIANT]`` and the ``--set`` overrides, so every config key acts as in ``mner run``
(``--set stage1.knowledge.backend=llm`` asks the LLM for Z instead of reading PGIM's files). It runs
up to ``train`` first, then to the end (the trained model replays from the store), so that the peak
RSS of this process before evaluation is measured apart. Appends one JSON line to
benchmarks/results/stage2.jsonl: the knowledge backend, dev F1, test P/R/F1 and per-type F1,
epochs, train seconds, sentences/s, peak RSS (this process: data and evaluation; its children: the
training worker), peak GPU memory of the training process (``torch.cuda.max_memory_allocated``,
null on the CPU), the command, commit, date and machine. ``--dev-only`` stops after ``train`` (for choosing settings);
``--results FILE`` appends the line to FILE instead. Run one process per variant so that peak RSS
belongs to that variant.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import (STAGE2_RESULTS as RESULTS, append_rows, config_parser, log_stages_to_stderr, own_and_child_peaks,
                     parse_args, parse_overrides, peak_rss_mib, provenance)

from mner.config import load_config
from mner.server import prefect_defaults


def main() -> None:
    """Parse arguments, run the flow up to ``train``, then to the end; append the result line."""
    parser = config_parser(__doc__)
    parser.add_argument("--variant", choices=["text", "text+knowledge"], required=True)
    parser.add_argument("--label", default="", help="name of this configuration in the results")
    parser.add_argument("--dev-only", action="store_true", help="do not score the test split")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append the result to")
    args = parse_args(parser)
    log_stages_to_stderr()
    overrides = parse_overrides(args.set)
    run = {**overrides, "variants": [args.variant]}
    cfg = load_config(args.config, run)  # an invalid config fails here, before any work
    prefect_defaults()
    from flows.pipeline import pipeline

    started = time.time()
    model_dir = pipeline(config_file=args.config, overrides=run, until="train")[f"train ({args.variant})"]
    history = json.loads(Path(model_dir, "history.json").read_text())
    row = {
        "dataset": cfg.dataset.name, "variant": args.variant, "knowledge_backend": cfg.stage1.knowledge.backend,
        "label": args.label, "dev_f1": history["best_dev_f1"],
        "best_epoch": history["best_epoch"], "epochs": history["epochs_run"], "train_seconds": history["train_seconds"],
        "train_sentences_per_second": history["sentences_per_second"], "history": history["history"],
        "trainable_parameters": history.get("trainable_parameters"), "total_parameters": history.get("total_parameters"),
        "peak_gpu_memory_mib": history.get("peak_gpu_memory_mib"),
        "overrides": overrides, "model_dir": model_dir,
    }
    before_evaluation = own_and_child_peaks()["own"]
    if not args.dev_only:
        scored = pipeline(config_file=args.config, overrides=run)[args.variant]
        test = json.loads(Path(scored["scores"], "scores.json").read_text())["test"]
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
