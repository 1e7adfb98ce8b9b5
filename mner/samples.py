"""Samples: one post from file to prediction, its split names, and JSON-lines reading and writing.

A :class:`Sample` is what every stage and the engine see; on disk a split file holds one JSON
object per sample (``id``, ``image_id``, ``source``, ``tokens``, ``tags``, and once joined
``knowledge`` and ``caption``), written and read by :func:`write_samples` / :func:`read_samples`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable

SPLITS = ("train", "dev", "test")
# written on every row, in this order; the optional fields follow when set (not None)
ROW_FIELDS = ("id", "image_id", "source", "tokens", "tags")
OPTIONAL_FIELDS = ("knowledge", "caption", "ocr", "image_path")


@dataclass
class Sample:
    """One post: its words, IOB2 tags (None = to predict) and what is known about it.

    ``source`` names where it came from (``file:line`` of its CoNLL block); ``knowledge`` is the
    auxiliary knowledge Z, ``caption`` and ``ocr`` the image's text, ``image_path`` its image file.
    ``knowledge`` and ``caption`` are None until a stage joins them.
    """

    id: str
    tokens: list[str]
    tags: list[str] | None = None
    image_id: str | None = None
    source: str = ""
    knowledge: str | None = None
    caption: str | None = None
    ocr: str | None = None
    image_path: str | None = None

    @property
    def text(self) -> str:
        """The words joined by single spaces."""
        return " ".join(self.tokens)

    @property
    def line(self) -> int:
        """The line number at the end of ``source`` (``file:line``); 0 when it names none."""
        _, _, number = self.source.rpartition(":")
        return int(number) if number.isdigit() else 0

    @property
    def query_text(self) -> str:
        """Text, caption and OCR text (those present) as one string: what retrieval embeds."""
        return ". ".join(part for part in (self.text, self.caption, self.ocr) if part)

    @property
    def image_text(self) -> str:
        """What the backbone's image branch reads as text: the caption, then the OCR text (those present)."""
        return ". ".join(part for part in ((self.caption or "").strip(), (self.ocr or "").strip()) if part)

    def without_tags(self) -> Sample:
        """A copy whose tags are None, so that it is only predicted."""
        return replace(self, tags=None)

    def to_row(self) -> dict[str, Any]:
        """The JSON object of this sample: ``ROW_FIELDS``, then the optional fields that are set."""
        row = {name: getattr(self, name) for name in ROW_FIELDS}
        row.update({name: getattr(self, name) for name in OPTIONAL_FIELDS if getattr(self, name) is not None})
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Sample:
        """The sample of a JSON object; ``id`` and ``tokens`` are required, unknown fields raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(row) - known)
        if unknown:
            raise ValueError(f"unknown sample fields {unknown}")
        missing = [name for name in ("id", "tokens") if name not in row]
        if missing:
            raise ValueError(f"sample lacks the fields {missing}")
        return cls(**{**row, "source": row.get("source") or ""})


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write one JSON object per line (UTF-8, non-ASCII kept readable)."""
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a bad line raises ``ValueError`` naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err
    return rows


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    """Write samples as JSON lines (:meth:`Sample.to_row`)."""
    write_jsonl(path, [sample.to_row() for sample in samples])


def read_samples(path: str | Path) -> list[Sample]:
    """Read a split file; a line that is not a sample raises ``ValueError`` naming file and line."""
    samples = []
    for number, row in enumerate(read_jsonl(path), 1):
        try:
            samples.append(Sample.from_row(row))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}:{number}: not a sample ({err})") from err
    return samples


def read_shard_samples(data: dict[str, Any], split: str, start: int, stop: int) -> list[Sample]:
    """Samples ``[start:stop]`` of ``{split}.jsonl`` of the output ``data``: what a shard stage works on."""
    if start < 0 or stop < start:
        raise ValueError(f"bad shard bounds start={start} stop={stop} for split {split!r}")
    return read_samples(Path(data["dir"]) / f"{split}.jsonl")[start:stop]
