"""Build, train, save, load and apply the multimodal backbone (models/backbone.py), free of Prefect.

Training has two phases: S1 (``s1_epochs``) with the pretrained encoders frozen, so only the
resampler, cross-attention, fusion, heads and CRF learn at ``lr_head``; then S2 (``s2_epochs``),
which fine-tunes the encoders too, at the lower ``lr_encoder`` with its own warm-up and decay.
The best dev-F1 weights are kept; a checkpoint after every epoch lets a killed run resume.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from engine.image_io import BadImage, load_image
from engine.runtime import prepare_runtime, resolve_encoder, set_seed
from engine.taggers import BEST_WEIGHTS, bucketed_batches
from engine.training import (
    CHECKPOINT,
    TrainResult,
    linear_warmup_decay,
    param_groups,
    replayed_batch_rng,
    resume_state,
    save_checkpoint,
)
from mner.config import BackboneConfig, TrainConfig
from mner.metrics import score_entities
from mner.samples import Sample, read_jsonl
from models.backbone import MultimodalBackbone, MultimodalBatch
from models.encoding import EncodedSentence, SentenceEncoder, collate

BACKBONE_META = "backbone.json"


@dataclass
class EncodedPost:
    """A post as ids: the text sentence, the image text's ids, the image file if it can be read."""

    sentence: EncodedSentence
    image_ids: list[int]
    image_path: str | None
    present: bool


class PostEncoder:
    """Turns posts into :class:`MultimodalBatch` es: text as for the tagger, image text or CLIP pixels."""

    def __init__(self, tokenizer, labels: list[str], max_length: int, max_image_tokens: int, image_processor=None) -> None:
        self.tokenizer, self.image_processor = tokenizer, image_processor
        self.text = SentenceEncoder(tokenizer, max_length, {label: i for i, label in enumerate(labels)})
        self.max_image_tokens = max_image_tokens
        self.unreadable_images: list[tuple[str, str]] = []

    def encode(self, post: Sample) -> EncodedPost:
        """Encode one post; an unreadable image is recorded in ``unreadable_images`` and counts as absent."""
        sentence = self.text.encode(post.tokens, post.tags)
        if self.image_processor is not None:
            present = post.image_path is not None
            if present:
                try:
                    load_image(post.image_path)
                except BadImage as err:
                    self.unreadable_images.append((str(post.image_path), err.reason))
                    present = False
            return EncodedPost(sentence, [], post.image_path if present else None, present)
        text = post.image_text.strip()
        ids = self.tokenizer(text, truncation=True, max_length=self.max_image_tokens)["input_ids"] if text else []
        return EncodedPost(sentence, ids, None, bool(ids))

    def _pixels(self, items: Sequence[EncodedPost]) -> torch.Tensor:
        size = self.image_processor.crop_size or self.image_processor.size
        blank = np.zeros((size["height"], size["width"], 3), dtype=np.uint8)
        images = [load_image(item.image_path).convert("RGB") if item.present else blank for item in items]
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def collate(self, items: Sequence[EncodedPost]) -> MultimodalBatch:
        """Pad a batch: text as :func:`models.encoding.collate`, image text to its longest, or pixels."""
        pad = self.tokenizer.pad_token_id or 0
        text = collate([item.sentence for item in items], pad)
        present = torch.tensor([item.present for item in items], dtype=torch.bool)
        if self.image_processor is not None:
            return MultimodalBatch(text, present, pixel_values=self._pixels(items))
        longest = max(1, max(len(item.image_ids) for item in items))
        ids = torch.full((len(items), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(items), longest), dtype=torch.bool)
        for i, item in enumerate(items):
            ids[i, : len(item.image_ids)] = torch.tensor(item.image_ids, dtype=torch.long)
            mask[i, : len(item.image_ids)] = True
        return MultimodalBatch(text, present, image_ids=ids, image_mask=mask)


def _text_encoder(source: str, pretrained: bool, config=None):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # unused pooler weights are expected
    if pretrained:
        return AutoModel.from_pretrained(source, attn_implementation="sdpa", add_pooling_layer=False)
    return AutoModel.from_config(config, attn_implementation="sdpa", add_pooling_layer=False)


def _assemble(cfg: BackboneConfig, labels: list[str], text_encoder, image_encoder) -> MultimodalBackbone:
    return MultimodalBackbone(
        text_encoder, labels, image_encoder, num_queries=cfg.num_queries, cross_layers=cfg.cross_layers, heads=cfg.heads,
        dropout=cfg.dropout, shape_features=cfg.shape_features, shape_dim=cfg.shape_dim,
        projection_dim=cfg.projection_dim, temperature=cfg.temperature, align_lambda=cfg.align_lambda,
        infonce_lambda=cfg.infonce_lambda, constrained_decoding=cfg.constrained_decoding)


def build_backbone(cfg: BackboneConfig, labels: list[str]) -> tuple[MultimodalBackbone, PostEncoder]:
    """A fresh backbone with pretrained encoders (CLIP only for ``image_source: clip``) and its post encoder."""
    from transformers import AutoTokenizer

    source = resolve_encoder(cfg.encoder)
    tokenizer = AutoTokenizer.from_pretrained(source)
    image_encoder, processor = None, None
    if cfg.image_source == "clip":
        from transformers import CLIPImageProcessor, CLIPVisionModel

        image_encoder = CLIPVisionModel.from_pretrained(cfg.clip_model, attn_implementation="sdpa")
        processor = CLIPImageProcessor.from_pretrained(cfg.clip_model)
    model = _assemble(cfg, labels, _text_encoder(source, True), image_encoder)
    return model, PostEncoder(tokenizer, labels, cfg.max_length, cfg.max_image_tokens, processor)


def save_backbone(model: MultimodalBackbone, encoder: PostEncoder, cfg: BackboneConfig, directory: Path) -> None:
    """Write configs, tokenizer and image processor so that :func:`load_backbone` needs no original files."""
    directory.mkdir(parents=True, exist_ok=True)
    model.text_encoder.config.save_pretrained(directory / "encoder")
    encoder.tokenizer.save_pretrained(directory / "encoder")
    if model.image_encoder is not None:
        model.image_encoder.config.save_pretrained(directory / "image_encoder")
        encoder.image_processor.save_pretrained(directory / "image_encoder")
    meta = {"labels": model.labels, "backbone": cfg.model_dump(mode="json")}
    (directory / BACKBONE_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_backbone(directory: str | Path, device: str | torch.device = "cpu") -> tuple[MultimodalBackbone, PostEncoder]:
    """A backbone saved by :func:`save_backbone` with its best weights, in eval mode on ``device``."""
    from transformers import AutoConfig, AutoTokenizer

    directory = Path(directory)
    meta = json.loads((directory / BACKBONE_META).read_text(encoding="utf-8"))
    cfg, labels = BackboneConfig.model_validate(meta["backbone"]), meta["labels"]
    image_encoder, processor = None, None
    if cfg.image_source == "clip":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        image_encoder = CLIPVisionModel(CLIPVisionConfig.from_pretrained(directory / "image_encoder"))
        processor = CLIPImageProcessor.from_pretrained(directory / "image_encoder")
    text_encoder = _text_encoder("", False, AutoConfig.from_pretrained(directory / "encoder"))
    model = _assemble(cfg, labels, text_encoder, image_encoder)
    model.load_state_dict(torch.load(directory / BEST_WEIGHTS, map_location="cpu"))
    tokenizer = AutoTokenizer.from_pretrained(directory / "encoder")
    return model.to(device).eval(), PostEncoder(tokenizer, labels, cfg.max_length, cfg.max_image_tokens, processor)


def _batches_in_order(encoded: Sequence[EncodedPost], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].sentence.input_ids))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def predict_posts(model: MultimodalBackbone, encoder: PostEncoder, encoded: Sequence[EncodedPost],
                  device: torch.device, bf16: bool, batch_size: int = 32) -> list[list[str]]:
    """Tags of every encoded post, in input order."""
    model.eval()
    out: list[list[str]] = [[] for _ in encoded]
    with torch.inference_mode():
        for chunk in _batches_in_order(encoded, batch_size):
            batch = encoder.collate([encoded[i] for i in chunk]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                for i, tags in zip(chunk, model.predict(batch)):
                    out[i] = tags
    return out


def embed_posts(model: MultimodalBackbone, encoder: PostEncoder, posts: Sequence[Sample], device: torch.device,
                batch_size: int = 64, pooling: str = "mean") -> np.ndarray:
    """MSEA features: one L2-normalised float32 row of pooled H per post, in input order (see ``fused_embedding``)."""
    model.eval()
    encoded = [encoder.encode(post) for post in posts]
    out = np.zeros((len(posts), model.text_encoder.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for chunk in _batches_in_order(encoded, batch_size):
            batch = encoder.collate([encoded[i] for i in chunk]).to(device)
            out[chunk] = model.fused_embedding(batch, pooling).cpu().numpy()
    return out


def _phase_schedule(s1_steps: int, total_steps: int, warmup_ratio: float) -> tuple[Callable, Callable]:
    """LR multipliers by step: the head over all steps; the encoders 0 in S1, then their own warm-up and decay."""

    def linear(step: int, steps: int) -> float:
        return linear_warmup_decay(int(warmup_ratio * steps), steps, shift=1)(step)

    return (lambda step: linear(step, total_steps),
            lambda step: 0.0 if step < s1_steps else linear(step - s1_steps, total_steps - s1_steps))


def train_backbone(
    train: Sequence[Sample], dev: Sequence[Sample], labels: list[str], cfg: BackboneConfig, train_cfg: TrainConfig,
    work_dir: Path, log: Callable[[str], None] = print,
) -> TrainResult:
    """Train in two phases (S1 encoders frozen, S2 fine-tuned), keep the best dev-F1 weights in ``work_dir``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    threads, device, bf16 = prepare_runtime(train_cfg)
    set_seed(train_cfg.seed)
    model, encoder = build_backbone(cfg, labels)
    model.to(device)
    save_backbone(model, encoder, cfg, work_dir)
    train_enc, dev_enc = [encoder.encode(p) for p in train], [encoder.encode(p) for p in dev]
    with_image = sum(e.present for e in train_enc)
    log(f"device={device} bf16={bf16} threads={threads} train={len(train_enc)} (with image {with_image}) "
        f"dev={len(dev_enc)} image_source={cfg.image_source} unreadable_images={len(encoder.unreadable_images)}")
    for path, reason in encoder.unreadable_images[:20]:
        log(f"unreadable image {path}: {reason}")

    epochs = cfg.s1_epochs + cfg.s2_epochs
    steps_per_epoch = max(1, math.ceil(len(train_enc) / train_cfg.batch_size))
    encoder_ids = {id(p) for p in model.encoder_parameters()}
    named = list(model.named_parameters())
    head_groups = param_groups([(n, p) for n, p in named if id(p) not in encoder_ids], cfg.lr_head, train_cfg.weight_decay)
    encoder_groups = param_groups([(n, p) for n, p in named if id(p) in encoder_ids], cfg.lr_encoder, train_cfg.weight_decay)
    optimizer = torch.optim.AdamW(head_groups + encoder_groups)
    total_params = sum(p.numel() for p in model.parameters())
    trainable = total_params if cfg.s2_epochs else total_params - sum(p.numel() for p in model.encoder_parameters())
    log(f"parameters: {total_params:,}, trained in S2 (S1 without the encoders): {trainable:,}")
    head_lr, encoder_lr = _phase_schedule(cfg.s1_epochs * steps_per_epoch, epochs * steps_per_epoch, train_cfg.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [head_lr, head_lr, encoder_lr, encoder_lr])

    checkpoint_path = work_dir / CHECKPOINT
    state = resume_state(checkpoint_path, model, optimizer, scheduler, log)
    lengths = [len(e.sentence.input_ids) + len(e.image_ids) for e in train_enc]
    rng = replayed_batch_rng(lengths, train_cfg, state["epoch"])

    while state["epoch"] < epochs and state["stale"] < train_cfg.patience:
        epoch = state["epoch"] + 1
        phase = "S1" if epoch <= cfg.s1_epochs else "S2"
        model.freeze_encoders(phase == "S1")
        model.train()
        started, sums = time.perf_counter(), {"total": 0.0, "crf": 0.0, "align": 0.0, "infonce": 0.0}
        batches = bucketed_batches(lengths, train_cfg.batch_size, train_cfg.bucket_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch} ({phase})", unit="batch", mininterval=5, disable=None)
        for step, indices in enumerate(bar, 1):
            batch = encoder.collate([train_enc[i] for i in indices]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                parts = model.losses(batch)
            optimizer.zero_grad(set_to_none=True)
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], train_cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            for name in sums:
                sums[name] += float(parts[name].detach())
            bar.set_postfix(loss=f"{sums['total'] / step:.3f}")
        epoch_seconds = time.perf_counter() - started
        dev_scores = score_entities([p.tags for p in dev], predict_posts(model, encoder, dev_enc, device, bf16))
        state["train_seconds"] += epoch_seconds
        record = {"epoch": epoch, "phase": phase, **{f"loss_{k}": v / max(len(batches), 1) for k, v in sums.items()},
                  "dev_f1": dev_scores.micro.f1, "dev_precision": dev_scores.micro.precision,
                  "dev_recall": dev_scores.micro.recall, "epoch_seconds": round(epoch_seconds, 2),
                  "sentences_per_second": round(len(train_enc) / epoch_seconds, 2)}
        state["history"].append(record)
        log(json.dumps(record))
        if record["dev_f1"] > state["best_f1"]:
            state.update(best_f1=record["dev_f1"], best_epoch=epoch, stale=0)
            tmp = work_dir / (BEST_WEIGHTS + ".tmp")
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, work_dir / BEST_WEIGHTS)
        elif phase == "S2":
            state["stale"] += 1
        state["epoch"] = epoch
        save_checkpoint(checkpoint_path, model, optimizer, scheduler, state)
    checkpoint_path.unlink(missing_ok=True)
    sentences = len(train_enc) * len(state["history"])
    result = TrainResult(
        best_dev_f1=state["best_f1"], best_epoch=state["best_epoch"], epochs_run=state["epoch"],
        train_seconds=round(state["train_seconds"], 2), train_sentences=sentences,
        sentences_per_second=round(sentences / max(state["train_seconds"], 1e-9), 2), trainable_parameters=trainable,
        total_parameters=total_params, history=state["history"])
    (work_dir / "history.json").write_text(json.dumps(result.__dict__, indent=2), encoding="utf-8")
    return result


def post_row(sample: Sample) -> dict[str, Any]:
    """A sample as a row of the backbone's ``{split}.posts.jsonl``: what the backbone reads of it."""
    return {"id": sample.id, "image_id": sample.image_id, "tokens": sample.tokens, "tags": sample.tags,
            "image_text": sample.image_text, "image_path": sample.image_path}


def read_posts(path: str | Path) -> list[Sample]:
    """The samples of a file of :func:`post_row` rows.

    A row holds the image text already joined; it comes back as the caption, whose image text is itself.
    """
    return [Sample(r["id"], r["tokens"], r["tags"], r.get("image_id"), caption=r["image_text"], image_path=r.get("image_path"))
            for r in read_jsonl(path)]
