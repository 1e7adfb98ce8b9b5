"""IOB2 tag helpers shared by the data formats, the metrics and the CRF constraints."""

from __future__ import annotations

import re
from typing import NamedTuple

OUTSIDE = "O"
_TAG_RE = re.compile(r"^(?:O|[BI]-[^\s]+)$")


class Span(NamedTuple):
    """An entity: its type and the half-open token range [start, end)."""

    type: str
    start: int
    end: int


def is_well_formed(tag: str) -> bool:
    """True when ``tag`` is ``O``, ``B-X`` or ``I-X`` with a non-empty type ``X``."""
    return bool(_TAG_RE.match(tag))


def split_tag(tag: str) -> tuple[str, str | None]:
    """Split ``B-PER`` into ``("B", "PER")``; ``O`` gives ``("O", None)``."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, _, entity_type = tag.partition("-")
    return prefix, entity_type


def invalid_continuation(previous: str, tag: str) -> bool:
    """True when ``tag`` is ``I-X`` and ``previous`` is neither ``B-X`` nor ``I-X`` (IOB2 rule)."""
    prefix, entity_type = split_tag(tag)
    if prefix != "I":
        return False
    prev_prefix, prev_type = split_tag(previous)
    return prev_prefix == OUTSIDE or prev_type != entity_type


def iob2_spans(tags: list[str]) -> list[Span]:
    """Entities of a tag sequence read strictly as IOB2.

    A span starts at ``B-X`` and continues over ``I-X``; an ``I-X`` that does not
    continue a span of type X is not part of any entity (seqeval's strict IOB2 mode).
    """
    spans: list[Span] = []
    start: int | None = None
    current: str | None = None
    for i, tag in enumerate(tags):
        prefix, entity_type = split_tag(tag)
        if prefix == "I" and current == entity_type and start is not None:
            continue
        if start is not None:
            spans.append(Span(current or "", start, i))
            start, current = None, None
        if prefix == "B":
            start, current = i, entity_type
    if start is not None:
        spans.append(Span(current or "", start, len(tags)))
    return spans


def bio_to_iob2(tags: list[str]) -> tuple[list[str], int]:
    """Convert BIO (IOB1) tags to IOB2: an ``I-X`` that starts an entity becomes ``B-X``.

    Returns the new tags and how many tags changed.
    """
    out: list[str] = []
    changed = 0
    previous = OUTSIDE
    for tag in tags:
        new = tag
        if invalid_continuation(previous, tag):
            new = "B-" + split_tag(tag)[1]  # type: ignore[operator]
            changed += 1
        out.append(new)
        previous = new
    return out, changed


def entity_types(labels: list[str]) -> list[str]:
    """Sorted entity types named by a label list such as ``["O", "B-PER", "I-PER"]``."""
    return sorted({split_tag(t)[1] for t in labels if t != OUTSIDE})  # type: ignore[misc]


def label_list(types: list[str]) -> list[str]:
    """The IOB2 label inventory for entity ``types``: ``O`` first, then ``B-X``, ``I-X`` per type."""
    labels = [OUTSIDE]
    for entity_type in sorted(types):
        labels += [f"B-{entity_type}", f"I-{entity_type}"]
    return labels
