"""Tests for mner.pgim: knowledge alignment, captions and manual examples."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mner.formats import PgimFormatError, read_conll
from mner.config import MIN_ALIGNED_SHARE
from mner.pgim import (
    AlignmentError,
    ManualExample,
    check_aligned,
    parse_entity_line,
    read_captions,
    read_knowledge,
    read_manual_examples,
)

RES = Path(__file__).resolve().parent / "resources" / "pgim"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_knowledge_alignment_missing_and_extra() -> None:
    split = read_conll(RES / "split.txt").sentences
    aligned = read_knowledge(RES / "knowledge.txt", split)
    assert len(aligned.knowledge) == 4
    assert aligned.knowledge[0] == "Named entities:1. George Zimmerman (person)"
    assert aligned.knowledge[1] == ""  # block 1 has 'adore' for 'love': never matched by position alone
    assert aligned.knowledge[2] == "Lakers: basketball team"  # not shifted
    assert aligned.knowledge[3] == ""  # last tweet missing, as in the T15 release
    assert aligned.missing == [(1, "1002"), (3, "1004")]
    assert aligned.extra == [1]
    assert aligned.extra_lines == [11]
    report = aligned.report()
    assert "2 missing, 1 extra" in report and "IMGID:1004" in report and "knowledge.txt:11" in report


def test_a_file_matching_too_few_posts_names_itself_the_share_and_the_first_posts() -> None:
    ids = [f"p{i}" for i in range(12)]
    check_aligned("k.txt", "dev", 12, [], 0.99, "knowledge", "fix it")  # all matched
    check_aligned("k.txt", "dev", 0, [], 0.99, "knowledge", "fix it")  # an empty split has nothing to miss
    check_aligned("k.txt", "dev", 12, ids, 0.0, "knowledge", "fix it")  # 0 turns the check off
    with pytest.raises(AlignmentError) as failed:
        check_aligned("k.txt", "dev", 12, ids[1:], 0.99, "knowledge", "point at the right file")
    assert str(failed.value) == ("k.txt: knowledge for 1 of 12 dev posts (8.3%), below dataset.min_aligned_share=0.99; "
                                 "the first posts without: p1, p2, p3, p4, p5, p6, p7, p8, p9, p10. The file does not "
                                 "belong to these posts: point at the right file; or lower dataset.min_aligned_share (0 "
                                 "turns the check off)")


@pytest.mark.parametrize("dataset", ["sample", "twitter2015", "twitter2017"])
def test_the_default_aligned_share_passes_the_bundled_sample_and_benchmarks(dataset: str) -> None:
    folder = SAMPLE if dataset == "sample" else _real(dataset)
    files = folder if dataset == "sample" else folder / "pgim"
    captions = read_captions(files / "blip2_captions.txt")
    for split in ("train", "valid", "test"):  # Twitter-2015 dev, the lowest: 999 of 1000 posts
        sentences = read_conll(folder / f"{split}.txt", repair=True).sentences
        aligned = read_knowledge(files / f"knowledge_{split}.txt", sentences)
        check_aligned(aligned.path, split, len(sentences), [sentences[i].id for i, _ in aligned.missing],
                      MIN_ALIGNED_SHARE, "knowledge", "")
        check_aligned(files / "blip2_captions.txt", split, len(sentences),
                      [s.id for s in sentences if s.image_id not in captions], MIN_ALIGNED_SHARE, "a caption", "")


def test_knowledge_missing_eos_is_error(tmp_path: Path) -> None:
    bad = tmp_path / "k.txt"
    bad.write_bytes(b"a\tO\r\n<EOS>\tX\r\nw\tX\r\n\r\nb\tO\r\nc\tO\r\n\r\n")
    with pytest.raises(PgimFormatError) as info:
        read_knowledge(bad, [])
    assert f"{bad}:5: block has no '<EOS><TAB>X' line" in str(info.value)


def test_read_captions() -> None:
    captions = read_captions(RES / "captions.txt")
    assert captions == {
        "1001": "a man in a suit",
        "1002": "the eiffel tower at night",
        "1003": "a basketball game",
        "9999": "an extra image",
    }


def test_read_captions_errors() -> None:
    with pytest.raises(PgimFormatError) as info:
        read_captions(RES / "captions_bad.txt")
    message = str(info.value)
    assert [i.line for i in info.value.issues] == [2, 4]
    assert "captions_bad.txt:2: malformed caption line" in message
    assert "captions_bad.txt:4: duplicate caption for 1001.jpg (first at line 1)" in message


def test_parse_entity_line() -> None:
    assert parse_entity_line("['Smash Shiba', 'PER'], ['Melee Grand Finals', 'OTHER']") == [
        ("Smash Shiba", "PER"),
        ("Melee Grand Finals", "OTHER"),
    ]
    assert parse_entity_line("") == [] and parse_entity_line("None") == []
    assert parse_entity_line("['Rosie O'Donnell', 'PER'], ['Donald Trump', 'PER']") == [
        ("Rosie O'Donnell", "PER"),
        ("Donald Trump", "PER"),
    ]
    with pytest.raises(ValueError):
        parse_entity_line("['Lakers' 'ORG']")


def test_read_manual_examples_warns_on_extra_entities() -> None:
    with pytest.warns(UserWarning, match=r"manual_examples_entities.txt:5: id 2000 has no example"):
        examples = read_manual_examples(RES / "manual_examples.txt", RES / "manual_examples_entities.txt")
    assert examples == [
        ManualExample("1001", "Named entities:1. George Zimmerman (person)Reasoning:The sentence mentions him.",
                      [("George Zimmerman", "PER")]),
        ManualExample("1003", "Named entities:1. Lakers (team)Reasoning:A team.",
                      [("Lakers", "ORG"), ("Rosie O'Donnell", "PER")]),
        ManualExample("O_77", "Named entities:Reasoning:None.", []),
    ]
    with pytest.raises(PgimFormatError, match=r"manual_examples_entities.txt:5: id 2000"):
        read_manual_examples(RES / "manual_examples.txt", RES / "manual_examples_entities.txt", strict=True)


def test_read_manual_examples_errors() -> None:
    with pytest.raises(PgimFormatError) as info:
        read_manual_examples(RES / "manual_examples.txt", RES / "manual_examples_entities_bad.txt")
    message = str(info.value)
    assert "manual_examples_entities_bad.txt:4: entity ['LakersORG'] is not a ['surface', 'TYPE'] pair" in message
    assert "manual_examples.txt:5: id O_77 has no entry in manual_examples_entities_bad.txt" in message


def _real(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present at {path}")
    return path


def test_real_t15_train_knowledge_alignment() -> None:
    split = read_conll(_real("twitter2015", "train.txt"), repair=True).sentences
    aligned = read_knowledge(_real("twitter2015", "pgim", "knowledge_train.txt"), split)
    assert len(aligned.knowledge) == 4000
    assert aligned.blocks == 3999
    assert aligned.missing == [(3999, split[-1].image_id)]
    assert aligned.extra == []
    assert aligned.knowledge[-1] == ""
    assert all(aligned.knowledge[:-1])
    assert aligned.knowledge[0].startswith("Named entities:1. JayKenMinaj")


@pytest.mark.parametrize(
    "dataset,split,missing",
    [
        ("twitter2015", "valid", 1),
        ("twitter2015", "test", 1),
        ("twitter2017", "train", 0),
        ("twitter2017", "valid", 0),
        ("twitter2017", "test", 0),
    ],
)
def test_real_knowledge_alignment(dataset: str, split: str, missing: int) -> None:
    sentences = read_conll(_real(dataset, f"{split}.txt"), repair=True).sentences
    aligned = read_knowledge(_real(dataset, "pgim", f"knowledge_{split}.txt"), sentences)
    assert len(aligned.missing) == missing and aligned.extra == []
    if missing:
        assert aligned.missing == [(len(sentences) - 1, sentences[-1].image_id)]


@pytest.mark.parametrize(
    "dataset,count,extra_ids",
    [("twitter2015", 123, []), ("twitter2017", 202, ["16_05_06_815", "16_05_16_481"])],
)
def test_real_manual_examples(dataset: str, count: int, extra_ids: list[str]) -> None:
    examples_path = _real(dataset, "pgim", "manual_examples.txt")
    entities_path = _real(dataset, "pgim", "manual_examples_entities.txt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        examples = read_manual_examples(examples_path, entities_path)
    assert len(examples) == count
    message = "\n".join(str(w.message) for w in caught)
    assert len(caught) == (1 if extra_ids else 0)
    for image_id in extra_ids:
        assert "has no example" in message and image_id in message
    train_ids = {s.image_id for s in read_conll(_real(dataset, "train.txt"), repair=True).sentences}
    assert all(e.image_id in train_ids for e in examples)


def test_real_captions_cover_splits() -> None:
    for dataset in ("twitter2015", "twitter2017"):
        captions = read_captions(_real(dataset, "pgim", "blip2_captions.txt"))
        for split in ("train", "valid", "test"):
            ids = {s.image_id for s in read_conll(_real(dataset, f"{split}.txt"), repair=True).sentences}
            assert ids <= captions.keys()


def test_an_answer_cut_to_its_entity_list_keeps_the_entities_and_drops_the_reasoning() -> None:
    from mner.pgim import answer_in_form

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    sentences = read_conll(sample / "train.txt", repair=True).sentences
    answers = [z for z in read_knowledge(sample / "knowledge_train.txt", sentences).knowledge if z]
    cut = [answer_in_form(z, "entities") for z in answers]
    reasoned = [(z, c) for z, c in zip(answers, cut) if "reasoning:" in z.lower()]
    assert len(reasoned) > 0.9 * len(answers)
    for z, c in reasoned:
        assert "reasoning" not in c.lower() and c.lower().startswith("named entities") and z.startswith(c)
        assert len(c.split()) < len(z.split())
    assert answer_in_form("Named entities: 1. Paris (city) Reasoning: a city.", "entities") == "Named entities: 1. Paris (city)"
    assert answer_in_form("No named entities here.", "entities") == "No named entities here."
    assert all(answer_in_form(z, "full") == z for z in answers)
