"""Entity-level and token-level scores over IOB2 tag sequences.

Three entity matching modes are offered (all computed sentence by sentence, entities
read with :func:`mner.tags.iob2_spans`, i.e. seqeval's strict IOB2 reading, so an ``I-X``
that does not continue a ``B-X``/``I-X`` belongs to no entity):

``strict``
    A predicted entity is a true positive when a gold entity has exactly the same
    type, start and end. This equals seqeval's ``mode="strict", scheme=IOB2``.
``type``
    (SemEval-2013 / MUC "type" mode.) The type must match and the two spans must
    overlap by at least one token; boundaries need not agree.
``partial``
    (Boundary-overlap mode.) The two spans must overlap by at least one token; the
    types are ignored.

Matching in ``type`` and ``partial`` mode is one-to-one and greedy: predicted entities
are visited left to right (by start, then end) and each takes the still unmatched
eligible gold entity with the largest token overlap (the leftmost on ties). Each gold
entity is matched at most once, so ``tp + fn`` is always the number of gold entities and
``tp + fp`` the number of predicted ones.

Per-type counts: a false positive is filed under the predicted type, a false negative
under the gold type, and a true positive under the gold type. In ``strict`` and
``type`` mode both types agree; in ``partial`` mode a cross-type match therefore
counts towards the gold type only.

Precision, recall and F1 are 0.0 whenever their denominator is 0 (seqeval's
``zero_division=0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from mner.tags import Span, iob2_spans

Mode = Literal["strict", "partial", "type"]
MODES: tuple[str, ...] = get_args(Mode)


@dataclass
class Counts:
    """True positive, false positive and false negative entity counts."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``, 0.0 when nothing was predicted."""
        denominator = self.tp + self.fp
        return self.tp / denominator if denominator else 0.0

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``, 0.0 when there is no gold entity."""
        denominator = self.tp + self.fn
        return self.tp / denominator if denominator else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall, 0.0 when both are 0."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        """Number of gold entities (``tp + fn``)."""
        return self.tp + self.fn

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts into this one in place."""
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def as_dict(self) -> dict[str, float | int]:
        """Counts, support and precision/recall/F1 (raw fractions) as a JSON-ready dict."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "support": self.support,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass
class EntityScores:
    """Scores of one matching mode: micro-averaged counts and counts per entity type."""

    mode: str
    micro: Counts
    per_type: dict[str, Counts] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the mode, the micro scores and the per-type scores."""
        return {
            "mode": self.mode,
            "micro": self.micro.as_dict(),
            "per_type": {t: c.as_dict() for t, c in sorted(self.per_type.items())},
        }


def check_lengths(gold: list[list[str]], pred: list[list[str]]) -> None:
    """Raise ``ValueError`` unless ``gold`` and ``pred`` align sentence by sentence and token by token."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but pred has {len(pred)}")
    for index, (gold_tags, pred_tags) in enumerate(zip(gold, pred)):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(
                f"sentence {index}: gold has {len(gold_tags)} tags but pred has {len(pred_tags)}"
            )


def _overlap(a: Span, b: Span) -> int:
    """Number of tokens shared by two half-open spans."""
    return max(0, min(a.end, b.end) - max(a.start, b.start))


def _match_sentence(
    gold_spans: list[Span], pred_spans: list[Span], mode: str
) -> list[tuple[Span, Span | None]]:
    """Match predicted to gold spans of one sentence; returns ``(pred, gold or None)`` pairs."""
    if mode == "strict":
        gold_set = set(gold_spans)
        return [(p, p if p in gold_set else None) for p in pred_spans]
    remaining = sorted(gold_spans, key=lambda s: (s.start, s.end, s.type))
    pairs: list[tuple[Span, Span | None]] = []
    for p in sorted(pred_spans, key=lambda s: (s.start, s.end, s.type)):
        best: Span | None = None
        best_overlap = 0
        for g in remaining:
            if mode == "type" and g.type != p.type:
                continue
            shared = _overlap(p, g)
            if shared > best_overlap:
                best, best_overlap = g, shared
        if best is not None:
            remaining.remove(best)
        pairs.append((p, best))
    return pairs


def score_entities(
    gold: list[list[str]], pred: list[list[str]], mode: Mode = "strict"
) -> EntityScores:
    """Entity-level tp/fp/fn, micro and per type, under ``mode`` (see the module docstring).

    ``strict``: exact span and type. ``type``: same type and at least one shared
    token. ``partial``: at least one shared token, any type. Matching is one-to-one
    and greedy (largest overlap first, leftmost on ties). Raises ``ValueError`` on an
    unknown mode or misaligned inputs.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    check_lengths(gold, pred)
    micro = Counts()
    per_type: dict[str, Counts] = {}

    def bucket(entity_type: str) -> Counts:
        return per_type.setdefault(entity_type, Counts())

    for gold_tags, pred_tags in zip(gold, pred):
        gold_spans = iob2_spans(gold_tags)
        pred_spans = iob2_spans(pred_tags)
        matched: set[Span] = set()
        for p, g in _match_sentence(gold_spans, pred_spans, mode):
            if g is None:
                micro.fp += 1
                bucket(p.type).fp += 1
            else:
                matched.add(g)
                micro.tp += 1
                bucket(g.type).tp += 1
        for g in gold_spans:
            if g not in matched:
                micro.fn += 1
                bucket(g.type).fn += 1
    return EntityScores(mode=mode, micro=micro, per_type=dict(sorted(per_type.items())))


def token_accuracy(gold: list[list[str]], pred: list[list[str]]) -> float:
    """Fraction of tokens whose predicted tag equals the gold tag (0.0 with no tokens)."""
    check_lengths(gold, pred)
    total = sum(len(tags) for tags in gold)
    if total == 0:
        return 0.0
    correct = sum(g == p for gold_tags, pred_tags in zip(gold, pred) for g, p in zip(gold_tags, pred_tags))
    return correct / total


def evaluate(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """All scores as a JSON-serialisable dict (fractions, not percentages).

    Keys: ``precision``/``recall``/``f1`` (strict micro), ``per_type`` (strict, per
    entity type, with counts and support), ``token_accuracy``, ``modes`` (for each of
    strict/type/partial: micro tp/fp/fn/support/precision/recall/f1), ``n_sentences``
    and ``n_tokens``. Raises ``ValueError`` naming the first misaligned sentence.
    """
    check_lengths(gold, pred)
    scores = {mode: score_entities(gold, pred, mode) for mode in ("strict", "type", "partial")}
    strict = scores["strict"]
    return {
        "precision": strict.micro.precision,
        "recall": strict.micro.recall,
        "f1": strict.micro.f1,
        "per_type": {t: c.as_dict() for t, c in strict.per_type.items()},
        "token_accuracy": token_accuracy(gold, pred),
        "modes": {mode: s.micro.as_dict() for mode, s in scores.items()},
        "n_sentences": len(gold),
        "n_tokens": sum(len(tags) for tags in gold),
    }
