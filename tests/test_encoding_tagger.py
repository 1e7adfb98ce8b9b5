"""Label alignment with sub-words, [T;SEP;Z] assembly, Z truncation, and the tagger's outputs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from models.encoding import SHAPE_IDS, SentenceEncoder, collate, word_shape
from models.tagger import KnowledgeTagger

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
L2I = {label: i for i, label in enumerate(LABELS)}


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


def test_labels_sit_on_first_subtoken_of_each_word_of_t(tokenizer) -> None:
    words = ["George", "Zimmermannovich", "visited", "Shanghaiville"]
    tags = ["B-PER", "I-PER", "O", "B-LOC"]
    enc = SentenceEncoder(tokenizer, 64, L2I).encode(words, tags, knowledge="Zimmerman is a person .")
    assert enc.label_ids == [L2I[t] for t in tags]
    assert len(enc.word_starts) == len(words)
    for word, start in zip(words, enc.word_starts):
        first_piece = tokenizer(word, add_special_tokens=False)["input_ids"][0]
        assert enc.input_ids[start] == first_piece
    # a word split into several pieces: the next word starts after all of them
    pieces = len(tokenizer("Zimmermannovich", add_special_tokens=False)["input_ids"])
    assert pieces > 1
    assert enc.word_starts[2] - enc.word_starts[1] == pieces
    # layout: [CLS] T [SEP] Z [SEP]; Z carries token type 1 and no label position
    sep = tokenizer.sep_token_id
    assert enc.input_ids[0] == tokenizer.cls_token_id and enc.input_ids[-1] == sep
    first_sep = enc.input_ids.index(sep)
    assert all(s < first_sep for s in enc.word_starts)
    assert enc.token_type_ids[: first_sep + 1] == [0] * (first_sep + 1)
    assert set(enc.token_type_ids[first_sep + 1 :]) == {1}


def test_truncation_shortens_z_never_t(tokenizer) -> None:
    words = "Barack Obama met Angela Merkel in Berlin today".split()
    knowledge = " ".join(["background"] * 200)
    enc = SentenceEncoder(tokenizer, 32, L2I).encode(words, ["O"] * len(words), knowledge)
    assert len(enc.input_ids) == 32
    assert enc.knowledge_truncated
    assert len(enc.word_starts) == len(words)
    text_only = SentenceEncoder(tokenizer, 32, L2I).encode(words, ["O"] * len(words))
    assert enc.input_ids[: len(text_only.input_ids)] == text_only.input_ids
    with pytest.raises(ValueError, match="T is never truncated"):
        SentenceEncoder(tokenizer, 6, L2I).encode(words, ["O"] * len(words))


def test_word_without_pieces_becomes_unk_not_dropped(tokenizer) -> None:
    words = ["hello", "\u200b", "world"]
    enc = SentenceEncoder(tokenizer, 16, L2I).encode(words, ["O", "O", "O"])
    assert len(enc.word_starts) == 3
    assert enc.input_ids[enc.word_starts[1]] == tokenizer.unk_token_id


def test_unknown_tag_is_an_error(tokenizer) -> None:
    with pytest.raises(ValueError, match="not in the label set"):
        SentenceEncoder(tokenizer, 16, L2I).encode(["x"], ["B-ORG"])


def test_word_shapes() -> None:
    cases = {"Obama": "capitalised", "NASA": "all_caps", "iPhone": "mixed_case", "2015": "digits",
             "@user": "mention", "#nba": "hashtag", "http://t.co/x": "url", "!!": "punct", "the": "lower"}
    for word, shape in cases.items():
        assert word_shape(word) == SHAPE_IDS[shape], word


def test_tagger_emits_one_score_row_per_word_and_decodes_valid_tags(tokenizer, minilm_path) -> None:
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(minilm_path, add_pooling_layer=False)
    tagger = KnowledgeTagger(encoder, LABELS, shape_features=True)
    sentence_encoder = SentenceEncoder(tokenizer, 64, L2I)
    items = [
        sentence_encoder.encode(["Obama", "in", "Paris"], ["B-PER", "O", "B-LOC"], "Obama is a politician ."),
        sentence_encoder.encode(["hi"], ["O"]),
    ]
    batch = collate(items)
    assert batch.word_mask.tolist() == [[True, True, True], [True, False, False]]
    emissions = tagger.emissions(batch)
    assert emissions.shape == (2, 3, len(LABELS)) and emissions.dtype == torch.float32
    loss = tagger.loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert tagger.shape_embedding.weight.grad is not None
    predicted = tagger.predict(batch)
    assert [len(p) for p in predicted] == [3, 1]
    assert all(not (p[0].startswith("I-")) for p in predicted)


def test_characters_align_one_to_one_with_their_pieces_unknown_and_vanishing_ones_included(tokenizer) -> None:
    """A character-level post (``chars`` convention): known CJK characters, Latin letters and digits are one piece each,
    a character outside the vocabulary is [UNK], one the tokenizer drops (a zero-width space, a lone combining accent)
    still gets a position of its own, so every character keeps its label."""
    chars = ["北", "京", "龘", "N", "B", "A", "\u200b", "\u0301", "2", "。"]
    tags = ["B-LOC", "I-LOC", "O", "B-PER", "I-PER", "I-PER", "O", "O", "O", "O"]
    enc = SentenceEncoder(tokenizer, 32, L2I).encode(chars, tags)
    assert enc.word_starts == list(range(1, len(chars) + 1))  # one piece per character, in order
    pieces = [enc.input_ids[start] for start in enc.word_starts]
    assert pieces == [tokenizer.convert_tokens_to_ids(p) for p in ("北", "京", "[UNK]", "n", "b", "a", "[UNK]", "[UNK]",
                                                                   "2", "。")]
    assert enc.input_ids[len(chars) + 1] == tokenizer.sep_token_id and enc.label_ids == [L2I[t] for t in tags]
