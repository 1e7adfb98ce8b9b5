"""Stage ``train``: fit the [T] or [T;Z] tagger on the joined data and keep the best dev-F1 weights.

Training runs in a process of its own (``tasks.train_worker``), under ``torch.distributed.run``
when ``train.processes`` asks for several: one per GPU on CUDA, gloo processes on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import torch

from mner import processes
from mner.config import TrainConfig
from mner.store import StageRun
from mner.tags import entity_types, label_list
from tasks import train_worker
from tasks.common import stage_logger, stage_task
from tasks.data import read_jsonl

VARIANTS = ("text", "text+knowledge")


def training_processes(train_cfg: TrainConfig) -> int:
    """How many training processes ``train.processes`` means here (0 = one per visible GPU, else 1)."""
    if train_cfg.processes:
        return train_cfg.processes
    if train_cfg.device != "cpu" and torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return 1


def launch_command(job_file: str, processes: int) -> list[str]:
    """The command that runs a training job: the worker module, under torchrun for several processes."""
    worker = ["-m", train_worker.__name__, job_file]
    if processes == 1:
        return [sys.executable, *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *worker]


def run_training_job(job: dict[str, Any], work_dir, log) -> dict[str, Any]:
    """Write ``job.json`` into ``work_dir``, run it in a child process, return its result.

    The child's output is passed to ``log`` line by line; a failed child raises with its exit code
    and last lines (its per-epoch checkpoint stays, so a rerun resumes). The child (with its ranks)
    dies with this process, and is stopped when this call is interrupted.
    """
    job = {**job, "work_dir": str(work_dir), "result_file": str(work_dir / "result.json")}
    job_file = work_dir / "job.json"
    job_file.write_text(json.dumps(job, indent=2), encoding="utf-8")
    command = launch_command(str(job_file), int(job["processes"]))
    tail: list[str] = []
    child = processes.spawn(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        for line in child.stdout:  # type: ignore[union-attr]
            line = line.rstrip()
            log(line)
            tail = (tail + [line])[-20:]
        child.wait()
    finally:
        processes.stop(child, grace_s=5.0)  # at once when interrupted; a no-op once it has exited
        child.stdout.close()  # type: ignore[union-attr]
    if child.returncode != 0:
        raise RuntimeError(f"training process failed (exit {child.returncode}): {' '.join(command)}\n" + "\n".join(tail))
    result = json.loads((work_dir / "result.json").read_text(encoding="utf-8"))
    for name in ("job.json", "result.json"):
        (work_dir / name).unlink()
    return result


@stage_task("train")
def train_model(
    run: StageRun, data: dict[str, Any], variant: str, model: dict[str, Any], train: dict[str, Any], artifacts_root: str,
    runtime: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one variant (``text`` or ``text+knowledge``); resumes from a checkpoint after a crash.

    ``runtime["dataset"]``, the dataset's name, is recorded in the manifest (next to ``variant``)
    for ``mner predict --run DATASET/VARIANT``; a name does not shape the weights, so the stage key
    leaves it out, and an output reused under another name keeps the name it was trained under.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    log = stage_logger()
    train_cfg = TrainConfig.model_validate(train)
    train_rows = read_jsonl(f"{data['dir']}/train.jsonl")[: train_cfg.max_train_sentences]
    dev_rows = read_jsonl(f"{data['dir']}/dev.jsonl")
    labels = label_list(entity_types([t for r in train_rows + dev_rows for t in r["tags"]]))
    job = {"train_file": f"{data['dir']}/train.jsonl", "dev_file": f"{data['dir']}/dev.jsonl", "labels": labels,
           "model": model, "train": train, "use_knowledge": variant == "text+knowledge",
           "processes": training_processes(train_cfg)}
    result = run_training_job(job, run.work_dir, log.info)
    run.timings["train_s"] = result["train_seconds"]
    return {"variant": variant, "dataset": (runtime or {}).get("dataset"), "result": result}
