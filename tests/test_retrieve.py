"""Retrieval of similar manual examples: real MiniLM embeddings, real FAISS, the demo sample."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest
from stage_checks import run_id

from engine.retrieval import (
    EMBEDDERS,
    EmbedderOptions,
    build_index,
    example_items,
    make_embedder,
    normalise,
    retrieve,
    search,
    side_texts,
    split_samples,
)
from mner import formats, pgim
from mner.samples import Sample
from mner.store import sha256_file

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
EXAMPLES = SAMPLE / "manual_examples.txt"
ENTITIES = SAMPLE / "manual_examples_entities.txt"


@pytest.fixture(scope="module")
def train_items() -> list[Sample]:
    """The sample's train tweets with their BLIP-2 captions."""
    captions = pgim.read_captions(SAMPLE / "blip2_captions.txt")
    conll = formats.read_conll(SAMPLE / "train.txt", repair=True)
    return [replace(s, caption=captions.get(s.image_id, "")) for s in conll.sentences]


@pytest.fixture(scope="module")
def examples(train_items: list[Sample]) -> list[Sample]:
    """The sample's manual examples as train tweets."""
    return example_items(pgim.read_manual_examples(EXAMPLES, ENTITIES), train_items, EXAMPLES)


@pytest.fixture(scope="module")
def text_embedder():
    """The offline MiniLM text embedder."""
    return make_embedder("text", EmbedderOptions(batch_size=16))


def test_sample_examples_are_train_tweets(train_items: list[Sample], examples: list[Sample]) -> None:
    assert len(examples) == 62
    train_ids = {item.image_id for item in train_items}
    assert all(e.image_id in train_ids and e.text for e in examples)


@pytest.mark.parametrize("name", ["text", "random"])
def test_never_returns_the_sample_itself(name: str, train_items: list[Sample], examples: list[Sample], text_embedder) -> None:
    embedder = text_embedder if name == "text" else make_embedder("random")
    _, hits = retrieve(train_items, examples, embedder, top_n=5)
    example_ids = {e.image_id for e in examples}
    assert sum(1 for q in train_items if q.image_id in example_ids) == 62  # the queries that could find themselves
    for query, found in zip(train_items, hits):
        ids = [h["image_id"] for h in found]
        assert query.image_id not in ids
        assert len(ids) == 5 and len(set(ids)) == 5
        scores = [h["score"] for h in found]
        assert scores == sorted(scores, reverse=True)


def test_without_the_filter_a_sample_would_find_itself_first(examples: list[Sample], text_embedder) -> None:
    """The filter matters: an example queried with its own text is its own nearest neighbour."""
    vectors = text_embedder.embed(examples)
    index = build_index(vectors)
    unfiltered = search(index, vectors, [None] * len(examples), [e.image_id for e in examples], 1)
    assert [h[0]["image_id"] for h in unfiltered] == [e.image_id for e in examples]
    assert all(h[0]["score"] == pytest.approx(1.0, abs=1e-4) for h in unfiltered)


def test_faiss_matches_exact_cosine_on_real_vectors(train_items: list[Sample], examples: list[Sample], text_embedder) -> None:
    queries = text_embedder.embed(train_items[:40])
    vectors = text_embedder.embed(examples)
    assert queries.dtype == np.float32 and queries.shape[1] == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    hits = search(build_index(vectors), queries, [q.image_id for q in train_items[:40]], [e.image_id for e in examples], 3)
    cosine = queries @ vectors.T
    for row, query, found in zip(cosine, train_items[:40], hits):
        order = [j for j in np.argsort(-row, kind="stable") if examples[j].image_id != query.image_id][:3]
        assert [examples[j].image_id for j in order] == [h["image_id"] for h in found]
        assert [h["score"] for h in found] == pytest.approx([float(row[j]) for j in order], abs=1e-5)


def test_text_retrieval_finds_related_examples(examples: list[Sample], text_embedder) -> None:
    """A paraphrase of an example's tweet retrieves that example first."""
    target = next(e for e in examples if "Smash Shiba" in e.text)
    query = Sample("q", "Smash Shiba is excited about the Melee Grand Finals".split(), image_id="not-an-example")
    _, hits = retrieve([query], examples, text_embedder, top_n=3)
    assert hits[0][0]["image_id"] == target.image_id


def test_determinism_random_vs_text(train_items: list[Sample], examples: list[Sample], text_embedder) -> None:
    queries = train_items[:30]
    run = lambda embedder: retrieve(queries, examples, embedder, top_n=5)[1]  # noqa: E731
    assert run(make_embedder("random", EmbedderOptions(seed=1))) == run(make_embedder("random", EmbedderOptions(seed=1)))
    assert run(make_embedder("random", EmbedderOptions(seed=1))) != run(make_embedder("random", EmbedderOptions(seed=2)))
    text = run(text_embedder)
    assert text == run(text_embedder)
    rebatched = run(make_embedder("text", EmbedderOptions(batch_size=7)))  # other padding: same ranking, scores to 1e-5
    assert [[h["image_id"] for h in hits] for hits in rebatched] == [[h["image_id"] for h in hits] for hits in text]
    assert [h["score"] for hits in rebatched for h in hits] == pytest.approx([h["score"] for hits in text for h in hits], abs=1e-5)
    assert text != run(make_embedder("random", EmbedderOptions(seed=1)))


def test_registry_and_errors(train_items: list[Sample], tmp_path: Path) -> None:
    assert {"text", "random", "fused"} <= set(EMBEDDERS)
    with pytest.raises(ValueError, match=r"unknown embedder 'clip'.*'fused', 'random', 'text'"):
        make_embedder("clip")
    assert np.allclose(normalise(np.array([[3.0, 4.0], [0.0, 0.0]])), [[0.6, 0.8], [0.0, 0.0]])
    foreign = tmp_path / "manual_examples.txt"
    foreign.write_text("50447\nanswer\n999999\nanswer\n", encoding="utf-8")
    (tmp_path / "entities.txt").write_text("50447\n['Baltimore', 'LOC']\n999999\n['X', 'PER']\n", encoding="utf-8")
    manual = pgim.read_manual_examples(foreign, tmp_path / "entities.txt")
    with pytest.raises(ValueError, match=rf"{foreign}:3: example 999999"):
        example_items(manual, train_items, foreign)


def _merged(directory: Path, stage: str, rows_by_split: dict[str, list[dict]]) -> dict:
    """A merged per-sample output as the lead's merge writes it (files + hashes)."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, rows in rows_by_split.items():
        (directory / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"stage": stage, "key": directory.name, "dir": str(directory),
            "files": {p.name: sha256_file(p) for p in sorted(directory.iterdir())}}


def sample_outputs(root: Path) -> tuple[dict, dict]:
    """The ``load`` output of the sample and a merged captions output from its BLIP-2 captions."""
    from mner.samples import SPLITS, read_jsonl
    from tasks.common import run_stage
    from tasks.data import load_splits

    sources = {"train": str(SAMPLE / "train.txt"), "dev": str(SAMPLE / "valid.txt"), "test": str(SAMPLE / "test.txt")}
    data = run_stage(load_splits, sources=sources, repair_bio=True, artifacts_root=str(root / "artifacts"))
    captions = pgim.read_captions(SAMPLE / "blip2_captions.txt")
    rows = {split: [{"id": r["id"], "caption": captions.get(r["image_id"], ""),
                     "error": None if r["image_id"] in captions else {"reason": "no caption"}}
                    for r in read_jsonl(Path(data["dir"]) / f"{split}.jsonl")] for split in SPLITS}
    return data, _merged(root / "captions", "captions", rows)


def test_side_texts_alignment(tmp_path: Path) -> None:
    rows = [Sample("1", ["a"]), Sample("2", ["b"])]
    good = _merged(tmp_path / "ok", "ocr", {"test": [{"id": "1", "text": "A", "error": None},
                                                    {"id": "2", "text": "", "error": {"reason": "unreadable"}}]})
    assert side_texts(good, "test", "text", rows) == ["A", ""]
    assert side_texts(None, "test", "text", rows) == ["", ""]
    bad = _merged(tmp_path / "bad", "ocr", {"test": [{"id": "1", "text": "A", "error": None},
                                                    {"id": "3", "text": "B", "error": None}]})
    with pytest.raises(ValueError, match=r"bad/test.jsonl:2: id '3'"):
        side_texts(bad, "test", "text", rows)


@pytest.mark.slow
def test_retrieve_stage_on_the_sample(prefect_harness, tmp_path: Path) -> None:
    from mner.samples import read_jsonl
    from tasks.common import run_stage
    from tasks.retrieve import retrieve_examples

    data, captions = sample_outputs(tmp_path)
    params = dict(data=data, captions=captions, ocr=None, sources={"examples": str(EXAMPLES), "examples_entities": str(ENTITIES)},
                  embedder="text", encoder="offline:all-MiniLM-L6-v2", top_n=4, seed=0, artifacts_root=str(tmp_path / "artifacts"))
    out = run_stage(retrieve_examples, **params)
    directory = Path(out["dir"])
    assert {"train.jsonl", "dev.jsonl", "test.jsonl", "index.faiss", "examples.json"} <= set(out["files"])
    index = faiss.read_index(str(directory / "index.faiss"))
    listed = json.loads((directory / "examples.json").read_text(encoding="utf-8"))
    assert index.ntotal == len(listed) == 62
    for split in ("train", "dev", "test"):
        queries = split_samples(data, split, captions, None)
        rows = read_jsonl(directory / f"{split}.jsonl")
        assert [r["id"] for r in rows] == [q.id for q in queries]
        for query, row in zip(queries, rows):
            assert len(row["examples"]) == 4 and query.image_id not in [h["image_id"] for h in row["examples"]]
    assert any(q.caption for q in split_samples(data, "test", captions, None))
    published = run_id(out)
    assert run_stage(retrieve_examples, **params) == out and run_id(out) == published  # reused, not recomputed
    assert run_stage(retrieve_examples, **{**params, "embedder": "random"})["key"] != out["key"]
