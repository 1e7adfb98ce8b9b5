"""The tagger's training loop: optimiser groups, checkpoints, resume, the epoch loop."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from engine.runtime import memory_mib, prepare_runtime, rank_and_world, set_seed, weights_digest
from engine.taggers import BEST_WEIGHTS, bucketed_batches, build_tagger, compile_for_training, predict, save_tagger
from mner.config import ModelConfig, TrainConfig
from mner.metrics import score_entities
from mner.samples import Sample
from models.encoding import EncodedSentence, SentenceEncoder, collate

CHECKPOINT = "checkpoint.pt"


def linear_warmup_decay(warmup: int, total: int, shift: int = 0) -> Callable[[int], float]:
    """Learning-rate factor by step: linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``.

    With ``shift=0`` it is transformers' ``get_linear_schedule_with_warmup`` (whose import pulls in
    peft and costs a training process seconds); ``shift=1`` starts the warm-up one step higher.
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + shift) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


@dataclass
class TrainResult:
    """What a training run reports (also written to ``history.json``)."""

    best_dev_f1: float
    best_epoch: int
    epochs_run: int
    train_seconds: float
    train_sentences: int
    sentences_per_second: float
    trainable_parameters: int
    total_parameters: int
    history: list[dict] = field(default_factory=list)
    rank_weight_digests: list[str] = field(default_factory=list)  # DDP: one per rank, all equal
    rank_batches: list[list[list[int]]] = field(default_factory=list)  # DDP: each rank's last-epoch batches (sentence indices)
    peak_gpu_memory_mib: float | None = None  # CUDA: torch.cuda.max_memory_allocated of this process (rank 0)


NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight", "norm_")


def param_groups(named: list[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float) -> list[dict]:
    """Two AdamW groups at ``lr``: weights with ``weight_decay``, biases and norms without."""
    decay = [p for n, p in named if not any(k in n for k in NO_DECAY)]
    rest = [p for n, p in named if any(k in n for k in NO_DECAY)]
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay}, {"params": rest, "lr": lr, "weight_decay": 0.0}]


def adamw(params, device: torch.device, lr: float = 1e-3) -> torch.optim.AdamW:
    """AdamW with PyTorch's fused kernel on CPU and CUDA (one pass over each tensor instead of a dozen ops per parameter)."""
    return torch.optim.AdamW(params, lr=lr, fused=device.type in ("cpu", "cuda"))


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler, state: dict) -> None:
    """Write model, optimizer, scheduler, loop state and RNG states to ``path`` atomically (a crash keeps the last one)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "state": state, "rng": {"python": random.getstate(), "torch": torch.get_rng_state()}}, tmp)
    os.replace(tmp, path)


def resume_state(path: Path, model: torch.nn.Module, optimizer, scheduler, log: Callable[[str], None]) -> dict:
    """The epoch loop's state: fresh, or restored from the checkpoint at ``path`` (with model, optimizer, scheduler, RNG)."""
    if not path.exists():
        return {"epoch": 0, "best_f1": -1.0, "best_epoch": 0, "stale": 0, "history": [], "train_seconds": 0.0}
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    random.setstate(saved["rng"]["python"])
    torch.set_rng_state(saved["rng"]["torch"])
    log(f"resuming after epoch {saved['state']['epoch']} (best dev F1 {saved['state']['best_f1']:.4f})")
    return saved["state"]


def replayed_batch_rng(lengths: list[int], train_cfg: TrainConfig, epochs_done: int) -> random.Random:
    """The batch-order RNG after ``epochs_done`` epochs, so a resumed run sees the orders it would have seen."""
    rng = random.Random(train_cfg.seed)
    for _ in range(epochs_done):
        bucketed_batches(lengths, train_cfg.batch_size, train_cfg.bucket_size, rng)
    return rng


def train_tagger(
    train: list[Sample],
    dev: list[Sample],
    labels: list[str],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    work_dir: Path,
    use_knowledge: bool,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train on ``train``, select on ``dev`` F1, and leave the best weights in ``work_dir``.

    If ``work_dir`` holds a checkpoint from an interrupted run with the same settings, training
    resumes after its last finished epoch instead of starting over. Under DDP (torchrun), each
    rank trains on its share of every epoch's batches, every rank scores dev identically, and
    rank 0 alone writes files.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()
    threads, device, bf16 = prepare_runtime(train_cfg)
    set_seed(train_cfg.seed)
    tagger, tokenizer = build_tagger(model_cfg, labels)
    tagger.to(device)
    compile_for_training(tagger, train_cfg.compile_encoder)
    if rank == 0:
        save_tagger(tagger, tokenizer, model_cfg, work_dir)
    encoder = SentenceEncoder(tokenizer, model_cfg.max_length, {l: i for i, l in enumerate(labels)})

    def encode(samples: list[Sample]) -> list[EncodedSentence]:
        return [encoder.encode(s.tokens, s.tags, s.knowledge if use_knowledge else None) for s in samples]

    train_enc, dev_enc = encode(train), encode(dev)
    truncated = sum(e.knowledge_truncated for e in train_enc)
    log(f"device={device} bf16={bf16} threads={threads} rank={rank}/{world} train={len(train_enc)} "
        f"dev={len(dev_enc)} knowledge_truncated={truncated}")

    steps_per_epoch = max(1, -(-len(train_enc) // train_cfg.batch_size) // world)
    total_steps = steps_per_epoch * train_cfg.epochs
    named = [(n, p) for n, p in tagger.named_parameters() if p.requires_grad]
    lr_encoder = train_cfg.lr_lora if model_cfg.lora is not None else train_cfg.lr_encoder
    optimizer = adamw(
        param_groups([(n, p) for n, p in named if n.startswith("encoder.")], lr_encoder, train_cfg.weight_decay)
        + param_groups([(n, p) for n, p in named if not n.startswith("encoder.")], train_cfg.lr_head, train_cfg.weight_decay),
        device,
    )
    trainable = sum(p.numel() for _, p in named)
    total = sum(p.numel() for p in tagger.parameters())
    log(f"trainable parameters: {trainable:,} of {total:,}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(int(train_cfg.warmup_ratio * total_steps), total_steps))

    checkpoint_path = work_dir / CHECKPOINT
    state = resume_state(checkpoint_path, tagger, optimizer, scheduler, log)
    lengths = [len(e.input_ids) for e in train_enc]
    rng = replayed_batch_rng(lengths, train_cfg, state["epoch"])

    model = tagger
    batches: list[list[int]] = []  # this rank's batches of the epoch last run
    if world > 1:
        model = DistributedDataParallel(tagger, device_ids=[device.index] if device.type == "cuda" else None)
    while state["epoch"] < train_cfg.epochs and state["stale"] < train_cfg.patience:
        epoch = state["epoch"] + 1
        tagger.train()
        batches = bucketed_batches(lengths, train_cfg.batch_size, train_cfg.bucket_size, rng)
        if world > 1:  # the same order on every rank (same seed); equal step counts keep all-reduce in step
            batches = batches[rank : max(world, len(batches) // world * world) : world]
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", mininterval=5, disable=None if rank == 0 else True)
        for step, indices in enumerate(bar, 1):
            batch = collate([train_enc[i] for i in indices], tokenizer.pad_token_id or 0).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tagger.parameters(), train_cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            seen += len(indices)
            loss_sum += loss.item()
            bar.set_postfix(loss=f"{loss_sum / step:.3f}", sent_s=f"{seen / (time.perf_counter() - started):.1f}")
        epoch_seconds = time.perf_counter() - started
        after_train = memory_mib()
        dev_pred = predict(tagger, dev_enc, device, bf16)
        after_dev = memory_mib()
        dev_scores = score_entities([r.tags for r in dev], dev_pred)
        dev_f1 = dev_scores.micro.f1
        state["train_seconds"] += epoch_seconds
        record = {"epoch": epoch, "loss": loss_sum / max(len(batches), 1), "dev_f1": dev_f1,
                  "dev_precision": dev_scores.micro.precision, "dev_recall": dev_scores.micro.recall,
                  "epoch_seconds": round(epoch_seconds, 2), "sentences_per_second": round(seen / epoch_seconds, 2),
                  "rss_mib_after_train": after_train["rss_mib"], "peak_rss_mib_after_train": after_train["peak_rss_mib"],
                  "rss_mib_after_dev": after_dev["rss_mib"], "peak_rss_mib_after_dev": after_dev["peak_rss_mib"]}
        state["history"].append(record)
        log(json.dumps(record))
        if dev_f1 > state["best_f1"]:
            state.update(best_f1=dev_f1, best_epoch=epoch, stale=0)
            if rank == 0:
                tmp = work_dir / (BEST_WEIGHTS + ".tmp")
                torch.save(tagger.state_dict(), tmp)
                os.replace(tmp, work_dir / BEST_WEIGHTS)
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        if rank != 0:
            continue
        save_checkpoint(checkpoint_path, tagger, optimizer, scheduler, state)

    digests: list[str] = []
    rank_batches: list[list[list[int]]] = []
    if world > 1:
        digests = [""] * world
        dist.all_gather_object(digests, weights_digest(tagger))  # also: no rank still reads the checkpoint
        rank_batches = [[] for _ in range(world)]  # which sentences each rank trained on: a check that they split the data
        dist.all_gather_object(rank_batches, [list(b) for b in batches])
    if rank == 0:
        checkpoint_path.unlink(missing_ok=True)
    sentences = len(train_enc) * len(state["history"])
    result = TrainResult(
        best_dev_f1=state["best_f1"], best_epoch=state["best_epoch"], epochs_run=state["epoch"],
        train_seconds=round(state["train_seconds"], 2), train_sentences=sentences,
        sentences_per_second=round(sentences / max(state["train_seconds"], 1e-9), 2),
        trainable_parameters=trainable, total_parameters=total, history=state["history"],
        rank_weight_digests=digests, rank_batches=rank_batches,
        peak_gpu_memory_mib=round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
    )
    if rank == 0:
        (work_dir / "history.json").write_text(json.dumps(result.__dict__, indent=2), encoding="utf-8")
    return result
