"""Optional layers between the word features and the tagger's linear layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BiLstmAttentionHead(nn.Module):
    """A bidirectional LSTM over the words of T, then multi-head self-attention among them.

    Maps ``[batch, words, input_dim]`` to ``[batch, words, output_dim]`` with ``output_dim =
    hidden`` (both LSTM directions together); the attention is added to the LSTM output and the
    sum layer-normalised. Padded words never reach a real word: the LSTM runs on packed
    sequences and attention masks them as keys. Rows of padded words hold finite values that
    the CRF's mask ignores.
    """

    def __init__(self, input_dim: int, hidden: int = 256, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden % 2 or hidden % heads:
            raise ValueError(f"hidden={hidden} must be even and divisible by heads={heads}")
        self.output_dim = hidden
        self.heads = heads
        self.attention_dropout = dropout
        self.lstm = nn.LSTM(input_dim, hidden // 2, batch_first=True, bidirectional=True)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """Contextualised word features; ``word_mask`` is ``[batch, words]``, True on real words."""
        batch, length, _ = words.shape
        lengths = word_mask.sum(1).cpu()
        # fp32 LSTM: bf16 LSTM kernels are missing from some cuDNN and oneDNN builds (pytorch#116925).
        with torch.autocast(words.device.type, enabled=False):
            packed = pack_padded_sequence(words.float(), lengths, batch_first=True, enforce_sorted=False)
            states, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=length)
        q, k, v = self.qkv(states).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=word_mask[:, None, None, :], dropout_p=self.attention_dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(batch, length, self.output_dim)
        return self.norm(states + self.out(attended).to(states.dtype))
