"""One training job in a process of its own: ``python -m engine.train_worker JOB.json``.

The train, backbone and distill stages write the job file (``kind``: the tagger by default,
``backbone``, ``distill``) and start this module, directly for one process or under
``torch.distributed.run`` for several (one per GPU on CUDA; gloo processes on the CPU). Keeping
training out of the flow's process frees its memory when it ends and lets DDP ranks start clean.
Rank 0 writes the result file named in the job.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from engine.runtime import loaded_allocator, rank_and_world
from engine.training import TrainResult, train_tagger
from mner.config import BackboneConfig, ModelConfig, TrainConfig
from mner.samples import read_samples


def _train_backbone(job: dict, train_cfg: TrainConfig, log) -> TrainResult:
    """The ``backbone`` job kind (one process): posts from the job's files, two-phase training."""
    from engine.backbone_training import read_posts, train_backbone

    return train_backbone(read_posts(job["train_file"])[: train_cfg.max_train_sentences],
                          read_posts(job["dev_file"]), job["labels"],
                          BackboneConfig.model_validate(job["backbone"]), train_cfg, Path(job["work_dir"]), log)


def run_job(job_path: str | Path) -> dict:
    """Run the job described by ``job_path``; returns (and on rank 0 writes) the result."""
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    if int(os.environ.get("RANK", "0")) == 0:
        cache = os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "default")
        print(f"allocator={loaded_allocator()} onednn_primitive_cache={cache}", flush=True)
    if job.get("kind") == "distill":  # one process; its own config section (stage1.distill)
        from engine.distillation import distill_job

        done = distill_job(job, lambda message: print(message, flush=True))
        Path(job["result_file"]).write_text(json.dumps(done, indent=2), encoding="utf-8")
        return done
    train_cfg = TrainConfig.model_validate(job["train"])
    distributed = int(job.get("processes", 1)) > 1
    if distributed:
        use_nccl = torch.cuda.is_available() and train_cfg.device != "cpu"
        dist.init_process_group("nccl" if use_nccl else "gloo")
    rank, _ = rank_and_world()
    log = (lambda message: print(message, flush=True)) if rank == 0 else (lambda _message: None)
    if distributed:
        log(f"process group: backend={dist.get_backend()} world={dist.get_world_size()}")
    if job.get("kind") == "backbone":
        result = _train_backbone(job, train_cfg, log)
    else:
        result = train_tagger(
            read_samples(job["train_file"])[: train_cfg.max_train_sentences], read_samples(job["dev_file"]), job["labels"],
            ModelConfig.model_validate(job["model"]), train_cfg, Path(job["work_dir"]), job["use_knowledge"], log,
        )
    if rank == 0:
        Path(job["result_file"]).write_text(json.dumps(result.__dict__, indent=2), encoding="utf-8")
    if distributed:
        dist.destroy_process_group()
    return result.__dict__


if __name__ == "__main__":
    run_job(sys.argv[1])
