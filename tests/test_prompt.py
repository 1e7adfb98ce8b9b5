"""Prompt building under a token budget, template files in the cache key, and the SFT export."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from stage_checks import run_id
from test_retrieve import ENTITIES, EXAMPLES, SAMPLE, _merged, sample_outputs

from engine.prompting import (
    MESSAGE_OVERHEAD,
    PromptBudgetError,
    fit_prompt,
    load_template,
    make_token_counter,
    template_sources,
)
from engine.retrieval import example_items
from mner import formats, pgim
from mner.samples import Sample
from tasks.sft import sft_records

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATES = PROJECT / "prompts" / "pgim_v1"


@pytest.fixture(scope="module")
def template():
    """The shipped PGIM-style template."""
    return load_template(template_sources(TEMPLATES))


@pytest.fixture(scope="module")
def count():
    """The default (offline MiniLM) token counter."""
    return make_token_counter()


@pytest.fixture(scope="module")
def shots() -> list[tuple[Sample, str]]:
    """The first five sample examples with their hand-written answers."""
    conll = formats.read_conll(SAMPLE / "train.txt", repair=True)
    train = conll.sentences
    manual = pgim.read_manual_examples(EXAMPLES, ENTITIES)[:5]
    return list(zip(example_items(manual, train, EXAMPLES), [m.answer for m in manual]))


QUERY = Sample("q1", "RT @nba : LeBron James scores 40 in Cleveland".split(), image_id="q1",
               caption="a basketball player on a court", ocr="CAVS 112 BULLS 98", source="test.txt:7")


def test_messages_are_a_few_shot_chat(template, count, shots) -> None:
    prompt = fit_prompt(template, shots[:3], QUERY, count, 10**6)
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert "named entities" in prompt.messages[0]["content"].lower()
    assert [m["content"] for m in prompt.messages[2:7:2]] == [answer for _, answer in shots[:3]]
    assert shots[0][0].text in prompt.messages[1]["content"] and "(none)" in prompt.messages[1]["content"]
    last = prompt.messages[-1]["content"]
    assert QUERY.text in last and QUERY.caption in last and QUERY.ocr in last
    assert prompt.example_ids == [item.image_id for item, _ in shots[:3]]
    assert prompt.prompt_tokens == sum(count(m["content"]) + MESSAGE_OVERHEAD for m in prompt.messages)
    assert prompt.dropped_examples == [] and prompt.truncated == []


def test_budget_drops_least_similar_examples_before_touching_the_query(template, count, shots) -> None:
    full = fit_prompt(template, shots, QUERY, count, 10**6)
    two = fit_prompt(template, shots[:2], QUERY, count, 10**6)
    prompt = fit_prompt(template, shots, QUERY, count, two.prompt_tokens)
    ids = [item.image_id for item, _ in shots]
    assert prompt.example_ids == ids[:2] and prompt.dropped_examples == ids[2:]
    assert prompt.messages == two.messages and prompt.truncated == []
    assert fit_prompt(template, shots, QUERY, count, full.prompt_tokens - 1).dropped_examples == ids[-1:]
    query_only = fit_prompt(template, shots, QUERY, count, two.prompt_tokens - 1)
    assert query_only.messages[-1] == full.messages[-1]  # the query is whole while examples can go
    assert query_only.example_ids == ids[:1]


def test_query_over_budget_cuts_ocr_then_caption_then_fails(template, count, shots) -> None:
    query = replace(QUERY, caption="a basketball player " * 20, ocr="score board text " * 40)
    bare = fit_prompt(template, [], replace(query, caption="", ocr=""), count, 10**6).prompt_tokens
    with_caption = fit_prompt(template, [], replace(query, ocr=""), count, 10**6).prompt_tokens
    prompt = fit_prompt(template, shots, query, count, with_caption + 10)
    last = prompt.messages[-1]["content"]
    assert prompt.example_ids == [] and prompt.truncated == ["ocr"] and prompt.prompt_tokens <= with_caption + 10
    assert query.text in last and query.caption.strip() in last
    kept_ocr = last.split("Text in the image: ", 1)[1]
    assert kept_ocr and query.ocr.startswith(kept_ocr)
    both = fit_prompt(template, shots, query, count, bare + 5)
    assert both.truncated == ["ocr", "caption"] and query.text in both.messages[-1]["content"]
    with pytest.raises(PromptBudgetError, match=r"test.txt:7: sample q1 needs \d+ prompt tokens"):
        fit_prompt(template, shots, query, count, bare - 10)  # "(none)" costs 3 tokens, so aim well below


def test_whitespace_counter_and_template_errors(tmp_path: Path) -> None:
    assert make_token_counter("whitespace")("a b  c\nd") == 4
    assert make_token_counter()("LeBron") >= 1
    folder = tmp_path / "tpl"
    shutil.copytree(TEMPLATES, folder)
    (folder / "query.txt").write_text("Text: ${text}\nHashtags: ${hashtags}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{folder / 'query.txt'}: unknown placeholders \['hashtags'\]"):
        load_template(template_sources(folder))
    (folder / "query.txt").unlink()
    with pytest.raises(FileNotFoundError, match="query.txt"):
        load_template(template_sources(folder))


@pytest.mark.slow
def test_prompt_stage_and_template_change_changes_the_key(prefect_harness, tmp_path: Path) -> None:
    from mner.samples import read_jsonl
    from tasks.common import run_stage
    from tasks.prompt import build_prompts
    from tasks.retrieve import retrieve_examples

    root = str(tmp_path / "artifacts")
    data, captions = sample_outputs(tmp_path)
    examples = {"examples": str(EXAMPLES), "examples_entities": str(ENTITIES)}
    retrieval = run_stage(retrieve_examples, data=data, captions=captions, ocr=None, sources=examples, embedder="text",
                          encoder="offline:all-MiniLM-L6-v2", top_n=4, seed=0, artifacts_root=root)
    folder = tmp_path / "tpl"
    shutil.copytree(TEMPLATES, folder)
    params = dict(data=data, retrieval=retrieval, captions=captions, ocr=None,
                  sources={**template_sources(folder), **examples}, n_examples=3, max_prompt_tokens=700,
                  tokenizer="offline:all-MiniLM-L6-v2", artifacts_root=root)
    first = run_stage(build_prompts, **params)
    rows = read_jsonl(Path(first["dir"]) / "test.jsonl")
    retrieved = read_jsonl(Path(retrieval["dir"]) / "test.jsonl")
    assert len(rows) == 50 and [r["id"] for r in rows] == [r["id"] for r in retrieved]
    for row, hits in zip(rows, retrieved):
        assert row["example_ids"] + row["dropped_examples"] == [h["image_id"] for h in hits["examples"]][:3]
        assert row["prompt_tokens"] <= 700 and row["messages"][-1]["role"] == "user"
    assert any(r["dropped_examples"] for r in rows) and any(len(r["example_ids"]) == 3 for r in rows)
    published = run_id(first)
    assert run_stage(build_prompts, **params) == first and run_id(first) == published  # reused, not recomputed

    (folder / "head.txt").write_text((folder / "head.txt").read_text(encoding="utf-8") + "\nBe brief.\n", encoding="utf-8")
    second = run_stage(build_prompts, **params)
    assert second["key"] != first["key"]
    assert read_jsonl(Path(second["dir"]) / "test.jsonl")[0]["messages"][0]["content"].endswith("Be brief.")
    (folder / "VERSION").write_text("pgim_v1.1\n", encoding="utf-8")
    third = run_stage(build_prompts, **params)
    assert third["key"] not in {first["key"], second["key"]}
    manifest = json.loads((Path(third["dir"]) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["template_version"] == "pgim_v1.1"

    with pytest.raises(PromptBudgetError, match=r"samples do not fit max_prompt_tokens=20"):
        run_stage(build_prompts, **{**params, "max_prompt_tokens": 20})


def test_sft_records_shape_and_missing_answers() -> None:
    prompts = [{"id": str(i), "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": f"post {i}"}]}
               for i in range(3)]
    knowledge = [{"id": "0", "knowledge": "Named entities: 1. X (person)", "error": None},
                 {"id": "1", "knowledge": "", "error": {"reason": "timeout after 3 tries"}},
                 {"id": "2", "knowledge": "  ", "error": None}]
    records, without = sft_records(prompts, knowledge, "k.jsonl")
    assert records == [{"messages": [*prompts[0]["messages"], {"role": "assistant", "content": "Named entities: 1. X (person)"}]}]
    assert without == [{"id": "1", "reason": "knowledge error: timeout after 3 tries"}, {"id": "2", "reason": "empty knowledge"}]
    with pytest.raises(ValueError, match=r"k.jsonl:2: id '9'"):
        sft_records(prompts, [knowledge[0], {**knowledge[1], "id": "9"}, knowledge[2]], "k.jsonl")


@pytest.mark.slow
def test_export_sft_stage(prefect_harness, tmp_path: Path) -> None:
    from mner.samples import read_jsonl
    from tasks.common import run_stage
    from tasks.sft import export_sft

    prompt_rows = [{"id": str(i), "messages": [{"role": "user", "content": f"post {i}"}], "example_ids": [],
                    "prompt_tokens": 6, "dropped_examples": [], "truncated": []} for i in range(4)]
    prompts = _merged(tmp_path / "prompts", "prompts", {"train": prompt_rows, "dev": prompt_rows[:1]})
    answers = [{"id": str(i), "knowledge": f"answer {i}" if i != 2 else "", "error": None} for i in range(4)]
    knowledge = _merged(tmp_path / "knowledge", "knowledge", {"train": answers, "dev": answers[:1]})
    out = run_stage(export_sft, prompts=prompts, knowledge=knowledge, splits=["train", "dev"], artifacts_root=str(tmp_path / "a"))
    train = read_jsonl(Path(out["dir"]) / "train.jsonl")
    assert len(train) == 3 and all(r["messages"][-1]["role"] == "assistant" for r in train)
    assert train[2]["messages"] == [{"role": "user", "content": "post 3"}, {"role": "assistant", "content": "answer 3"}]
    assert read_jsonl(Path(out["dir"]) / "train.without_answer.jsonl") == [{"id": "2", "reason": "empty knowledge"}]
    manifest = json.loads((Path(out["dir"]) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["train"]["without_answer"] == 1 and manifest["dev"]["records"] == 1


@pytest.mark.parametrize("folder", sorted(p.name for p in (PROJECT / "prompts").iterdir() if p.is_dir()))
def test_every_shipped_template_renders_a_zero_shot_prompt(folder: str, count) -> None:
    shipped = load_template(template_sources(PROJECT / "prompts" / folder))
    prompt = fit_prompt(shipped, [], QUERY, count, 10**6)
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert "named entities" in prompt.messages[0]["content"].lower()
    assert all(part in prompt.messages[1]["content"] for part in ("LeBron James", QUERY.caption, QUERY.ocr))
