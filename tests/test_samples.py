"""The one sample type: JSON-lines and CoNLL round trips, and the views retrieval and the backbone read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mner.formats import read_conll, write_conll
from mner.samples import Sample, read_samples, write_samples


def test_samples_round_trip_through_json_lines(tmp_path: Path) -> None:
    loaded = Sample("7", ["Obama", "in", "Paris"], ["B-PER", "O", "B-LOC"], "7", "train.txt:4")
    joined = Sample("8", ["héllo"], ["O"], None, "train.txt:9", knowledge="Z text", caption="")
    predicted = Sample("post", ["a"], source="--text", ocr="CAVS", image_path="/img/1.jpg")
    write_samples(tmp_path / "s.jsonl", [loaded, joined, predicted])
    assert read_samples(tmp_path / "s.jsonl") == [loaded, joined, predicted]
    lines = (tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()
    # the field names and order of the load and knowledge stages' rows
    assert lines[0] == ('{"id": "7", "image_id": "7", "source": "train.txt:4", "tokens": ["Obama", "in", "Paris"], '
                        '"tags": ["B-PER", "O", "B-LOC"]}')
    assert list(json.loads(lines[1])) == ["id", "image_id", "source", "tokens", "tags", "knowledge", "caption"]
    assert json.loads(lines[1])["tokens"] == ["héllo"] and "héllo" in lines[1]


def test_a_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "1", "tokens": ["a"]}\n{"id": "2"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a sample .*\['tokens'\]"):
        read_samples(path)
    path.write_text('{"id": "1", "tokens": ["a"], "image_text": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not a sample .*unknown sample fields \['image_text'\]"):
        read_samples(path)
    path.write_text('{"id": "1", "tokens": ["a"]}\n{"id": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_samples(path)


def test_samples_round_trip_through_conll(tmp_path: Path) -> None:
    samples = [Sample("11", ["RT", "@nba", ":", "LeBron"], ["O", "O", "O", "B-PER"], "11"),
               Sample("12", ["Cleveland"], ["B-LOC"], "12")]
    conll = read_conll(write_conll(tmp_path / "t.txt", samples))
    assert [(s.id, s.tokens, s.tags, s.image_id) for s in conll.sentences] == [
        (s.id, s.tokens, s.tags, s.image_id) for s in samples]
    assert [(s.source, s.line) for s in conll.sentences] == [("t.txt:1", 1), ("t.txt:7", 7)]
    without_ids = read_conll(write_conll(tmp_path / "u.txt", samples, with_image_ids=False)).sentences
    assert [(s.id, s.image_id, s.source) for s in without_ids] == [("0", None, "u.txt:1"), ("1", None, "u.txt:6")]
    with pytest.raises(ValueError, match="sentence 0 has no tags"):
        write_conll(tmp_path / "v.txt", [samples[0].without_tags()])


def test_derived_views() -> None:
    bare = Sample("1", ["LeBron", "scores", "40"])
    assert bare.text == "LeBron scores 40" and bare.line == 0 and bare.tags is None
    assert bare.query_text == "LeBron scores 40"
    assert Sample("1", ["a", "b"], caption="a court", ocr="CAVS 112").query_text == "a b. a court. CAVS 112"
    assert Sample("1", ["a", "b"], caption="", ocr="CAVS 112").query_text == "a b. CAVS 112"
    assert Sample("1", ["a", "b"], caption="a court").query_text == "a b. a court"
    assert bare.image_text == ""
    assert Sample("1", ["a"], caption=" a court ", ocr=" CAVS ").image_text == "a court. CAVS"
    assert Sample("1", ["a"], caption="  ", ocr="CAVS").image_text == "CAVS"
    labelled = Sample("1", ["a"], ["O"], source="x.txt:12")
    assert labelled.without_tags().tags is None and labelled.tags == ["O"] and labelled.line == 12


def test_backbone_posts_keep_their_image_text(tmp_path: Path) -> None:
    from engine.backbone_training import post_row, read_posts
    from mner.samples import write_jsonl

    post = Sample("1", ["a", "b"], ["O", "O"], "1", "t.txt:1", caption=" a court ", ocr="CAVS", image_path="/i/1.jpg")
    write_jsonl(tmp_path / "train.posts.jsonl", [post_row(post)])
    row = json.loads((tmp_path / "train.posts.jsonl").read_text(encoding="utf-8"))
    assert list(row) == ["id", "image_id", "tokens", "tags", "image_text", "image_path"]
    (back,) = read_posts(tmp_path / "train.posts.jsonl")
    assert (back.id, back.tokens, back.tags, back.image_id, back.image_path) == ("1", ["a", "b"], ["O", "O"], "1", "/i/1.jpg")
    assert back.image_text == post.image_text == "a court. CAVS"
