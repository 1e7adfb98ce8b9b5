"""Turn words of T (and knowledge Z) into encoder inputs with word-level label alignment.

The sequence is ``[CLS] T [SEP] Z [SEP]`` (or ``[CLS] T [SEP]``). Labels live on the first
sub-token of each word of T only; Z and special tokens are never labelled. When the sequence is
longer than ``max_length``, Z is shortened; T is never cut (an over-long T is an error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

SHAPES = ("pad", "lower", "capitalised", "all_caps", "mixed_case", "digits", "mention", "hashtag", "url", "punct", "other")
SHAPE_IDS = {name: i for i, name in enumerate(SHAPES)}
_URL = re.compile(r"^(https?://|www\.)", re.IGNORECASE)


def word_shape(word: str) -> int:
    """Shape class of a word: case pattern, digits, @mention, #hashtag, URL or punctuation."""
    if _URL.match(word):
        return SHAPE_IDS["url"]
    if word.startswith("@") and len(word) > 1:
        return SHAPE_IDS["mention"]
    if word.startswith("#") and len(word) > 1:
        return SHAPE_IDS["hashtag"]
    letters = [c for c in word if c.isalpha()]
    if not letters:
        if any(c.isdigit() for c in word):
            return SHAPE_IDS["digits"]
        return SHAPE_IDS["punct"] if word else SHAPE_IDS["other"]
    if all(c.islower() for c in letters):
        return SHAPE_IDS["lower"]
    if all(c.isupper() for c in letters):
        return SHAPE_IDS["all_caps"] if len(letters) > 1 else SHAPE_IDS["capitalised"]
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return SHAPE_IDS["capitalised"]
    if any(c.isupper() for c in letters) or any(c.islower() for c in letters):
        return SHAPE_IDS["mixed_case"]
    return SHAPE_IDS["other"]


@dataclass
class EncodedSentence:
    """One sentence as encoder input: sub-token ids, and where each word of T starts."""

    input_ids: list[int]
    token_type_ids: list[int]
    word_starts: list[int]
    shapes: list[int]
    label_ids: list[int] | None
    knowledge_pieces: int
    knowledge_truncated: bool


class SentenceEncoder:
    """Encodes words + optional knowledge with a Hugging Face fast tokenizer."""

    def __init__(self, tokenizer, max_length: int, label_to_id: dict[str, int] | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.label_to_id = label_to_id or {}
        self.cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self.sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if self.cls_id is None or self.sep_id is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no CLS/SEP (or BOS/EOS) token")
        self.unk_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else self.sep_id

    def _pieces(self, words: list[str]) -> list[list[int]]:
        """Sub-token ids per word; a word the tokenizer drops entirely becomes one [UNK]."""
        if not words:
            return []
        encoded = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        pieces: list[list[int]] = [[] for _ in words]
        for token_id, word_id in zip(encoded["input_ids"], encoded.word_ids()):
            if word_id is not None:
                pieces[word_id].append(token_id)
        return [p if p else [self.unk_id] for p in pieces]

    def encode(self, words: list[str], tags: list[str] | None = None, knowledge: str | None = None) -> EncodedSentence:
        """Encode one sentence; ``knowledge`` (Z) is appended after a separator and cut to fit."""
        if not words:
            raise ValueError("cannot encode an empty sentence")
        pieces = self._pieces(words)
        ids = [self.cls_id]
        starts: list[int] = []
        for word_pieces in pieces:
            starts.append(len(ids))
            ids.extend(word_pieces)
        ids.append(self.sep_id)
        if len(ids) > self.max_length:
            raise ValueError(
                f"sentence of {len(words)} words needs {len(ids)} sub-tokens, more than max_length="
                f"{self.max_length}; T is never truncated, raise model.max_length"
            )
        text_len = len(ids)
        z_pieces, truncated = 0, False
        if knowledge:
            budget = self.max_length - text_len - 1
            z_ids = [i for p in self._pieces(knowledge.split()) for i in p]
            truncated = len(z_ids) > budget
            z_ids = z_ids[: max(budget, 0)]
            if z_ids:
                ids.extend(z_ids)
                ids.append(self.sep_id)
                z_pieces = len(z_ids)
        type_ids = [0] * text_len + [1] * (len(ids) - text_len)
        label_ids = None
        if tags is not None:
            if len(tags) != len(words):
                raise ValueError(f"{len(words)} words but {len(tags)} tags")
            unknown = sorted({t for t in tags if t not in self.label_to_id})
            if unknown:
                raise ValueError(f"tags {unknown} are not in the label set {sorted(self.label_to_id)}")
            label_ids = [self.label_to_id[t] for t in tags]
        return EncodedSentence(ids, type_ids, starts, [word_shape(w) for w in words], label_ids, z_pieces, truncated)


@dataclass
class Batch:
    """Padded tensors for a list of encoded sentences."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    word_starts: torch.Tensor
    word_mask: torch.Tensor
    shapes: torch.Tensor
    labels: torch.Tensor | None

    def to(self, device: torch.device | str) -> "Batch":
        """The same batch on ``device``."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


def collate(items: list[EncodedSentence], pad_id: int = 0) -> Batch:
    """Pad a batch to its own longest sequence (dynamic padding)."""
    longest = max(len(e.input_ids) for e in items)
    most_words = max(len(e.word_starts) for e in items)
    n = len(items)
    input_ids = torch.full((n, longest), pad_id, dtype=torch.long)
    attention = torch.zeros((n, longest), dtype=torch.long)
    type_ids = torch.zeros((n, longest), dtype=torch.long)
    starts = torch.zeros((n, most_words), dtype=torch.long)
    word_mask = torch.zeros((n, most_words), dtype=torch.bool)
    shapes = torch.zeros((n, most_words), dtype=torch.long)
    has_labels = all(e.label_ids is not None for e in items)
    labels = torch.zeros((n, most_words), dtype=torch.long) if has_labels else None
    for i, e in enumerate(items):
        length, words = len(e.input_ids), len(e.word_starts)
        input_ids[i, :length] = torch.tensor(e.input_ids)
        attention[i, :length] = 1
        type_ids[i, :length] = torch.tensor(e.token_type_ids)
        starts[i, :words] = torch.tensor(e.word_starts)
        word_mask[i, :words] = True
        shapes[i, :words] = torch.tensor(e.shapes)
        if labels is not None:
            labels[i, :words] = torch.tensor(e.label_ids)
    return Batch(input_ids, attention, type_ids, starts, word_mask, shapes, labels)
