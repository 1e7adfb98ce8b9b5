"""One source for the LLM settings: the ``stage1.llm`` config section, never a default of a stage or of the client."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from engine.llm_client import LLMSettings
from engine.predict import knowledge_settings, llm_knowledge
from mner.config import LlmConfig, PipelineConfig
from mner.samples import write_jsonl
from mner.server import free_port
from tasks.common import stage_key
from tasks.llm import llm_shard, shard_settings

# every field LLMSettings takes from the config, each away from its default
NOT_DEFAULTS = dict(model="m", api_key_env="MNER_TEST_KEY_ENV", api_key_secret="a-secret-block", temperature=0.3,
                    max_tokens=7, top_p=0.5, seed=3, concurrency=5, rpm=11, tpm=999, timeout_s=9.5, max_retries=2,
                    backoff_base_s=0.01, backoff_max_s=0.02, price_prompt_per_1k=0.1, price_completion_per_1k=0.2)
CLIENT_FIELDS = [f.name for f in dataclasses.fields(LLMSettings) if f.name not in ("base_url", "endpoint")]


def test_llm_settings_have_no_defaults_and_every_value_is_a_config_field() -> None:
    with_default = [f.name for f in dataclasses.fields(LLMSettings)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert with_default == []
    assert set(CLIENT_FIELDS) <= set(LlmConfig.model_fields)


def test_from_config_copies_every_client_field_of_the_config() -> None:
    llm = LlmConfig(**NOT_DEFAULTS)
    settings = LLMSettings.from_config(llm, "http://127.0.0.1:1/v1", "llama.cpp:x")
    assert settings.base_url == "http://127.0.0.1:1/v1" and settings.identity == "llama.cpp:x"
    defaults = LlmConfig()
    for name in CLIENT_FIELDS:
        assert getattr(llm, name) != getattr(defaults, name), f"NOT_DEFAULTS must change {name}"
        assert getattr(settings, name) == getattr(llm, name), name


def test_llm_shard_takes_its_settings_only_from_the_config_section() -> None:
    params = inspect.signature(llm_shard.fn).parameters
    assert not set(params) & set(LlmConfig.model_fields), "an LLM setting of llm_shard's own would shadow the config"
    assert {name for name, p in params.items() if p.default is not p.empty} == {"runtime", "cache_dir", "recompute"}


def _shard_params(tmp_path: Path, llm: LlmConfig, **extra: object) -> dict:
    prompts = {"stage": "prompts", "key": "k", "dir": str(tmp_path / "prompts"), "files": {"dev.jsonl": "0" * 64}}
    return dict(prompts=prompts, split="dev", start=0, stop=4, endpoint="llama.cpp:x", llm=shard_settings(llm),
                artifacts_root=str(tmp_path / "store"), **extra)


def test_the_shard_key_follows_every_answer_shaping_setting_but_not_the_runtime(tmp_path: Path) -> None:
    key = stage_key(llm_shard, _shard_params(tmp_path, LlmConfig(), runtime={"base_url": "http://127.0.0.1:1/v1"}))
    elsewhere = _shard_params(tmp_path, LlmConfig(), runtime={"base_url": "http://127.0.0.1:2/v1"})
    assert stage_key(llm_shard, {**elsewhere, "artifacts_root": str(tmp_path / "other")}) == key
    shaping = {"model": "other", "temperature": 0.7, "max_tokens": 65, "top_p": 0.9, "seed": 1, "max_answer_chars": 10}
    assert set(LLMSettings.from_config(LlmConfig(), "http://x", None).generation()) <= set(shaping)
    for name, value in shaping.items():
        assert stage_key(llm_shard, _shard_params(tmp_path, LlmConfig(**{name: value}))) != key, name
    assert stage_key(llm_shard, {**_shard_params(tmp_path, LlmConfig()), "endpoint": "llama.cpp:y"}) != key


def test_a_shard_given_part_of_the_settings_says_which_are_missing(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    write_jsonl(tmp_path / "prompts" / "dev.jsonl", [{"id": "a", "messages": [{"role": "user", "content": "hi"}]}])
    params = _shard_params(tmp_path, LlmConfig(), runtime={"base_url": "http://127.0.0.1:1/v1"})
    partial = {k: v for k, v in params["llm"].items() if k not in ("max_tokens", "rpm")}
    with pytest.raises(ValueError, match=r"\['max_tokens', 'rpm'\] not given; pass shard_settings"):
        llm_shard.fn(**{**params, "llm": partial})


def test_predict_asks_with_every_llm_setting_of_the_config(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: every attempt fails to connect
    llm = LlmConfig(**{**NOT_DEFAULTS, "base_url": url, "api_key_secret": None})  # no Secret block to look up
    settings = knowledge_settings(llm, url)
    assert (settings.rpm, settings.tpm, settings.concurrency) == (11, 999, 5)
    assert {name: getattr(settings, name) for name in CLIENT_FIELDS} == {name: getattr(llm, name) for name in CLIENT_FIELDS}
    assert settings.identity == url  # the name the pipeline's stage gives this endpoint in its answer cache
    config = PipelineConfig(stage1={"llm": llm.model_dump(), "prompt": {"n_examples": 0, "tokenizer": "whitespace"}},
                            artifacts_root=tmp_path)
    with pytest.raises(RuntimeError, match=r"connection error \(gave up after 3 attempts\)"):  # max_retries=2
        llm_knowledge(["Obama", "in", "Paris"], "", "", config)
