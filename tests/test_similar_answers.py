"""The retrieval-augmented student's prompts (``stage1.prompt.similar_answers``): the query shows the teacher's answers
for the post's k most similar train posts, never its own, in the pipeline and for new posts alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.retrieved_knowledge import answers_as_lines
from mner.samples import read_jsonl
from tests.conftest import SAMPLE

SIMILAR_TEMPLATE = str(Path(__file__).resolve().parents[1] / "prompts" / "distill_entities_similar_v1")
PLAIN_TEMPLATE = str(Path(__file__).resolve().parents[1] / "prompts" / "distill_entities_v1")


def overrides(tmp_path: Path, **more: Any) -> dict[str, Any]:
    """A tiny sample with zero-shot prompts, PGIM's train answers in entity form, and no OCR."""
    from tests.tiny_sample import write_tiny_sample

    return {**write_tiny_sample(tmp_path / "data", per_split=10), "dataset.knowledge_train": str(SAMPLE / "knowledge_train.txt"),
            "stage1.knowledge.backend": "llm", "stage1.knowledge.answer_form": "entities", "stage1.ocr.backend": "none",
            "stage1.prompt.n_examples": 0, "stage1.retrieval.embedder": "random",
            "artifacts_root": str(tmp_path / "store"), **more}


def similar_part(prompt: dict[str, Any]) -> str:
    """What the query shows under its similar-answers heading."""
    return prompt["messages"][-1]["content"].split("Entities named for similar posts:\n", 1)[1]


@pytest.mark.slow
def test_prompts_show_k_neighbours_answers_never_the_posts_own_and_refuse_a_template_that_disagrees(
        prefect_harness, tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    out = pipeline(overrides=overrides(tmp_path, **{"stage1.prompt.similar_answers": 2,
                                                    "stage1.prompt.template_dir": SIMILAR_TEMPLATE}), until="prompts")
    store = tmp_path / "store"
    retrieved = next(p for p in (store / "retrieved").iterdir() if not p.name.endswith(".partial"))
    assert json.loads((retrieved / "manifest.json").read_text())["config"]["k"] == 2
    for split in ("train", "dev", "test"):
        prompts = read_jsonl(Path(out["prompts"]) / f"{split}.jsonl")
        neighbours = read_jsonl(retrieved / f"{split}.jsonl")
        assert [p["id"] for p in prompts] == [n["id"] for n in neighbours] and len(prompts) == 10
        for prompt, found in zip(prompts, neighbours):
            shown = similar_part(prompt)
            assert shown == answers_as_lines(found["knowledge"]) and shown.count("Named entities") == 2
            assert len(found["neighbours"]) == 2
            if split == "train":
                assert prompt["id"] not in [n["id"] for n in found["neighbours"]]

    with pytest.raises(ValueError, match=r"query.txt: the query template has no \$\{similar\}"):
        pipeline(overrides=overrides(tmp_path, **{"stage1.prompt.similar_answers": 2,
                                                  "stage1.prompt.template_dir": PLAIN_TEMPLATE}), until="prompts")
    with pytest.raises(ValueError, match=r"query.txt: the query template uses \$\{similar\}.*similar_answers is 0"):
        pipeline(overrides=overrides(tmp_path, **{"stage1.prompt.template_dir": SIMILAR_TEMPLATE}), until="prompts")


def test_a_new_posts_prompt_shows_the_answers_of_its_nearest_train_posts(tmp_path: Path) -> None:
    from engine.knowledge_routes import prompt_rows
    from mner import formats
    from mner.config import resolve_config

    cfg = resolve_config(None, None, {**overrides(tmp_path), "stage1.prompt.similar_answers": 1,
                                      "stage1.prompt.template_dir": SIMILAR_TEMPLATE, "stage1.caption.backend": "none",
                                      "stage1.knowledge.retrieved.embedder": "text"})
    train = formats.read_conll(cfg.dataset.train, repair=True).sentences
    rows = prompt_rows([train[3]], cfg)  # a train post seen as a new post: its nearest train post is itself
    from engine.distillation import teacher_answers

    answers, _ = teacher_answers(SAMPLE / "knowledge_train.txt", train, "entities")
    assert similar_part(rows[0]) == answers[train[3].id][0]
    plain = resolve_config(None, None, {**overrides(tmp_path), "stage1.prompt.similar_answers": 1,
                                        "stage1.prompt.template_dir": PLAIN_TEMPLATE})
    with pytest.raises(ValueError, match=r"has no \$\{similar\} and stage1.prompt.similar_answers is 1"):
        prompt_rows([train[3]], plain)
