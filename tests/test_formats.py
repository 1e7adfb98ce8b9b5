"""Tests for mner.formats: CoNLL reading, validation, writing and summaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from mner.formats import (
    ConllFormatError,
    FormatIssue,
    format_summary,
    read_conll,
    read_conll_text,
    summarize,
    write_conll,
)
from mner.samples import Sample

RES = Path(__file__).resolve().parent / "resources" / "conll"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _errors(name: str, **kwargs: bool) -> tuple[str, list[FormatIssue]]:
    path = RES / name
    with pytest.raises(ConllFormatError) as info:
        read_conll(path, **kwargs)
    return str(info.value), info.value.issues


def test_good_file_with_image_ids() -> None:
    conll = read_conll(RES / "bom_crlf.txt")
    assert [s.image_id for s in conll.sentences] == ["600", "601"]
    assert conll.sentences[0].tokens == ["RT", "Messi", "scores"]
    assert conll.sentences[0].tags == ["O", "B-PER", "O"]
    assert [s.line for s in conll.sentences] == [1, 6]
    assert conll.has_bom and conll.has_crlf
    assert any("BOM" in n for n in conll.notes) and any("CRLF" in n for n in conll.notes)


def test_plain_space_separated_without_imgid() -> None:
    conll = read_conll(RES / "plain_space_sep.txt")
    assert len(conll.sentences) == 2
    assert conll.sentences[0].tokens == ["EU", "rejects", "German", "call"]
    assert conll.sentences[0].tags == ["B-ORG", "O", "B-MISC", "O"]
    assert conll.sentences[1].image_id is None
    assert conll.sentences[1].line == 7
    assert not conll.has_bom and not conll.has_crlf and conll.notes == []


def test_chinese_character_level() -> None:
    conll = read_conll(RES / "chinese_char.txt")
    assert conll.sentences[0].tokens == ["我", "爱", "北", "京"]
    summary = summarize(conll)
    assert summary["entities"] == {"LOC": 1, "PER": 1}
    assert summary["tokens"] == 7 and summary["with_image_ids"] is False


def test_token_is_everything_before_last_whitespace() -> None:
    conll = read_conll_text("New York\tB-LOC\n\xa0\tO\nx   y  O  \n", "mem.txt")
    assert conll.sentences[0].tokens == ["New York", "\xa0", "x   y"]
    assert conll.sentences[0].tags == ["B-LOC", "O", "O"]


def test_malformed_line() -> None:
    message, issues = _errors("malformed_line.txt")
    assert issues == [FormatIssue(str(RES / "malformed_line.txt"), 4, issues[0].problem)]
    assert "malformed_line.txt:4: malformed line 'hello'" in message


def test_bad_tag() -> None:
    message, issues = _errors("bad_tag.txt")
    assert [i.line for i in issues] == [7, 8]
    assert "bad_tag.txt:7: malformed tag 'B-'" in message
    assert "bad_tag.txt:8: malformed tag 'LOC'" in message


def test_bad_continuation_strict() -> None:
    message, issues = _errors("bad_continuation.txt")
    assert [i.line for i in issues] == [4, 10]
    assert "bad_continuation.txt:4: I-LOC follows O" in message
    assert "bad_continuation.txt:10: I-ORG follows B-PER" in message


def test_bad_continuation_repair() -> None:
    conll = read_conll(RES / "bad_continuation.txt", repair=True)
    assert conll.sentences[0].tags == ["O", "O", "B-LOC", "I-LOC"]
    assert conll.sentences[1].tags == ["O", "B-PER", "B-ORG"]
    assert conll.repaired_tags == 2
    assert any("repaired 2" in n for n in conll.notes)
    assert summarize(conll)["entities"] == {"LOC": 1, "ORG": 1, "PER": 1}


def test_empty_block() -> None:
    message, issues = _errors("empty_block.txt")
    assert [i.line for i in issues] == [4]
    assert "empty_block.txt:4: empty block: IMGID:401" in message


def test_duplicate_imgid() -> None:
    message, issues = _errors("duplicate_imgid.txt")
    assert [i.line for i in issues] == [9]
    assert "duplicate_imgid.txt:9: duplicate IMGID:500 (first at line 1)" in message


def test_all_problems_collected_and_truncated() -> None:
    text = "".join(f"IMGID:{i}\nx\tI-PER\n\n" for i in range(25))
    with pytest.raises(ConllFormatError) as info:
        read_conll_text(text, "many.txt")
    assert len(info.value.issues) == 25
    assert "many.txt:2: I-PER follows O" in str(info.value)
    assert "... and 5 more" in str(info.value)


def test_mixed_imgid_blocks_rejected() -> None:
    with pytest.raises(ConllFormatError) as info:
        read_conll_text("IMGID:1\na\tO\n\nb\tO\n", "mixed.txt")
    assert "mixed.txt:4: block has no IMGID line" in str(info.value)


def test_multiple_blank_lines_and_missing_final_newline() -> None:
    conll = read_conll_text("\n\nIMGID:1\na\tO\n\n\n\nIMGID:2\nb\tO", "x.txt")
    assert [(s.image_id, s.line) for s in conll.sentences] == [("1", 3), ("2", 8)]


def test_format_issue_str() -> None:
    assert str(FormatIssue("a.txt", 3, "bad")) == "a.txt:3: bad"


@pytest.mark.parametrize("name", ["bom_crlf.txt", "plain_space_sep.txt", "chinese_char.txt"])
def test_write_round_trip(tmp_path: Path, name: str) -> None:
    original = read_conll(RES / name)
    out = write_conll(tmp_path / name, original.sentences)
    again = read_conll(out)
    assert [(s.tokens, s.tags, s.image_id) for s in again.sentences] == [
        (s.tokens, s.tags, s.image_id) for s in original.sentences
    ]
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind


def test_write_space_separator_and_flags(tmp_path: Path) -> None:
    sentences = [Sample("7", ["a", "b"], ["B-PER", "I-PER"], "7")]
    write_conll(tmp_path / "s.txt", sentences, separator=" ", with_image_ids=False)
    assert (tmp_path / "s.txt").read_text(encoding="utf-8") == "a B-PER\nb I-PER\n\n"
    with pytest.raises(ValueError):
        write_conll(tmp_path / "t.txt", [Sample("0", ["a"], ["O"])], with_image_ids=True)
    with pytest.raises(ValueError):
        write_conll(tmp_path / "u.txt", [Sample("0", ["a", "b"], ["O"])])


def test_format_summary() -> None:
    text = format_summary(summarize(read_conll(RES / "bom_crlf.txt")))
    assert "tweets:   2" in text and "PER 1" in text and "ORG 1" in text and "CRLF" in text


# Published entity counts (data README); T15 needs BIO->IOB2 repair to reach them.
EXPECTED = {
    ("twitter2015", "train"): (4000, 6352, 186),
    ("twitter2015", "valid"): (1000, 1594, 53),
    ("twitter2015", "test"): (3257, 5207, 135),
    ("twitter2017", "train"): (3373, 6049, 0),
    ("twitter2017", "valid"): (723, 1324, 0),
    ("twitter2017", "test"): (723, 1351, 0),
}


@pytest.mark.parametrize("dataset,split", sorted(EXPECTED))
def test_real_splits(dataset: str, split: str, tmp_path: Path) -> None:
    path = DATA / dataset / f"{split}.txt"
    if not path.exists():
        pytest.skip(f"real data not present at {path}")
    tweets, entities, repaired = EXPECTED[(dataset, split)]
    conll = read_conll(path, repair=True)
    summary = summarize(conll)
    assert (summary["tweets"], summary["entities_total"], conll.repaired_tags) == (tweets, entities, repaired)
    assert summary["with_image_ids"]
    if repaired:
        with pytest.raises(ConllFormatError) as info:
            read_conll(path)
        assert len(info.value.issues) == repaired
    out = write_conll(tmp_path / path.name, conll.sentences)  # the same name, so the same sources
    assert read_conll(out).sentences == conll.sentences
