"""Greedy decoding for distilled students (engine/answer_decoding.py) on tiny random models: the same answers as
``model.generate``, rows leaving the batch, the output head over a token subset, and the length cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.answer_decoding import (AnswerVocabulary, answer_vocabulary, greedy_answers, read_answer_vocabulary, word_forms,
                                    write_answer_vocabulary)
from engine.local_generate import LocalGenerator
from tests.test_answer_loss import tiny_gemma3, tiny_llama

PAD = 0
PROMPTS = [[5, 17, 23, 9, 41, 8, 30, 12, 7, 19, 33], [11, 4, 60], [70, 3, 3, 28, 52, 6], [44, 13, 88, 21, 9, 9, 15]]
PREFIX = [2, 50, 61, 9]  # a chat template's start, shared by every prompt


def generate(model: Any, prompts: list[list[int]], new_tokens: int, eos: int) -> list[list[int]]:
    """Greedy answers of ``model.generate`` (left padding), each cut after its first EOS."""
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, pad_token_id=PAD,
                             eos_token_id=eos, do_sample=False, temperature=None, top_p=None, top_k=None)
    rows = out[:, width:].tolist()
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


def early_eos(model: Any, prompts: list[list[int]]) -> tuple[int, int]:
    """A token that one prompt's greedy answer reaches early and the others never do, and that prompt's index: as EOS,
    rows end at different steps."""
    free = generate(model, prompts, 12, eos=-1)
    for index, answer in enumerate(free):
        for token in answer[1:8]:
            if all(token not in other for other in free[:index] + free[index + 1:]):
                return token, index
    raise AssertionError(f"every early token of an answer recurs in another (random weights): {free}")


@pytest.fixture(params=["gemma3", "gemma3-short-window", "llama"])
def model(request: pytest.FixtureRequest) -> Any:
    """A tiny random Gemma 3 (soft-capped logits; sliding-window layers whose window holds the prompts and answers, or
    not) or Llama, in eval mode."""
    if request.param == "llama":
        return tiny_llama().eval()
    model = tiny_gemma3(30.0).eval()
    model.config.sliding_window = 8 if request.param == "gemma3-short-window" else 64
    return model


@pytest.mark.parametrize("shared", [[], PREFIX], ids=["no-shared-prefix", "shared-prefix"])
def test_greedy_answers_equal_model_generate_while_rows_leave_the_batch(model: Any, shared: list[int]) -> None:
    prompts = [shared + p for p in PROMPTS]
    eos, early = early_eos(model, prompts)
    calls: list[tuple[int, int]] = []
    hook = model.get_decoder().register_forward_pre_hook(lambda _m, _a, kw: calls.append(tuple(kw["input_ids"].shape)),
                                                         with_kwargs=True)
    try:
        ours = greedy_answers(model, prompts, 12, eos, PAD)
    finally:
        hook.remove()
    assert ours == generate(model, prompts, 12, eos)
    assert ours[early][-1] == eos and len(ours[early]) < 12 and any(len(row) == 12 for row in ours)
    reads_prefix = bool(shared) and getattr(model.config, "sliding_window", None) != 8  # the short window holds no prompt with its answer
    if reads_prefix:  # the shared prefix is read once, for one row; the rest of each prompt after it
        assert calls[0] == (1, len(shared)) and calls[1] == (len(prompts), max(map(len, PROMPTS)))
    sizes = [rows for rows, _ in calls[1:] if reads_prefix] if reads_prefix else [rows for rows, _ in calls]
    # the ended row left the batch: later steps ran on fewer rows than the prefill
    assert sizes[0] == len(PROMPTS) and sizes[-1] < len(PROMPTS) and sizes == sorted(sizes, reverse=True)


def test_head_over_a_subset_keeps_answers_whose_tokens_it_holds_and_changes_others(model: Any) -> None:
    full = greedy_answers(model, PROMPTS, 6, eos_token_id=-1, pad_token_id=PAD)
    vocabulary = model.config.vocab_size
    assert greedy_answers(model, PROMPTS, 6, -1, PAD, torch.arange(vocabulary)) == full
    held = torch.tensor(sorted({t for row in full for t in row} | {1, 2}))
    assert greedy_answers(model, PROMPTS, 6, -1, PAD, held) == full
    first = full[0][0]
    without = torch.tensor([t for t in range(vocabulary) if t != first])
    changed = greedy_answers(model, PROMPTS, 6, -1, PAD, without)
    assert changed[0][0] != first and all(t != first for row in changed for t in row)


class TinyTokenizer:
    """Just what LocalGenerator asks of a tokenizer: pad and EOS ids and decoding (ids as words)."""

    pad_token_id, eos_token_id = PAD, 2

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """The ids as space-separated numbers."""
        return " ".join(map(str, ids))

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict[str, list[list[int]]]:
        """Each text that is a number, as that id."""
        return {"input_ids": [[int(t)] if t.strip().isdigit() else [] for t in texts]}


def test_local_generator_caps_answers_at_the_longest_train_answer_and_decodes_over_its_vocabulary(model: Any) -> None:
    generator = LocalGenerator(model, TinyTokenizer(), torch.device("cpu"))
    free = generator._batch(PROMPTS, 10, 0.0, 1.0, 0)
    answer_tokens = {int(t) for a in free for t in a.text.split()}
    capped = LocalGenerator(model, TinyTokenizer(), torch.device("cpu"), AnswerVocabulary(frozenset(answer_tokens), 4))
    short = capped._batch(PROMPTS, 10, 0.0, 1.0, 0)
    assert all(a.completion_tokens == 4 and a.finish_reason == "length" for a in short)
    assert [a.text.split() for a in short] == [a.text.split()[:4] for a in free]


def test_vocabulary_holds_answers_prompt_tokens_and_eos_and_round_trips(tmp_path: Path) -> None:
    vocabulary = answer_vocabulary([[7, 8, 2], [9, 2], [7, 10, 11, 12, 2]], eos_token_id=2)
    assert vocabulary.token_ids == {2, 7, 8, 9, 10, 11, 12} and vocabulary.max_answer_tokens == 5
    assert vocabulary.subset([[40, 7], [41]]).tolist() == [2, 7, 8, 9, 10, 11, 12, 40, 41]
    write_answer_vocabulary(vocabulary, tmp_path)
    assert read_answer_vocabulary(tmp_path) == vocabulary
    assert read_answer_vocabulary(tmp_path / "elsewhere") is None
    (tmp_path / "answer_vocabulary.json").write_text("{\"token_ids\": [1]}", encoding="utf-8")
    with pytest.raises(ValueError, match="answer_vocabulary.json: not an answer vocabulary"):
        read_answer_vocabulary(tmp_path)


def test_word_forms_cover_how_an_answer_names_a_posts_words() -> None:
    forms = word_forms("RT @ PredsNHL : watch # BritneyLiveInConcert , don't miss it!")
    for form in ("PredsNHL", " PredsNHL", " Preds", "NHL", " Britney", " Live", " Concert", " concert", " CONCERT",
                 "Britney", " don't", " Miss", " RT", " rt"):
        assert form in forms, form
    assert not any(mark in form for form in forms for mark in "#@:,!")
