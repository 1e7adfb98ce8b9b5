"""The training step's speed settings do what they say (issue 15): which kernels run, and equal numerics where promised."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import profile

from engine.taggers import build_tagger
from mner.config import ModelConfig
from models.encoding import SentenceEncoder, collate

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def attention_kernels(model_cfg: ModelConfig) -> set[str]:
    """The attention operators one training forward and backward of a small batch runs."""
    torch.manual_seed(0)
    tagger, tokenizer = build_tagger(model_cfg, LABELS)
    encoder = SentenceEncoder(tokenizer, 64, {l: i for i, l in enumerate(LABELS)})
    batch = collate([encoder.encode(["Obama", "in", "Paris"], ["B-PER", "O", "B-LOC"], "Barack Obama is a politician"),
                     encoder.encode(["Berlin"], ["B-LOC"], "a city")])
    tagger.train()
    with profile() as prof:
        tagger.loss(batch).backward()
    return {e.key for e in prof.key_averages() if "attention" in e.key}


def test_attention_dropout_setting_reaches_the_encoder_config() -> None:
    pretrained = build_tagger(ModelConfig(attention_dropout=None), LABELS)[0].encoder.config
    assert pretrained.attention_probs_dropout_prob == pytest.approx(0.1)  # MiniLM's own
    chosen = build_tagger(ModelConfig(attention_dropout=0.05), LABELS)[0].encoder.config
    assert chosen.attention_probs_dropout_prob == pytest.approx(0.05)


def test_default_training_step_uses_the_fused_cpu_attention_kernel() -> None:
    fused = "aten::_scaled_dot_product_flash_attention_for_cpu"
    assert fused in attention_kernels(ModelConfig())  # the default: attention_dropout 0
    unfused = attention_kernels(ModelConfig(attention_dropout=None))
    assert fused not in unfused and "aten::_scaled_dot_product_attention_math" in unfused
