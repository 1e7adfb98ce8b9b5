"""The [T;Z] sequence tagger: a transformer encoder, word-shape features, an optional head, a linear layer and a CRF.

The encoder reads ``[CLS] T [SEP] Z [SEP]``; the representation of each word of T is its first
sub-token's hidden state, optionally concatenated with an embedding of the word's shape (case,
digits, @mention, #hashtag, URL), which gives uncased encoders the capitalisation back. An
optional BiLSTM + self-attention head contextualises these features again, a linear layer maps
words to label scores, and the CRF scores and decodes whole tag sequences.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models.crf import CRF
from models.encoding import SHAPES, Batch
from models.heads import BiLstmAttentionHead


class KnowledgeTagger(nn.Module):
    """Encoder + (shape embedding) + (BiLSTM-attention head) + dropout + linear + CRF over the words of T.

    ``head`` is ``linear`` (no head) or ``bilstm_attention`` (sized by ``lstm_hidden`` and
    ``attention_heads``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        labels: list[str],
        dropout: float = 0.1,
        shape_features: bool = True,
        shape_dim: int = 32,
        constrained_decoding: bool = True,
        head: Literal["linear", "bilstm_attention"] = "linear",
        lstm_hidden: int = 256,
        attention_heads: int = 4,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.labels = list(labels)
        hidden = encoder.config.hidden_size
        self.use_token_types = getattr(encoder.config, "type_vocab_size", 0) >= 2
        self.shape_embedding = nn.Embedding(len(SHAPES), shape_dim, padding_idx=0) if shape_features else None
        features = hidden + (shape_dim if shape_features else 0)
        self.head: BiLstmAttentionHead | None = None
        if head == "bilstm_attention":
            self.head = BiLstmAttentionHead(features, lstm_hidden, attention_heads, dropout)
            features = self.head.output_dim
        elif head != "linear":
            raise ValueError(f"unknown head {head!r}; expected linear or bilstm_attention")
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(features, len(labels))
        self.crf = CRF(len(labels), batch_first=True)
        if constrained_decoding:
            self.crf.constrain(self.labels)

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters outside the encoder (trained with the larger learning rate)."""
        return [p for name, p in self.named_parameters() if not name.startswith("encoder.")]

    def emissions(self, batch: Batch) -> torch.Tensor:
        """Label scores per word of T, ``[batch, words, labels]``, in float32."""
        kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self.use_token_types:
            kwargs["token_type_ids"] = batch.token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        index = batch.word_starts.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        words = hidden.gather(1, index)
        if self.shape_embedding is not None:
            words = torch.cat([words, self.shape_embedding(batch.shapes).to(words.dtype)], dim=-1)
        if self.head is not None:
            words = self.head(words, batch.word_mask)
        return self.classifier(self.dropout(words)).float()

    def loss(self, batch: Batch) -> torch.Tensor:
        """Negative CRF log-likelihood, averaged over the sentences of the batch."""
        if batch.labels is None:
            raise ValueError("loss() needs a batch with labels")
        scores = self.emissions(batch)
        return -self.crf(scores, batch.labels, mask=batch.word_mask, reduction="mean")

    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss (``forward`` so that DistributedDataParallel syncs its gradients)."""
        return self.loss(batch)

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[list[str]]:
        """Best tag sequence of every sentence in the batch (Viterbi)."""
        paths = self.crf.decode(self.emissions(batch), mask=batch.word_mask)
        return [[self.labels[i] for i in path] for path in paths]
