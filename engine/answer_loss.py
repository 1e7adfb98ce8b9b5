"""The distillation loss with the LM head applied only where an answer token is predicted, in chunks.

A causal LM's own loss computes logits for every position of the batch (batch x sequence x
vocabulary, 262,144 entries per position for Gemma 3) and upcasts them to fp32 before masking the
prompt's positions out. Here the decoder runs as usual, its last hidden states are gathered at the
positions whose next token is an answer token (label != -100), and the head, the final-logit
soft-capping of models that have it, and the cross-entropy run on ``chunk_tokens`` of those
positions at a time, each chunk's logits in fp32. Every chunk is recomputed in the backward pass
(activation checkpointing), so one chunk's logits exist at a time in either direction. The result
is the model's own mean cross-entropy over answer tokens (``tests/test_answer_loss.py`` checks the
value and the gradients against ``model(**batch).loss``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE = -100


def causal_lm(model: Any) -> Any:
    """The transformers causal LM inside ``model`` (a peft model's base model, whose layers carry the adapters)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _chunk_loss(head: torch.nn.Module, softcap: float | None, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of ``targets`` under the logits of ``hidden``, computed in fp32."""
    logits = head(hidden).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


def answer_token_loss(model: Any, batch: dict[str, torch.Tensor], chunk_tokens: int = 256) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the batch's answer tokens, and their count.

    ``batch`` holds ``input_ids``, ``attention_mask`` and ``labels`` (-100 where no loss is due), as
    :func:`engine.distillation.collate` makes them.
    """
    lm = causal_lm(model)
    hidden = lm.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    answer = targets != IGNORE
    hidden, targets = hidden[:, :-1][answer], targets[answer]
    head, softcap = lm.get_output_embeddings(), getattr(lm.config, "final_logit_softcapping", None)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_tokens):
        piece, wanted = hidden[start: start + chunk_tokens], targets[start: start + chunk_tokens]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss, head, softcap, piece, wanted, use_reentrant=False)
        else:
            total = total + _chunk_loss(head, softcap, piece, wanted)
    return total, int(targets.numel())


def answer_loss(model: Any, batch: dict[str, torch.Tensor], chunk_tokens: int = 256) -> torch.Tensor:
    """Mean cross-entropy per answer token (:func:`answer_token_loss` divided by the count)."""
    total, count = answer_token_loss(model, batch, chunk_tokens)
    return total / max(count, 1)
