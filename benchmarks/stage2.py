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

import argparse
import json
import logging
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mner.config import PipelineConfig, load_config  # noqa: E402
from tasks.data import join_knowledge, load_splits  # noqa: E402
from tasks.evaluate import evaluate_model  # noqa: E402
from tasks.train import train_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "stage2.jsonl"


def machine() -> str:
    """A short description of this machine: CPU model, cores, memory, torch build."""
    import os

    import torch

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem:.0f} GiB, {gpu}, torch {torch.__version__}"


def commit() -> str:
    """Current git commit (with -dirty when the tree has changes)."""
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)benchmarks/results", ":(exclude)benchmarks/RESULTS.md"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def provenance() -> dict[str, str]:
    """Where a result line comes from: the command as typed from the project root, commit, UTC date, machine."""
    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    return {"command": command, "commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": machine()}


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append ``rows`` as JSON lines to the results file ``path`` (created with its folder when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def config_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every config-driven benchmark takes: ``--config`` and ``--set``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)")
    return parser


def log_stages_to_stderr() -> None:
    """Show the stages' log lines with timestamps (outside Prefect they log to the ``mner`` logger)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("mner").addHandler(handler)
    logging.getLogger("mner").setLevel(logging.INFO)


def parse_overrides(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items as dotted config overrides (values read as YAML)."""
    return {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in items)}


def as_training_worker() -> dict[str, str]:
    """Run this benchmark on the training worker's runtime (its allocator and oneDNN cache, ``train`` defaults).

    The first call re-executes the script with the worker's environment (allocator variables act from
    a process's start only); in the re-executed process it returns what the process runs on.
    """
    import os

    from engine.launcher import worker_environment
    from engine.runtime import loaded_allocator
    from mner.config import TrainConfig

    if os.environ.get("MNER_AS_TRAINING_WORKER") != "1":
        env = {**worker_environment(TrainConfig().model_dump(mode="json")), "MNER_AS_TRAINING_WORKER": "1"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    return {"allocator": loaded_allocator(), "onednn_cache": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "default")}


def peak_rss_mib() -> float:
    """Peak resident memory of this process or its children (training runs in a child), in MiB."""
    return max(own_and_child_peaks().values())


def own_and_child_peaks() -> dict[str, float]:
    """Peak RSS in MiB of this process (data, evaluation) and of its largest finished child (the training worker)."""
    return {name: round(resource.getrusage(who).ru_maxrss / 1024, 1)
            for name, who in (("own", resource.RUSAGE_SELF), ("children", resource.RUSAGE_CHILDREN))}


def joined_splits(cfg: PipelineConfig, knowledge: bool) -> dict:
    """The config's splits joined with their captions (by post id), and with PGIM's knowledge when ``knowledge``.

    The stages' own functions run without Prefect, as a captions/knowledge stage output would feed them.
    """
    root, ds = str(cfg.artifacts_root), cfg.dataset
    data = load_splits.fn(sources={"train": str(ds.train), "dev": str(ds.dev), "test": str(ds.test)},
                          repair_bio=ds.repair_bio, artifacts_root=root)
    files = {f"knowledge_{split}": str(getattr(ds, f"knowledge_{split}")) if knowledge else None
             for split in ("train", "dev", "test")}
    return join_knowledge.fn(data=data, artifacts_root=root, sources={**files, "captions": str(ds.captions)})


def main() -> None:
    """Parse arguments, run the stages, append the result line."""
    parser = config_parser(__doc__)
    parser.add_argument("--variant", choices=["text", "text+knowledge"], required=True)
    parser.add_argument("--label", default="", help="name of this configuration in the results")
    parser.add_argument("--dev-only", action="store_true", help="do not score the test split")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append the result to")
    args = parser.parse_args()
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
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
