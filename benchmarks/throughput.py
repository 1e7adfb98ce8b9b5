"""Training throughput: our step vs a naive loop on the same 512 [T;Z] samples, in one process.

    python benchmarks/throughput.py [--config configs/twitter2015.yaml] [--samples 512] [--set model.KEY=VALUE ...]
                                    [--set train.compile_encoder=true]

Ours: word-level CRF, length-bucketed batches with dynamic padding, bf16 autocast where the CPU
or GPU has it. Naive: the same encoder with a linear layer and pytorch-crf over every sub-token,
every batch padded to max_length, shuffled order, fp32. Both run one pass over the samples
(batch 16) after two warm-up steps (which hold the compile of ``train.compile_encoder``), in a
process on the training worker's runtime (allocator and oneDNN cache of the ``train`` defaults);
sentences/s and the ratio are appended to benchmarks/results/throughput.jsonl.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Callable

import torch
from torch import nn

from harness import RESULTS_DIR, ROOT, append_rows, as_training_worker, parse_args, parse_overrides, provenance
from torchcrf import CRF as TorchCRF
from transformers import AutoModel, AutoTokenizer

from engine.runtime import pick_device, resolve_encoder, set_threads, use_bf16
from engine.taggers import bucketed_batches, build_tagger, compile_for_training
from engine.training import adamw
from mner.config import ModelConfig, TrainConfig, load_config
from mner.formats import read_conll
from mner.pgim import read_knowledge
from mner.tags import entity_types, label_list
from models.encoding import SentenceEncoder, collate

RESULTS = RESULTS_DIR / "throughput.jsonl"
BATCH = 16


def load_samples(config: str, n: int) -> list[tuple[list[str], list[str], str]]:
    """The first ``n`` train sentences with their PGIM knowledge."""
    cfg = load_config(config)
    sentences = read_conll(cfg.dataset.train, repair=True).sentences[:n]
    knowledge = read_knowledge(cfg.dataset.knowledge_train, sentences).knowledge
    return [(s.tokens, s.tags, k) for s, k in zip(sentences, knowledge)]


def our_step(
    samples, labels, device, model_cfg: ModelConfig | None = None, train_cfg: TrainConfig | None = None
) -> tuple[Callable[[list[int]], torch.Tensor], torch.optim.Optimizer, list[list[int]]]:
    """The project's training step on ``samples``: its loss function of a batch's indices, optimizer and batches."""
    model_cfg, train_cfg = model_cfg or ModelConfig(), train_cfg or TrainConfig()
    tagger, tokenizer = build_tagger(model_cfg, labels)
    tagger.to(device).train()
    compile_for_training(tagger, train_cfg.compile_encoder)
    bf16 = use_bf16(train_cfg.precision, device)
    encoder = SentenceEncoder(tokenizer, model_cfg.max_length, {label: i for i, label in enumerate(labels)})
    encoded = [encoder.encode(t, g, k) for t, g, k in samples]
    optimizer = adamw(tagger.parameters(), device, lr=5e-5)
    batches = bucketed_batches([len(e.input_ids) for e in encoded], BATCH, 50, random.Random(0))

    def loss(indices: list[int]) -> torch.Tensor:
        batch = collate([encoded[i] for i in indices]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return tagger.loss(batch)

    return loss, optimizer, batches


def ours(samples, labels, device, model_cfg: ModelConfig | None = None, train_cfg: TrainConfig | None = None) -> float:
    """Sentences/s of the project's training step."""
    loss, optimizer, batches = our_step(samples, labels, device, model_cfg, train_cfg)
    return timed_pass(loss, optimizer, batches, len(samples))


def train_step(loss_of, optimizer):
    """One optimiser step on the batch of sample ``indices``, as a function of those indices."""

    def step(indices: list[int]) -> None:
        loss = loss_of(indices)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def timed_pass(loss_of, optimizer, batches: list[list[int]], sentences: int) -> float:
    """Two warm-up steps, then one timed pass over ``batches``; returns sentences/s."""
    step = train_step(loss_of, optimizer)
    for indices in batches[:2]:
        step(indices)
    started = time.perf_counter()
    for indices in batches:
        step(indices)
    return sentences / (time.perf_counter() - started)


class NaiveTagger(nn.Module):
    """HF encoder + linear + pytorch-crf over all sub-tokens."""

    def __init__(self, path: str, num_labels: int) -> None:
        super().__init__()
        self.encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
        self.linear = nn.Linear(self.encoder.config.hidden_size, num_labels)
        self.crf = TorchCRF(num_labels, batch_first=True)

    def forward(self, input_ids, attention_mask, labels):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return -self.crf(self.linear(hidden), labels, mask=attention_mask.bool(), reduction="mean")


def naive(samples, labels, device, max_length: int) -> float:
    """Sentences/s of a plain loop: padding to max_length, no buckets, fp32."""
    path = resolve_encoder(ModelConfig().encoder)
    tokenizer = AutoTokenizer.from_pretrained(path)
    label_ids = {label: i for i, label in enumerate(labels)}
    enc = tokenizer([s[0] for s in samples], [s[2].split() for s in samples], is_split_into_words=True,
                    truncation="only_second", max_length=max_length, padding="max_length", return_tensors="pt")
    tags = torch.zeros_like(enc["input_ids"])
    for row, (_, gold, _) in enumerate(samples):
        for position, word in enumerate(enc.word_ids(row)):
            if word is not None and enc.sequence_ids(row)[position] == 0:
                tags[row, position] = label_ids[gold[word]]
    model = NaiveTagger(path, len(labels)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    order = list(range(len(samples)))
    random.Random(0).shuffle(order)
    batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]

    def loss(indices):
        return model(enc["input_ids"][indices].to(device), enc["attention_mask"][indices].to(device),
                     tags[indices].to(device))

    return timed_pass(loss, optimizer, batches, len(samples))


def main() -> None:
    """Measure both loops and append a result line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "twitter2015.yaml"))
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                        help="our step's model or train setting (YAML value), e.g. train.compile_encoder=true")
    args = parse_args(parser)
    settings = parse_overrides(args.set)
    unknown = [k for k in settings if not k.startswith(("model.", "train."))]
    if unknown:
        parser.error(f"--set {unknown[0]}: only model.KEY and train.KEY settings apply to the training step")
    overrides = {k.removeprefix("model."): v for k, v in settings.items() if k.startswith("model.")}
    train_overrides = {k.removeprefix("train."): v for k, v in settings.items() if k.startswith("train.")}
    runtime = as_training_worker()
    threads = set_threads(0)
    device = pick_device("auto")
    torch.manual_seed(0)
    samples = load_samples(args.config, args.samples)
    labels = label_list(entity_types([t for s in samples for t in s[1]]))
    max_length = ModelConfig().max_length
    ours_rate = ours(samples, labels, device, ModelConfig(**overrides), TrainConfig(**train_overrides))
    naive_rate = naive(samples, labels, device, max_length)
    row = {"samples": len(samples), "model_overrides": overrides, "train_overrides": train_overrides, "batch_size": BATCH,
           "max_length": max_length, "threads": threads,
           "ours_sentences_per_second": round(ours_rate, 2), "naive_sentences_per_second": round(naive_rate, 2),
           "ratio": round(ours_rate / naive_rate, 2), **runtime, **provenance()}
    append_rows(RESULTS, [row])
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
