"""Tests for mner.metrics: strict scores against seqeval, hand-built type/partial cases."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from seqeval.metrics import (
    accuracy_score,
    classification_report,
    f1_score,
    precision_score,
    recall_score,
)
from seqeval.scheme import IOB2

from mner.metrics import Counts, EntityScores, evaluate, score_entities, token_accuracy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TYPES = ["PER", "LOC", "ORG", "OTHER"]


def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) < 1e-12


def _assert_matches_seqeval(gold: list[list[str]], pred: list[list[str]]) -> None:
    scores = score_entities(gold, pred, "strict")
    kwargs = dict(mode="strict", scheme=IOB2, zero_division=0)
    assert _close(scores.micro.precision, precision_score(gold, pred, **kwargs))
    assert _close(scores.micro.recall, recall_score(gold, pred, **kwargs))
    assert _close(scores.micro.f1, f1_score(gold, pred, **kwargs))
    report = classification_report(gold, pred, output_dict=True, **kwargs)
    micro = report.pop("micro avg")
    for key in ("macro avg", "weighted avg"):
        report.pop(key)
    assert _close(scores.micro.precision, micro["precision"])
    assert _close(scores.micro.recall, micro["recall"])
    assert _close(scores.micro.f1, micro["f1-score"])
    assert scores.micro.support == micro["support"]
    assert set(scores.per_type) == set(report)
    for entity_type, row in report.items():
        counts = scores.per_type[entity_type]
        assert _close(counts.precision, row["precision"]), entity_type
        assert _close(counts.recall, row["recall"]), entity_type
        assert _close(counts.f1, row["f1-score"]), entity_type
        assert counts.support == row["support"], entity_type
    assert _close(token_accuracy(gold, pred), accuracy_score(gold, pred))


def _random_tags(rng: random.Random, n: int) -> list[str]:
    tags = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            tags.append("O")
        else:
            tags.append(f"{rng.choice('BI')}-{rng.choice(TYPES)}")  # I- may be an invalid continuation
    return tags


def _perturb(rng: random.Random, tags: list[str], rate: float) -> list[str]:
    out = list(tags)
    for i in range(len(out)):
        if rng.random() < rate:
            out[i] = rng.choice(["O", f"B-{rng.choice(TYPES)}", f"I-{rng.choice(TYPES)}"])
    return out


def test_strict_matches_seqeval_on_random_sequences() -> None:
    rng = random.Random(13)
    for _ in range(20):
        gold, pred = [], []
        for _ in range(30):
            n = rng.randint(1, 15)
            gold.append(_random_tags(rng, n))
            pred.append(_perturb(rng, gold[-1], 0.3) if rng.random() < 0.7 else _random_tags(rng, n))
        _assert_matches_seqeval(gold, pred)


def _read_tags(path: Path) -> list[list[str]]:
    """Tag column of a CoNLL-style file with ``IMGID:`` header lines (Twitter-2015 layout)."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("IMGID:"):
            continue
        if not line.strip():
            if current:
                sentences.append(current)
            current = []
            continue
        current.append(line.split("\t")[-1].strip())
    if current:
        sentences.append(current)
    return sentences


def test_strict_matches_seqeval_on_twitter2015_valid() -> None:
    path = DATA / "twitter2015" / "valid.txt"
    if not path.exists():
        pytest.skip(f"{path} not available (shared data directory absent)")
    gold = _read_tags(path)
    assert len(gold) > 100
    rng = random.Random(7)
    pred = [_perturb(rng, tags, 0.08) for tags in gold]
    _assert_matches_seqeval(gold, pred)
    _assert_matches_seqeval(gold, gold)
    perfect = score_entities(gold, gold)
    assert perfect.micro.fp == perfect.micro.fn == 0 and perfect.micro.f1 == 1.0


def test_counts_zero_division() -> None:
    empty = Counts(0, 0, 0)
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)
    c = Counts(tp=2, fp=2, fn=0)
    assert c.precision == 0.5 and c.recall == 1.0 and abs(c.f1 - 2 / 3) < 1e-12
    assert c.as_dict() == {"tp": 2, "fp": 2, "fn": 0, "support": 2, "precision": 0.5, "recall": 1.0, "f1": c.f1}


def _counts(scores: EntityScores) -> tuple[int, int, int]:
    return scores.micro.tp, scores.micro.fp, scores.micro.fn


def test_type_and_partial_modes_hand_built() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "O", "O", "B-ORG", "O", "O", "B-ORG", "O"]]
    # strict: PER(0,2) vs PER(0,1) no; LOC(3,4) vs ORG(3,4) no; ORG(5,8) vs ORG(6,7) no
    assert _counts(score_entities(gold, pred, "strict")) == (0, 3, 3)
    # type: PER overlaps PER, ORG(6,7) overlaps ORG(5,8); ORG(3,4) has no ORG to overlap
    typed = score_entities(gold, pred, "type")
    assert _counts(typed) == (2, 1, 1)
    assert (typed.per_type["PER"].tp, typed.per_type["ORG"].tp, typed.per_type["ORG"].fp) == (1, 1, 1)
    assert typed.per_type["LOC"].fn == 1
    # partial: every prediction overlaps some gold entity, types ignored
    partial = score_entities(gold, pred, "partial")
    assert _counts(partial) == (3, 0, 0)
    assert partial.per_type["LOC"].tp == 1  # cross-type match filed under the gold type


def test_one_to_one_matching() -> None:
    # two predictions inside one gold entity: only one can match it
    gold = [["B-PER", "I-PER", "I-PER", "I-PER"]]
    pred = [["B-PER", "I-PER", "B-PER", "O"]]
    assert _counts(score_entities(gold, pred, "type")) == (1, 1, 0)
    assert _counts(score_entities(gold, pred, "partial")) == (1, 1, 0)
    # one prediction spanning two gold entities: matches the one with the larger overlap
    gold = [["B-LOC", "B-LOC", "I-LOC", "O"]]
    pred = [["B-LOC", "I-LOC", "I-LOC", "O"]]
    assert _counts(score_entities(gold, pred, "type")) == (1, 0, 1)
    # overlapping two gold entities: the larger overlap (ORG 0-3, 2 tokens) wins over ORG 3-4
    gold = [["B-ORG", "I-ORG", "I-ORG", "B-ORG", "O"]]
    pred = [["O", "B-ORG", "I-ORG", "I-ORG", "O"]]
    typed = score_entities(gold, pred, "type")
    assert _counts(typed) == (1, 0, 1)


def test_invalid_continuations_are_not_entities() -> None:
    gold = [["O", "I-PER", "I-PER", "O"]]  # no entity in strict IOB2
    pred = [["B-PER", "I-PER", "I-PER", "O"]]
    for mode in ("strict", "type", "partial"):
        assert _counts(score_entities(gold, pred, mode)) == (0, 1, 0)  # type: ignore[arg-type]


def test_evaluate_is_json_and_validates() -> None:
    gold = [["B-PER", "I-PER", "O"], ["B-LOC"]]
    pred = [["B-PER", "I-PER", "O"], ["B-ORG"]]
    result = evaluate(gold, pred)
    json.dumps(result)
    assert result["precision"] == 0.5 and result["recall"] == 0.5 and result["f1"] == 0.5
    assert result["token_accuracy"] == 0.75
    assert result["per_type"]["PER"]["f1"] == 1.0 and result["per_type"]["ORG"]["fp"] == 1
    assert result["modes"]["partial"]["tp"] == 2 and result["modes"]["type"]["tp"] == 1
    assert set(result["modes"]) == {"strict", "type", "partial"}
    with pytest.raises(ValueError, match="sentence 1"):
        evaluate(gold, [["B-PER", "I-PER", "O"], ["B-ORG", "O"]])
    with pytest.raises(ValueError, match="sentences"):
        evaluate(gold, pred[:1])
    with pytest.raises(ValueError, match="mode"):
        score_entities(gold, pred, "fuzzy")  # type: ignore[arg-type]
