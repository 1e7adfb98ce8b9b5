"""Tagger variants: the BiLSTM + self-attention head, LoRA on the encoder, and their save/load round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE
from transformers import AutoModel, AutoTokenizer

from engine.predict import predict_post
from engine.taggers import BEST_WEIGHTS, build_tagger, load_tagger, predict
from engine.training import train_tagger
from mner.config import LoraConfig, ModelConfig, PipelineConfig, TrainConfig
from mner.formats import read_conll
from mner.samples import Sample
from mner.tags import entity_types, label_list
from models.encoding import SentenceEncoder, collate
from models.heads import BiLstmAttentionHead
from models.tagger import KnowledgeTagger

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SHORT = ["Obama", "in", "Paris"]
LONG = ["Angela", "Merkel", "met", "Barack", "Obama", "in", "Berlin", "today"]


def test_head_ignores_padded_words() -> None:
    torch.manual_seed(0)
    head = BiLstmAttentionHead(input_dim=12, hidden=16, heads=4).eval()
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    words = torch.randn(2, 5, 12)
    noisy = words.clone()
    noisy[1, 2:] = 1e3 * torch.randn(3, 12)
    out, out_noisy, alone = head(words, mask), head(noisy, mask), head(words[1:, :2], mask[1:, :2])
    assert out.shape == (2, 5, head.output_dim) and torch.isfinite(out).all()
    torch.testing.assert_close(out[1, :2], alone[0])
    torch.testing.assert_close(out[1, :2], out_noisy[1, :2])
    torch.testing.assert_close(out[0], out_noisy[0])


def test_bilstm_attention_tagger_emissions_do_not_depend_on_batch_padding(minilm_path) -> None:
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(minilm_path, attn_implementation="sdpa", add_pooling_layer=False)
    tagger = KnowledgeTagger(encoder, LABELS, head="bilstm_attention", lstm_hidden=32, attention_heads=4)
    sentences = SentenceEncoder(AutoTokenizer.from_pretrained(minilm_path), 64, {l: i for i, l in enumerate(LABELS)})
    short = sentences.encode(SHORT, ["B-PER", "O", "B-LOC"])
    long = sentences.encode(LONG, ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O"])
    batch = collate([short, long])
    tagger.eval()
    with torch.no_grad():
        alone = tagger.emissions(collate([short]))
        together = tagger.emissions(batch)
    assert together.shape == (2, len(LONG), len(LABELS)) and torch.isfinite(together).all()
    torch.testing.assert_close(together[0, : len(SHORT)], alone[0], atol=1e-4, rtol=1e-4)
    tagger.train()
    loss = tagger.loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    head_grads = [p.grad for p in tagger.head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in head_grads)
    assert any(g.abs().sum() > 0 for g in head_grads)


def test_lora_leaves_only_the_adapters_of_the_encoder_trainable() -> None:
    tagger, _ = build_tagger(ModelConfig(lora=LoraConfig(rank=4, layers=(4, 5))), LABELS)
    encoder = {n: p for n, p in tagger.named_parameters() if n.startswith("encoder.")}
    trainable = {n for n, p in encoder.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(".layer.4." in n or ".layer.5." in n for n in trainable)
    assert len(trainable) == 2 * 2 * 3  # A and B, two layers, query/key/value
    assert all(p.requires_grad for n, p in tagger.named_parameters() if not n.startswith("encoder."))
    count = sum(p.numel() for p in tagger.parameters() if p.requires_grad)
    assert count < sum(p.numel() for p in tagger.parameters()) / 100


def _examples(n: int) -> list[Sample]:
    return read_conll(SAMPLE / "train.txt", repair=True).sentences[:n]


@pytest.mark.parametrize("model_cfg", [
    ModelConfig(max_length=64, lora=LoraConfig(rank=4)),
    ModelConfig(max_length=64, head="bilstm_attention", lstm_hidden=32, attention_heads=4),
], ids=["lora", "bilstm_attention"])
def test_trained_variant_loads_back_and_predicts_the_same(tmp_path: Path, model_cfg: ModelConfig) -> None:
    rows = _examples(16)
    labels = label_list(entity_types([t for r in rows for t in r.tags]))
    train_cfg = TrainConfig(epochs=1, batch_size=8, seed=3, precision="fp32", num_threads=1)
    train_tagger(rows, rows[:4], labels, model_cfg, train_cfg, tmp_path, False, lambda _line: None)
    history = json.loads((tmp_path / "history.json").read_text())
    assert 0 < history["trainable_parameters"] <= history["total_parameters"]
    weights = torch.load(tmp_path / BEST_WEIGHTS)
    if model_cfg.lora is not None:
        assert history["trainable_parameters"] < history["total_parameters"] / 100
        assert any("lora_B" in n and w.abs().sum() > 0 for n, w in weights.items())  # B starts at zero

    in_memory, _ = build_tagger(model_cfg, labels)
    in_memory.load_state_dict(weights)
    loaded, sentences = load_tagger(tmp_path)
    encoded = [sentences.encode(r.tokens) for r in _examples(24)[16:]]
    batch = collate(encoded)
    with torch.no_grad():
        torch.testing.assert_close(loaded.emissions(batch), in_memory.eval().emissions(batch))
    cpu = torch.device("cpu")
    assert predict(loaded, encoded, cpu, False) == predict(in_memory, encoded, cpu, False)
    answer = predict_post(tmp_path, " ".join(LONG), PipelineConfig())
    assert answer["tags"] == predict(in_memory, [sentences.encode(LONG)], cpu, False)[0]
