"""The multimodal NER backbone used for MSEA: text encoder, image branch, resampler, cross-attention, gated fusion, CRF.

The text encoder reads ``[CLS] T [SEP]``; each word of T is its first sub-token's state. The image
branch gives a sequence of visual states from one of two sources: pixels through a CLIP vision
encoder, or "image as text", the caption and OCR text of the image read by the same text encoder.
A resampler turns the visual states into K learned-query tokens (a learned null token is always
among its keys, so a post without an image attends to something), cross-attention blocks let each
word attend to them, and a gated concatenation fuses word and visual context into H, the features
that MSEA pools for retrieval. A linear layer and the project's CRF tag H.

Losses: CRF negative log-likelihood + ``align_lambda`` x alignment (1 - cosine of each post's pooled
image projection and its pooled text projection, the text side held fixed) + ``infonce_lambda`` x
symmetric InfoNCE between those projections over the posts of a batch that have an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.crf import CRF
from models.encoding import SHAPES, Batch


@dataclass
class MultimodalBatch:
    """A text batch plus the image branch's input: image-text token ids or CLIP pixels."""

    text: Batch
    image_present: torch.Tensor  # [batch] bool: the post has an image (or image text)
    image_ids: torch.Tensor | None = None  # [batch, image tokens] (image as text)
    image_mask: torch.Tensor | None = None  # [batch, image tokens] bool
    pixel_values: torch.Tensor | None = None  # [batch, 3, H, W] (CLIP)

    def to(self, device: torch.device | str) -> "MultimodalBatch":
        """The same batch on ``device``."""
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return MultimodalBatch(self.text.to(device), move(self.image_present), move(self.image_ids),
                               move(self.image_mask), move(self.pixel_values))


class CrossAttention(nn.Module):
    """Multi-head attention of queries to keys through torch SDPA (flash/memory-efficient kernels on GPU)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``queries [B, Q, d]`` attend to ``keys [B, N, d]``; ``key_mask [B, N]`` is True where a key is real."""
        b, q, d = queries.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, self.heads, d // self.heads).transpose(1, 2)

        mask = key_mask[:, None, None, :] if key_mask is not None else None
        attended = F.scaled_dot_product_attention(
            split(self.query(queries)), split(self.key(keys)), split(self.value(keys)), attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0)
        return self.out(attended.transpose(1, 2).reshape(b, q, d))


class _FeedForward(nn.Sequential):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))


class CrossAttentionBlock(nn.Module):
    """Pre-norm block: queries attend to keys, then a feed-forward layer, both residual."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_k, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = CrossAttention(dim, heads, dropout)
        self.feed_forward = _FeedForward(dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Updated queries, same shape."""
        x = queries + self.dropout(self.attention(self.norm_q(queries), self.norm_k(keys), key_mask))
        return x + self.dropout(self.feed_forward(self.norm_ff(x)))


class VisualResampler(nn.Module):
    """K learned queries attend to the visual states (plus a learned null token) -> ``[B, K, d]``."""

    def __init__(self, dim: int, num_queries: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.null = nn.Parameter(torch.zeros(1, 1, dim))
        self.block = CrossAttentionBlock(dim, heads, dropout)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``states [B, N, d]`` with ``mask [B, N]`` (True = real) -> K visual tokens per post."""
        b = states.size(0)
        keys = torch.cat([self.null.expand(b, -1, -1).to(states.dtype), states], dim=1)
        key_mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        return self.block(self.queries.unsqueeze(0).expand(b, -1, -1).to(states.dtype), keys, key_mask)


class GatedFusion(nn.Module):
    """``W [t ; g * v]`` with the gate ``g = sigmoid(W_g [t ; v])``, back to the hidden size."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dim, dim)
        self.out = nn.Linear(2 * dim, dim)

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Fused features of the same shape as ``text``."""
        gate = torch.sigmoid(self.gate(torch.cat([text, visual], dim=-1)))
        return self.out(torch.cat([text, gate * visual], dim=-1))


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``states [B, N, d]`` over the positions where ``mask [B, N]`` is True."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class MultimodalBackbone(nn.Module):
    """Text encoder + image branch + resampler + cross-attention + gated fusion + linear + CRF."""

    def __init__(
        self,
        text_encoder: nn.Module,
        labels: list[str],
        image_encoder: nn.Module | None = None,
        num_queries: int = 8,
        cross_layers: int = 1,
        heads: int = 4,
        dropout: float = 0.1,
        shape_features: bool = True,
        shape_dim: int = 32,
        projection_dim: int = 128,
        temperature: float = 0.07,
        align_lambda: float = 0.1,
        infonce_lambda: float = 0.1,
        constrained_decoding: bool = True,
    ) -> None:
        super().__init__()
        self.text_encoder, self.image_encoder = text_encoder, image_encoder
        self.labels = list(labels)
        dim = text_encoder.config.hidden_size
        visual_dim = image_encoder.config.hidden_size if image_encoder is not None else dim
        self.use_token_types = getattr(text_encoder.config, "type_vocab_size", 0) >= 2
        self.visual_projection = nn.Linear(visual_dim, dim)
        self.resampler = VisualResampler(dim, num_queries, heads, dropout)
        self.cross_blocks = nn.ModuleList(CrossAttentionBlock(dim, heads, dropout) for _ in range(cross_layers))
        self.fusion = GatedFusion(dim)
        self.shape_embedding = nn.Embedding(len(SHAPES), shape_dim, padding_idx=0) if shape_features else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim + (shape_dim if shape_features else 0), len(labels))
        self.crf = CRF(len(labels), batch_first=True)
        if constrained_decoding:
            self.crf.constrain(self.labels)
        self.text_head = nn.Linear(dim, projection_dim)
        self.image_head = nn.Linear(dim, projection_dim)
        self.temperature, self.align_lambda, self.infonce_lambda = temperature, align_lambda, infonce_lambda

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The pretrained encoders' parameters (frozen in phase S1, a lower learning rate in S2)."""
        encoders = [self.text_encoder] + ([self.image_encoder] if self.image_encoder is not None else [])
        return [p for module in encoders for p in module.parameters()]

    def freeze_encoders(self, frozen: bool) -> None:
        """Freeze (S1) or unfreeze (S2) the pretrained encoders."""
        for p in self.encoder_parameters():
            p.requires_grad_(not frozen)

    def _encode_text(self, ids: torch.Tensor, mask: torch.Tensor, type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"input_ids": ids, "attention_mask": mask.long()}
        if self.use_token_types:
            kwargs["token_type_ids"] = type_ids if type_ids is not None else torch.zeros_like(ids)
        return self.text_encoder(**kwargs).last_hidden_state

    def visual_states(self, batch: MultimodalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Visual states ``[B, N, d]`` and their mask from pixels (CLIP) or image text; absent images masked out."""
        present = batch.image_present
        if self.image_encoder is not None:
            if batch.pixel_values is None:
                raise ValueError("this backbone reads pixels: the batch has no pixel_values")
            states = self.image_encoder(pixel_values=batch.pixel_values).last_hidden_state
            mask = present[:, None].expand(-1, states.size(1))
        else:
            if batch.image_ids is None or batch.image_mask is None:
                raise ValueError("this backbone reads image text: the batch has no image_ids")
            states = self._encode_text(batch.image_ids, batch.image_mask)
            mask = batch.image_mask & present[:, None]
        return self.visual_projection(states), mask

    def features(self, batch: MultimodalBatch) -> dict[str, torch.Tensor]:
        """Fused word features H ``[B, W, d]`` plus the pooled text and image representations."""
        text = batch.text
        hidden = self._encode_text(text.input_ids, text.attention_mask, text.token_type_ids)
        index = text.word_starts.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        words = hidden.gather(1, index)
        visual = self.resampler(*self.visual_states(batch))
        context = words
        for block in self.cross_blocks:
            context = block(context, visual)
        fused = self.fusion(words, context)
        return {"fused": fused, "text_pooled": masked_mean(words, text.word_mask), "image_pooled": visual.mean(1)}

    def _emissions(self, batch: MultimodalBatch, fused: torch.Tensor) -> torch.Tensor:
        if self.shape_embedding is not None:
            fused = torch.cat([fused, self.shape_embedding(batch.text.shapes).to(fused.dtype)], dim=-1)
        return self.classifier(self.dropout(fused)).float()

    def losses(self, batch: MultimodalBatch) -> dict[str, torch.Tensor]:
        """``total`` and its parts ``crf``, ``align``, ``infonce`` (each a scalar, averaged over the batch)."""
        if batch.text.labels is None:
            raise ValueError("losses() needs a batch with labels")
        out = self.features(batch)
        crf = -self.crf(self._emissions(batch, out["fused"]), batch.text.labels, mask=batch.text.word_mask, reduction="mean")
        present = batch.image_present
        text = F.normalize(self.text_head(out["text_pooled"][present]).float(), dim=-1)
        image = F.normalize(self.image_head(out["image_pooled"][present]).float(), dim=-1)
        zero = crf.new_zeros(())
        # the text side is detached: pulling both sides together would let them meet by collapsing to
        # one point, where InfoNCE has no gradient left; this way InfoNCE alone shapes the text side
        align = (1.0 - (text.detach() * image).sum(-1)).mean() if len(text) else zero
        if len(text) >= 2:
            logits = text @ image.T / self.temperature
            target = torch.arange(len(text), device=logits.device)
            infonce = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        else:
            infonce = zero
        total = crf + self.align_lambda * align + self.infonce_lambda * infonce
        return {"total": total, "crf": crf, "align": align, "infonce": infonce}

    def forward(self, batch: MultimodalBatch) -> torch.Tensor:
        """The training loss (``forward`` so that DistributedDataParallel could sync its gradients)."""
        return self.losses(batch)["total"]

    @torch.no_grad()
    def predict(self, batch: MultimodalBatch) -> list[list[str]]:
        """Best tag sequence of every post in the batch (Viterbi)."""
        emissions = self._emissions(batch, self.features(batch)["fused"])
        paths = self.crf.decode(emissions, mask=batch.text.word_mask)
        return [[self.labels[i] for i in path] for path in paths]

    @torch.no_grad()
    def fused_embedding(self, batch: MultimodalBatch, pooling: str = "mean") -> torch.Tensor:
        """One L2-normalised float32 vector per post (MSEA's feature): H pooled over the words.

        ``mean``: every word alike. ``entity``: each word weighted by the tagger's belief that it is
        part of an entity (1 - softmax of its emissions at ``O``), so that posts are compared by what
        their entities look like rather than by their many other words.
        """
        fused = self.features(batch)["fused"]
        mask = batch.text.word_mask
        if pooling == "mean":
            pooled = masked_mean(fused, mask)
        elif pooling == "entity":
            outside = self.labels.index("O")
            entity = 1.0 - self._emissions(batch, fused).softmax(-1)[..., outside]
            weights = (entity + 1e-3) * mask
            pooled = (fused * weights.unsqueeze(-1).to(fused.dtype)).sum(1) / weights.sum(1, keepdim=True).to(fused.dtype)
        else:
            raise ValueError(f"unknown pooling {pooling!r}: expected 'mean' or 'entity'")
        return F.normalize(pooled.float(), dim=-1)
