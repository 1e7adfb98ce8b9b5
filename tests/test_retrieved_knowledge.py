"""Retrieved knowledge (``stage1.knowledge.backend: retrieved``): real MiniLM embeddings, real FAISS, the demo sample."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.retrieval import EmbedderOptions, make_embedder
from engine.retrieved_knowledge import TrainAnswerIndex
from mner import formats
from mner.samples import read_jsonl

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


@pytest.fixture(scope="module")
def train():
    """The demo sample's train posts, the last one a word-for-word copy of the first under another id."""
    posts = formats.read_conll(SAMPLE / "train.txt", repair=True).sentences
    return [*posts, replace(posts[0], id="copy-of-first", image_id="copy-of-first")]


@pytest.fixture(scope="module")
def index(train):
    """Every train post's answer is a marker naming it."""
    return TrainAnswerIndex(train, {p.id: f"ANSWER-{p.id}" for p in train}, make_embedder("text", EmbedderOptions()))


def test_a_train_post_never_gets_its_own_answer(train, index) -> None:
    found = index.knowledge(train, k=3, min_score=-1.0, own_ids=True)
    for post, z in zip(train, found):
        assert f"ANSWER-{post.id}" not in z.knowledge.split("\n\n")
        assert [n["id"] for n in z.neighbours] and post.id not in [n["id"] for n in z.neighbours]
        assert z.knowledge.split("\n\n") == [f"ANSWER-{n['id']}" for n in z.neighbours]
    # the nearest post of a post with a twin is the twin (cosine 1): the filter is by id, not by text
    first, copy = found[0], found[-1]
    assert first.neighbours[0]["id"] == "copy-of-first" and first.neighbours[0]["score"] > 0.999
    assert copy.neighbours[0]["id"] == train[0].id


def test_a_dev_post_may_get_the_answer_of_the_train_post_it_equals(train, index) -> None:
    z = index.knowledge([train[5]], k=1, min_score=-1.0, own_ids=False)[0]
    assert z.knowledge == f"ANSWER-{train[5].id}"


def test_neighbours_below_the_minimum_score_are_dropped_and_a_post_can_be_left_with_none(train, index) -> None:
    found = index.knowledge(train[:10], k=3, min_score=0.999, own_ids=True)
    assert found[0].neighbours and found[0].knowledge == "ANSWER-copy-of-first"
    assert any(z.knowledge == "" and z.neighbours == [] for z in found[1:])


def test_posts_without_a_teacher_answer_are_never_retrieved(train) -> None:
    answers = {p.id: f"ANSWER-{p.id}" for p in train[::2]}
    index = TrainAnswerIndex(train, answers, make_embedder("text", EmbedderOptions()))
    found = index.knowledge(train, k=5, min_score=-1.0, own_ids=True)
    assert all(n["id"] in answers for z in found for n in z.neighbours)
    with pytest.raises(ValueError, match="no train post has a teacher answer"):
        TrainAnswerIndex(train, {}, make_embedder("text", EmbedderOptions()))



@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_a_train_post_gets_k_neighbours_when_its_own_post_or_copies_of_its_text_are_nearest(train, k: int) -> None:
    posts = [*train, replace(train[1], id="second-copy-of-first", image_id="second-copy-of-first", tokens=train[0].tokens)]
    index = TrainAnswerIndex(posts, {p.id: f"ANSWER-{p.id}" for p in posts}, make_embedder("random", EmbedderOptions()))
    scores, nearest = index.index.search(index.embedder.embed(posts), 1)
    twins = {train[0].id, "copy-of-first", "second-copy-of-first"}  # one text under three ids
    assert all(float(s) > 0.999 and (posts[int(j)].id == p.id or p.id in twins)
               for p, s, j in zip(posts, scores[:, 0], nearest[:, 0]))  # each post's own entry (or a twin) is nearest
    for post, z in zip(posts, index.knowledge(posts, k=k, min_score=-1.0, own_ids=True)):
        ids = [n["id"] for n in z.neighbours]
        assert len(ids) == k and len(set(ids)) == k and post.id not in ids, (post.id, ids)
        if post.id in twins:  # its copies first: the filter drops its own id, not its text
            assert set(ids[:min(k, 2)]) <= twins - {post.id}


def test_a_train_post_gets_every_other_post_when_k_asks_for_all_of_them(train) -> None:
    index = TrainAnswerIndex(train, {p.id: f"ANSWER-{p.id}" for p in train}, make_embedder("random", EmbedderOptions()))
    for post, z in zip(train, index.knowledge(train, k=len(train) - 1, min_score=-1.0, own_ids=True)):
        assert sorted(n["id"] for n in z.neighbours) == sorted(p.id for p in train if p.id != post.id)


@pytest.mark.slow
def test_the_pipeline_joins_retrieved_knowledge_keys_it_by_k_and_embedder_and_counts_posts_alone(
        prefect_harness, tmp_path: Path) -> None:
    from flows.pipeline import pipeline
    from tests.tiny_sample import write_tiny_sample

    base = {**write_tiny_sample(tmp_path / "data", per_split=12), "stage1.knowledge.backend": "retrieved",
            "stage1.ocr.backend": "none", "artifacts_root": str(tmp_path / "store")}

    def joined(**settings: object) -> tuple[Path, list[dict]]:
        overrides = {**base, **{f"stage1.knowledge.retrieved.{k}": v for k, v in settings.items()}}
        knowledge = Path(pipeline(overrides=overrides, until="knowledge")["knowledge"])
        manifests = [json.loads(m.read_text()) for m in (tmp_path / "store" / "retrieved").glob("*/manifest.json")
                     if not m.parent.name.endswith(".partial")]
        return knowledge, manifests

    knowledge, stages = joined(k=2)
    assert len(stages) == 1
    assert all(r["knowledge"].count("Named entities") == 2 for r in read_jsonl(knowledge / "train.jsonl"))  # 2 answers
    alignment = json.loads((knowledge / "alignment.json").read_text())
    assert alignment["train"]["source"] == "retrieved" and alignment["test"]["without_knowledge"] == []

    assert len(joined(k=3)[1]) == 2  # another k, another key
    assert len(joined(k=2, embedder="random")[1]) == 3  # another embedder, another key

    knowledge, stages = joined(k=2, min_score=0.99)
    strict = next(m for m in stages if m["config"]["min_score"] == 0.99)
    assert strict["test"]["without_neighbour"] == 12 and strict["train"]["without_neighbour"] == 12
    assert all(r["knowledge"] == "" for r in read_jsonl(knowledge / "test.jsonl"))
    assert len(json.loads((knowledge / "alignment.json").read_text())["test"]["without_knowledge"]) == 12
