"""Raw posts to tokens the way the training files are tokenized, and tokens back to a post as a user would write it.

The conventions are read from the Twitter-2015/2017 CoNLL files (``docs/tokenization.md`` has the
evidence and the agreement figures). Both split every punctuation mark into a token of its own,
apostrophes and hyphens included (``It ' s``, ``co - hosts``), and keep numbers with inner
separators whole (``13.5``, ``10,000``) and emoticons whole (``:)``). They differ on the rest:

- ``twitter2017``: ``@user`` and ``#tag`` become ``@ user`` and ``# tag``; digits that start a word
  stand apart (``5th`` -> ``5 th``, ``2k16`` -> ``2 k16``, while ``Trump2016`` stays); every emoji
  code point is a token (``❤️`` -> ``❤`` and the variation selector);
- ``twitter2015``: ``@user``, ``#tag`` and words that start with digits (``8th``) stay whole.

URLs stay one token in both (the Twitter-2017 files hold none; the tagger's word shapes know them).

A third convention, ``chars``, is that of character-level files such as MSRA-style Chinese NER:
one token per character (code point), whitespace dropped, and Latin letters, digits and
punctuation split per character too (``NBA2008`` -> ``N B A 2 0 0 8``). A training file whose
tokens are almost all single characters (:func:`is_character_level`) gets it.

Each pattern runs on the ``regex`` package (a transformers dependency) for its Unicode classes; a
token keeps its character span in the post, so entities map back to the raw text.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import regex

STYLES = ("twitter2017", "twitter2015", "chars")
DEFAULT_STYLE = "twitter2017"
CHARACTERS = "chars"
AUTO = "auto"  # the setting that reads the convention off the training file (dataset.tokenization)
# a training file is character-level when at least this share of its tokens are single characters: the Twitter
# files have 17-25% (punctuation, "I", "a"), MSRA-style files all but none
CHARACTER_LEVEL_SHARE = 0.9

_URL = r"(?:https?://|www\.)[^\s]+"
_EMOTICON = r"(?<![\w])[:;=][\-o\*']?[\)\]\(\[dDpPoO/\\|@3](?![\w])"
_NUMBER = r"\d+(?:[.,]\d+)*"
_WORD = r"[\p{L}\p{M}\p{N}_]+"
_ONE = r"[^\s]"  # any other character (punctuation, symbols, each emoji code point) stands alone
_PATTERNS = {
    # a comma after a number, before a space, stays with it in the Twitter-2017 files ("May 21, 2016": 57 of 58 times)
    "twitter2017": regex.compile("|".join((_URL, _EMOTICON, _NUMBER + r"(?:,(?=\s))?", _WORD, _ONE))),
    # Twitter-2015 keeps words with inner hyphens or slashes ("Low-cost", "b/w") and HTML entities ("&amp" ";")
    "twitter2015": regex.compile("|".join((_URL, _EMOTICON, r"[@#][\p{L}\p{N}_]+", r"&[a-z]+(?=;)",
                                           r"(?>" + _NUMBER + r")(?![\p{L}_])", _WORD + r"(?:[-/]" + _WORD + ")*", _ONE))),
    CHARACTERS: regex.compile(_ONE),
}


class Token(NamedTuple):
    """One token of a post and its character span ``[start, end)`` in the post."""

    text: str
    start: int
    end: int


def style_for_dataset(dataset: str | None) -> str:
    """The tokenization a model trained on ``dataset`` read: Twitter-2015's for names starting ``twitter2015``."""
    return "twitter2015" if (dataset or "").lower().startswith("twitter2015") else DEFAULT_STYLE


def is_character_level(tokens: Iterable[str]) -> bool:
    """Whether a file with these tokens is split per character: at least :data:`CHARACTER_LEVEL_SHARE` are one long."""
    total = single = 0
    for token in tokens:
        total += 1
        single += len(token) == 1
    return bool(total) and single >= CHARACTER_LEVEL_SHARE * total


def training_style(tokens: Iterable[str], dataset: str | None, setting: str = AUTO) -> str:
    """The convention of a training file: ``setting`` unless it is ``auto``, else ``chars`` for a character-level file,
    else that of its dataset's name."""
    if setting != AUTO:
        if setting not in STYLES:
            raise ValueError(f"tokenization={setting!r}; expected {AUTO} or one of {STYLES}")
        return setting
    return CHARACTERS if is_character_level(tokens) else style_for_dataset(dataset)


def join_tokens(tokens: list[str], style: str) -> str:
    """Tokens as one string for reading: run together in the ``chars`` convention, else with spaces between."""
    return ("" if style == CHARACTERS else " ").join(tokens)


def tokenize_post(text: str, style: str = DEFAULT_STYLE) -> list[Token]:
    """The tokens of a raw post in the benchmark files' convention ``style`` (see the module doc)."""
    if style not in _PATTERNS:
        raise ValueError(f"unknown tokenization style {style!r}; expected one of {STYLES}")
    return [Token(m.group(), m.start(), m.end()) for m in _PATTERNS[style].finditer(text)]


_NO_SPACE_BEFORE = frozenset(".,!?:;)]}%…")
_NO_SPACE_AFTER = frozenset("([{$£")
_GLUE_NEXT = frozenset("@#")
_CONTRACTIONS = frozenset({"s", "t", "re", "ve", "ll", "d", "m", "S", "T", "RE", "VE", "LL", "D", "M"})
_ORDINALS = frozenset({"st", "nd", "rd", "th", "ST", "ND", "RD", "TH"})
_APOSTROPHES = frozenset("'’")
_EMOJI_MODIFIER = regex.compile("[\\p{M}\\p{Sk}\u200d\U0001F3FB-\U0001F3FF]")  # selectors, joiners, skin tones


def _joins(previous: str, token: str, following: str | None) -> bool:
    """Whether ``token`` follows ``previous`` with no space in a post as people write it."""
    if previous in _GLUE_NEXT or previous[-1] in _NO_SPACE_AFTER:
        return True
    if token in _APOSTROPHES:
        return following in _CONTRACTIONS and previous[-1].isalnum()
    if previous in _APOSTROPHES and token in _CONTRACTIONS:
        return True
    if token in _ORDINALS and previous.isdigit():
        return True
    if _EMOJI_MODIFIER.fullmatch(token):
        return True
    return token in _NO_SPACE_BEFORE or (len(token) > 1 and set(token) <= set(".!?…"))


def rebuild_post(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """A post as a user would have typed these tokens, and each token's character span in it.

    ``@ user`` -> ``@user``, ``It ' s`` -> ``It's``, ``5 th`` -> ``5th``, no space before closing
    punctuation or after an opening bracket, emoji modifiers joined to their emoji. It stands in
    for the original text, which the benchmark files do not keep.
    """
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    for index, token in enumerate(tokens):
        if index and not _joins(tokens[index - 1], token, tokens[index + 1] if index + 1 < len(tokens) else None):
            parts.append(" ")
            length += 1
        spans.append((length, length + len(token)))
        parts.append(token)
        length += len(token)
    return "".join(parts), spans
