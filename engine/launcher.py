"""Start a training job in its own worker process(es) and read its result."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from engine import train_worker
from mner import processes
from mner.config import TrainConfig


def training_processes(train_cfg: TrainConfig) -> int:
    """How many training processes ``train.processes`` means here (0 = one per visible GPU, else 1)."""
    if train_cfg.processes:
        return train_cfg.processes
    if train_cfg.device != "cpu" and torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return 1


ALLOCATOR_LIBRARIES = {"tcmalloc": "tcmalloc_minimal", "jemalloc": "jemalloc"}
ALLOCATOR_PACKAGES = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}


def allocator_library(choice: str) -> str | None:
    """The shared library to preload for ``train.allocator`` (None: the C library's malloc).

    ``auto`` takes tcmalloc where the system has it; a named allocator that is missing raises,
    naming the package that provides it.
    """
    if choice == "system" or not sys.platform.startswith("linux"):
        return None
    name = "tcmalloc" if choice == "auto" else choice
    found = ctypes.util.find_library(ALLOCATOR_LIBRARIES[name])
    if found is None and choice != "auto":
        raise ValueError(f"train.allocator={choice}: the {name} library is not installed; install it "
                         f"(Debian: apt-get install {ALLOCATOR_PACKAGES[name]}) or set train.allocator: auto or system")
    return found


def worker_environment(train: dict[str, Any] | None) -> dict[str, str]:
    """The environment of a training worker: this one, plus the allocator and oneDNN cache of ``train``.

    A job without ``train`` settings (distillation) gets their defaults. A variable the user has
    set already (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) is kept, and an allocator in ``LD_PRELOAD`` is not loaded twice.
    """
    env = dict(os.environ)
    cfg = TrainConfig.model_validate(train or {})
    env.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(cfg.onednn_cache_capacity))
    library = allocator_library(cfg.allocator)
    preloaded = env.get("LD_PRELOAD", "").split()
    if library and library not in {Path(entry).name for entry in preloaded}:
        env["LD_PRELOAD"] = " ".join([library, *preloaded])
    return env


def launch_command(job_file: str, processes: int) -> list[str]:
    """The command that runs a training job: the worker module, under torchrun for several processes."""
    worker = ["-m", train_worker.__name__, job_file]
    if processes == 1:
        return [sys.executable, *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *worker]


def run_training_job(job: dict[str, Any], work_dir, log) -> dict[str, Any]:
    """Write ``job.json`` into ``work_dir``, run it in a child process, return its result.

    The child's output, its errors included, is passed to ``log`` line by line; a failed child raises
    with its exit code and last lines, so its traceback's last lines name the cause (its per-epoch
    checkpoint stays, so a rerun resumes). The child (with its ranks)
    dies with this process, and is stopped when this call is interrupted.
    """
    job = {**job, "work_dir": str(work_dir), "result_file": str(work_dir / "result.json")}
    job_file = work_dir / "job.json"
    job_file.write_text(json.dumps(job, indent=2), encoding="utf-8")
    command = launch_command(str(job_file), int(job["processes"]))
    tail: list[str] = []
    child = processes.spawn(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=worker_environment(job.get("train")))
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
