"""The training step's speed settings do what they say (issue 15): which kernels run, and equal numerics where promised."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import profile
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from engine.taggers import build_tagger
from engine.training import adamw
from mner.config import ModelConfig
from models.attention import cpu_fp32_sdpa_forward
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


def test_zero_attention_dropout_uses_the_fused_cpu_attention_kernel() -> None:
    fused = "aten::_scaled_dot_product_flash_attention_for_cpu"
    assert fused in attention_kernels(ModelConfig(attention_dropout=0.0))
    unfused = attention_kernels(ModelConfig())  # the default: the encoder's own attention dropout
    assert fused not in unfused and "aten::_scaled_dot_product_attention_math" in unfused


def test_cpu_fp32_attention_upcasts_bf16_and_rounds_back() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 50, 16).to(torch.bfloat16) for _ in range(3))
    mask = torch.ones(2, 1, 50, 50, dtype=torch.bool)
    mask[1, ..., 30:] = False
    module = torch.nn.Module()
    module.is_causal = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = cpu_fp32_sdpa_forward(module, q, k, v, mask)
        in_bf16, _ = sdpa_attention_forward(module, q, k, v, mask)
    reference, _ = sdpa_attention_forward(module, q.float(), k.float(), v.float(), mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, reference.to(torch.bfloat16), rtol=0, atol=0)
    assert not torch.equal(in_bf16, out)  # so the check above can tell the two apart


def test_cpu_fp32_attention_leaves_fp32_training_unchanged() -> None:
    """Without autocast the tagger's loss and gradients do not depend on the setting."""
    results = []
    for fp32_attention in (True, False):
        torch.manual_seed(0)
        tagger, tokenizer = build_tagger(ModelConfig(cpu_fp32_attention=fp32_attention), LABELS)
        encoder = SentenceEncoder(tokenizer, 64, {l: i for i, l in enumerate(LABELS)})
        batch = collate([encoder.encode(["Obama", "in", "Paris"], ["B-PER", "O", "B-LOC"], "Barack Obama"),
                         encoder.encode(["Berlin"], ["B-LOC"], "a city in Germany")])
        tagger.eval()
        loss = tagger.loss(batch)
        loss.backward()
        results.append((loss.detach(), tagger.classifier.weight.grad.clone()))
    torch.testing.assert_close(results[0], results[1])


def test_fused_adamw_steps_like_the_unfused_one() -> None:
    torch.manual_seed(0)
    weights = [torch.randn(40, 30), torch.randn(30)]
    grads = [torch.randn_like(w) for w in weights]
    stepped = []
    for make in (lambda ps: adamw([{"params": ps, "weight_decay": 0.01}], torch.device("cpu"), lr=1e-2),
                 lambda ps: torch.optim.AdamW([{"params": ps, "weight_decay": 0.01}], lr=1e-2, foreach=False)):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        optimizer = make(params)
        for _ in range(3):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
        stepped.append([p.detach() for p in params])
    assert optimizer.defaults["fused"] is None  # the reference is the unfused for-loop
    torch.testing.assert_close(stepped[0], stepped[1])
    assert not torch.equal(stepped[0][0], weights[0])
    assert adamw([torch.nn.Parameter(torch.zeros(2))], torch.device("cpu")).defaults["fused"] is True
