"""CoNLL reading, writing and validation for the Twitter-2015/2017 MNER splits.

Blocks are separated by blank lines; a block may start with ``IMGID:<id>``; every other
line is ``token<TAB>tag`` (or ``token<SPACES>tag``): the token is everything before the
last run of spaces/tabs, the tag is the last field. Tags must be IOB2.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from mner.samples import Sample
from mner.tags import bio_to_iob2, invalid_continuation, is_well_formed, iob2_spans, split_tag

BOM = "\ufeff"
_IMGID_RE = re.compile(r"^IMGID:(.*)$")
# token = everything before the last run of spaces/tabs; tag = the last field
_LINE_RE = re.compile(r"^(.*[^ \t])[ \t]+([^ \t]+)$")
MAX_LISTED_ISSUES = 20


class FormatIssue(NamedTuple):
    """One problem found in a data file, at a 1-based line."""

    path: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.problem}"


class DataFormatError(ValueError):
    """A data file is malformed; ``issues`` lists every problem found (file, line, problem)."""

    def __init__(self, issues: list[FormatIssue]) -> None:
        self.issues = list(issues)
        super().__init__(format_issues(self.issues))


class ConllFormatError(DataFormatError):
    """A CoNLL file is malformed."""


class PgimFormatError(DataFormatError):
    """A PGIM release file (knowledge, captions, manual examples) is malformed."""


def format_issues(issues: list[FormatIssue], limit: int = MAX_LISTED_ISSUES) -> str:
    """Render issues one per line (``path:line: problem``), the first ``limit`` then a count."""
    if not issues:
        return "no problems"
    paths = sorted({i.path for i in issues})
    head = f"{len(issues)} problem(s) in {', '.join(paths)}:"
    lines = [head] + [str(i) for i in issues[:limit]]
    if len(issues) > limit:
        lines.append(f"... and {len(issues) - limit} more")
    return "\n".join(lines)


@dataclass
class ConllFile:
    """A parsed CoNLL file and what was noticed while reading it."""

    path: Path
    sentences: list[Sample]
    has_bom: bool = False
    has_crlf: bool = False
    repaired_tags: int = 0
    notes: list[str] = field(default_factory=list)


def decode_text(data: bytes, path_label: str, error: type[DataFormatError] = ConllFormatError) -> str:
    """Decode UTF-8 ``data`` (BOM kept); invalid bytes raise ``error`` naming the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error([FormatIssue(path_label, line, f"invalid UTF-8 ({exc.reason})")]) from None


def split_lines(text: str) -> tuple[list[str], bool, bool]:
    """Split ``text`` into lines without terminators; return (lines, had_bom, had_crlf)."""
    has_bom = text.startswith(BOM)
    if has_bom:
        text = text[1:]
    has_crlf = "\r\n" in text
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines], has_bom, has_crlf


def parse_token_line(line: str) -> tuple[str, str] | None:
    """Split ``token<TAB>tag`` / ``token<SPACES>tag`` into (token, tag); None when one field."""
    match = _LINE_RE.match(line.rstrip(" \t"))
    if match is None:
        return None
    return match.group(1), match.group(2)


def _check_tags(path_label: str, sentence: Sample, lines: list[int]) -> list[FormatIssue]:
    """Malformed tags and IOB2 continuation errors of one sentence."""
    issues: list[FormatIssue] = []
    previous = "O"
    for tag, line in zip(sentence.tags, lines):
        if not is_well_formed(tag):
            issues.append(FormatIssue(path_label, line, f"malformed tag {tag!r} (expected O, B-X or I-X)"))
            previous = "O"
            continue
        if invalid_continuation(previous, tag):
            entity_type = split_tag(tag)[1]
            issues.append(
                FormatIssue(
                    path_label,
                    line,
                    f"{tag} follows {previous} (IOB2 needs B-{entity_type} or I-{entity_type} before it;"
                    " --repair converts BIO to IOB2)",
                )
            )
        previous = tag
    return issues


def read_conll_text(text: str, path_label: str = "<text>", *, repair: bool = False) -> ConllFile:
    """Parse CoNLL ``text``; raise ConllFormatError listing every problem (``path_label:line``).

    Each block becomes a :class:`Sample` with id = its IMGID (else its position in the file) and
    source = ``<file name>:<line the block starts at>``.
    """
    lines, has_bom, has_crlf = split_lines(text)
    issues: list[FormatIssue] = []
    sentences: list[Sample] = []
    file_name = Path(path_label).name
    tag_lines: list[list[int]] = []
    seen_ids: dict[str, int] = {}

    tokens: list[str] = []
    tags: list[str] = []
    token_lines: list[int] = []
    image_id: str | None = None
    start = 0
    bad_lines = False

    def close_block() -> None:
        nonlocal tokens, tags, token_lines, image_id, start, bad_lines
        if start and not tokens and not bad_lines:
            issues.append(FormatIssue(path_label, start, f"empty block: IMGID:{image_id} is followed by no tokens"))
        elif tokens:
            sentences.append(Sample(image_id or str(len(sentences)), tokens, tags, image_id, f"{file_name}:{start}"))
            tag_lines.append(token_lines)
        tokens, tags, token_lines, image_id, start, bad_lines = [], [], [], None, 0, False

    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            close_block()
            continue
        id_match = _IMGID_RE.match(raw.strip())
        if id_match and parse_token_line(raw) is None:
            close_block()
            start, image_id = number, id_match.group(1).strip()
            if not image_id:
                issues.append(FormatIssue(path_label, number, "IMGID line without an id"))
            elif image_id in seen_ids:
                issues.append(
                    FormatIssue(path_label, number, f"duplicate IMGID:{image_id} (first at line {seen_ids[image_id]})")
                )
            else:
                seen_ids[image_id] = number
            continue
        parsed = parse_token_line(raw)
        if parsed is None:
            issues.append(
                FormatIssue(path_label, number, f"malformed line {raw.strip()!r}: expected 'token<TAB>tag', found one field")
            )
            bad_lines = True
            continue
        if not start:
            start = number
        tokens.append(parsed[0])
        tags.append(parsed[1])
        token_lines.append(number)
    close_block()

    with_ids = [s.image_id is not None for s in sentences]
    if any(with_ids) and not all(with_ids):
        for sentence in sentences:
            if sentence.image_id is None:
                issues.append(FormatIssue(path_label, sentence.line, "block has no IMGID line but others do"))

    repaired = 0
    for sentence, numbers in zip(sentences, tag_lines):
        if repair and all(is_well_formed(t) for t in sentence.tags):
            sentence.tags, changed = bio_to_iob2(sentence.tags)
            repaired += changed
        issues.extend(_check_tags(path_label, sentence, numbers))

    if issues:
        issues.sort(key=lambda i: i.line)
        raise ConllFormatError(issues)

    notes: list[str] = []
    if has_bom:
        notes.append("UTF-8 byte-order mark (BOM) at start of file")
    if has_crlf:
        notes.append("CRLF line endings")
    if repaired:
        notes.append(f"repaired {repaired} tag(s) from BIO to IOB2")
    return ConllFile(Path(path_label), sentences, has_bom, has_crlf, repaired, notes)


def read_conll(path: str | Path, *, repair: bool = False) -> ConllFile:
    """Read a CoNLL file (with or without IMGID lines); raise ConllFormatError on any problem.

    With ``repair=True`` BIO tags are converted to IOB2 (``repaired_tags`` counts changes).
    """
    path = Path(path)
    text = decode_text(path.read_bytes(), str(path))
    result = read_conll_text(text, str(path), repair=repair)
    result.path = path
    return result


def conll_text(sentences: Iterable[Sample], *, with_image_ids: bool | None = None, separator: str = "\t") -> str:
    """Render sentences as CoNLL text (one blank line after every block)."""
    sentences = list(sentences)
    if with_image_ids is None:
        with_image_ids = bool(sentences) and all(s.image_id for s in sentences)
    if separator.strip(" \t") or not separator:
        raise ValueError(f"separator must be spaces and/or tabs, got {separator!r}")
    out: list[str] = []
    for index, sentence in enumerate(sentences):
        if sentence.tags is None:
            raise ValueError(f"sentence {index} has no tags")
        if len(sentence.tokens) != len(sentence.tags):
            raise ValueError(f"sentence {index}: {len(sentence.tokens)} tokens but {len(sentence.tags)} tags")
        if not sentence.tokens:
            raise ValueError(f"sentence {index} has no tokens")
        if with_image_ids:
            if not sentence.image_id:
                raise ValueError(f"sentence {index} has no image id but with_image_ids=True")
            out.append(f"IMGID:{sentence.image_id}")
        for token, tag in zip(sentence.tokens, sentence.tags):
            if parse_token_line(f"{token}{separator}{tag}") != (token, tag) or "\n" in token or "\r" in token:
                raise ValueError(f"sentence {index}: token {token!r} / tag {tag!r} cannot be written as CoNLL")
            out.append(f"{token}{separator}{tag}")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def write_conll(
    path: str | Path,
    sentences: Iterable[Sample],
    *,
    with_image_ids: bool | None = None,
    separator: str = "\t",
) -> Path:
    """Write sentences atomically (temp file + ``os.replace``); ``read_conll`` reads them back.

    ``with_image_ids=None`` writes IMGID lines when every sentence has an image id.
    """
    path = Path(path)
    text = conll_text(sentences, with_image_ids=with_image_ids, separator=separator)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def summarize(conll_file: ConllFile) -> dict[str, Any]:
    """Counts of a parsed file: tweets, tokens, entities per type (IOB2 spans), notes."""
    entities: Counter[str] = Counter()
    for sentence in conll_file.sentences:
        entities.update(span.type for span in iob2_spans(sentence.tags))
    return {
        "path": str(conll_file.path),
        "tweets": len(conll_file.sentences),
        "tokens": sum(len(s.tokens) for s in conll_file.sentences),
        "entities": dict(sorted(entities.items())),
        "entities_total": sum(entities.values()),
        "with_image_ids": bool(conll_file.sentences) and all(s.image_id for s in conll_file.sentences),
        "repaired_tags": conll_file.repaired_tags,
        "notes": list(conll_file.notes),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable multi-line rendering of ``summarize``'s result."""
    per_type = ", ".join(f"{k} {v}" for k, v in summary["entities"].items()) or "none"
    lines = [
        f"{summary['path']}:",
        f"  tweets:   {summary['tweets']}",
        f"  tokens:   {summary['tokens']}",
        f"  entities: {summary['entities_total']} ({per_type})",
        f"  image ids: {'yes' if summary['with_image_ids'] else 'no'}",
    ]
    for note in summary["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
