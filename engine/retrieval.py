"""Retrieval of similar hand-written examples (PGIM's MSEA step) with FAISS.

Every tweet (the query: tweet text, its image caption and OCR text where given) and every
manual example (the train tweet with the example's image id, with its caption and OCR) is
embedded by a pluggable embedder; a ``faiss.IndexFlatIP`` over L2-normalised float32 vectors
gives each query its top-N examples by cosine similarity. A query never gets itself back: the
example whose image id equals the query's is filtered out of the N+1 nearest.

Embedders (``EMBEDDERS``, extended with :func:`register_embedder`): ``text`` (mean-pooled
sentence embedding from a transformers encoder), ``random`` (seeded baseline) and ``fused``
(PGIM's MSEA: the pooled fused text-image features H of the trained multimodal backbone of the
``backbone`` stage, reading the caption and OCR text, or the image file through CLIP). A factory
receives :class:`EmbedderOptions` and returns an object whose ``embed(items)`` sees each
:class:`~mner.samples.Sample`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import faiss
import numpy as np

from mner.config import DEFAULT_ENCODER, DEFAULT_FUSED_POOLING
from mner.pgim import ManualExample, read_manual_examples
from mner.samples import Sample, read_jsonl, read_samples


@dataclass(frozen=True)
class EmbedderOptions:
    """What an embedder factory may use; new embedders add their fields here."""

    encoder: str = DEFAULT_ENCODER
    seed: int = 42
    batch_size: int = 64
    max_length: int = 256
    device: str = "auto"
    backbone_dir: str | None = None  # fused: a trained backbone (output of the backbone stage)
    images: str | None = None  # fused with a CLIP backbone: folder of <image_id>.jpg
    pooling: str = DEFAULT_FUSED_POOLING  # fused: "mean" or "entity" (see MultimodalBackbone.fused_embedding)


class Embedder(Protocol):
    """Turns items into one L2-normalised float32 row each."""

    def embed(self, items: Sequence[Sample]) -> np.ndarray:
        """An ``(len(items), dim)`` float32 array with unit-norm rows."""
        ...


EMBEDDERS: dict[str, Callable[[EmbedderOptions], Embedder]] = {}


def register_embedder(name: str) -> Callable[[Callable[[EmbedderOptions], Embedder]], Callable[[EmbedderOptions], Embedder]]:
    """Decorator registering an embedder factory under ``name`` (used by the ``embedder`` config)."""

    def decorate(factory: Callable[[EmbedderOptions], Embedder]) -> Callable[[EmbedderOptions], Embedder]:
        EMBEDDERS[name] = factory
        return factory

    return decorate


def make_embedder(name: str, options: EmbedderOptions | None = None) -> Embedder:
    """The registered embedder ``name``; an unknown name raises, listing the known ones."""
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedder {name!r}: expected one of {sorted(EMBEDDERS)}")
    return EMBEDDERS[name](options or EmbedderOptions())


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as contiguous float32."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class RandomEmbedder:
    """Baseline: a Gaussian vector seeded by (seed, query text), so equal inputs embed equally."""

    def __init__(self, options: EmbedderOptions, dim: int = 64) -> None:
        self.seed, self.dim = options.seed, dim

    def embed(self, items: Sequence[Sample]) -> np.ndarray:
        """One seeded random unit vector per item."""
        rows = np.zeros((len(items), self.dim), dtype=np.float32)
        for i, item in enumerate(items):
            digest = hashlib.sha256(f"{self.seed}\0{item.query_text}".encode("utf-8")).digest()
            rows[i] = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(self.dim)
        return normalise(rows)


class TextEmbedder:
    """Mean-pooled token states of a transformers encoder (sentence-transformers style)."""

    def __init__(self, options: EmbedderOptions) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from engine.runtime import pick_device, resolve_encoder

        path = resolve_encoder(options.encoder)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.device = pick_device(options.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.batch_size, self.max_length, self._torch = options.batch_size, options.max_length, torch

    def embed(self, items: Sequence[Sample]) -> np.ndarray:
        """Batches of texts (sorted by length for speed), pooled over the attention mask."""
        texts = [item.query_text for item in items]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        dim = self.model.config.hidden_size
        out = np.zeros((len(texts), dim), dtype=np.float32)
        torch = self._torch
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                encoded = self.tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                         max_length=self.max_length, return_tensors="pt").to(self.device)
                states = self.model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[batch] = pooled.float().cpu().numpy()
        return normalise(out)


class FusedEmbedder:
    """Mean-pooled fused features H of a trained multimodal backbone (L2-normalised)."""

    def __init__(self, options: EmbedderOptions) -> None:
        from engine.backbone_training import load_backbone
        from engine.runtime import pick_device

        if not options.backbone_dir:
            raise ValueError("the fused embedder needs a trained backbone (backbone_dir); run the backbone stage")
        self.device = pick_device(options.device)
        self.model, self.encoder = load_backbone(options.backbone_dir, self.device)
        self.images, self.batch_size, self.pooling = options.images, options.batch_size, options.pooling

    def embed(self, items: Sequence[Sample]) -> np.ndarray:
        """Each item's words, caption + OCR (or image file) through the backbone, pooled over the words."""
        from engine.backbone_training import embed_posts

        def image_path(item: Sample) -> str | None:
            return str(Path(self.images) / f"{item.image_id}.jpg") if self.images and item.image_id else None

        # the words as the text splits them: a CoNLL token may hold a space
        posts = [replace(item, tokens=item.text.split(), tags=None, image_path=image_path(item)) for item in items]
        return normalise(embed_posts(self.model, self.encoder, posts, self.device, self.batch_size, self.pooling))


register_embedder("random")(RandomEmbedder)
register_embedder("text")(TextEmbedder)
register_embedder("fused")(FusedEmbedder)


def build_index(vectors: np.ndarray) -> faiss.IndexFlatIP:
    """An exact inner-product index over ``vectors`` (unit rows, so scores are cosines)."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(normalise(vectors))
    return index


def search(index: faiss.Index, queries: np.ndarray, query_image_ids: Sequence[str | None],
           example_ids: Sequence[str], top_n: int) -> list[list[dict[str, Any]]]:
    """Top ``top_n`` examples per query as ``{"image_id", "score"}``, best first, never the query's own image."""
    if len(queries) == 0 or index.ntotal == 0:
        return [[] for _ in range(len(queries))]
    scores, ids = index.search(normalise(queries), min(top_n + 1, index.ntotal))
    results = []
    for row_scores, row_ids, own in zip(scores, ids, query_image_ids):
        found = [{"image_id": example_ids[j], "score": round(float(s), 6)}
                 for s, j in zip(row_scores, row_ids) if j >= 0 and example_ids[j] != own]
        results.append(found[:top_n])
    return results


def retrieve(queries: Sequence[Sample], examples: Sequence[Sample], embedder: Embedder,
             top_n: int) -> tuple[faiss.IndexFlatIP, list[list[dict[str, Any]]]]:
    """Embed examples and queries, index the examples, and return (index, top-N per query)."""
    if not examples:
        raise ValueError("no examples to retrieve from")
    index = build_index(embedder.embed(examples))
    hits = search(index, embedder.embed(queries), [q.image_id for q in queries], [e.image_id or "" for e in examples], top_n)
    return index, hits


def side_texts(output: dict[str, Any] | None, split: str, field: str, samples: Sequence[Sample]) -> list[str]:
    """The ``field`` of a merged per-sample output (captions, OCR), aligned to ``samples`` of ``split``.

    ``None`` gives "" everywhere; a row whose ``error`` is set gives "" (its failure is recorded
    in that output). Rows must match ``samples`` one to one by id, else ValueError naming file:line.
    """
    if output is None:
        return [""] * len(samples)
    path = Path(output["dir"]) / f"{split}.jsonl"
    side = read_jsonl(path)
    if len(side) != len(samples):
        raise ValueError(f"{path}: {len(side)} rows for {len(samples)} samples of split {split!r}")
    texts = []
    for number, (sample, other) in enumerate(zip(samples, side), 1):
        if other.get("id") != sample.id:
            raise ValueError(f"{path}:{number}: id {other.get('id')!r} where the split has {sample.id!r}")
        texts.append("" if other.get("error") else str(other.get(field) or ""))
    return texts


def split_samples(data: dict[str, Any], split: str, captions: dict[str, Any] | None,
                  ocr: dict[str, Any] | None) -> list[Sample]:
    """The samples of one split of a ``load`` output, with the caption and OCR text of those outputs."""
    samples = read_samples(Path(data["dir"]) / f"{split}.jsonl")
    caps, texts = side_texts(captions, split, "caption", samples), side_texts(ocr, split, "text", samples)
    return [replace(s, caption=c, ocr=o) for s, c, o in zip(samples, caps, texts)]


def _id_line(path: Path, image_id: str) -> int:
    """Line number of ``image_id`` in an id/value pair file (0 if not found)."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if number % 2 == 1 and line.strip() == image_id:
            return number
    return 0


def example_items(examples: Sequence[ManualExample], train: Sequence[Sample], examples_path: str | Path) -> list[Sample]:
    """Each example as the train tweet with its image id; an example not in train raises, naming file:line."""
    by_image = {item.image_id: item for item in train if item.image_id}
    missing = [e.image_id for e in examples if e.image_id not in by_image]
    if missing:
        path = Path(examples_path)
        where = "; ".join(f"{path}:{_id_line(path, m)}: example {m}" for m in missing[:20])
        raise ValueError(f"{len(missing)} manual examples are not tweets of the train split: {where}")
    return [by_image[e.image_id] for e in examples]


def load_examples(sources: dict[str, str]) -> list[ManualExample]:
    """PGIM manual examples from ``sources["examples"]`` and ``sources["examples_entities"]``."""
    for name in ("examples", "examples_entities"):
        if not sources.get(name) or not Path(sources[name]).is_file():
            raise FileNotFoundError(f"sources.{name}: no such file {sources.get(name)!r}")
    return read_manual_examples(sources["examples"], sources["examples_entities"])
