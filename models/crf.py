"""A linear-chain conditional random field over tag emissions.

Same call conventions as ``pytorch-crf`` (``torchcrf.CRF``): ``forward`` returns the
(positive) log-likelihood of the gold tags, ``decode`` the Viterbi paths as lists of
ints. Differences: ``batch_first`` defaults to True, the maths always runs in float32
(bf16/fp16 emissions are cast), and optional IOB2 constraints can be applied at
decode time only (see :meth:`CRF.constrain`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mner.tags import invalid_continuation, split_tag

Reduction = Literal["none", "sum", "mean", "token_mean"]
_REDUCTIONS = ("none", "sum", "mean", "token_mean")
#: Score added to a forbidden transition when decoding with constraints.
FORBIDDEN = -1e4


def iob2_penalties(labels: list[str]) -> tuple[Tensor, Tensor]:
    """Decode-time penalties forbidding invalid IOB2 moves for the label inventory ``labels``.

    Returns ``(start, transitions)`` of shapes ``(K,)`` and ``(K, K)`` holding 0.0 for an
    allowed and ``FORBIDDEN`` for a forbidden move: start -> ``I-X``, ``O`` -> ``I-X``, and
    ``B-Y``/``I-Y`` -> ``I-X`` with ``Y != X``. Labels that are not ``B-``/``I-`` tags
    (``O``, padding labels) are treated like ``O``.
    """
    k = len(labels)
    start = torch.zeros(k)
    transitions = torch.zeros(k, k)
    for j, tag in enumerate(labels):
        if split_tag(tag)[0] != "I":
            continue
        if invalid_continuation("O", tag):
            start[j] = FORBIDDEN
        for i, previous in enumerate(labels):
            prev_prefix = split_tag(previous)[0]
            if prev_prefix not in ("B", "I") or invalid_continuation(previous, tag):
                transitions[i, j] = FORBIDDEN
    return start, transitions


class CRF(nn.Module):
    """Linear-chain CRF with learnable start, end and transition scores.

    ``transitions[i, j]`` is the score of moving from tag ``i`` to tag ``j``. Emissions
    are ``(batch, seq, num_tags)`` when ``batch_first`` else ``(seq, batch, num_tags)``;
    tags and masks drop the last dimension. Masks may be ragged (right padding) but
    the first timestep must be on for every sequence.

    If ``labels`` is given, :meth:`constrain` is called with it; ``constrained``
    switches those IOB2 constraints on or off for :meth:`decode` (they never affect
    the training log-likelihood).
    """

    start_penalty: Tensor
    transition_penalty: Tensor

    def __init__(
        self,
        num_tags: int,
        batch_first: bool = True,
        labels: list[str] | None = None,
        constrained: bool = True,
    ) -> None:
        super().__init__()
        if num_tags <= 0:
            raise ValueError(f"num_tags must be positive, got {num_tags}")
        self.num_tags = num_tags
        self.batch_first = batch_first
        self.constrained = constrained
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        # All-zero penalties mean "no constraint"; kept in the state dict so that a
        # checkpoint restores the constraints it was trained with.
        self.register_buffer("start_penalty", torch.zeros(num_tags))
        self.register_buffer("transition_penalty", torch.zeros(num_tags, num_tags))
        self.reset_parameters()
        if labels is not None:
            self.constrain(labels)

    def reset_parameters(self) -> None:
        """Initialise start, end and transition scores uniformly in [-0.1, 0.1]."""
        for parameter in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(parameter, -0.1, 0.1)

    def constrain(self, labels: list[str]) -> None:
        """Forbid invalid IOB2 transitions at decode time for the tag names ``labels`` (index order)."""
        if len(labels) != self.num_tags:
            raise ValueError(f"got {len(labels)} labels for a CRF over {self.num_tags} tags")
        start, transitions = iob2_penalties(labels)
        self.start_penalty.copy_(start)
        self.transition_penalty.copy_(transitions)

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return f"num_tags={self.num_tags}, batch_first={self.batch_first}, constrained={self.constrained}"

    # ------------------------------------------------------------------ helpers
    def _prepare(
        self, emissions: Tensor, tags: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Validate shapes and return float32 emissions, tags and a bool mask, all batch-first."""
        if emissions.dim() != 3:
            raise ValueError(f"emissions must have 3 dimensions, got {emissions.dim()}")
        if emissions.size(2) != self.num_tags:
            raise ValueError(f"expected last emissions dimension {self.num_tags}, got {emissions.size(2)}")
        if not self.batch_first:
            emissions = emissions.transpose(0, 1)
            tags = tags.transpose(0, 1) if tags is not None else None
            mask = mask.transpose(0, 1) if mask is not None else None
        batch, length = emissions.shape[:2]
        if length == 0:
            raise ValueError("sequences must have at least one timestep")
        if tags is not None and tuple(tags.shape) != (batch, length):
            raise ValueError(f"tags shape {tuple(tags.shape)} does not match emissions {(batch, length)}")
        if mask is None:
            mask = torch.ones(batch, length, dtype=torch.bool, device=emissions.device)
        else:
            if tuple(mask.shape) != (batch, length):
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match emissions {(batch, length)}")
            mask = mask.bool()
        if not bool(mask[:, 0].all()):
            raise ValueError("mask of the first timestep must be on for every sequence")
        return emissions.float(), tags, mask

    def _gold_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Unnormalised score of the gold paths, shape ``(batch,)``."""
        tags = tags.long().masked_fill(~mask, 0)  # padded tags may be anything (e.g. -100)
        maskf = mask.float()
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * maskf
        moved = self.transitions[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]
        last = mask.long().sum(1) - 1
        last_tags = tags.gather(1, last.unsqueeze(1)).squeeze(1)
        return (
            self.start_transitions[tags[:, 0]]
            + emitted.sum(1)
            + moved.sum(1)
            + self.end_transitions[last_tags]
        )

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Log of the sum over all paths of their exponentiated scores, shape ``(batch,)``."""
        alpha = self.start_transitions + emissions[:, 0]
        transitions = self.transitions.unsqueeze(0)
        for t in range(1, emissions.size(1)):
            scores = alpha.unsqueeze(2) + transitions + emissions[:, t].unsqueeze(1)
            alpha = torch.where(mask[:, t].unsqueeze(1), torch.logsumexp(scores, dim=1), alpha)
        return torch.logsumexp(alpha + self.end_transitions, dim=1)

    # ------------------------------------------------------------------ API
    def forward(
        self,
        emissions: Tensor,
        tags: Tensor,
        mask: Tensor | None = None,
        reduction: Reduction = "sum",
    ) -> Tensor:
        """Log-likelihood of ``tags`` given ``emissions`` (float32; negate it for a loss).

        ``reduction``: ``none`` (per sequence), ``sum``, ``mean`` (over sequences) or
        ``token_mean`` (sum divided by the number of unmasked tokens).
        """
        if reduction not in _REDUCTIONS:
            raise ValueError(f"invalid reduction {reduction!r}; expected one of {_REDUCTIONS}")
        with torch.autocast(device_type=emissions.device.type, enabled=False):
            em, tags_bf, mask_bf = self._prepare(emissions, tags, mask)
            assert tags_bf is not None
            llh = self._gold_score(em, tags_bf, mask_bf) - self._log_partition(em, mask_bf)
        if reduction == "none":
            return llh
        if reduction == "sum":
            return llh.sum()
        if reduction == "mean":
            return llh.mean()
        return llh.sum() / mask_bf.float().sum()

    @torch.no_grad()
    def decode(
        self, emissions: Tensor, mask: Tensor | None = None, constrained: bool | None = None
    ) -> list[list[int]]:
        """Viterbi best paths, one list of tag ids per sequence (length = its mask sum).

        ``constrained`` overrides ``self.constrained`` for this call; the IOB2
        penalties only matter once :meth:`constrain` has been called.
        """
        use_constraints = self.constrained if constrained is None else constrained
        with torch.autocast(device_type=emissions.device.type, enabled=False):
            em, _, mask_bf = self._prepare(emissions, None, mask)
            start, transitions = self.start_transitions, self.transitions
            if use_constraints:
                start = start + self.start_penalty
                transitions = transitions + self.transition_penalty
            batch, length = mask_bf.shape
            score = start + em[:, 0]
            history: list[Tensor] = []
            for t in range(1, length):
                candidates = score.unsqueeze(2) + transitions.unsqueeze(0) + em[:, t].unsqueeze(1)
                best, backpointer = candidates.max(dim=1)
                score = torch.where(mask_bf[:, t].unsqueeze(1), best, score)
                history.append(backpointer)
            score = score + self.end_transitions
            lengths = mask_bf.long().sum(1)
            current = score.argmax(dim=1)
            path = torch.zeros(batch, length, dtype=torch.long, device=em.device)
            for t in range(length - 1, -1, -1):
                active = t <= lengths - 1  # position t lies inside the sequence
                path[:, t] = torch.where(active, current, path[:, t])
                if t > 0:
                    previous = history[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
                    current = torch.where(active, previous, current)
        rows = path.tolist()
        return [row[:n] for row, n in zip(rows, lengths.tolist())]
