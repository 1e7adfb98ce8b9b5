"""Greedy decoding for a distilled student, cheaper per answer than ``model.generate``.

Three levers, each keeping greedy's answer wherever it can:

- **rows leave the batch** as they end: a finished answer's row is dropped from the KV cache, so a
  batch costs the sum of its answers' lengths, not its longest answer times its size;
- **the output head over the tokens an answer can hold** (:class:`AnswerVocabulary`): the tokens of
  the teacher's train answers and of the forms of the train posts' words, written by the distill
  stage beside the model, plus the batch's own prompt tokens and the forms of their words
  (:func:`word_form_tokens`: an entity is mostly copied from its post, but capitalised, after a space,
  or out of a hashtag). Gemma 3's head has 262,144 rows and dominates a decoding step; these are
  some tens of thousands. Greedy's answer changes only where the full head's top token lies outside
  the subset;
- **a new-token cap** from the train answers' lengths: no teacher answer was longer, so a longer
  student answer is a run-on that the cap cuts;
- **the shared prefix read once**: the chat template's start and the task are the same in every
  prompt, so their keys and values are computed for one row and copied to the others.

:func:`greedy_answers` is the loop; :class:`engine.local_generate.LocalGenerator` calls it for
greedy requests (temperature 0) and keeps ``model.generate`` for sampling.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

VOCABULARY_FILE = "answer_vocabulary.json"  # in a distilled model's directory
WORD = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*")  # a word of a post, without the # or @ or punctuation around it
CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")  # the parts of a hashtag such as BritneyLiveInConcert


@dataclass(frozen=True)
class AnswerVocabulary:
    """The token ids of the teacher's train answers (EOS included) and the longest answer's length in tokens."""

    token_ids: frozenset[int]
    max_answer_tokens: int

    def subset(self, prompts: Iterable[Sequence[int]], more: Iterable[int] = ()) -> torch.Tensor:
        """The sorted token ids an answer to ``prompts`` may hold: these, every prompt token, and ``more``."""
        ids = set(self.token_ids) | set(more)
        for prompt in prompts:
            ids.update(prompt)
        return torch.tensor(sorted(ids), dtype=torch.long)


def word_forms(text: str) -> set[str]:
    """Each word of ``text`` and each part of a joined-up word (a hashtag), as written, lower-cased, capitalised and
    upper-cased, each alone and after a space: the forms in which an answer may name it."""
    words: set[str] = set()
    for word in WORD.findall(text):
        words.add(word)
        words.update(CAMEL.findall(word))
    forms = {form for word in words for form in (word, word.lower(), word.capitalize(), word.upper())}
    return forms | {f" {form}" for form in forms}


def word_form_tokens(tokenizer: Any, prompts: Sequence[Sequence[int]]) -> set[int]:
    """The token ids of the :func:`word_forms` of every prompt's text."""
    forms = sorted(set().union(*(word_forms(tokenizer.decode(list(p), skip_special_tokens=True)) for p in prompts)))
    return {token for ids in tokenizer(forms, add_special_tokens=False)["input_ids"] for token in ids} if forms else set()


def answer_vocabulary(answers: Iterable[list[int]], eos_token_id: int, more: Iterable[int] = ()) -> AnswerVocabulary:
    """The vocabulary of ``answers`` (each an answer's token ids as the model learns it, EOS included) and ``more``."""
    token_ids, longest = {eos_token_id, *more}, 0
    for answer in answers:
        token_ids.update(answer)
        longest = max(longest, len(answer))
    return AnswerVocabulary(frozenset(token_ids), longest)


def write_answer_vocabulary(vocabulary: AnswerVocabulary, model_dir: str | Path) -> None:
    """Save ``vocabulary`` into a model directory, where :func:`read_answer_vocabulary` finds it."""
    data = {"token_ids": sorted(vocabulary.token_ids), "max_answer_tokens": vocabulary.max_answer_tokens}
    (Path(model_dir) / VOCABULARY_FILE).write_text(json.dumps(data), encoding="utf-8")


def read_answer_vocabulary(model_dir: str | Path) -> AnswerVocabulary | None:
    """The answer vocabulary saved in ``model_dir`` (None for a model without one, e.g. a GGUF file)."""
    path = Path(model_dir) / VOCABULARY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return AnswerVocabulary(frozenset(int(i) for i in data["token_ids"]), int(data["max_answer_tokens"]))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not an answer vocabulary ({err}); delete it to decode over the full head") from err


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every prompt shares (the chat template's start and the task), leaving each at least one."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return length


def greedy_answers(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_token_id: int, pad_token_id: int,
                   head_ids: torch.Tensor | None = None) -> list[list[int]]:
    """Greedy answers (token ids, EOS included where reached) to ``prompts``, each row leaving the batch when it ends;
    ``head_ids``: compute the output head over these token ids only (None: the whole vocabulary).

    The prompts' shared prefix is read once and its keys and values copied to every row; each prompt's rest
    follows it, padded on the left: ``[prefix][padding][rest]``, the padding masked out. A model with
    sliding-window attention counts the padding inside its window, so there the prefix is shared only
    when prompt and answer fit the window, and the padding otherwise goes first, as ``generate`` puts it.
    """
    from transformers import DynamicCache

    device, body = model.device, model.get_decoder()
    window = getattr(model.config, "sliding_window", None)
    fits = not window or max(len(p) for p in prompts) + max_new_tokens <= window
    prefix = shared_prefix(prompts) if fits else 0
    width = max(len(p) for p in prompts) - prefix
    input_ids = torch.tensor([[pad_token_id] * (width - len(p) + prefix) + list(p[prefix:]) for p in prompts], device=device)
    mask = torch.tensor([[1] * prefix + [0] * (width - len(p) + prefix) + [1] * (len(p) - prefix) for p in prompts],
                        device=device)
    positions = mask.cumsum(-1)[:, prefix:] - 1
    weight = model.get_output_embeddings().weight
    if head_ids is not None:
        head_ids = head_ids.to(device)
        weight = weight.index_select(0, head_ids)
    answers: list[list[int]] = [[] for _ in prompts]
    rows = torch.arange(len(prompts), device=device)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        if prefix:
            body(input_ids=torch.tensor([list(prompts[0][:prefix])], device=device),
                 position_ids=torch.arange(prefix, device=device)[None], past_key_values=cache, use_cache=True)
            cache.batch_repeat_interleave(len(prompts))
        hidden = body(input_ids=input_ids, attention_mask=mask, position_ids=positions.clamp(min=0), past_key_values=cache,
                      use_cache=True).last_hidden_state[:, -1]
        position = positions[:, -1] + 1
        for step in range(max_new_tokens):
            token = (hidden @ weight.T).argmax(-1)  # logit soft-capping, where a model has it, keeps the order
            if head_ids is not None:
                token = head_ids[token]
            for row, value in zip(rows.tolist(), token.tolist()):
                answers[row].append(value)
            going = token != eos_token_id
            if step == max_new_tokens - 1 or not bool(going.any()):
                break
            if not bool(going.all()):
                keep = going.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                mask, rows, token, position = mask[keep], rows[keep], token[keep], position[keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            hidden = body(input_ids=token[:, None], attention_mask=mask, position_ids=position[:, None],
                          past_key_values=cache, use_cache=True).last_hidden_state[:, -1]
            position = position + 1
    return answers
