"""Importers for the files released with PGIM: ChatGPT knowledge, BLIP-2 captions, manual examples.

Knowledge blocks are aligned to the canonical split by position and token equality,
never by shifting: missing and extra blocks are reported, not papered over.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mner.formats import FormatIssue, PgimFormatError, decode_text, parse_token_line, split_lines
from mner.samples import Sample

EOS = "<EOS>"
LOOKAHEAD = 10
_CAPTION_RE = re.compile(r"^(\S+)\.jpg :(.*)$")
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# fallback for lines literal_eval rejects, e.g. ['Rosie O'Donnell', 'PER'] (unescaped quote)
_ENTITY_ITEM_RE = re.compile(r"\[\s*'(.*?)'\s*,\s*'([^'\]]+)'\s*\]")
_ENTITY_SEP_RE = re.compile(r"\s*,\s*")


@dataclass
class KnowledgeBlock:
    """One block of a knowledge file: the tweet tokens, the knowledge words, its first line."""

    tokens: list[str]
    words: list[str]
    line: int


@dataclass
class KnowledgeAlignment:
    """Knowledge text per sentence of the canonical split ("" where missing), plus the gaps."""

    knowledge: list[str]
    missing: list[tuple[int, str | None]] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    path: Path = Path()
    blocks: int = 0
    extra_lines: list[int] = field(default_factory=list)

    def report(self) -> str:
        """One-paragraph description of how the knowledge file lined up with the split."""
        aligned = len(self.knowledge) - len(self.missing)
        lines = [
            f"{self.path}: {self.blocks} knowledge blocks for {len(self.knowledge)} sentences; "
            f"{aligned} aligned, {len(self.missing)} missing, {len(self.extra)} extra"
        ]
        for index, image_id in self.missing[:20]:
            lines.append(f"  missing: sentence {index} (IMGID:{image_id})" if image_id else f"  missing: sentence {index}")
        if len(self.missing) > 20:
            lines.append(f"  ... and {len(self.missing) - 20} more missing")
        for block, line in list(zip(self.extra, self.extra_lines))[:20]:
            lines.append(f"  extra: {self.path}:{line}: block {block} matches no sentence")
        if len(self.extra) > 20:
            lines.append(f"  ... and {len(self.extra) - 20} more extra")
        return "\n".join(lines)


def _norm(tokens: list[str]) -> list[str]:
    """Tokens as compared for alignment: byte-order marks removed."""
    return [t.replace("\ufeff", "") for t in tokens]


def parse_knowledge(path: str | Path) -> list[KnowledgeBlock]:
    """Parse a PGIM knowledge file into blocks; raise PgimFormatError on malformed lines."""
    path = Path(path)
    label = str(path)
    lines, _, _ = split_lines(decode_text(path.read_bytes(), label, PgimFormatError))
    issues: list[FormatIssue] = []
    blocks: list[KnowledgeBlock] = []
    current: KnowledgeBlock | None = None
    in_knowledge = False

    def close() -> None:
        nonlocal current, in_knowledge
        if current is not None:
            if not in_knowledge:
                issues.append(FormatIssue(label, current.line, f"block has no '{EOS}<TAB>X' line"))
            blocks.append(current)
        current, in_knowledge = None, False

    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            close()
            continue
        parsed = parse_token_line(raw)
        if parsed is None:
            issues.append(FormatIssue(label, number, f"malformed line {raw.strip()!r}: expected 'word<TAB>tag'"))
            continue
        if current is None:
            current = KnowledgeBlock([], [], number)
        word, _tag = parsed
        if in_knowledge:
            current.words.append(word)
        elif word == EOS:
            in_knowledge = True
            if not current.tokens:
                issues.append(FormatIssue(label, number, f"'{EOS}' line with no tweet tokens before it"))
        else:
            current.tokens.append(word)
    close()
    if issues:
        raise PgimFormatError(issues)
    return blocks


def align_knowledge(
    blocks: list[KnowledgeBlock], sentences: list[Sample], *, lookahead: int = LOOKAHEAD
) -> tuple[list[int | None], list[int]]:
    """Map each sentence to a block index (None when missing); return it and the extra blocks.

    Two pointers; a block whose tokens differ from the current sentence is matched to one of
    the next ``lookahead`` sentences (skipped ones are missing) or else counted as extra.
    """
    target = [_norm(s.tokens) for s in sentences]
    assignment: list[int | None] = [None] * len(sentences)
    extra: list[int] = []
    i = 0
    for b, block in enumerate(blocks):
        tokens = _norm(block.tokens)
        for j in range(i, min(i + 1 + lookahead, len(sentences))):
            if target[j] == tokens:
                assignment[j] = b
                i = j + 1
                break
        else:
            extra.append(b)
    return assignment, extra


def read_knowledge(path: str | Path, sentences: list[Sample], *, lookahead: int = LOOKAHEAD) -> KnowledgeAlignment:
    """Read a PGIM knowledge file and align it to ``sentences`` (the canonical split).

    Knowledge text is the block's words joined by single spaces; "" for missing sentences.
    """
    path = Path(path)
    blocks = parse_knowledge(path)
    assignment, extra = align_knowledge(blocks, sentences, lookahead=lookahead)
    knowledge = ["" if b is None else " ".join(blocks[b].words) for b in assignment]
    missing = [(i, sentences[i].image_id) for i, b in enumerate(assignment) if b is None]
    return KnowledgeAlignment(
        knowledge=knowledge,
        missing=missing,
        extra=extra,
        path=path,
        blocks=len(blocks),
        extra_lines=[blocks[b].line for b in extra],
    )


CAPTIONS_FIX = ("set dataset.captions to the caption file of these posts' images ('<image id>.jpg :<caption>' lines), "
                "or leave it unset: posts without captions")


class AlignmentError(ValueError):
    """A knowledge or caption file that lines up with too few posts of a split: it belongs to other data."""


def check_aligned(path: str | Path, split: str, posts: int, unmatched: list[str], min_share: float, what: str,
                  fix: str) -> None:
    """Raise :class:`AlignmentError` when the file at ``path`` matches less than ``min_share`` of a split's ``posts``.

    ``unmatched`` holds the ids of the posts it has nothing for (the first ten are named), ``what`` what it gives a
    post ("knowledge", "a caption"), ``fix`` how to point at the right file (``dataset.min_aligned_share`` is named too).
    """
    matched = posts - len(unmatched)
    if posts and matched / posts < min_share:
        raise AlignmentError(
            f"{path}: {what} for {matched} of {posts} {split} posts ({matched / posts:.1%}), below "
            f"dataset.min_aligned_share={min_share}; the first posts without: {', '.join(unmatched[:10])}. The file "
            f"does not belong to these posts: {fix}; or lower dataset.min_aligned_share (0 turns the check off)")


REASONING = re.compile(r"\s*reasoning\s*:", re.IGNORECASE)
ANSWER_FORMS = ("full", "entities")


def answer_in_form(answer: str, form: str) -> str:
    """``answer`` whole (``full``), or cut to its entity list (``entities``): PGIM's answers read "Named entities:
    1. X (type) 2. Y (type) Reasoning: ...", and the cut keeps what comes before "Reasoning:" (all of an answer without it)."""
    if form not in ANSWER_FORMS:
        raise ValueError(f"answer form {form!r}: expected one of {ANSWER_FORMS}")
    return answer if form == "full" else REASONING.split(answer, maxsplit=1)[0].strip()


def read_captions(path: str | Path) -> dict[str, str]:
    """Read ``<id>.jpg :<caption>`` lines into ``{id: caption}``; bad or duplicate lines raise."""
    path = Path(path)
    label = str(path)
    lines, _, _ = split_lines(decode_text(path.read_bytes(), label, PgimFormatError))
    captions: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    issues: list[FormatIssue] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        match = _CAPTION_RE.match(raw)
        if match is None:
            issues.append(FormatIssue(label, number, f"malformed caption line {raw[:60]!r}: expected '<id>.jpg :<caption>'"))
            continue
        image_id, caption = match.group(1), match.group(2).strip()
        if image_id in first_seen:
            issues.append(FormatIssue(label, number, f"duplicate caption for {image_id}.jpg (first at line {first_seen[image_id]})"))
            continue
        first_seen[image_id] = number
        captions[image_id] = caption
    if issues:
        raise PgimFormatError(issues)
    return captions


@dataclass
class ManualExample:
    """A hand-written in-context example: the tweet's image id, the answer text, gold entities."""

    image_id: str
    answer: str
    entities: list[tuple[str, str]]


def _read_pairs(path: Path, issues: list[FormatIssue]) -> list[tuple[int, str, str]]:
    """(line of the id, id, following line) for each id/value pair of a manual-example file."""
    label = str(path)
    lines, _, _ = split_lines(decode_text(path.read_bytes(), label, PgimFormatError))
    pairs: list[tuple[int, str, str]] = []
    for k in range(0, len(lines), 2):
        image_id = lines[k].strip()
        if not _ID_RE.match(image_id):
            issues.append(FormatIssue(label, k + 1, f"expected an image id, found {image_id[:60]!r}"))
            continue
        if k + 1 >= len(lines):
            issues.append(FormatIssue(label, k + 1, f"image id {image_id} has no following line"))
            continue
        pairs.append((k + 1, image_id, lines[k + 1].strip()))
    return pairs


def _parse_entity_items(line: str) -> list[tuple[str, str]] | None:
    """Regex reading of ``['X', 'T'], ...`` tolerating unescaped quotes in X; None if no parse."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    while True:
        match = _ENTITY_ITEM_RE.match(line, pos)
        if match is None:
            return None
        pairs.append((match.group(1), match.group(2)))
        pos = match.end()
        if pos == len(line):
            return pairs
        sep = _ENTITY_SEP_RE.match(line, pos)
        if sep is None or sep.end() == pos:
            return None
        pos = sep.end()


def parse_entity_line(line: str) -> list[tuple[str, str]]:
    """Parse ``['X', 'PER'], ['Y', 'LOC']`` into pairs; "" or ``None`` gives []; ValueError if bad.

    Uses ``ast.literal_eval`` of ``[`` + line + ``]``; lines it rejects because a surface has an
    unescaped apostrophe (``['Rosie O'Donnell', 'PER']``, in the real T17 file) are read by regex.
    """
    line = line.strip()
    if not line or line == "None":
        return []
    try:
        value = ast.literal_eval("[" + line + "]")
    except (ValueError, SyntaxError) as exc:
        fallback = _parse_entity_items(line)
        if fallback is None:
            raise ValueError(f"not a list of ['surface', 'TYPE'] pairs ({exc.__class__.__name__})") from None
        return fallback
    pairs: list[tuple[str, str]] = []
    for item in value:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise ValueError(f"entity {item!r} is not a ['surface', 'TYPE'] pair")
        pairs.append((item[0], item[1]))
    return pairs


def check_manual_examples(
    examples_path: str | Path, entities_path: str | Path
) -> tuple[list[ManualExample], list[FormatIssue], list[FormatIssue]]:
    """Read both manual-example files; return (examples, errors, warnings) without raising.

    Errors: malformed lines, duplicate ids, examples with no entity entry. Warnings: entity
    entries whose id has no example.
    """
    examples_path, entities_path = Path(examples_path), Path(entities_path)
    errors: list[FormatIssue] = []
    notices: list[FormatIssue] = []
    answers = _read_pairs(examples_path, errors)
    entity_pairs = _read_pairs(entities_path, errors)

    entities: dict[str, list[tuple[str, str]]] = {}
    entity_lines: dict[str, int] = {}
    for line, image_id, text in entity_pairs:
        if image_id in entity_lines:
            errors.append(FormatIssue(str(entities_path), line, f"duplicate id {image_id} (first at line {entity_lines[image_id]})"))
            continue
        entity_lines[image_id] = line
        try:
            entities[image_id] = parse_entity_line(text)
        except ValueError as exc:
            errors.append(FormatIssue(str(entities_path), line + 1, str(exc)))

    examples: list[ManualExample] = []
    seen: dict[str, int] = {}
    for line, image_id, answer in answers:
        if image_id in seen:
            errors.append(FormatIssue(str(examples_path), line, f"duplicate id {image_id} (first at line {seen[image_id]})"))
            continue
        seen[image_id] = line
        if image_id not in entity_lines:
            errors.append(FormatIssue(str(examples_path), line, f"id {image_id} has no entry in {entities_path.name}"))
            continue
        examples.append(ManualExample(image_id, answer, entities.get(image_id, [])))
    for image_id, line in entity_lines.items():
        if image_id not in seen:
            notices.append(FormatIssue(str(entities_path), line, f"id {image_id} has no example in {examples_path.name}"))
    return examples, errors, notices


def read_manual_examples(
    examples_path: str | Path, entities_path: str | Path, *, strict: bool = False
) -> list[ManualExample]:
    """Read PGIM's manual examples joined by image id with their gold entities.

    Raises PgimFormatError on malformed lines or an example without entities; entity entries
    without an example are a warning (an error when ``strict``).
    """
    examples, errors, notices = check_manual_examples(examples_path, entities_path)
    if strict:
        errors += notices
    elif notices:
        warnings.warn("\n".join(str(n) for n in notices), stacklevel=2)
    if errors:
        raise PgimFormatError(errors)
    return examples
