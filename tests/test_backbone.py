"""The multimodal backbone: shapes and masks, losses and gradients by phase, the CLIP path, the fused embedder.

The text encoder is a tiny random BERT built from a config (with the offline MiniLM tokenizer) where
only shapes and gradients matter, and the real offline MiniLM where training and retrieval run. The
CLIP path uses a tiny random-weight CLIP vision model and image processor saved to a temp dir.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.backbone_training import (
    PostEncoder,
    build_backbone,
    embed_posts,
    load_backbone,
    predict_posts,
    train_backbone,
)
from mner import formats, pgim
from mner.config import BackboneConfig, TrainConfig
from mner.samples import Sample
from models.backbone import MultimodalBackbone

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-OTHER"]


@pytest.fixture(scope="module")
def tokenizer(minilm_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def tiny_backbone(tokenizer) -> MultimodalBackbone:
    """A backbone on a 2-layer random BERT (hidden 32) reading image text."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, attn_implementation="sdpa")
    return MultimodalBackbone(BertModel(config, add_pooling_layer=False), LABELS, num_queries=4, heads=4,
                              dropout=0.0, align_lambda=0.5, infonce_lambda=0.5)


def sample_posts(split: str, limit: int) -> list[Sample]:
    """Posts of the demo sample with their BLIP-2 captions as image text."""
    captions = pgim.read_captions(SAMPLE / "blip2_captions.txt")
    conll = formats.read_conll(SAMPLE / f"{split}.txt", repair=True)
    return [replace(s, caption=captions.get(s.image_id or "", ""), image_path=str(SAMPLE / "images" / f"{s.image_id}.jpg"))
            for s in conll.sentences[:limit]]


def test_ragged_batch_shapes_and_padding_do_not_leak(tiny_backbone, tokenizer) -> None:
    encoder = PostEncoder(tokenizer, LABELS, 64, 32)
    short = Sample("1", ["Obama", "in", "Paris"], ["B-PER", "O", "B-LOC"], caption="a man on a stage")
    long = Sample("2", "RT @user : the Golden State Warriors win again in Oakland tonight".split(),
                  ["O"] * 12, caption="a basketball player with a ball in a crowded arena at night")
    bare = Sample("3", ["no", "image", "here"], ["O", "O", "O"], caption="")
    tiny_backbone.eval()
    batch = encoder.collate([encoder.encode(p) for p in (short, long, bare)])
    assert batch.image_present.tolist() == [True, True, False]
    out = tiny_backbone.features(batch)
    assert out["fused"].shape == (3, 12, 32)
    assert out["text_pooled"].shape == out["image_pooled"].shape == (3, 32)
    assert torch.isfinite(out["fused"]).all()
    alone = tiny_backbone.features(encoder.collate([encoder.encode(short)]))["fused"]
    torch.testing.assert_close(out["fused"][0, :3], alone[0], atol=1e-5, rtol=1e-4)
    assert [len(t) for t in tiny_backbone.predict(batch)] == [3, 12, 3]
    for pooling in ("mean", "entity"):
        vectors = tiny_backbone.fused_embedding(batch, pooling)
        torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(3))
        alone = tiny_backbone.fused_embedding(encoder.collate([encoder.encode(short)]), pooling)
        torch.testing.assert_close(vectors[0], alone[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown pooling"):
        tiny_backbone.fused_embedding(batch, "max")


def test_losses_finite_and_gradients_follow_the_phase(tiny_backbone, tokenizer) -> None:
    encoder = PostEncoder(tokenizer, LABELS, 64, 32)
    batch = encoder.collate([encoder.encode(p) for p in sample_posts("train", 6)])
    tiny_backbone.train()
    for phase in ("S1", "S2"):
        tiny_backbone.zero_grad(set_to_none=True)
        tiny_backbone.freeze_encoders(phase == "S1")
        parts = tiny_backbone.losses(batch)
        assert all(torch.isfinite(v) for v in parts.values()), parts
        assert parts["align"] > 0 and parts["infonce"] > 0
        parts["total"].backward()
        encoder_grads = [p.grad for p in tiny_backbone.encoder_parameters()]
        if phase == "S1":
            assert all(g is None for g in encoder_grads)
        else:
            assert any(g is not None and g.abs().sum() > 0 for g in encoder_grads)
        for module in (tiny_backbone.resampler, tiny_backbone.cross_blocks, tiny_backbone.fusion,
                       tiny_backbone.classifier, tiny_backbone.text_head, tiny_backbone.image_head):
            grads = [p.grad for p in module.parameters()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads), (phase, module)
    # InfoNCE reaches both projection heads; alignment pulls only the image side (no collapse to one point)
    tiny_backbone.zero_grad(set_to_none=True)
    tiny_backbone.losses(batch)["infonce"].backward()
    assert tiny_backbone.image_head.weight.grad.abs().sum() > 0 and tiny_backbone.text_head.weight.grad.abs().sum() > 0
    tiny_backbone.zero_grad(set_to_none=True)
    tiny_backbone.losses(batch)["align"].backward()
    assert tiny_backbone.image_head.weight.grad.abs().sum() > 0 and tiny_backbone.text_head.weight.grad is None
    tiny_backbone.freeze_encoders(False)


def test_one_post_with_an_image_gives_no_infonce(tiny_backbone, tokenizer) -> None:
    encoder = PostEncoder(tokenizer, LABELS, 64, 32)
    posts = [Sample("a", ["a"], ["O"], caption="a photo"), Sample("b", ["b"], ["O"], caption="")]
    parts = tiny_backbone.losses(encoder.collate([encoder.encode(p) for p in posts]))
    assert parts["infonce"] == 0 and torch.isfinite(parts["total"])


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    """A random-weight CLIP vision model (image 32 px, patch 8) and its processor, saved to a temp dir."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


@pytest.mark.slow
def test_clip_backbone_trains_saves_reloads_and_predicts_the_same(tiny_clip: str, tmp_path: Path) -> None:
    posts = sample_posts("train", 12)
    posts[1].image_path = str(tmp_path / "missing.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    posts[2].image_path = str(tmp_path / "broken.jpg")
    cfg = BackboneConfig(image_source="clip", clip_model=tiny_clip, s1_epochs=1, s2_epochs=1, max_length=64)
    lines: list[str] = []
    dev = sample_posts("valid", 6)
    result = train_backbone(posts, dev, LABELS, cfg,
                            TrainConfig(batch_size=4, precision="fp32", num_threads=1), tmp_path / "model", lines.append)
    assert [h["phase"] for h in result.history] == ["S1", "S2"]
    unreadable = sum(1 for p in posts + dev if not Path(p.image_path).is_file()) + 1  # + broken.jpg
    assert any(f"unreadable_images={unreadable}" in line for line in lines), lines[:3]
    assert any("broken.jpg" in line and "not an image" in line for line in lines)
    assert result.trainable_parameters == result.total_parameters > 0

    model, encoder = load_backbone(tmp_path / "model")
    assert model.image_encoder is not None
    built, _ = build_backbone(cfg, LABELS)
    built.load_state_dict(torch.load(tmp_path / "model" / "model.pt"))
    built.eval()
    queries = sample_posts("test", 5)
    encoded = [encoder.encode(p) for p in queries]
    batch = encoder.collate(encoded)
    assert batch.pixel_values.shape == (5, 3, 32, 32)
    cpu = torch.device("cpu")
    assert predict_posts(model, encoder, encoded, cpu, False) == predict_posts(built, encoder, encoded, cpu, False)
    vectors = embed_posts(model, encoder, queries, cpu)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_fused_embedder_retrieves_normalised_and_never_the_sample_itself(tmp_path: Path) -> None:
    from engine.retrieval import EmbedderOptions, make_embedder, retrieve

    cfg = BackboneConfig(s1_epochs=1, s2_epochs=0)
    train_backbone(sample_posts("train", 24), sample_posts("valid", 8), LABELS, cfg,
                   TrainConfig(batch_size=8, precision="fp32", num_threads=1), tmp_path / "model", lambda _: None)
    captions = pgim.read_captions(SAMPLE / "blip2_captions.txt")
    conll = formats.read_conll(SAMPLE / "train.txt", repair=True)
    items = [replace(s, tags=None, caption=captions.get(s.image_id, "")) for s in conll.sentences[:30]]
    for pooling in ("entity", "mean"):
        embedder = make_embedder("fused", EmbedderOptions(backbone_dir=str(tmp_path / "model"), pooling=pooling))
        vectors = embedder.embed(items)
        assert vectors.shape == (30, 384) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    _, hits = retrieve(items, items, embedder, top_n=5)
    assert all(len(h) == 5 for h in hits)
    assert all(item.image_id not in {h["image_id"] for h in hit} for item, hit in zip(items, hits))
    with pytest.raises(ValueError, match="needs a trained backbone"):
        make_embedder("fused", EmbedderOptions())
